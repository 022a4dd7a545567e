package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

// memOutbox is an in-memory Outbox for tests: ordered records, a mutex, a
// coalesced notify channel, and a log of Ack calls. hold makes Pending
// return nothing, so a test can sequence a broker restart.
type memOutbox struct {
	mu     sync.Mutex
	recs   []Record // ascending Seq, all > acked
	next   uint64
	acked  uint64
	acks   []uint64
	bad    []string // contract violations seen by Ack
	hold   bool
	notify chan struct{}
}

func newMemOutbox() *memOutbox { return &memOutbox{notify: make(chan struct{}, 1)} }

func eventPayload(seq uint64) []byte {
	return fmt.Appendf(nil, `{"id":"ev-%06d","seq":%d}`, seq, seq)
}

// Append adds n records and signals Notify; it returns the last Seq.
func (o *memOutbox) Append(n int) uint64 {
	o.mu.Lock()
	for i := 0; i < n; i++ {
		o.next++
		o.recs = append(o.recs, Record{Seq: o.next, Payload: eventPayload(o.next)})
	}
	last := o.next
	o.mu.Unlock()
	o.kick()
	return last
}

func (o *memOutbox) kick() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *memOutbox) Hold(h bool) {
	o.mu.Lock()
	o.hold = h
	o.mu.Unlock()
	if !h {
		o.kick()
	}
}

func (o *memOutbox) Pending(after uint64, max int) ([]Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hold {
		return nil, nil
	}
	var out []Record
	for _, r := range o.recs {
		if r.Seq <= after {
			continue
		}
		if len(out) == max {
			break
		}
		out = append(out, Record{Seq: r.Seq, Payload: append([]byte(nil), r.Payload...)})
	}
	return out, nil
}

func (o *memOutbox) Ack(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.acks = append(o.acks, seq)
	if seq < o.acked {
		o.bad = append(o.bad, fmt.Sprintf("Ack(%d) after Ack(%d)", seq, o.acked))
	}
	if seq > o.next {
		o.bad = append(o.bad, fmt.Sprintf("Ack(%d) beyond last appended %d", seq, o.next))
	}
	i := 0
	for i < len(o.recs) && o.recs[i].Seq <= seq {
		i++
	}
	o.recs = o.recs[i:]
	o.acked = max(o.acked, seq)
	return nil
}

func (o *memOutbox) Notify() <-chan struct{} { return o.notify }

func (o *memOutbox) state() (acked uint64, pending int, bad []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.acked, len(o.recs), append([]string(nil), o.bad...)
}

// checkOutboxDrained asserts every appended record was acknowledged and Ack
// was called monotonically.
func checkOutboxDrained(t *testing.T, o *memOutbox, last uint64) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("outbox acked up to %d", last), func() bool {
		a, p, _ := o.state()
		return a == last && p == 0
	})
	if _, _, bad := o.state(); len(bad) > 0 {
		t.Errorf("outbox contract violations: %v", bad)
	}
}

const (
	eventsTopic = "dockd/v1/s1/d1/events"
	statusTopic = "dockd/v1/s1/d1/status"
	willPayload = `{"state":"offline"}`
)

func testConfig(t testing.TB, broker string) Config {
	return Config{
		Broker:          broker,
		ClientID:        "dockd-" + strings.ReplaceAll(t.Name(), "/", "-"),
		EventsTopic:     eventsTopic,
		StatusTopic:     statusTopic,
		Will:            []byte(willPayload),
		InFlight:        8,
		AckTimeout:      time.Second,
		ConnectTimeout:  time.Second,
		KeepAlive:       time.Second,
		MinBackoff:      50 * time.Millisecond,
		MaxBackoff:      300 * time.Millisecond,
		ShutdownTimeout: time.Second,
	}
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		w := &tWriter{t: t}
		t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// connWatch counts OnConnectionChange calls.
type connWatch struct {
	mu        sync.Mutex
	ups, down int
	changed   chan struct{}
}

func newConnWatch(c *Client) *connWatch {
	w := &connWatch{changed: make(chan struct{})}
	c.OnConnectionChange(func(up bool) {
		w.mu.Lock()
		if up {
			w.ups++
		} else {
			w.down++
		}
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	})
	return w
}

func (w *connWatch) counts() (ups, downs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ups, w.down
}

func (w *connWatch) wait(t testing.TB, what string, timeout time.Duration, cond func(ups, downs int) bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		ok, ch := cond(w.ups, w.down), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			u, d := w.counts()
			t.Fatalf("waited %v for %s (ups %d, downs %d)", timeout, what, u, d)
		}
	}
}

// startClient runs c until the test ends and checks Run's result then.
func startClient(t *testing.T, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll with a deadline
	}
}

func seqsOf(t testing.TB, msgs []testkit.Message) []uint64 {
	t.Helper()
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		var ev struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatalf("payload %q on %s: %v", m.Payload, m.Topic, err)
		}
		if want := fmt.Sprintf("ev-%06d", ev.Seq); ev.ID != want {
			t.Fatalf("payload %q: id %q does not match seq (want %q)", m.Payload, ev.ID, want)
		}
		out = append(out, ev.Seq)
	}
	return out
}

// allArrived returns a WaitFor predicate that holds once every seq in 1..n
// has arrived; it parses each message once.
func allArrived(t testing.TB, n uint64) func([]testkit.Message) bool {
	seen := make(map[uint64]bool)
	parsed := 0
	return func(ms []testkit.Message) bool {
		for _, s := range seqsOf(t, ms[parsed:]) {
			if s >= 1 && s <= n {
				seen[s] = true
			}
		}
		parsed = len(ms)
		return uint64(len(seen)) == n
	}
}

func hasAll(seqs []uint64, n uint64) bool {
	seen := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		seen[s] = true
	}
	for s := uint64(1); s <= n; s++ {
		if !seen[s] {
			return false
		}
	}
	return true
}

// checkDelivery asserts at-least-once, in-order delivery of 1..n: the
// arrivals split into runs at every backward step; each run is consecutive
// (no gap, no duplicate within one connection); the first run starts at 1;
// every run after a backward step starts at or below the highest seq seen
// plus one (a resend never skips); all of 1..n arrive; and there are at most
// maxRuns runs (one per connection).
func checkDelivery(t *testing.T, seqs []uint64, n uint64, maxRuns int) {
	t.Helper()
	if len(seqs) == 0 {
		t.Fatalf("nothing delivered, want 1..%d", n)
	}
	if seqs[0] != 1 {
		t.Errorf("first delivered seq %d, want 1", seqs[0])
	}
	runs, high := 1, seqs[0]
	for i := 1; i < len(seqs); i++ {
		prev, cur := seqs[i-1], seqs[i]
		switch {
		case cur == prev+1:
		case cur <= prev:
			runs++
		default:
			t.Errorf("gap at arrival %d: seq %d after %d", i, cur, prev)
		}
		if cur > high+1 {
			t.Errorf("arrival %d: seq %d skips past highest seen %d", i, cur, high)
		}
		high = max(high, cur)
	}
	if !hasAll(seqs, n) {
		t.Errorf("not all of 1..%d delivered: %v", n, seqs)
	}
	if high != n {
		t.Errorf("highest delivered seq %d, want %d", high, n)
	}
	if runs > maxRuns {
		t.Errorf("%d in-order runs (resends) but only %d connections: %v", runs, maxRuns, seqs)
	}
}
