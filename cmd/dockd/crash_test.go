package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

// killPoints is how many times TestCrashPoints kills the daemon:
// DOCKD_KILL_POINTS overrides (make soak sets 1000).
func killPoints(t *testing.T) int {
	if s := os.Getenv("DOCKD_KILL_POINTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("DOCKD_KILL_POINTS=%q: want a positive number", s)
		}
		return n
	}
	if testing.Short() {
		return 10
	}
	return 100
}

// TestCrashPoints runs the real daemon binary against a pty and a live
// broker, feeds scans continuously and kills it with SIGKILL at randomised
// moments, restarting it each time. At the end every event whose decision
// was shown to the operator (logged after the light was set) has reached the
// broker; sequence numbers have no gaps; a sequence number delivered twice
// always carries the same event id (a resend across a restart).
func TestCrashPoints(t *testing.T) {
	kills := killPoints(t)
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/door-9/events")
	cfgPath := filepath.Join(dir, "dockd.yaml")
	// Debug: a burst's decisions are logged one by one (at info only its
	// summary is), and each line is what tells this test the light showed.
	os.WriteFile(cfgPath, []byte(strings.Replace(stationConfig(dir, pty.Path(), broker.URL(), "virtual"), "level: info", "level: debug", 1)), 0o600)

	// The scanner never stops: scans queue in the pty while the daemon is down.
	var scanned atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1+rand.IntN(4)) * time.Millisecond):
			}
			if pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("C%06d", i)))) == nil {
				scanned.Add(1)
			}
		}
	}()

	shown := map[uint64]bool{}
	for k := 0; k < kills; k++ {
		p := startProc(t, cfgPath)
		time.Sleep(time.Duration(rand.IntN(120)) * time.Millisecond)
		p.kill9()
		for _, s := range p.decided() {
			shown[s] = true
		}
	}
	close(stop)
	wg.Wait()

	// A last, clean run delivers what is left.
	p := startProc(t, cfgPath)
	waitUntil(t, 60*time.Second, "the backlog drained", func() bool {
		ids := map[uint64]bool{}
		for _, e := range receivedEvents(t, sub.Messages()) {
			ids[e.Seq] = true
		}
		for s := range shown {
			if !ids[s] {
				return false
			}
		}
		return true
	})
	final := p.decided()

	got := receivedEvents(t, sub.Messages())
	bySeq := map[uint64]string{}
	var maxSeq uint64
	dups := 0
	for _, e := range got {
		if id, ok := bySeq[e.Seq]; ok {
			if id != e.ID {
				t.Fatalf("seq %d delivered with two different ids: %s and %s", e.Seq, id, e.ID)
			}
			dups++
		}
		bySeq[e.Seq] = e.ID
		maxSeq = max(maxSeq, e.Seq)
	}
	for s := range shown {
		if _, ok := bySeq[s]; !ok {
			t.Fatalf("event seq %d was shown to the operator but never reached the broker", s)
		}
	}
	for s := uint64(1); s <= maxSeq; s++ {
		if _, ok := bySeq[s]; !ok {
			t.Fatalf("gap: seq %d missing (max %d)", s, maxSeq)
		}
	}
	// Events stored but killed before the light showed them are delivered
	// too (the operator did not see them; central gets them marked by seq).
	unshown := 0
	for s := range bySeq {
		if !shown[s] {
			unshown++
		}
	}
	t.Logf("%d kill points; %d scans written; %d decisions shown before kills (+%d in the final run); %d distinct events delivered, %d stored-but-not-yet-shown at a kill; %d duplicate deliveries (same id)",
		kills, scanned.Load(), len(shown), len(final), len(bySeq), unshown-len(final), dups)
}

// Custody state survives kill -9: serials received just before the daemon
// is killed (inside the custody flush interval) are still "received" after
// the restart, so receiving them again is duplicate_serial. The state is
// rebuilt from the event buffer, which holds events until their custody
// change is checkpointed.
func TestCustodySurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	var list strings.Builder
	fmt.Fprintf(&list, "{\"gtin\":%q,\"lot\":\"LOT42\",\"status\":\"released\"}\n", demoGTIN)
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&list, "{\"gtin\":%q,\"serial\":\"K%02d\",\"lot\":\"LOT42\",\"state\":\"expected\"}\n", demoGTIN, i)
	}
	st, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(context.Background(), strings.NewReader(list.String()), allowlist.ImportOptions{Version: "k9"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	pty := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/door-9/events")
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(stationConfig(dir, pty.Path(), broker.URL(), "virtual")), 0o600)

	p := startProc(t, cfgPath)
	for i := 0; i < 20; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("K%02d", i))))
	}
	waitUntil(t, 20*time.Second, "20 decisions", func() bool { return len(p.decided()) >= 20 })
	p.kill9()

	startProc(t, cfgPath)
	for i := 0; i < 20; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("K%02d", i))))
	}
	evs := waitEvents(t, sub, 40, 30*time.Second)
	first, again := map[string]dock.Reason{}, map[string]dock.Reason{}
	for _, e := range evs {
		if _, ok := first[e.Serial]; !ok && e.Seq <= 20 {
			first[e.Serial] = e.Reason
		} else if e.Seq > 20 {
			again[e.Serial] = e.Reason
		}
	}
	for i := 0; i < 20; i++ {
		s := fmt.Sprintf("K%02d", i)
		if first[s] != dock.ReasonOK || again[s] != dock.ReasonDuplicateSerial {
			t.Fatalf("serial %s: first %q, after kill -9 and restart %q (want ok, then duplicate_serial)", s, first[s], again[s])
		}
	}
}
