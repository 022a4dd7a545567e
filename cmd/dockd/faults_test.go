package main

import (
	"fmt"
	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/testkit"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// When the buffer's byte budget is spent (broker away for long), new scans
// are refused with buffer_full and the light shows amber+red; no stored
// event is dropped; once the broker is back and the backlog drains, scans
// are accepted again.
func TestBufferFullRefusesScans(t *testing.T) {
	s := startStationWith(t, func(_, y string) string {
		return y + "buffer:\n  max_bytes: 1MiB\n  alarm_fraction: 0.5\n"
	})
	s.broker.Stop()
	waitUntil(t, 10*time.Second, "uplink offline", func() bool { return !s.d.up.Connected() })
	var refused *dock.CustodyEvent
	stored := 0
	for i := 0; i < 4000 && refused == nil; i += 50 {
		t0 := time.Now()
		for j := i; j < i+50; j++ {
			s.write(gs1Scan("LOT42", fmt.Sprintf("F%05d", j)))
		}
		evs := s.waitDecisions(i+50, 20*time.Second)
		for k := i; k < len(evs); k++ {
			if evs[k].Reason == dock.ReasonBufferFull {
				refused = &evs[k]
				waitUntil(t, 3*time.Second, "amber and red for a full buffer", func() bool {
					return wentHigh(s.pins["GPIO27"], t0) && wentHigh(s.pins["GPIO22"], t0)
				})
				break
			}
			stored++
		}
	}
	if refused == nil {
		t.Fatal("4000 scans into a 1 MiB buffer and none was refused")
	}
	if refused.Verdict != dock.Reject || refused.Seq != 0 || !strings.Contains(refused.Detail, "not recorded") {
		t.Fatalf("refused scan: %+v", refused)
	}
	st := s.d.queue.Stats()
	if !st.Full || st.Depth != stored {
		t.Fatalf("buffer stats %+v, want full with %d events", st, stored)
	}
	if !strings.Contains(s.logs.String(), "scan refused") {
		t.Fatal("the refusal was not logged")
	}

	s.broker.Start()
	evs := waitEvents(t, s.sub, stored, 60*time.Second)
	if len(evs) < stored {
		t.Fatalf("delivered %d of %d stored events", len(evs), stored)
	}
	waitUntil(t, 10*time.Second, "the backlog acknowledged", func() bool { return s.d.queue.Stats().Depth == 0 })
	before := len(s.waitDecisions(0, time.Second))
	s.write(gs1Scan("LOT42", "after-full"))
	evs2 := s.waitDecisions(before+1, 10*time.Second)
	if last := evs2[len(evs2)-1]; last.Verdict != dock.Accept || last.Seq == 0 {
		t.Fatalf("after the backlog drained: %+v", last)
	}
}

// A broker that accepts the connection but never acknowledges (SIGSTOP):
// scans go on being decided and stored, publishes in flight stay within the
// window, and delivery resumes when the broker does.
func TestStalledBroker(t *testing.T) {
	s := startStation(t)
	s.write(gs1Scan("LOT42", "warm"))
	waitEvents(t, s.sub, 1, 10*time.Second)
	s.broker.Pause()
	for i := 0; i < 200; i++ {
		s.write(gs1Scan("LOT42", fmt.Sprintf("P%03d", i)))
	}
	decided := s.waitDecisions(201, 20*time.Second)
	for i := 0; i < 20; i++ { // watch the window while stalled
		if n := s.d.up.Stats().InFlight; n > 16 {
			t.Fatalf("%d publishes in flight, window is 16", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := s.d.queue.Stats().Depth; d < 200-16 {
		t.Fatalf("buffer depth %d while the broker is stalled: events left the queue without an ack", d)
	}
	s.broker.Resume()
	var want []uint64
	for _, e := range decided {
		want = append(want, e.Seq)
	}
	got := waitEvents(t, s.sub, 201, 60*time.Second)
	checkDelivery(t, want, got)
}

// A corrupted buffer file at start: the daemon names the file, moves it
// aside (never silently replaces it), raises a storage alarm on the light,
// and records new scans in a fresh file.
func TestCorruptBufferAtStart(t *testing.T) {
	s := startStationWith(t, func(dir, y string) string {
		junk := []byte(strings.Repeat("this is not a bbolt file ", 1000))
		if err := os.WriteFile(filepath.Join(dir, "buffer.db"), junk, 0o600); err != nil {
			t.Fatal(err)
		}
		return y
	})
	aside, _ := filepath.Glob(filepath.Join(s.dir, "buffer.db.corrupt*"))
	if len(aside) != 1 {
		t.Fatalf("damaged file not moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(b), "this is not a bbolt file") {
		t.Fatal("the moved-aside file does not hold the original bytes")
	}
	if !strings.Contains(s.logs.String(), "event buffer was damaged") || !strings.Contains(s.logs.String(), aside[0]) {
		t.Fatalf("the log does not name the damaged file:\n%s", s.logs.String())
	}
	if got := s.d.light.State(); !strings.Contains(fmt.Sprint(got), string(dock.ConditionStorageFault)) {
		t.Fatalf("light does not show the storage fault: %+v", got)
	}
	s.write(gs1Scan("LOT42", "after-corrupt"))
	evs := waitEvents(t, s.sub, 1, 10*time.Second)
	if evs[0].Verdict != dock.Accept || evs[0].Serial != "after-corrupt" {
		t.Fatalf("scan after recovery: %+v", evs[0])
	}
}

// A station that cannot start (here: its status page port is taken) says
// why and releases everything it had opened: the state files can be opened
// again at once, by the next start or a technician's tool.
func TestStartFailureReleasesState(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	y := strings.Replace(stationConfig(dir, pty.Path(), "", "virtual"), "status:\n  addr: 127.0.0.1:0\n", "status:\n  addr: "+taken.Addr().String()+"\n", 1)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(y), 0o600)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openDaemon(cfg, slog.New(slog.DiscardHandler), daemonOptions{})
	if err == nil || !strings.Contains(err.Error(), "status page: listening on "+taken.Addr().String()) {
		t.Fatalf("start with a taken status port: %v", err)
	}
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatalf("buffer still held after a failed start: %v", err)
	}
	q.Close()
	l, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		t.Fatalf("allowlist still held after a failed start: %v", err)
	}
	l.Close()
}
