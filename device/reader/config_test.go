package reader

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "door1-scanner", Port: "/dev/serial/by-id/usb-x"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"full", func(c *Config) {
			*c = Config{ID: "a", Port: "/dev/ttyUSB0", Baud: 115200, DataBits: 7, Parity: "even", StopBits: "2",
				Suffix: "crlf", Prefix: "]C1", MaxFrame: 100, MinBackoff: time.Millisecond, MaxBackoff: time.Second}
		}, ""},
		{"1.5 stop bits with 5 data bits", func(c *Config) { c.StopBits, c.DataBits = "1.5", 5 }, ""},
		{"mark parity", func(c *Config) { c.Parity = "mark" }, ""},
		{"no id", func(c *Config) { c.ID = " " }, "id is empty"},
		{"no port", func(c *Config) { c.Port = "" }, "port is empty"},
		{"negative baud", func(c *Config) { c.Baud = -1 }, "baud -1"},
		{"data bits 9", func(c *Config) { c.DataBits = 9 }, "data bits 9"},
		{"parity", func(c *Config) { c.Parity = "weird" }, "parity \"weird\""},
		{"stop bits", func(c *Config) { c.StopBits = "3" }, "stop bits \"3\""},
		{"1.5 stop bits with 8 data bits", func(c *Config) { c.StopBits = "1.5" }, "1.5 with 8 data bits"},
		{"suffix", func(c *Config) { c.Suffix = "TAB" }, "suffix \"TAB\""},
		{"max frame", func(c *Config) { c.MaxFrame = -5 }, "max frame -5"},
		{"backoff order", func(c *Config) { c.MinBackoff, c.MaxBackoff = 2*time.Second, time.Second }, "exceeds max backoff"},
		{"negative backoff", func(c *Config) { c.MinBackoff = -time.Second }, "must not be negative"},
		{"all problems listed", func(c *Config) { c.ID, c.Port = "", "" }, "id is empty; port is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := NewSerial(c, nil); err != nil {
					t.Fatalf("NewSerial() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want ErrConfig containing %q", err, tc.wantErr)
			}
			if _, err := NewSerial(c, nil); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewSerial() = %v, want ErrConfig", err)
			}
		})
	}
}

func TestOpenErrorKinds(t *testing.T) {
	tests := []struct {
		name  string
		err   func(*testing.T) error
		kind  error
		alsoI error // the PortError must also match this, if set
	}{
		{"ENOENT", func(*testing.T) error { return &fs.PathError{Op: "lstat", Path: "/x", Err: syscall.ENOENT} }, ErrPortMissing, fs.ErrNotExist},
		{"ENODEV", func(*testing.T) error { return syscall.ENODEV }, ErrPortMissing, syscall.ENODEV},
		{"ENXIO", func(*testing.T) error { return syscall.ENXIO }, ErrPortMissing, nil},
		{"EACCES", func(*testing.T) error { return syscall.EACCES }, ErrPermission, fs.ErrPermission},
		{"serial permission", func(t *testing.T) error { return serialErr(t, serial.PermissionDenied) }, ErrPermission, fs.ErrPermission},
		{"serial busy", func(t *testing.T) error { return serialErr(t, serial.PortBusy) }, ErrPortBusy, syscall.EBUSY},
		{"EBUSY", func(*testing.T) error { return syscall.EBUSY }, ErrPortBusy, nil},
		{"serial invalid", func(t *testing.T) error { return serialErr(t, serial.InvalidSerialPort) }, ErrNotSerial, nil},
		{"ENOTTY", func(*testing.T) error { return syscall.ENOTTY }, ErrNotSerial, nil},
		{"EIO", func(*testing.T) error { return syscall.EIO }, ErrDisconnected, syscall.EIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.err(t)
			pe := &PortError{Op: "open", Path: "/dev/serial/by-id/x", TTY: "/dev/ttyUSB0", Kind: openKind(in), Err: serialCause(in)}
			if !errors.Is(pe, tc.kind) {
				t.Errorf("kind of %v = %v, want %v", in, pe.Kind, tc.kind)
			}
			if tc.alsoI != nil && !errors.Is(pe, tc.alsoI) {
				t.Errorf("%v does not match %v", pe, tc.alsoI)
			}
			if msg := pe.Error(); !strings.Contains(msg, "/dev/ttyUSB0") || !strings.Contains(msg, "by-id/x") {
				t.Errorf("message %q should name the path and the tty", msg)
			}
		})
	}
	if !strings.Contains(ErrPermission.Error(), "dialout") {
		t.Errorf("ErrPermission %q should hint at group dialout", ErrPermission)
	}
}

// serialErr obtains a real *serial.PortError with the given code (its
// fields are unexported, so it is produced through the library).
func serialErr(t *testing.T, code serial.PortErrorCode) error {
	t.Helper()
	var err error
	switch code {
	case serial.InvalidSerialPort:
		_, err = serial.Open("/dev/null", &serial.Mode{BaudRate: 9600})
	case serial.PermissionDenied:
		// Even root gets EACCES opening a read-only sysfs attribute for
		// writing, and the library turns that into PermissionDenied.
		_, err = serial.Open("/sys/kernel/uevent_seqnum", &serial.Mode{BaudRate: 9600})
	case serial.PortBusy:
		err = &serial.PortError{} // the zero code is PortBusy
	}
	var pe *serial.PortError
	if !errors.As(err, &pe) || pe.Code() != code {
		t.Skipf("cannot produce serial error code %d here (got %v)", code, err)
	}
	return err
}
