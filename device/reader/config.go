package reader

import (
	"fmt"
	"strings"
	"time"

	"go.bug.st/serial"
)

// Defaults applied to zero Config fields. They match the shipped station
// config (internal/config).
const (
	DefaultBaud       = 9600
	DefaultDataBits   = 8
	DefaultParity     = "none"
	DefaultStopBits   = "1"
	DefaultSuffix     = SuffixCR
	DefaultMaxFrame   = 4096
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = time.Second
)

// Config describes one serial scanner. Zero fields take the Default*
// values above; ID and Port are required.
type Config struct {
	ID string
	// Port is the device path. A symlink (e.g. /dev/serial/by-id/...) is
	// resolved at every (re)open and the real tty is logged and reported in
	// ReaderState.Port.
	Port     string
	Baud     int
	DataBits int    // 5, 6, 7 or 8
	Parity   string // none | even | odd | mark | space
	// StopBits is "1", "2" or "1.5". Linux termios has no separate 1.5
	// setting: "1.5" is accepted only with 5 data bits, where the UART's
	// two-stop-bit setting produces 1.5 stop bits.
	StopBits string
	Suffix   string // frame terminator: CR | LF | CRLF
	// Prefix is stripped from the start of each frame when present.
	Prefix string
	// MaxFrame bounds one frame's payload in bytes (see Framer).
	MaxFrame int
	// MinBackoff and MaxBackoff bound the jittered, exponentially growing
	// wait between reopen attempts.
	MinBackoff, MaxBackoff time.Duration
}

// withDefaults returns c with zero fields filled in.
func (c Config) withDefaults() Config {
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	if c.DataBits == 0 {
		c.DataBits = DefaultDataBits
	}
	if c.Parity == "" {
		c.Parity = DefaultParity
	}
	if c.StopBits == "" {
		c.StopBits = DefaultStopBits
	}
	if c.Suffix == "" {
		c.Suffix = string(DefaultSuffix)
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

// Validate checks c after defaults are applied. It reports every problem
// found in one error wrapping ErrConfig.
func (c Config) Validate() error {
	_, err := c.withDefaults().mode()
	return err
}

// mode validates c (which must have defaults applied) and returns the
// serial line settings.
func (c Config) mode() (*serial.Mode, error) {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(c.ID) == "" {
		bad("id is empty")
	}
	if c.Port == "" {
		bad("port is empty")
	}
	if c.Baud < 50 || c.Baud > 4_000_000 {
		bad("baud %d: want 50 … 4000000", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		bad("data bits %d: want 5, 6, 7 or 8", c.DataBits)
	}
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	switch strings.ToLower(c.Parity) {
	case "none":
		m.Parity = serial.NoParity
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		bad("parity %q: want none, even, odd, mark or space", c.Parity)
	}
	switch c.StopBits {
	case "1":
		m.StopBits = serial.OneStopBit
	case "2":
		m.StopBits = serial.TwoStopBits
	case "1.5":
		if c.DataBits != 5 {
			bad("stop bits 1.5 with %d data bits: Linux can only produce 1.5 stop bits with 5 data bits", c.DataBits)
		}
		m.StopBits = serial.TwoStopBits
	default:
		bad("stop bits %q: want 1, 1.5 or 2", c.StopBits)
	}
	if _, err := ParseSuffix(c.Suffix); err != nil {
		bad("suffix %q: want CR, LF or CRLF", c.Suffix)
	}
	if c.MaxFrame < 1 {
		bad("max frame %d: must be at least 1", c.MaxFrame)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		bad("backoff must not be negative (min %v, max %v)", c.MinBackoff, c.MaxBackoff)
	} else if c.MinBackoff > c.MaxBackoff {
		bad("min backoff %v exceeds max backoff %v", c.MinBackoff, c.MaxBackoff)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: reader %q: %s", ErrConfig, c.ID, strings.Join(problems, "; "))
	}
	return m, nil
}
