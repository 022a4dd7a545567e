package storagehealth

import (
	"os"
	"path/filepath"
	"testing"
)

// The counter grows by what this process writes and fsyncs.
func TestWrittenBytesCountsOwnWrites(t *testing.T) {
	before, err := WrittenBytes()
	if err != nil {
		t.Skipf("no per-process I/O accounting here: %v", err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	after, err := WrittenBytes()
	if err != nil {
		t.Fatal(err)
	}
	// tmpfs has no block device: nothing reaches storage there.
	if v, _ := Describe(filepath.Dir(f.Name())); after-before < 64<<10 && v.FSType != "tmpfs" {
		t.Fatalf("wrote and synced 64 KiB, counter moved %d bytes", after-before)
	}
}

func TestWrittenBytesBadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "io")
	os.WriteFile(p, []byte("rchar: 1\n"), 0o600)
	if _, err := writtenBytes(p); err == nil {
		t.Fatal("a file without write_bytes was accepted")
	}
	os.WriteFile(p, []byte("write_bytes: x\n"), 0o600)
	if _, err := writtenBytes(p); err == nil {
		t.Fatal("a non-numeric write_bytes was accepted")
	}
	os.WriteFile(p, []byte("write_bytes: 8192\n"), 0o600)
	if n, err := writtenBytes(p); err != nil || n != 8192 {
		t.Fatalf("got %d, %v", n, err)
	}
}

// The volume of a temp dir is described: filesystem, mount and space.
func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	v, err := Describe(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.FSType == "" || v.MountPoint == "" || v.TotalBytes == 0 || v.FreeBytes > v.TotalBytes {
		t.Fatalf("volume of %s: %+v", dir, v)
	}
	if _, err := Describe(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory was described")
	}
	t.Logf("%+v", v)
}
