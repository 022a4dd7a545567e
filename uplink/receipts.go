package uplink

// Receipt delivery (Config.Delivery == DeliveryReceipt): an event the broker
// acknowledged stays in the Outbox until central's receipt covers it. This
// file holds the receipt parser, the receipt handler (run on paho's receive
// goroutine) and the bookkeeping of unconfirmed events (Run's goroutine).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dockd/dockd/internal/jsonstrict"
)

// Delivery says when the Client lets the Outbox delete an event.
type Delivery string

// Delivery modes.
const (
	// DeliveryBroker acknowledges the Outbox on the broker's PUBACK.
	DeliveryBroker Delivery = "broker"
	// DeliveryReceipt acknowledges the Outbox only up to central's
	// receipts (ReceiptSchema on Config.ReceiptsTopic) and publishes again
	// what the broker acknowledged but no receipt covered within
	// Config.ReceiptTimeout.
	DeliveryReceipt Delivery = "receipt"
)

// Schema names of a receipt and of the doctor's receipt probe
// (uplink/contract/receipt.schema.json, receipt-probe.schema.json).
const (
	ReceiptSchema      = "dockd.receipt/1"
	ReceiptProbeSchema = "dockd.receipt-probe/1"
)

// DefaultReceiptTimeout is Config.ReceiptTimeout's default.
const DefaultReceiptTimeout = 30 * time.Second

// maxUnconfRuns bounds the memory of the unconfirmed bookkeeping: beyond it,
// neighbouring runs are merged (keeping the earlier time, so ages are never
// under-stated).
const maxUnconfRuns = 4096

// ErrMalformedReceipt is wrapped by ParseReceipt's errors.
var ErrMalformedReceipt = errors.New("malformed receipt")

// Receipt is central's statement that every seq <= Upto of Station is
// durably stored (uplink/contract/receipt.schema.json).
type Receipt struct {
	Schema    string    `json:"schema"`
	Station   string    `json:"station"`
	Upto      uint64    `json:"upto"`
	Time      time.Time `json:"time"`
	Collector string    `json:"collector"`
}

// MaxReceiptBytes bounds a receipt payload; larger ones are refused unread.
const MaxReceiptBytes = 4 << 10

// ParseReceipt decodes and checks a receipt payload: a JSON object with
// schema dockd.receipt/1, a non-empty station and collector, an RFC 3339
// time and an unsigned integer upto. Unknown members are ignored; a member
// given twice, data after the object, or more than MaxReceiptBytes is
// malformed (internal/jsonstrict). Errors wrap ErrMalformedReceipt and say
// what was wrong.
func ParseReceipt(payload []byte) (Receipt, error) {
	if len(payload) > MaxReceiptBytes {
		return Receipt{}, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedReceipt, len(payload), MaxReceiptBytes)
	}
	var raw struct {
		Schema    *string          `json:"schema"`
		Station   *string          `json:"station"`
		Upto      *json.RawMessage `json:"upto"`
		Time      *string          `json:"time"`
		Collector *string          `json:"collector"`
	}
	if err := jsonstrict.Decode(payload, &raw, false); err != nil {
		return Receipt{}, fmt.Errorf("%w: not a JSON object: %v", ErrMalformedReceipt, err)
	}
	var r Receipt
	switch {
	case raw.Schema == nil || *raw.Schema != ReceiptSchema:
		return r, fmt.Errorf("%w: schema is not %q", ErrMalformedReceipt, ReceiptSchema)
	case raw.Station == nil || *raw.Station == "":
		return r, fmt.Errorf("%w: no station", ErrMalformedReceipt)
	case raw.Collector == nil || *raw.Collector == "":
		return r, fmt.Errorf("%w: no collector", ErrMalformedReceipt)
	case raw.Upto == nil:
		return r, fmt.Errorf("%w: no upto", ErrMalformedReceipt)
	case raw.Time == nil:
		return r, fmt.Errorf("%w: no time", ErrMalformedReceipt)
	}
	// upto must be a plain unsigned integer: no sign, fraction or exponent.
	u := bytes.TrimSpace(*raw.Upto)
	if len(u) == 0 || bytes.ContainsFunc(u, func(c rune) bool { return c < '0' || c > '9' }) {
		return r, fmt.Errorf("%w: upto %.40s is not an unsigned integer", ErrMalformedReceipt, u)
	}
	if err := json.Unmarshal(u, &r.Upto); err != nil {
		return r, fmt.Errorf("%w: upto %.40s: %v", ErrMalformedReceipt, u, err)
	}
	t, err := time.Parse(time.RFC3339Nano, *raw.Time)
	if err != nil {
		return r, fmt.Errorf("%w: time %.40q is not RFC 3339", ErrMalformedReceipt, *raw.Time)
	}
	r.Schema, r.Station, r.Time, r.Collector = *raw.Schema, *raw.Station, t, *raw.Collector
	return r, nil
}

// Why a receipt was not applied (log field "reason").
const (
	refuseMalformed = "malformed"
	refuseForeign   = "foreign_station"
	refuseAhead     = "ahead"
	refuseNotAhead  = "not_ahead"
)

// onReceipt handles one message on the receipts topic. It runs on paho's
// receive goroutine: it only validates, raises c.confirmed and wakes Run.
func (c *Client) onReceipt(topic string, payload []byte) {
	r, err := ParseReceipt(payload)
	refuse := func(reason string, lvl slog.Level, msg string, args ...any) {
		c.updateStats(func(s *Stats) {
			if reason != refuseNotAhead {
				s.ReceiptsRefused++
			}
		})
		c.log.Log(context.Background(), lvl, msg, append([]any{"reason", reason, "topic", topic}, args...)...)
	}
	if err != nil {
		refuse(refuseMalformed, slog.LevelError, "receipt refused: malformed", "err", err, "payload", truncatePayload(payload))
		return
	}
	if r.Station != c.cfg.StationID {
		refuse(refuseForeign, slog.LevelError, "receipt refused: for another station", "receipt_station", r.Station, "upto", r.Upto, "collector", r.Collector)
		return
	}
	if hi := c.cfg.HighestIssued(); r.Upto > hi {
		refuse(refuseAhead, slog.LevelError, "receipt refused: upto is beyond the highest seq this station issued",
			"upto", r.Upto, "highest_issued", hi, "collector", r.Collector)
		return
	}
	for {
		cur := c.confirmed.Load()
		if r.Upto <= cur {
			refuse(refuseNotAhead, slog.LevelInfo, "receipt changes nothing: upto not above the confirmed seq",
				"upto", r.Upto, "confirmed_seq", cur, "collector", r.Collector)
			return
		}
		if c.confirmed.CompareAndSwap(cur, r.Upto) {
			break
		}
	}
	c.updateStats(func(s *Stats) { s.Receipts++; s.LastReceipt = time.Now() })
	c.log.Debug("receipt", "upto", r.Upto, "collector", r.Collector)
	select {
	case c.receiptKick <- struct{}{}:
	default:
	}
}

func truncatePayload(p []byte) string {
	const n = 200
	if len(p) > n {
		return string(p[:n]) + "…"
	}
	return string(p)
}

// unconfRun is a run of events published, up to seq to, that no receipt
// covered yet: n events, first published at at.
type unconfRun struct {
	to uint64
	at time.Time
	n  int
}

// unconfirmed is the bookkeeping of published, unreceipted events in seq
// order. Run's goroutine only.
type unconfirmed struct {
	runs       []unconfRun
	lastRewind time.Time // when everything unconfirmed was last sent again
}

// tail is the highest seq recorded (0 when empty).
func (u *unconfirmed) tail() uint64 {
	if len(u.runs) == 0 {
		return 0
	}
	return u.runs[len(u.runs)-1].to
}

// coalesce is how close in time publishes share one run.
const coalesce = 100 * time.Millisecond

// sent records the publish of seqs (ascending) at now; seqs at or below
// floor (confirmed) or already recorded (a resend) are skipped, so an event
// keeps its first publish time. Publishes within coalesce of the newest
// run join it.
func (u *unconfirmed) sent(seqs []uint64, floor uint64, now time.Time) {
	lo := max(floor, u.tail())
	run := unconfRun{at: now}
	for _, s := range seqs {
		if s > lo {
			run.to, run.n, lo = s, run.n+1, s
		}
	}
	if run.n == 0 {
		return
	}
	if k := len(u.runs) - 1; k >= 0 && now.Sub(u.runs[k].at) < coalesce {
		u.runs[k].to, u.runs[k].n = run.to, u.runs[k].n+run.n
		return
	}
	u.runs = append(u.runs, run)
	if len(u.runs) > maxUnconfRuns {
		merged := u.runs[:0]
		for i := 0; i < len(u.runs); i += 2 {
			r := u.runs[i]
			if i+1 < len(u.runs) {
				r.to, r.n = u.runs[i+1].to, r.n+u.runs[i+1].n
			}
			merged = append(merged, r)
		}
		u.runs = merged
	}
}

// confirm drops what a receipt up to upto covers. A run it covers partly
// keeps at most to-upto events (exact unless the seqs had gaps).
func (u *unconfirmed) confirm(upto uint64) {
	i := 0
	for i < len(u.runs) && u.runs[i].to <= upto {
		i++
	}
	u.runs = u.runs[i:]
	if len(u.runs) > 0 {
		r := &u.runs[0]
		if span := r.to - upto; uint64(r.n) > span {
			r.n = int(span)
		}
	}
}

// count is the number of unconfirmed events; oldest the first publish time
// of the oldest (zero when none).
func (u *unconfirmed) count() (n int, oldest time.Time) {
	for _, r := range u.runs {
		n += r.n
	}
	if len(u.runs) > 0 {
		oldest = u.runs[0].at
	}
	return n, oldest
}

// resendDue is when everything unconfirmed should be sent again: timeout
// after the oldest first publish or the last resend, whichever is later;
// zero when nothing is unconfirmed.
func (u *unconfirmed) resendDue(timeout time.Duration) time.Time {
	if len(u.runs) == 0 {
		return time.Time{}
	}
	from := u.runs[0].at
	if u.lastRewind.After(from) {
		from = u.lastRewind
	}
	return from.Add(timeout)
}

// receiptMode reports whether the Client runs with receipt delivery.
func (c *Client) receiptMode() bool { return c.cfg.Delivery == DeliveryReceipt }

// releasable is the seq up to which the Outbox may delete: the broker's
// acknowledged prefix, or in receipt mode the confirmed seq.
func (c *Client) releasable() uint64 {
	if c.receiptMode() {
		return c.confirmed.Load()
	}
	return c.ackedSeq
}

// applyReceipts drops what receipts confirmed from the bookkeeping and
// publishes the unconfirmed figures in Stats. Run's goroutine only.
func (c *Client) applyReceipts() {
	if !c.receiptMode() {
		return
	}
	conf := c.confirmed.Load()
	c.unconf.confirm(conf)
	n, oldest := c.unconf.count()
	c.updateStats(func(s *Stats) {
		s.ConfirmedSeq = conf
		s.Unconfirmed = n
		s.UnconfirmedSince = oldest
	})
}
