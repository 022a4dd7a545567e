package light

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/host/v3"
)

// Error kinds returned by OpenGPIO, wrapped in a *PinError (or, for
// ErrHostInit, in a plain wrapped error). Branch on them with errors.Is.
var (
	// ErrHostInit: periph's host drivers failed to initialise.
	ErrHostInit = errors.New("initialising GPIO host drivers failed")
	// ErrNoPinName: a required role (green, red) has no pin name configured.
	ErrNoPinName = errors.New("no pin name configured")
	// ErrPinNotFound: no GPIO pin of that name exists on this host.
	ErrPinNotFound = errors.New("GPIO pin does not exist")
	// ErrPermission: the process may not open /dev/gpiochip* or drive the pin.
	ErrPermission = errors.New("permission denied on GPIO device")
	// ErrDuplicatePin: two roles name the same pin.
	ErrDuplicatePin = errors.New("GPIO pin used for two roles")
	// ErrPinWrite: writing the initial off level to the pin failed.
	ErrPinWrite = errors.New("GPIO pin write failed")
)

// PinNames names the GPIO pins of a stack light as periph's gpioreg knows
// them (e.g. "GPIO17", "P1_11"). Amber and Buzzer may be empty.
type PinNames struct {
	Green, Amber, Red, Buzzer string
	// ActiveLow: the relay board energises on a low level.
	ActiveLow bool
}

// PinError says which role's pin could not be opened and why. Err wraps one
// of the sentinel errors of this package (and the OS error, if any).
type PinError struct {
	Role  string   // "green", "amber", "red" or "buzzer"
	Name  string   // the configured pin name
	Err   error    // ErrNoPinName, ErrPinNotFound, ErrPermission, ErrDuplicatePin or ErrPinWrite, possibly with a cause
	Known []string // for ErrPinNotFound: up to 8 pin names that do exist
	Total int      // for ErrPinNotFound: how many pins exist in all
	Chip  string   // for ErrPermission: the device that could not be opened, when known
}

// Error implements error.
func (e *PinError) Error() string {
	role := e.Role + " lamp"
	if e.Role == "buzzer" {
		role = "buzzer"
	}
	switch {
	case errors.Is(e.Err, ErrNoPinName):
		return fmt.Sprintf("light: %s: %v", role, e.Err)
	case errors.Is(e.Err, ErrPinNotFound):
		if e.Total == 0 {
			return fmt.Sprintf("light: %s pin %q: %v (this host has no GPIO pins registered: no /dev/gpiochip* or not a supported board)", role, e.Name, ErrPinNotFound)
		}
		more := ""
		if e.Total > len(e.Known) {
			more = fmt.Sprintf(", … %d in all", e.Total)
		}
		return fmt.Sprintf("light: %s pin %q: %v (valid names include %s%s)", role, e.Name, ErrPinNotFound, strings.Join(e.Known, ", "), more)
	case errors.Is(e.Err, ErrPermission):
		where := "the GPIO device"
		if e.Chip != "" {
			where = e.Chip
		}
		return fmt.Sprintf("light: %s pin %q: permission denied opening %s: add the service user to group \"gpio\" (e.g. sudo usermod -aG gpio dockd) and restart the service: %v",
			role, e.Name, where, e.Err)
	default:
		return fmt.Sprintf("light: %s pin %q: %v", role, e.Name, e.Err)
	}
}

// Unwrap returns the wrapped error kind.
func (e *PinError) Unwrap() error { return e.Err }

var hostInit = sync.OnceValue(func() error {
	_, err := host.Init()
	return err
})

// chipGlob is where GPIO character devices live; a variable for tests.
var chipGlob = "/dev/gpiochip*"

// openChip opens a GPIO character device to test access; a variable for tests.
var openChip = func(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// chipPermission returns the first GPIO chip device this process may not
// open and the error, or "" and nil.
func chipPermission() (string, error) {
	paths, _ := filepath.Glob(chipGlob) // only ErrBadPattern, impossible for a constant
	for _, p := range paths {
		if err := openChip(p); err != nil && errors.Is(err, fs.ErrPermission) {
			return p, err
		}
	}
	return "", nil
}

// OpenGPIO initialises periph's host drivers (once per process), looks each
// named pin up in gpioreg and drives it to its off level (High when
// ActiveLow), so a missing or inaccessible relay is reported at start-up.
// Green and Red are required; an empty Amber or Buzzer name leaves that
// output nil. Errors are *PinError values naming the role and pin and
// wrapping ErrNoPinName, ErrPinNotFound (listing some valid names),
// ErrPermission (with the fix), ErrDuplicatePin or ErrPinWrite; or wrap
// ErrHostInit. Safe for concurrent use.
func OpenGPIO(n PinNames) (Pins, error) {
	if err := hostInit(); err != nil {
		return Pins{}, fmt.Errorf("light: opening stack light pins: %w: %w", ErrHostInit, err)
	}
	roles := []struct {
		role     string
		name     string
		required bool
	}{
		{"green", n.Green, true},
		{"amber", n.Amber, false},
		{"red", n.Red, true},
		{"buzzer", n.Buzzer, false},
	}
	off := gpio.Level(n.ActiveLow)
	var out [numOutputs]gpio.PinOut
	used := map[gpio.PinIO]string{}
	for i, r := range roles {
		if r.name == "" {
			if r.required {
				return Pins{}, &PinError{Role: r.role, Err: ErrNoPinName}
			}
			continue
		}
		p := gpioreg.ByName(r.name)
		if p == nil {
			if chip, err := chipPermission(); err != nil {
				return Pins{}, &PinError{Role: r.role, Name: r.name, Chip: chip, Err: fmt.Errorf("%w: %w", ErrPermission, err)}
			}
			all := gpioreg.All()
			known := make([]string, 0, 8)
			for _, q := range all {
				if len(known) == cap(known) {
					break
				}
				known = append(known, q.Name())
			}
			return Pins{}, &PinError{Role: r.role, Name: r.name, Err: ErrPinNotFound, Known: known, Total: len(all)}
		}
		base := p
		if rp, ok := p.(gpio.RealPin); ok {
			base = rp.Real()
		}
		if other, dup := used[base]; dup {
			return Pins{}, &PinError{Role: r.role, Name: r.name, Err: fmt.Errorf("%w: also the %s pin", ErrDuplicatePin, other)}
		}
		used[base] = r.role
		if err := p.Out(off); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return Pins{}, &PinError{Role: r.role, Name: r.name, Err: fmt.Errorf("%w: %w", ErrPermission, err)}
			}
			return Pins{}, &PinError{Role: r.role, Name: r.name, Err: fmt.Errorf("%w: setting %s: %w", ErrPinWrite, off, err)}
		}
		out[i] = p
	}
	return Pins{Green: out[outGreen], Amber: out[outAmber], Red: out[outRed], Buzzer: out[outBuzzer], ActiveLow: n.ActiveLow}, nil
}

// VirtualPins returns active-high pins that exist only in memory and log
// every level change of each output at Info level (for laptops and the
// demo). A nil log uses slog.Default(). The pins are safe for concurrent use.
func VirtualPins(log *slog.Logger) Pins {
	if log == nil {
		log = slog.Default()
	}
	mk := func(role string, num int) *virtualPin { return &virtualPin{role: role, num: num, log: log} }
	return Pins{Green: mk("green", 0), Amber: mk("amber", 1), Red: mk("red", 2), Buzzer: mk("buzzer", 3)}
}

// virtualPin is an in-memory gpio.PinOut that logs level changes.
type virtualPin struct {
	role string
	num  int
	log  *slog.Logger

	mu    sync.Mutex
	level gpio.Level
}

func (v *virtualPin) String() string   { return "virtual-" + v.role }
func (v *virtualPin) Halt() error      { return nil }
func (v *virtualPin) Name() string     { return v.String() }
func (v *virtualPin) Number() int      { return v.num }
func (v *virtualPin) Function() string { return "Out" }

func (v *virtualPin) Out(l gpio.Level) error {
	v.mu.Lock()
	changed := v.level != l
	v.level = l
	v.mu.Unlock()
	if changed {
		// "pin_level", not "level": slog's own "level" key is in every line.
		v.log.Info("virtual stack light", "output", v.role, "on", bool(l), "pin_level", l.String())
	}
	return nil
}

func (v *virtualPin) PWM(gpio.Duty, physic.Frequency) error {
	return fmt.Errorf("light: virtual %s pin: PWM not supported", v.role)
}

// OpenInput initialises periph's host drivers (once per process) and looks
// up the input pin name (an acknowledge button or a direction key switch,
// wired to ground with the pin's pull-up). Errors are *PinError values like
// OpenGPIO's, with role naming the input.
func OpenInput(role, name string) (gpio.PinIn, error) {
	if err := hostInit(); err != nil {
		return nil, fmt.Errorf("light: opening %s input: %w: %w", role, ErrHostInit, err)
	}
	if name == "" {
		return nil, &PinError{Role: role, Err: ErrNoPinName}
	}
	p := gpioreg.ByName(name)
	if p == nil {
		if chip, err := chipPermission(); err != nil {
			return nil, &PinError{Role: role, Name: name, Chip: chip, Err: fmt.Errorf("%w: %w", ErrPermission, err)}
		}
		return nil, &PinError{Role: role, Name: name, Err: ErrPinNotFound, Total: len(gpioreg.All())}
	}
	return p, nil
}
