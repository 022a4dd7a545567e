package reader

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/dockd/dockd/internal/dock"
)

// Suffix is the terminator a scanner sends after each code.
type Suffix string

// The supported terminators.
const (
	SuffixCR   Suffix = "CR"   // carriage return, 0x0D
	SuffixLF   Suffix = "LF"   // line feed, 0x0A
	SuffixCRLF Suffix = "CRLF" // the two-byte sequence 0x0D 0x0A
)

// ParseSuffix maps a config string (CR, LF or CRLF, any letter case) to a
// Suffix. An unknown value is an error wrapping ErrConfig.
func ParseSuffix(s string) (Suffix, error) {
	switch v := Suffix(strings.ToUpper(strings.TrimSpace(s))); v {
	case SuffixCR, SuffixLF, SuffixCRLF:
		return v, nil
	}
	return "", fmt.Errorf("%w: suffix %q: want CR, LF or CRLF", ErrConfig, s)
}

// TooLongKeep is how many leading bytes of an oversize frame are kept in
// its Data for the record (fewer if the frame limit is smaller, so no
// emitted frame is ever longer than the limit).
const TooLongKeep = 64

// Framer cuts a byte stream into frames. It is a pure state machine: no I/O,
// no clock, no goroutines, and it is not safe for concurrent use (one
// Framer per stream).
//
// Rules, in order:
//   - A frame ends at the terminator. With SuffixCRLF the terminator is the
//     exact sequence CR LF; a lone CR or a lone LF is data, so CR CR LF
//     yields a frame ending in CR. With SuffixCR or SuffixLF the other
//     control byte is ordinary data.
//   - A frame whose payload (the bytes before the terminator, prefix
//     included) exceeds the maximum is not buffered: bytes are discarded up
//     to the next terminator, and one frame is then emitted with the first
//     TooLongKeep bytes (at most the maximum) as data and an error
//     wrapping dock.ErrFrameTooLong.
//     The Framer never holds more than the maximum plus TooLongKeep bytes,
//     whatever the input.
//   - If the payload starts with the configured prefix, the prefix is
//     removed (once). Oversize frames are reported raw, unstripped.
//   - Empty frames (two terminators in a row, or a payload that was only
//     the prefix) are dropped.
//   - Every other byte, including NUL and arbitrary binary, is data.
//
// Emitted data never aliases the Framer's buffers or the caller's input.
type Framer struct {
	term     byte // the byte that ends (or, for CRLF, starts ending) a frame
	crlf     bool
	prefix   []byte
	max      int
	buf      []byte // current payload, len <= max
	pendCR   bool   // CRLF mode: the last byte seen was a CR not yet resolved
	over     bool   // discarding an oversize payload
	overLen  int64  // bytes in the oversize payload so far
	overHead []byte // its first TooLongKeep bytes
}

// NewFramer returns a Framer for the given terminator, prefix to strip
// (may be empty) and maximum payload length in bytes (must be >= 1).
func NewFramer(suffix Suffix, prefix []byte, maxFrame int) (*Framer, error) {
	f := &Framer{max: maxFrame, prefix: bytes.Clone(prefix)}
	switch suffix {
	case SuffixCR:
		f.term = '\r'
	case SuffixLF:
		f.term = '\n'
	case SuffixCRLF:
		f.term, f.crlf = '\r', true
	default:
		return nil, fmt.Errorf("%w: suffix %q: want CR, LF or CRLF", ErrConfig, suffix)
	}
	if maxFrame < 1 {
		return nil, fmt.Errorf("%w: max frame %d: must be at least 1", ErrConfig, maxFrame)
	}
	f.buf = make([]byte, 0, min(maxFrame, 256))
	f.overHead = make([]byte, 0, f.keep())
	return f, nil
}

// Feed consumes p and calls emit once per completed frame, in input order.
// data is a fresh slice owned by emit; err is nil for a clean frame or
// wraps dock.ErrFrameTooLong. Bytes after the last terminator are kept for
// the next Feed. Feed does not retain p.
func (f *Framer) Feed(p []byte, emit func(data []byte, err error)) {
	for len(p) > 0 {
		if f.pendCR {
			f.pendCR = false
			if p[0] == '\n' {
				f.finish(emit)
				p = p[1:]
				continue
			}
			f.add(crByte[:]) // the CR was data after all
		}
		i := bytes.IndexByte(p, f.term)
		if i < 0 {
			f.add(p)
			return
		}
		f.add(p[:i])
		p = p[i+1:]
		if f.crlf {
			f.pendCR = true
			continue
		}
		f.finish(emit)
	}
}

var crByte = [1]byte{'\r'}

// Buffered reports how many payload bytes are held waiting for a
// terminator (for an oversize payload, how many were discarded so far).
func (f *Framer) Buffered() int64 {
	n := int64(len(f.buf))
	if f.over {
		n = f.overLen
	}
	if f.pendCR {
		n++
	}
	return n
}

// Reset discards any partial frame, e.g. when the stream was interrupted
// and the next bytes start fresh.
func (f *Framer) Reset() {
	f.buf = f.buf[:0]
	f.pendCR = false
	f.over = false
	f.overLen = 0
	f.overHead = f.overHead[:0]
}

func (f *Framer) add(b []byte) {
	if len(b) == 0 {
		return
	}
	if need := len(f.buf) + len(b); !f.over && need <= f.max {
		if need > cap(f.buf) { // grow, but never past max
			nb := make([]byte, len(f.buf), min(f.max, max(need, 2*cap(f.buf))))
			copy(nb, f.buf)
			f.buf = nb
		}
		f.buf = append(f.buf, b...)
		return
	}
	if !f.over {
		f.over = true
		f.overLen = int64(len(f.buf))
		f.overHead = append(f.overHead[:0], f.buf[:min(len(f.buf), f.keep())]...)
		f.buf = f.buf[:0]
	}
	if room := f.keep() - len(f.overHead); room > 0 {
		f.overHead = append(f.overHead, b[:min(len(b), room)]...)
	}
	f.overLen += int64(len(b))
}

// keep is how many leading bytes of an oversize payload are reported.
func (f *Framer) keep() int { return min(TooLongKeep, f.max) }

func (f *Framer) finish(emit func([]byte, error)) {
	if f.over {
		data := bytes.Clone(f.overHead)
		err := fmt.Errorf("%w: %d bytes before the terminator, limit %d", dock.ErrFrameTooLong, f.overLen, f.max)
		f.over, f.overLen, f.overHead = false, 0, f.overHead[:0]
		emit(data, err)
		return
	}
	payload := f.buf
	f.buf = f.buf[:0]
	if len(f.prefix) > 0 && bytes.HasPrefix(payload, f.prefix) {
		payload = payload[len(f.prefix):]
	}
	if len(payload) == 0 {
		return
	}
	emit(bytes.Clone(payload), nil)
}
