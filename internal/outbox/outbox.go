// Package outbox adapts the durable event buffer (package buffer) to the
// two views that consume it: the pipeline appends custody events, the
// uplink drains and acknowledges them. buffer and uplink do not import each
// other; this is the one place where their types meet.
package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/uplink"
)

// Outbox is a buffer.Queue seen as the station's Outbox and the uplink's
// Outbox. Its methods are safe for concurrent use (the queue's are).
type Outbox struct {
	Q *buffer.Queue
	// Floor, when set, holds acknowledgements back to a sequence number that
	// another durable record has caught up with (the allowlist's custody
	// checkpoint): events above it stay in the buffer so that record can be
	// rebuilt from them after a crash. The caller releases them later with
	// Queue.Ack once the floor has moved.
	Floor func() uint64
}

// Append stores one event durably; a spent byte budget is reported as an
// error wrapping both dock.ErrBufferFull and buffer.ErrFull.
func (o Outbox) Append(ctx context.Context, build func(seq uint64) ([]byte, error)) (uint64, error) {
	seq, err := o.Q.Append(ctx, build)
	if errors.Is(err, buffer.ErrFull) {
		err = fmt.Errorf("%w: %w", dock.ErrBufferFull, err)
	}
	return seq, err
}

// AppendBatch stores several events in order, sharing commits (see
// buffer.Queue.AppendBatch); a spent budget is reported as for Append.
func (o Outbox) AppendBatch(ctx context.Context, builds []func(seq uint64) ([]byte, error)) ([]uint64, []error) {
	seqs, errs := o.Q.AppendBatch(ctx, builds)
	for i, err := range errs {
		if errors.Is(err, buffer.ErrFull) {
			errs[i] = fmt.Errorf("%w: %w", dock.ErrBufferFull, err)
		}
	}
	return seqs, errs
}

// Pending returns up to max undelivered events after seq, oldest first:
// events already marked delivered (kept in the file only for the custody
// replay, see buffer.Options.Retain) are not sent again, also after a
// restart.
func (o Outbox) Pending(after uint64, max int) ([]uplink.Record, error) {
	after = maxU64(after, o.Q.Stats().LastAckSeq)
	rs, err := o.Q.Pending(after, max)
	out := make([]uplink.Record, len(rs))
	for i, r := range rs {
		out[i] = uplink.Record{Seq: r.Seq, Payload: r.Payload}
	}
	return out, err
}

// Ack marks every event up to seq (or up to Floor if that is lower)
// delivered. This is the one place delivery acknowledgements (broker
// PUBACKs, central receipts) reach the buffer, and it batches their disk
// writes: the buffer writes the delivered mark with its next append commit,
// or on its own after buffer.Options.AckDelay / AckBatch
// (Queue.AckDeferred), and deletes the events later. A crash before that
// commit means resending them — a duplicate, never a loss.
func (o Outbox) Ack(seq uint64) error {
	if o.Floor != nil {
		seq = min(seq, o.Floor())
	}
	if seq <= o.Q.Stats().LastAckSeq {
		return nil
	}
	return o.Q.AckDeferred(seq)
}

// Notify wakes the uplink after appends.
func (o Outbox) Notify() <-chan struct{} { return o.Q.Notify() }

func maxU64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
