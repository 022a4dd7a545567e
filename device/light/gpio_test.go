package light

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/testkit"
)

func TestOpenGPIO(t *testing.T) {
	pins := testkit.RegisterPins(t, "LTGPIO17", "LTGPIO22", "LTGPIO27", "LTGPIO23")
	tests := []struct {
		name     string
		n        PinNames
		wantErr  error
		wantRole string
		wantIn   []string // substrings of the error message
	}{
		{"all present", PinNames{Green: "LTGPIO17", Amber: "LTGPIO22", Red: "LTGPIO27", Buzzer: "LTGPIO23"}, nil, "", nil},
		{"optional omitted", PinNames{Green: "LTGPIO17", Red: "LTGPIO27"}, nil, "", nil},
		{"missing red", PinNames{Green: "LTGPIO17", Red: "LTGPIO99"}, ErrPinNotFound, "red",
			[]string{"red lamp", `"LTGPIO99"`, "does not exist", "LTGPIO17"}},
		{"missing buzzer", PinNames{Green: "LTGPIO17", Red: "LTGPIO27", Buzzer: "NOPE"}, ErrPinNotFound, "buzzer",
			[]string{"buzzer pin", `"NOPE"`}},
		{"no green name", PinNames{Red: "LTGPIO27"}, ErrNoPinName, "green", []string{"green lamp", "no pin name"}},
		{"same pin twice", PinNames{Green: "LTGPIO17", Red: "LTGPIO17"}, ErrDuplicatePin, "red", []string{"green pin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := OpenGPIO(tc.n)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("OpenGPIO: %v", err)
				}
				if p.Green != pins["LTGPIO17"] || p.Red != pins["LTGPIO27"] {
					t.Errorf("pins not the registered ones: %+v", p)
				}
				if (tc.n.Amber == "") != (p.Amber == nil) || (tc.n.Buzzer == "") != (p.Buzzer == nil) {
					t.Errorf("optional pins: %+v", p)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("OpenGPIO error = %v, want %v", err, tc.wantErr)
			}
			var pe *PinError
			if !errors.As(err, &pe) || pe.Role != tc.wantRole {
				t.Fatalf("error %v: not a *PinError for role %q", err, tc.wantRole)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestOpenGPIODrivesOffLevel(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		t.Run(map[bool]string{false: "active high", true: "active low"}[activeLow], func(t *testing.T) {
			pins := testkit.RegisterPins(t, "OFFG", "OFFR")
			on := !gpio.Level(activeLow)
			pins["OFFG"].Set(on) // start energised to see OpenGPIO switch it off
			pins["OFFR"].Set(on)
			p, err := OpenGPIO(PinNames{Green: "OFFG", Red: "OFFR", ActiveLow: activeLow})
			if err != nil {
				t.Fatal(err)
			}
			if p.ActiveLow != activeLow {
				t.Errorf("Pins.ActiveLow = %v", p.ActiveLow)
			}
			for name, rp := range pins {
				if rp.Level() != gpio.Level(activeLow) {
					t.Errorf("%s at %s after OpenGPIO, want off", name, rp.Level())
				}
			}
		})
	}
}

func TestOpenGPIOPermissionDenied(t *testing.T) {
	dir := t.TempDir()
	chip := filepath.Join(dir, "gpiochip0")
	if err := os.WriteFile(chip, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	oldGlob, oldOpen := chipGlob, openChip
	t.Cleanup(func() { chipGlob, openChip = oldGlob, oldOpen })
	chipGlob = filepath.Join(dir, "gpiochip*")
	// The test runs as root, so the OS would not refuse; the error is the one
	// open(2) gives a user outside group gpio.
	openChip = func(path string) error {
		return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	}
	_, err := OpenGPIO(PinNames{Green: "GPIO17", Red: "GPIO27"})
	if !errors.Is(err, ErrPermission) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("error = %v, want ErrPermission wrapping fs.ErrPermission", err)
	}
	var pe *PinError
	if !errors.As(err, &pe) || pe.Role != "green" || pe.Chip != chip {
		t.Fatalf("PinError = %+v", pe)
	}
	for _, s := range []string{`group "gpio"`, chip, "GPIO17", "usermod"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// syncBuf is the shared concurrency-safe log sink, read as JSON lines.
type syncBuf struct{ testkit.LogBuffer }

func (s *syncBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range bytes.Split(bytes.TrimSpace(s.Bytes()), []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		if err := testkit.CheckJSONLine(ln); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		var m map[string]any
		if err := json.Unmarshal(ln, &m); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		out = append(out, m)
	}
	return out
}

func TestVirtualPinsLog(t *testing.T) {
	var buf syncBuf
	p := VirtualPins(slog.New(slog.NewJSONHandler(&buf, nil)))
	if p.Green == nil || p.Amber == nil || p.Red == nil || p.Buzzer == nil || p.ActiveLow {
		t.Fatalf("VirtualPins = %+v", p)
	}
	steps := []struct {
		pin  gpio.PinOut
		l    gpio.Level
		logs bool
	}{
		{p.Green, gpio.Low, false}, // already low: no change
		{p.Green, gpio.High, true},
		{p.Green, gpio.High, false},
		{p.Buzzer, gpio.High, true},
		{p.Green, gpio.Low, true},
	}
	want := 0
	for _, s := range steps {
		if err := s.pin.Out(s.l); err != nil {
			t.Fatal(err)
		}
		if s.logs {
			want++
		}
		lines := buf.lines(t)
		if len(lines) != want {
			t.Fatalf("after %s.Out(%s): %d log lines, want %d", s.pin, s.l, len(lines), want)
		}
		if s.logs {
			last := lines[len(lines)-1]
			role := strings.TrimPrefix(s.pin.String(), "virtual-")
			if last["output"] != role || last["on"] != bool(s.l) || last["pin_level"] != s.l.String() {
				t.Errorf("log line %v for %s -> %s", last, role, s.l)
			}
		}
	}
}

func TestVirtualPinsWithStackLight(t *testing.T) {
	var buf syncBuf
	l := New(VirtualPins(slog.New(slog.NewJSONHandler(&buf, nil))), Options{}, nil)
	r := &rig{l: l}
	r.start(t)
	l.ShowDecision("accept")
	// Pins are written before State is published, so the line is there.
	waitState(t, l, "green", func(s State) bool { return s.Green })
	for _, m := range buf.lines(t) {
		if m["output"] == "green" && m["on"] == true {
			return
		}
	}
	t.Errorf("no log line for green on: %v", buf.lines(t))
}
