package reader

import (
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// Deduper collapses repeated reads of the same code into one: a fixed-mount
// scanner in presentation mode (or an RFID reader in continuous mode) sees
// the same label many times while it sits in the field.
//
// Rule: a key is admitted when it has not been seen within Window of its
// previous sighting. Every sighting, admitted or not, refreshes the key's
// last-seen time, so the window slides: a label held in front of the
// scanner is reported once however long it stays, and again only after it
// has been out of sight for a full window. A sighting whose time is before
// the previous one (a stepped wall clock) counts as within the window.
//
// A Window of zero or less disables deduplication: every key is admitted
// and nothing is remembered. Deduplication is off by default for barcode
// readers; the daemon puts a Deduper between a reader and the pipeline
// only when configured.
//
// Deduper is pure: no I/O, no goroutines, no clock of its own (times are
// passed in). Memory is bounded by the number of distinct keys seen within
// the last two windows. It is not safe for concurrent use.
type Deduper struct {
	window    time.Duration
	last      map[string]time.Time
	lastSweep time.Time
}

// NewDeduper returns a Deduper with the given window (<= 0: disabled).
func NewDeduper(window time.Duration) *Deduper {
	return &Deduper{window: window, last: make(map[string]time.Time)}
}

// Window returns the configured window (<= 0 when disabled).
func (d *Deduper) Window() time.Duration { return d.window }

// Admit reports whether key, seen at time at, is a new read (true) or a
// repeat within the window (false). See Deduper for the rule.
func (d *Deduper) Admit(key string, at time.Time) bool {
	if d.window <= 0 {
		return true
	}
	d.sweep(at)
	prev, seen := d.last[key]
	if !seen {
		d.last[key] = at
		return true
	}
	if at.After(prev) {
		d.last[key] = at
	}
	return at.Sub(prev) >= d.window
}

// AdmitFrame applies Admit to a frame, keyed by reader id and data, at the
// frame's arrival time. Frames carrying an error (e.g. an oversize frame)
// are always admitted and not remembered: they are evidence, not repeats.
func (d *Deduper) AdmitFrame(f dock.Frame) bool {
	if f.Err != nil {
		return true
	}
	return d.Admit(f.Reader+"\x00"+string(f.Data), f.At)
}

// Len returns how many keys are remembered (for tests and metrics).
func (d *Deduper) Len() int { return len(d.last) }

// sweep forgets keys not seen within the window, at most once per window,
// so the amortised cost per Admit stays constant.
func (d *Deduper) sweep(now time.Time) {
	if !d.lastSweep.IsZero() && now.Sub(d.lastSweep) < d.window {
		return
	}
	d.lastSweep = now
	for k, t := range d.last {
		if now.Sub(t) >= d.window {
			delete(d.last, k)
		}
	}
}
