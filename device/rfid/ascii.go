package rfid

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dockd/dockd/internal/dock"
)

// ErrBadLine marks an ASCII line that does not match the configured layout
// (missing column, EPC not hex, RSSI not a number). Such lines are dropped,
// counted and logged: readers print banners and status text too.
var ErrBadLine = errors.New("rfid line does not match the field layout")

// asciiParser turns one line into an EPC and its metadata.
type asciiParser struct {
	l     fieldLayout
	split func(string) []string
}

func newASCIIParser(c Config) (*asciiParser, error) {
	l, err := layout(c.Fields)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	s, err := splitter(c.Separator)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return &asciiParser{l: l, split: s}, nil
}

// parse returns the normalised (upper-case) EPC hex, the tag metadata and
// whether an RSSI column was present.
func (p *asciiParser) parse(line string) (string, dock.TagRead, bool, error) {
	var tr dock.TagRead
	cols := p.split(strings.TrimSpace(line))
	if len(cols) < p.l.n {
		return "", tr, false, fmt.Errorf("%w: %d columns, want %d", ErrBadLine, len(cols), p.l.n)
	}
	epc, err := normaliseEPC(cols[p.l.epc])
	if err != nil {
		return "", tr, false, err
	}
	num := func(i int, name string) (int, error) {
		s := strings.TrimSpace(cols[i])
		if v, err := strconv.Atoi(s); err == nil {
			return v, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e6 {
			return 0, fmt.Errorf("%w: %s %q is not a number", ErrBadLine, name, s)
		}
		return int(math.Round(f)), nil
	}
	if p.l.antenna >= 0 {
		if tr.Antenna, err = num(p.l.antenna, "antenna"); err != nil {
			return "", tr, false, err
		}
	}
	if p.l.phase >= 0 {
		if tr.Phase, err = num(p.l.phase, "phase"); err != nil {
			return "", tr, false, err
		}
	}
	hasRSSI := p.l.rssi >= 0
	if hasRSSI {
		if tr.RSSI, err = num(p.l.rssi, "rssi"); err != nil {
			return "", tr, false, err
		}
	}
	return epc, tr, hasRSSI, nil
}

// normaliseEPC checks s is 4…128 hex digits, even in number, and returns
// it in upper case.
func normaliseEPC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 4 || len(s) > 128 || len(s)%2 != 0 {
		return "", fmt.Errorf("%w: EPC %q: want an even number of hex digits, 4 … 128", ErrBadLine, s)
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case c >= 'a' && c <= 'f':
			b[i] = c - 'a' + 'A'
		default:
			return "", fmt.Errorf("%w: EPC %q: %q at %d is not a hex digit", ErrBadLine, s, c, i)
		}
	}
	return string(b), nil
}
