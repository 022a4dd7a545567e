package reader

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"go.bug.st/serial"
)

// Error kinds a caller can branch on with errors.Is. Errors returned by
// this package, and the Err of down states, wrap exactly one of them (plus,
// where there is one, the underlying OS error, so errors.Is(err,
// fs.ErrNotExist) or errors.Is(err, syscall.EIO) work too).
var (
	// ErrConfig marks an invalid Config. It is permanent: retrying will not help.
	ErrConfig = errors.New("invalid reader config")
	// ErrPortMissing means the device path (or the tty a by-id symlink points
	// at) does not exist: the scanner is unplugged or the path is wrong.
	ErrPortMissing = errors.New("serial port missing")
	// ErrPermission means the port exists but may not be opened. On Linux the
	// daemon's user must be in group dialout (or the udev rule must grant it).
	ErrPermission = errors.New("permission denied on serial port (is the daemon's user in group dialout?)")
	// ErrPortBusy means another process holds the port exclusively.
	ErrPortBusy = errors.New("serial port busy")
	// ErrNotSerial means the path exists but is not a terminal device, or
	// refused the requested line settings.
	ErrNotSerial = errors.New("not a usable serial port")
	// ErrDisconnected means an open port failed or vanished while reading
	// (USB unplug, hang-up, I/O error).
	ErrDisconnected = errors.New("serial port disconnected")
)

// PortError describes a failure to open or read a port. Kind is one of the
// sentinel errors above; Err is the underlying cause (may be nil).
// errors.Is matches both Kind and anything Err wraps.
type PortError struct {
	Op   string // "resolve", "open" or "read"
	Path string // the configured path
	TTY  string // the resolved device, when known
	Kind error
	Err  error
}

// Error implements error.
func (e *PortError) Error() string {
	where := e.Path
	if e.TTY != "" && e.TTY != e.Path {
		where = fmt.Sprintf("%s (%s)", e.Path, e.TTY)
	}
	if e.Err == nil {
		return fmt.Sprintf("%s %s: %v", e.Op, where, e.Kind)
	}
	return fmt.Sprintf("%s %s: %v: %v", e.Op, where, e.Kind, e.Err)
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *PortError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// openKind classifies an error from resolving or opening a port.
func openKind(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound:
			return ErrPortMissing
		case serial.PermissionDenied:
			return ErrPermission
		case serial.PortBusy:
			return ErrPortBusy
		case serial.PortClosed:
			return ErrDisconnected
		default:
			return ErrNotSerial
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return ErrPortMissing
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, syscall.EBUSY):
		return ErrPortBusy
	case errors.Is(err, syscall.EIO):
		return ErrDisconnected
	}
	return ErrNotSerial
}

// serialCause turns go.bug.st/serial's error codes into OS errors where one
// exists, so that errors.Is(err, fs.ErrPermission) holds for a permission
// failure whichever layer reported it.
func serialCause(err error) error {
	var pe *serial.PortError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code() {
	case serial.PermissionDenied:
		return syscall.EACCES
	case serial.PortBusy:
		return syscall.EBUSY
	}
	return err
}
