package reader

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// StateReporter sends a reader's dock.ReaderState on up/down changes only
// (the first call always sends). It is owned by one reader's Run goroutine
// and not safe for concurrent use. Every serial-port driver (barcode and
// RFID) reports through it, so the pipeline sees the same behaviour.
type StateReporter struct {
	ID     string
	States chan<- dock.ReaderState // nil: report nothing
	known  bool
	up     bool
}

// Send reports up or down (with port when up, err when down) unless that
// is already the last state reported. It blocks until the state is taken
// or ctx ends, and then returns ctx.Err().
func (p *StateReporter) Send(ctx context.Context, up bool, port string, err error) error {
	if p.known && p.up == up {
		return nil
	}
	p.known, p.up = true, up
	if p.States == nil {
		return nil
	}
	st := dock.ReaderState{Reader: p.ID, Up: up, Port: port, Err: err, At: time.Now()}
	select {
	case p.States <- st:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff is the wait between attempts to reopen a port: it doubles from
// Min to Max with "equal jitter" (each wait is drawn from [d/2, d]), so
// waits never exceed Max and readers that lost power together do not retry
// in lockstep. Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Reset starts again from Min (after a port came up).
func (b *Backoff) Reset() { b.attempt = 0 }

// Next returns the next wait and advances.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Wait sleeps for the next wait, or until ctx ends (then ctx.Err()).
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
