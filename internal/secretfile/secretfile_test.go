package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Real files at real modes: private ones pass, anything group or world
// accessible is refused with the fix in the message.
func TestCheckModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o644, false}, {0o640, false}, {0o604, false}, {0o620, false}, {0o660, false}, {0o666, false}} {
		p := filepath.Join(dir, "secret-"+tc.mode.String())
		if err := os.WriteFile(p, []byte("pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := Check("mqtt.password_file", p)
		if tc.ok != (err == nil) {
			t.Fatalf("mode %04o: %v", tc.mode, err)
		}
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "chmod 0600 "+p) ||
				!strings.Contains(err.Error(), "mqtt.password_file") || !strings.Contains(err.Error(), "group or others") {
				t.Fatalf("mode %04o: message %q", tc.mode, err)
			}
		}
	}
}

func TestCheckNotAFileOrMissing(t *testing.T) {
	dir := t.TempDir()
	if err := Check("status.tls_key", dir); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
	if err := Check("status.tls_key", filepath.Join(dir, "nope")); err == nil || errors.Is(err, ErrInsecure) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

// A file owned by another account is refused even at 0600 (needs root to
// create such a file).
func TestCheckOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another uid")
	}
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, []byte("k"), 0o600)
	if err := os.Chown(p, 54321, 54321); err != nil {
		t.Fatal(err)
	}
	err := Check("mqtt.key_file", p)
	if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "owned by uid 54321") || !strings.Contains(err.Error(), "chown ") {
		t.Fatalf("foreign owner: %v", err)
	}
}
