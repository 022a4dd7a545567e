package rfid

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dockd/dockd/device/reader"
)

// Protocols a Config may name.
const (
	ProtocolASCII   = "ascii"   // one tag per line: EPC hex plus optional fields
	ProtocolMercury = "mercury" // ThingMagic/JADAK binary protocol (M6e Nano family)
)

// Defaults applied to zero Config fields.
const (
	DefaultBaud           = 115200
	DefaultSeparator      = ","
	DefaultSuffix         = "LF" // lines are trimmed, so CRLF input works too
	DefaultMaxLine        = 512
	DefaultReadPower      = 2000 // centi-dBm (20.00 dBm)
	DefaultCommandTimeout = time.Second
	DefaultStallTimeout   = 3 * time.Second
	DefaultDedupeWindow   = 2 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	// MaxReadPower is the highest read power Config accepts (31.50 dBm); an
	// M6e Nano itself tops out at 27.00 dBm and refuses more.
	MaxReadPower = 3150
)

// ASCII field names for Config.Fields.
const (
	FieldEPC     = "epc"
	FieldAntenna = "antenna"
	FieldRSSI    = "rssi"
	FieldPhase   = "phase"
	FieldSkip    = "-" // a column the driver ignores
)

// ErrConfig marks an invalid Config; retrying will not help.
var ErrConfig = errors.New("invalid rfid reader config")

// Config describes one RFID reader on a serial port. Zero fields take the
// Default* values; ID, Port and Protocol are required, and Region for
// mercury.
type Config struct {
	ID string
	// Port is the device path; a /dev/serial/by-id symlink is re-resolved at
	// every (re)open.
	Port string
	// Baud is the line rate, 8N1. 115200 is the M6e Nano default; 921600 is
	// supported where the USB adapter and module are set to it (the driver
	// does not change the module's rate).
	Baud int
	// Protocol is ProtocolASCII or ProtocolMercury.
	Protocol string

	// ASCII mode: Fields is the column layout of each line (default [epc]),
	// each one of FieldEPC, FieldAntenna, FieldRSSI, FieldPhase or FieldSkip,
	// with exactly one FieldEPC. Separator is ",", ";", "tab" or "space"
	// (space: any run of blanks). Suffix is the line end (CR, LF, CRLF),
	// Prefix is stripped from each line when present, MaxLine bounds a line.
	Fields    []string
	Separator string
	Suffix    string
	Prefix    string
	MaxLine   int

	// Mercury mode: Region is a key of Regions (NA, EU, IN, JP, PRC, KR,
	// AU, NZ, OPEN); it is required because it is a legal setting.
	// ReadPowerCentiDBm is the read TX power in 1/100 dBm.
	Region            string
	ReadPowerCentiDBm int
	// CommandTimeout bounds the wait for each command's response.
	CommandTimeout time.Duration
	// StallTimeout: when no valid frame arrives for this long while
	// reading, the reader is declared stalled, reported down and reopened.
	StallTimeout time.Duration

	// DedupeWindow: a tag seen again within this long of its previous
	// sighting is not emitted again (see reader.Deduper). Zero means
	// DefaultDedupeWindow; a negative value disables deduplication.
	DedupeWindow time.Duration
	// MinRSSI drops reads weaker than this many dBm (e.g. -65) to keep
	// tags at the next door out. Zero disables the threshold. Reads without
	// an RSSI pass.
	MinRSSI int

	// MinBackoff and MaxBackoff bound the jittered exponential wait between
	// reopen attempts.
	MinBackoff, MaxBackoff time.Duration
}

func (c Config) withDefaults() Config {
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	c.Protocol = strings.ToLower(strings.TrimSpace(c.Protocol))
	if len(c.Fields) == 0 {
		c.Fields = []string{FieldEPC}
	}
	if c.Separator == "" {
		c.Separator = DefaultSeparator
	}
	if c.Suffix == "" {
		c.Suffix = DefaultSuffix
	}
	if c.MaxLine == 0 {
		c.MaxLine = DefaultMaxLine
	}
	c.Region = strings.ToUpper(strings.TrimSpace(c.Region))
	if c.ReadPowerCentiDBm == 0 {
		c.ReadPowerCentiDBm = DefaultReadPower
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

// Validate checks c after defaults are applied and reports every problem
// in one error wrapping ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if strings.TrimSpace(c.ID) == "" {
		bad("id is empty")
	}
	if c.Port == "" {
		bad("port is empty")
	}
	if c.Baud < 1200 || c.Baud > 4_000_000 {
		bad("baud %d: want 1200 … 4000000", c.Baud)
	}
	switch c.Protocol {
	case ProtocolASCII:
		if _, err := layout(c.Fields); err != nil {
			bad("%v", err)
		}
		if _, err := splitter(c.Separator); err != nil {
			bad("%v", err)
		}
		if _, err := reader.ParseSuffix(c.Suffix); err != nil {
			bad("suffix %q: want CR, LF or CRLF", c.Suffix)
		}
		if c.MaxLine < 8 {
			bad("max line %d: must be at least 8", c.MaxLine)
		}
	case ProtocolMercury:
		if _, ok := Regions[c.Region]; !ok {
			bad("region %q: want one of NA, EU, IN, JP, PRC, KR, AU, NZ, OPEN", c.Region)
		}
		if c.ReadPowerCentiDBm < 0 || c.ReadPowerCentiDBm > MaxReadPower {
			bad("read power %d centi-dBm: want 0 … %d", c.ReadPowerCentiDBm, MaxReadPower)
		}
		if c.CommandTimeout < 0 || c.StallTimeout < 0 {
			bad("timeouts must not be negative")
		}
	case "":
		bad("protocol is empty: want ascii or mercury")
	default:
		bad("protocol %q: want ascii or mercury", c.Protocol)
	}
	if c.MinRSSI > 0 {
		bad("min rssi %d dBm: want a negative dBm value, or 0 for none", c.MinRSSI)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		bad("backoff must not be negative (min %v, max %v)", c.MinBackoff, c.MaxBackoff)
	} else if c.MinBackoff > c.MaxBackoff {
		bad("min backoff %v exceeds max backoff %v", c.MinBackoff, c.MaxBackoff)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: reader %q: %s", ErrConfig, c.ID, strings.Join(problems, "; "))
	}
	return nil
}

// fieldLayout is the column index of each ASCII field (-1: absent).
type fieldLayout struct{ epc, antenna, rssi, phase, n int }

func layout(fields []string) (fieldLayout, error) {
	l := fieldLayout{epc: -1, antenna: -1, rssi: -1, phase: -1, n: len(fields)}
	for i, f := range fields {
		var slot *int
		switch strings.ToLower(strings.TrimSpace(f)) {
		case FieldEPC:
			slot = &l.epc
		case FieldAntenna:
			slot = &l.antenna
		case FieldRSSI:
			slot = &l.rssi
		case FieldPhase:
			slot = &l.phase
		case FieldSkip, "skip":
			continue
		default:
			return l, fmt.Errorf("field %q: want epc, antenna, rssi, phase or -", f)
		}
		if *slot >= 0 {
			return l, fmt.Errorf("field %q appears twice", f)
		}
		*slot = i
	}
	if l.epc < 0 {
		return l, fmt.Errorf("fields %v: no epc column", fields)
	}
	return l, nil
}

// splitter returns the column splitter for a separator setting.
func splitter(sep string) (func(string) []string, error) {
	switch strings.ToLower(sep) {
	case "space", " ":
		return strings.Fields, nil
	case "tab", "\t":
		return func(s string) []string { return strings.Split(s, "\t") }, nil
	case ",", ";", "|":
		return func(s string) []string { return strings.Split(s, sep) }, nil
	}
	return nil, fmt.Errorf("separator %q: want \",\", \";\", \"|\", tab or space", sep)
}
