//go:build linux

package testkit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// openSlave opens the PTY's stable path the way the daemon does.
func openSlave(t *testing.T, p *PTY) serial.Port {
	t.Helper()
	port, err := serial.Open(p.Path(), &serial.Mode{BaudRate: 115200, DataBits: 8})
	if err != nil {
		t.Fatalf("opening %s: %v", p.Path(), err)
	}
	t.Cleanup(func() { port.Close() })
	return port
}

// readN reads exactly n bytes from port or fails after a deadline.
func readN(t *testing.T, port serial.Port, n int) []byte {
	t.Helper()
	if err := port.SetReadTimeout(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, n)
	buf := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		k, err := port.Read(buf[:min(len(buf), n-len(got))])
		if err != nil {
			t.Fatalf("reading slave after %d of %d bytes: %v", len(got), n, err)
		}
		got = append(got, buf[:k]...)
	}
	if len(got) < n {
		t.Fatalf("read %d of %d bytes before the deadline: %q", len(got), n, got)
	}
	return got
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestPTYPathIsStableSymlinkToSlave(t *testing.T) {
	p := NewPTY(t)
	if !strings.HasPrefix(filepath.Base(p.Path()), "usb-") {
		t.Errorf("path %q does not look like a by-id name", p.Path())
	}
	target, err := filepath.EvalSymlinks(p.Path())
	if err != nil {
		t.Fatalf("resolving %s: %v", p.Path(), err)
	}
	if target != p.TTY() || !strings.HasPrefix(target, "/dev/pts/") {
		t.Errorf("symlink resolves to %q, TTY() = %q", target, p.TTY())
	}
}

// Every byte value must arrive unchanged, whether written before or after
// the daemon opens the port: no CR/LF translation, no line editing, no
// flow-control or signal characters swallowed.
func TestPTYRawBytesBeforeAndAfterOpen(t *testing.T) {
	tests := []struct {
		name       string
		beforeOpen bool
	}{
		{"written before open", true},
		{"written after open", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPTY(t)
			want := append(allBytes(), []byte("abc\r\n\rdef\n\x03\x04\x11\x13\x7f\x00")...)
			var port serial.Port
			if !tc.beforeOpen {
				port = openSlave(t, p)
			}
			if err := p.Write(want); err != nil {
				t.Fatal(err)
			}
			if tc.beforeOpen {
				port = openSlave(t, p)
			}
			if got := readN(t, port, len(want)); !bytes.Equal(got, want) {
				t.Errorf("slave read\n%q\nwant\n%q", got, want)
			}
			// Nothing may be echoed back to the master.
			m := p.Master().(*os.File)
			if err := m.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if n, err := m.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("master read = %q, %v; want no echo (deadline exceeded)", buf[:n], err)
			}
		})
	}
}

func TestPTYReadsWhatDaemonWrites(t *testing.T) {
	p := NewPTY(t)
	port := openSlave(t, p)
	want := []byte("PING\r\x00\xff")
	if _, err := port.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(want))
	buf := make([]byte, 64)
	for len(got) < len(want) {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("master read %q, want %q", got, want)
	}
}

func TestPTYUnplugHangsUpAndPlugRestores(t *testing.T) {
	p := NewPTY(t)
	port := openSlave(t, p)
	oldTTY := p.TTY()

	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := port.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	p.Unplug()
	select {
	case err := <-readErr:
		t.Logf("slave read after unplug: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("slave read did not fail after Unplug")
	}
	if _, err := os.Lstat(p.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Unplug, Lstat(%s) = %v, want not exist", p.Path(), err)
	}
	if p.Plugged() || p.TTY() != "" || p.Master() != nil {
		t.Error("PTY still reports plugged after Unplug")
	}
	if err := p.Write([]byte("x")); !errors.Is(err, ErrUnplugged) {
		t.Errorf("Write while unplugged = %v, want ErrUnplugged", err)
	}
	p.Unplug() // idempotent

	p.Plug()
	if !p.Plugged() {
		t.Fatal("not plugged after Plug")
	}
	target, err := filepath.EvalSymlinks(p.Path())
	if err != nil || target != p.TTY() {
		t.Fatalf("after Plug the path resolves to %q (%v), want %q", target, err, p.TTY())
	}
	t.Logf("tty before %s, after %s", oldTTY, p.TTY())
	port2 := openSlave(t, p)
	if err := p.Write([]byte("again\r")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, port2, 6); string(got) != "again\r" {
		t.Errorf("read %q after replug", got)
	}
}

// A Write blocked on a full tty buffer (nobody reading) must be released by
// Unplug rather than hang the test.
func TestPTYUnplugUnblocksWrite(t *testing.T) {
	p := NewPTY(t)
	done := make(chan error, 1)
	go func() {
		done <- p.Write(make([]byte, 8<<20))
	}()
	// Wait until the write is really blocked: the kernel queue is finite,
	// so 8 MiB cannot complete without a reader.
	select {
	case err := <-done:
		t.Fatalf("8 MiB write completed without a reader: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	p.Unplug()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnplugged) {
			t.Errorf("blocked Write returned %v, want ErrUnplugged", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Unplug did not unblock a pending Write")
	}
}
