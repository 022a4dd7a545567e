package allowlist

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

// localRec is the station's own custody record for one serial or pallet.
type localRec struct {
	State custody.State
	Door  string
	At    time.Time
	Lot   string
	GTIN  string
	Seq   uint64
}

func serialKey(gtin, serial string) string { return "s" + gtin + "\x00" + serial }
func ssccKey(sscc string) string           { return "x" + sscc }
func countKey(id string, line int) string {
	return "q" + string(shipLineKey(id, line))
}

// overlay holds custody changes recorded but not yet persisted.
type overlay struct {
	mu      sync.RWMutex
	recs    map[string]localRec
	counts  map[string]int
	trace   []TraceRecord
	lastSeq uint64 // highest seq recorded (in memory)
	pending int
	kick    chan struct{}
}

func (o *overlay) init() {
	o.recs, o.counts = map[string]localRec{}, map[string]int{}
	o.kick = make(chan struct{}, 1)
}

func encodeLocal(r localRec) []byte {
	b := appendStr(nil, string(r.State))
	b = appendStr(b, r.Door)
	b = binary.AppendVarint(b, r.At.UnixNano())
	b = appendStr(b, r.Lot)
	b = appendStr(b, r.GTIN)
	return binary.AppendUvarint(b, r.Seq)
}

func decodeLocal(v []byte) (localRec, error) {
	rd := &reader{b: v}
	r := localRec{State: custody.State(rd.str()), Door: rd.str()}
	r.At = time.Unix(0, rd.varint()).UTC()
	r.Lot, r.GTIN = rd.str(), rd.str()
	if rd.err != nil {
		return r, fmt.Errorf("corrupt custody record: %w", rd.err)
	}
	seq, w := binary.Uvarint(rd.b)
	if w <= 0 {
		return r, fmt.Errorf("corrupt custody record")
	}
	r.Seq = seq
	return r, nil
}

// local returns the station's record for key: the overlay, else the file.
func (s *Store) local(cust *bolt.Bucket, key string) (localRec, bool, error) {
	s.ov.mu.RLock()
	r, ok := s.ov.recs[key]
	s.ov.mu.RUnlock()
	if ok {
		return r, true, nil
	}
	v := cust.Get([]byte(key))
	if v == nil {
		return localRec{}, false, nil
	}
	r, err := decodeLocal(v)
	if err != nil {
		return r, false, fmt.Errorf("custody record %q: %w", key, err)
	}
	return r, true, nil
}

func (s *Store) counted(cust *bolt.Bucket, key string) (int, error) {
	s.ov.mu.RLock()
	n, ok := s.ov.counts[key]
	s.ov.mu.RUnlock()
	if ok {
		return n, nil
	}
	v := cust.Get([]byte(key))
	if v == nil {
		return 0, nil
	}
	c, w := binary.Uvarint(v)
	if w <= 0 {
		return 0, fmt.Errorf("corrupt shipment count %q", key)
	}
	return int(c), nil
}

// Record applies the custody change of a durable event: for an accepted or
// warned scan, the serial's and pallet's new state and the shipment line
// count; for every event, a trace record. It updates memory only and
// returns at once; Run (or Close, Flush) persists. Events must be recorded
// in Seq order; an event at or below the last recorded or checkpointed seq
// is ignored, so replaying events after a crash is safe. Safe for
// concurrent use with look-ups.
func (s *Store) Record(ev dock.CustodyEvent) {
	if ev.Seq == 0 {
		return
	}
	s.ov.mu.RLock()
	last := s.ov.lastSeq
	s.ov.mu.RUnlock()
	if ev.Seq <= last || ev.Seq <= s.Checkpoint() {
		return
	}
	type change struct {
		key string
		rec localRec
	}
	var changes []change
	var countK string
	var qty int
	accepted := ev.Verdict == dock.Accept || ev.Verdict == dock.Warn
	if accepted && ev.Direction.Valid() {
		err := s.View(func(l custody.List) error {
			sn := l.(*snapshot)
			it := custody.Item{GTIN: ev.GTIN, Lot: ev.Lot, Serial: ev.Serial, SSCC: ev.SSCC, Qty: eventQty(ev)}
			if ev.GTIN != "" && ev.Serial != "" {
				cur, _, err := sn.Serial(ev.GTIN, ev.Serial)
				if err != nil {
					return err
				}
				if to, r := custody.Transition(ev.Direction, cur.State); r == dock.ReasonOK || ev.Verdict == dock.Warn {
					if r != dock.ReasonOK { // accepted by policy despite the rule
						to = forced(ev.Direction)
					}
					lot := ev.Lot
					if lot == "" {
						lot = cur.Lot
					}
					changes = append(changes, change{serialKey(ev.GTIN, ev.Serial), localRec{State: to, Door: ev.Door, At: ev.Time, Lot: lot, Seq: ev.Seq}})
				}
			}
			if ev.SSCC != "" {
				cur, _, err := sn.SSCC(ev.SSCC)
				if err != nil {
					return err
				}
				to, r := custody.Transition(ev.Direction, cur.State)
				if r != dock.ReasonOK {
					to = forced(ev.Direction)
				}
				changes = append(changes, change{ssccKey(ev.SSCC), localRec{State: to, Door: ev.Door, At: ev.Time, Lot: ev.Lot, GTIN: ev.GTIN, Seq: ev.Seq}})
			}
			ships, err := sn.Shipments(ev.Door, ev.Direction)
			if err != nil {
				return err
			}
			if si, li, ok := custody.MatchLine(ships, it); ok {
				n, err := sn.Counted(ships[si].ID, li)
				if err != nil {
					return err
				}
				countK, qty = countKey(ships[si].ID, li), n+it.Quantity()
			}
			return nil
		})
		if err != nil {
			// The event is durable in the buffer; replaying it rebuilds this.
			changes, countK = nil, ""
		}
	}
	tr := TraceRecord{Seq: ev.Seq, Time: ev.Time, Door: ev.Door, Direction: ev.Direction, Verdict: ev.Verdict, Reason: ev.Reason,
		GTIN: ev.GTIN, Lot: ev.Lot, Serial: ev.Serial, SSCC: ev.SSCC}
	s.ov.mu.Lock()
	for _, c := range changes {
		s.ov.recs[c.key] = c.rec
	}
	if countK != "" {
		s.ov.counts[countK] = qty
	}
	s.ov.trace = append(s.ov.trace, tr)
	s.ov.lastSeq = ev.Seq
	s.ov.pending++
	kick := s.ov.pending >= s.opts.flushRecords
	s.ov.mu.Unlock()
	if kick {
		select {
		case s.ov.kick <- struct{}{}:
		default:
		}
	}
}

// forced is the state goods end in when policy let them cross although the
// custody rule failed (e.g. duplicate_serial only warns).
func forced(dir dock.Direction) custody.State {
	if dir == dock.Shipping {
		return custody.Shipped
	}
	return custody.Received
}

func eventQty(ev dock.CustodyEvent) int {
	for _, ai := range ev.AIs {
		if ai.AI == "30" || ai.AI == "37" {
			n := 0
			for _, c := range ai.Value {
				if c < '0' || c > '9' {
					return 1
				}
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	return 1
}

// Checkpoint returns the highest event seq whose custody change is durable
// in the allowlist file.
//
// Crash story: Record changes memory only; Run writes the changes every
// flush interval in one transaction together with this checkpoint. After
// kill -9 the changes of events above the checkpoint are lost from this
// file, but the events themselves are durable in the event buffer. On
// start the daemon replays buffered events with Seq > Checkpoint through
// Record. That is complete only if the buffer still holds them: the buffer
// must not delete delivered events above the custody checkpoint (see the
// report to the lead).
func (s *Store) Checkpoint() uint64 {
	var c uint64
	s.view(func(tx *bolt.Tx) error { c = getU64(tx.Bucket(bucketMeta).Get(keyCheckpoint)); return nil })
	return c
}

// Run persists the custody overlay and prunes trace records past
// retention, until ctx ends; it flushes once more before returning. It
// flushes at a flush interval when enough events wait (DefaultFlushMin) or
// the last flush is old enough (DefaultFlushMax), and at once when many
// arrive (DefaultFlushRecords); see WithFlush. It returns nil on ctx end.
func (s *Store) Run(ctx context.Context) error {
	tick := time.NewTicker(s.opts.flushEvery)
	defer tick.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	s.pruneTrace(time.Now())
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			s.Flush()
			return nil
		case <-tick.C:
			s.ov.mu.RLock()
			waiting := s.ov.pending
			s.ov.mu.RUnlock()
			if waiting < s.opts.flushMin && time.Since(last) < s.opts.flushMax {
				continue
			}
		case <-s.ov.kick:
		case now := <-prune.C:
			s.pruneTrace(now)
		}
		if err := s.Flush(); err != nil {
			// Memory still holds the changes; the next flush retries.
			continue
		}
		last = time.Now()
	}
}

// Flush writes the custody overlay and trace records to the file in one
// transaction and advances the checkpoint. Safe for concurrent use.
func (s *Store) Flush() error {
	s.ov.mu.Lock()
	if s.ov.pending == 0 {
		s.ov.mu.Unlock()
		return nil
	}
	recs := make(map[string]localRec, len(s.ov.recs))
	for k, v := range s.ov.recs {
		recs[k] = v
	}
	counts := make(map[string]int, len(s.ov.counts))
	for k, v := range s.ov.counts {
		counts[k] = v
	}
	trace := s.ov.trace
	s.ov.trace = nil
	last := s.ov.lastSeq
	s.ov.pending = 0
	s.ov.mu.Unlock()

	err := s.updateBackground(func(tx *bolt.Tx) error {
		cust := tx.Bucket(bucketCustody)
		for k, r := range recs {
			if err := cust.Put([]byte(k), encodeLocal(r)); err != nil {
				return err
			}
		}
		for k, n := range counts {
			if err := cust.Put([]byte(k), binary.AppendUvarint(nil, uint64(n))); err != nil {
				return err
			}
		}
		if err := putTrace(tx, trace); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyCheckpoint, putU64(last))
	})
	s.ov.mu.Lock()
	defer s.ov.mu.Unlock()
	if err != nil {
		s.ov.trace = append(trace, s.ov.trace...)
		s.ov.pending++
		return fmt.Errorf("persisting custody state through seq %d: %w", last, err)
	}
	for k, r := range recs {
		if cur, ok := s.ov.recs[k]; ok && cur == r {
			delete(s.ov.recs, k)
		}
	}
	for k, n := range counts {
		if s.ov.counts[k] == n {
			delete(s.ov.counts, k)
		}
	}
	return nil
}

// ---- trace ----

// TraceRecord is what the station keeps about one event for trace queries.
type TraceRecord struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Door      string         `json:"door,omitempty"`
	Direction dock.Direction `json:"direction"`
	Verdict   dock.Verdict   `json:"decision"`
	Reason    dock.Reason    `json:"reason"`
	GTIN      string         `json:"gtin,omitempty"`
	Lot       string         `json:"lot,omitempty"`
	Serial    string         `json:"serial,omitempty"`
	SSCC      string         `json:"sscc,omitempty"`
}

func traceIdx(kind byte, val string, seq uint64) []byte {
	k := append([]byte{kind}, val...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func putTrace(tx *bolt.Tx, recs []TraceRecord) error {
	tb, ib := tx.Bucket(bucketTrace), tx.Bucket(bucketTraceIdx)
	// Trace records are keyed by seq, so they are only ever appended: fill
	// leaf pages instead of splitting them half-empty (bbolt's default),
	// about half the trace pages to write at each checkpoint.
	tb.FillPercent = 0.95
	for _, r := range recs {
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := tb.Put(putU64(r.Seq), v); err != nil {
			return err
		}
		for _, ix := range traceKeys(r) {
			if err := ib.Put(ix, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func traceKeys(r TraceRecord) [][]byte {
	var out [][]byte
	if r.Lot != "" {
		out = append(out, traceIdx('l', r.Lot, r.Seq))
	}
	if r.Serial != "" {
		out = append(out, traceIdx('s', r.Serial, r.Seq))
	}
	if r.SSCC != "" {
		out = append(out, traceIdx('x', r.SSCC, r.Seq))
	}
	return out
}

// TraceQuery selects trace records: exactly one of Lot, Serial, SSCC;
// GTIN optionally narrows a lot or serial to one product.
type TraceQuery struct {
	GTIN, Lot, Serial, SSCC string
}

// Trace returns what crossed this door for q, oldest first, from the
// records kept for the retention period (persisted ones; call Flush first
// to include the latest).
func (s *Store) Trace(q TraceQuery) ([]TraceRecord, error) {
	var kind byte
	var val string
	switch {
	case q.Lot != "":
		kind, val = 'l', q.Lot
	case q.Serial != "":
		kind, val = 's', q.Serial
	case q.SSCC != "":
		kind, val = 'x', q.SSCC
	default:
		return nil, fmt.Errorf("trace: give a lot, serial or SSCC")
	}
	var out []TraceRecord
	err := s.view(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketTrace)
		prefix := append(append([]byte{kind}, val...), 0)
		c := tx.Bucket(bucketTraceIdx).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := tb.Get(k[len(prefix):])
			if v == nil {
				continue
			}
			var r TraceRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("trace record %x: %w", k[len(prefix):], err)
			}
			if q.GTIN != "" && r.GTIN != q.GTIN {
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// pruneTrace deletes trace records older than the retention period, in
// transactions of bounded size.
func (s *Store) pruneTrace(now time.Time) error {
	cutoff := now.Add(-s.opts.traceRetention)
	// A write transaction commits (meta page, fsync) even when it changes
	// nothing: look first, so an idle station writes nothing.
	expired := false
	s.view(func(tx *bolt.Tx) error {
		if _, v := tx.Bucket(bucketTrace).Cursor().First(); v != nil {
			var r TraceRecord
			expired = json.Unmarshal(v, &r) != nil || r.Time.Before(cutoff)
		}
		return nil
	})
	if !expired {
		return nil
	}
	for {
		n := 0
		err := s.updateBackground(func(tx *bolt.Tx) error {
			tb, ib := tx.Bucket(bucketTrace), tx.Bucket(bucketTraceIdx)
			c := tb.Cursor()
			for k, v := c.First(); k != nil && n < 10000; k, v = c.First() {
				var r TraceRecord
				if err := json.Unmarshal(v, &r); err == nil && !r.Time.Before(cutoff) {
					return nil
				}
				for _, ix := range traceKeys(r) {
					if err := ib.Delete(ix); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("pruning trace records before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		if n < 10000 {
			return nil
		}
	}
}
