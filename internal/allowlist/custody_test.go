package allowlist

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

var testCtx = context.Background()

func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

func decide(t *testing.T, s *Store, it custody.Item, dir dock.Direction) dock.Decision {
	t.Helper()
	var d dock.Decision
	if err := s.View(func(l custody.List) error {
		d = custody.Decide(it, l, custody.Policy{}, custody.At{Door: "d1", Direction: dir, Today: "2026-11-25"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

func event(seq uint64, dir dock.Direction, it custody.Item, d dock.Decision) dock.CustodyEvent {
	return dock.CustodyEvent{Seq: seq, Door: "d1", Direction: dir, Time: time.Date(2026, 11, 25, 9, 0, int(seq), 0, time.UTC),
		GTIN: it.GTIN, Lot: it.Lot, Serial: it.Serial, SSCC: it.SSCC, Decision: d}
}

// The station's own events change custody state at once (before any
// flush): receive twice is a duplicate, ship then ship again is already
// shipped; the state survives Close/Open and the trace lists it all.
func TestRecordUpdatesCustodyAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path, WithFlush(time.Hour, 1<<30)) // no flush unless asked
	if err != nil {
		t.Fatal(err)
	}
	body := `{"gtin":"` + g1 + `","lot":"L1","status":"released"}
{"gtin":"` + g1 + `","serial":"S1","lot":"L1","state":"expected"}
{"gtin":"` + g1 + `","serial":"S2","lot":"L1","state":"expected"}
{"shipment":"ASN-1","door":"d1","direction":"receiving","gtin":"` + g1 + `","lot":"L1","qty":2}
`
	if _, err := s.Import(testCtx, strings.NewReader(body), ImportOptions{Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	step := func(it custody.Item, dir dock.Direction, want dock.Reason) {
		t.Helper()
		d := decide(t, s, it, dir)
		if d.Reason != want {
			t.Fatalf("%s %+v: %+v, want %s", dir, it, d, want)
		}
		seq++
		s.Record(event(seq, dir, it, d))
	}
	s1 := custody.Item{GTIN: g1, Lot: "L1", Serial: "S1"}
	s2 := custody.Item{GTIN: g1, Lot: "L1", Serial: "S2"}
	step(s1, dock.Shipping, dock.ReasonNotInCustody)
	step(s1, dock.Receiving, dock.ReasonOK)
	step(s1, dock.Receiving, dock.ReasonDuplicateSerial)
	step(s2, dock.Receiving, dock.ReasonOK)
	step(custody.Item{GTIN: g1, Lot: "L1"}, dock.Receiving, dock.ReasonOverQuantity) // ASN line of 2 is full
	if cp := s.Checkpoint(); cp != 0 {
		t.Fatalf("checkpoint %d before any flush", cp)
	}
	step(s1, dock.Shipping, dock.ReasonOK)
	step(s1, dock.Shipping, dock.ReasonAlreadyShipped)
	// Replaying an already recorded event changes nothing.
	s.Record(event(2, dock.Receiving, s1, dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}))
	if x, _, _ := s.Serial(g1, "S1"); x.State != custody.Shipped {
		t.Fatalf("replay changed state: %+v", x)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cp := s.Checkpoint(); cp != seq {
		t.Fatalf("checkpoint %d after close, want %d", cp, seq)
	}
	if x, _, _ := s.Serial(g1, "S1"); x.State != custody.Shipped || x.Door != "d1" {
		t.Fatalf("S1 after reopen: %+v", x)
	}
	if d := decide(t, s, s2, dock.Receiving); d.Reason != dock.ReasonDuplicateSerial {
		t.Fatalf("S2 after reopen: %+v", d)
	}
	tr, err := s.Trace(TraceQuery{Serial: "S1"})
	if err != nil || len(tr) != 5 {
		t.Fatalf("trace S1: %d records, %v", len(tr), err)
	}
	if tr[0].Reason != dock.ReasonNotInCustody || tr[1].Verdict != dock.Accept || tr[4].Reason != dock.ReasonAlreadyShipped {
		t.Fatalf("trace %+v", tr)
	}
	if tr, _ := s.Trace(TraceQuery{Lot: "L1", GTIN: g1}); len(tr) != 7 {
		t.Fatalf("trace lot: %d", len(tr))
	}
	// A newer list state wins over an older local record.
	newer := `{"gtin":"` + g1 + `","lot":"L1","status":"released"}
{"gtin":"` + g1 + `","serial":"S1","lot":"L1","state":"returned","door":"d7","changed":"2026-12-01T00:00:00Z"}
`
	if _, err := s.Import(testCtx, strings.NewReader(newer), ImportOptions{Version: "v2"}); err != nil {
		t.Fatal(err)
	}
	if x, _, _ := s.Serial(g1, "S1"); x.State != custody.Returned || x.Door != "d7" {
		t.Fatalf("newer list state lost: %+v", x)
	}
}

// runStore runs s.Run in the background; stop ends it and fails the test
// if Run returned an error.
func runStore(t *testing.T, s *Store) (stop func()) {
	t.Helper()
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunFlushesAndPrunesTrace(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"), WithFlush(10*time.Millisecond, 1000), WithTraceRetention(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := runStore(t, s)
	old := dock.CustodyEvent{Seq: 1, Time: time.Now().Add(-48 * time.Hour), Lot: "OLD", Direction: dock.Receiving, Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownGTIN}}
	s.Record(old)
	s.Record(dock.CustodyEvent{Seq: 2, Time: time.Now(), Lot: "NEW", Direction: dock.Receiving, Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownGTIN}})
	deadline := time.Now().Add(5 * time.Second)
	for s.Checkpoint() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not flush within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.pruneTrace(time.Now()); err != nil {
		t.Fatal(err)
	}
	if tr, _ := s.Trace(TraceQuery{Lot: "OLD"}); len(tr) != 0 {
		t.Fatalf("old trace kept: %+v", tr)
	}
	if tr, _ := s.Trace(TraceQuery{Lot: "NEW"}); len(tr) != 1 {
		t.Fatalf("new trace: %+v", tr)
	}
	stop()
}

// At a quiet door Run does not flush a handful of events at every tick: it
// waits until flushMin wait, or flushMax has passed since the last flush.
func TestRunBatchesQuietFlushes(t *testing.T) {
	const most = 4 * time.Second
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"), func(o *options) {
		o.flushEvery, o.flushMin, o.flushMax = 10*time.Millisecond, 5, most
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := runStore(t, s)
	quiet := func(seq uint64) dock.CustodyEvent {
		return dock.CustodyEvent{Seq: seq, Time: time.Now(), Lot: "Q", Direction: dock.Receiving, Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownGTIN}}
	}
	waitCheckpoint := func(want uint64, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for s.Checkpoint() != want {
			if time.Since(start) > within {
				t.Fatalf("checkpoint %d after %v, want %d", s.Checkpoint(), within, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		s.Record(quiet(seq))
	}
	time.Sleep(200 * time.Millisecond) // 20 ticks
	if c := s.Checkpoint(); c != 0 {
		t.Fatalf("3 events (fewer than 5) flushed within 20 ticks: checkpoint %d", c)
	}
	s.Record(quiet(4))
	s.Record(quiet(5))
	waitCheckpoint(5, most/2) // the fifth makes the next tick flush
	s.Record(quiet(6))
	took := waitCheckpoint(6, 3*most) // alone: only once flushMax passed
	if took < most/2 {
		t.Fatalf("a lone event was flushed after %v, before flushMax %v", took, most)
	}
	stop()
}
