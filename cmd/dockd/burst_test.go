package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// A burst of scans written in one go is decided in order, stored in shared
// commits and each lit only after its own event is durable; a serial that
// repeats inside the burst (even back to back) is still a duplicate; the
// burst is logged as one summary line, not a line per scan.
func TestBurstDecidesInOrder(t *testing.T) {
	s := startStation(t)
	s.write(gs1Scan("LOT42", "warm"))
	s.waitDecisions(1, 10*time.Second)
	var mu sync.Mutex
	var durableAtLight []bool
	s.d.station.Observe(func(ev dock.CustodyEvent) { // runs after the light was set
		mu.Lock()
		defer mu.Unlock()
		durableAtLight = append(durableAtLight, ev.Seq != 0 && s.d.queue.Stats().NewestSeq >= ev.Seq)
	})

	var burst strings.Builder
	var serials []string
	for i := 0; i < 120; i++ {
		sn := fmt.Sprintf("B%03d", i)
		switch i {
		case 41, 42, 90: // repeats of B040, one back to back, one far later
			sn = "B040"
		}
		serials = append(serials, sn)
		burst.WriteString(gs1Scan("LOT42", sn))
	}
	s.write(burst.String())
	evs := s.waitDecisions(1+len(serials), 20*time.Second)[1:]

	var last uint64
	for i, ev := range evs {
		if ev.Serial != serials[i] {
			t.Fatalf("decision %d is for serial %s, want %s (order lost)", i, ev.Serial, serials[i])
		}
		if ev.Seq <= last {
			t.Fatalf("decision %d has seq %d after %d", i, ev.Seq, last)
		}
		last = ev.Seq
		want := dock.ReasonOK
		if ev.Serial == "B040" && i != 40 {
			want = dock.ReasonDuplicateSerial
		}
		if ev.Reason != want {
			t.Fatalf("scan %d (%s): %s/%s, want %s", i, ev.Serial, ev.Verdict, ev.Reason, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, ok := range durableAtLight {
		if !ok {
			t.Fatalf("scan %d of the burst was lit before its event was durable", i)
		}
	}
	waitUntil(t, 5*time.Second, "the burst's summary line", func() bool { return strings.Contains(s.logs.String(), `"msg":"decisions"`) })
	logs := s.logs.String()
	if n := strings.Count(logs, `"msg":"decision",`); n > 1+5 { // the warm-up's own line; a burst may begin with a lone frame or few
		t.Fatalf("%d per-scan decision lines for a burst of %d scans", n, len(serials))
	}
	if !strings.Contains(logs, `"duplicate_serial":3`) {
		t.Fatalf("summary does not count the 3 duplicates:\n%s", logs)
	}
	waitEvents(t, s.sub, 1+len(serials), 30*time.Second)
}
