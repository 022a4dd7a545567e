package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

// A GS1-128 barcode written into the pty reaches the subscriber with its
// GTIN, lot, serial and decision, and the green lamp went on; an unknown lot
// is rejected with red and the buzzer.
func TestScanReachesCentralAndLight(t *testing.T) {
	s := startStation(t)
	t0 := time.Now()
	s.write(gs1Scan("LOT42", "S1"))
	evs := waitEvents(t, s.sub, 1, 10*time.Second)
	ev := evs[0]
	if ev.GTIN != demoGTIN || ev.Lot != "LOT42" || ev.Serial != "S1" || ev.Verdict != dock.Accept || ev.Reason != dock.ReasonOK {
		t.Fatalf("event %+v", ev)
	}
	if ev.Site != "test-site" || ev.Door != "door-9" || ev.Direction != dock.Receiving || ev.Reader != "scanner-1" || ev.Seq == 0 || ev.ID == "" || ev.Symbology != "GS1-128" {
		t.Fatalf("event lacks station facts: %+v", ev)
	}
	if ev.Raw != strings.TrimSuffix(gs1Scan("LOT42", "S1"), "\r") {
		t.Fatalf("raw %q", ev.Raw)
	}
	// The light goroutine and the uplink both act after the durable append,
	// concurrently: the event may reach central before the lamp switches.
	waitUntil(t, 2*time.Second, "green lamp on for an accepted scan", func() bool { return wentHigh(s.pins["GPIO17"], t0) })
	if wentHigh(s.pins["GPIO22"], t0) {
		t.Fatal("red lamp went on for an accepted scan")
	}

	t1 := time.Now()
	s.write(gs1Scan("LOT99", "S2"))
	evs = waitEvents(t, s.sub, 2, 10*time.Second)
	ev = evs[len(evs)-1]
	if ev.Lot != "LOT99" || ev.Verdict != dock.Reject || ev.Reason != dock.ReasonUnknownLot {
		t.Fatalf("unknown lot event %+v", ev)
	}
	waitUntil(t, 2*time.Second, "red lamp and buzzer", func() bool {
		return wentHigh(s.pins["GPIO22"], t1) && wentHigh(s.pins["GPIO23"], t1)
	})

	// Recalled lot: reject with the recall named.
	s.write(gs1Scan("LOT43", "S3"))
	evs = waitEvents(t, s.sub, 3, 10*time.Second)
	if ev := evs[len(evs)-1]; ev.Reason != dock.ReasonLotRecalled || !strings.Contains(ev.Detail, "RC-2026-118") {
		t.Fatalf("recalled lot event %+v", ev)
	}
	// A label with a count (AI 30): the event carries it as qty.
	s.write("]C101" + demoGTIN + "3012" + gs + "10LOT42" + gs + "21S4\r")
	evs = waitEvents(t, s.sub, 4, 10*time.Second)
	if ev := evs[len(evs)-1]; ev.Serial != "S4" || ev.Qty != 12 || ev.Verdict != dock.Accept {
		t.Fatalf("count label: serial %q qty %d %s", ev.Serial, ev.Qty, ev.Verdict)
	}
	// The retained status says the station is online with its reader up.
	s.sub.WaitFor(t, func(ms []testkit.Message) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/status") && bytes.Contains(m.Payload, []byte(`"state":"online"`)) {
				return true
			}
		}
		return false
	}, 5*time.Second)
}

// The broker is killed (-9) while 100 scans arrive: each is still decided
// and lit at once; when the broker is back all 100 arrive, in order, none
// missing.
func TestBrokerKilledWhileScanning(t *testing.T) {
	s := startStation(t)
	s.write(gs1Scan("LOT42", "warmup"))
	waitEvents(t, s.sub, 1, 10*time.Second)

	// The harness broker autosaves its session store every second: wait for
	// a save that includes the test subscriber's session, so the subscriber
	// does not lose what is published before it resubscribes (the daemon's
	// own delivery does not depend on this).
	waitBrokerSaved(t, s.brokerDir, time.Now())
	s.broker.Kill()
	waitUntil(t, 10*time.Second, "uplink to notice the broker is gone", func() bool { return !s.d.up.Connected() })
	s.pins["GPIO17"].WaitLevel(t, gpio.Low, 5*time.Second) // the warm-up's green hold is over
	t0 := time.Now()
	for i := 0; i < 100; i++ {
		s.write(gs1Scan("LOT42", fmt.Sprintf("N%03d", i)))
	}
	decided := s.waitDecisions(101, 20*time.Second)
	if n := s.d.queue.Stats().Depth; n != 100 {
		t.Fatalf("buffer holds %d events while the broker is down, want 100", n)
	}
	waitUntil(t, 2*time.Second, "green lit while the broker was down", func() bool { return wentHigh(s.pins["GPIO17"], t0) })
	var want []uint64
	for _, ev := range decided {
		want = append(want, ev.Seq)
	}
	s.broker.Start()
	got := waitEvents(t, s.sub, 101, 30*time.Second)
	dups := checkDelivery(t, want, got)
	t.Logf("101 events delivered, %d duplicate deliveries", dups)
	waitUntil(t, 5*time.Second, "buffer emptied by acks", func() bool { return s.d.queue.Stats().Depth == 0 })
}

// The reader is unplugged (pty gone) and plugged back under the same name:
// amber while it is down, scans flow again after.
func TestReaderUnplugAndReplug(t *testing.T) {
	s := startStation(t)
	t0 := time.Now()
	s.pty.Unplug()
	waitUntil(t, 5*time.Second, "reader reported down", func() bool {
		for _, r := range s.d.station.Readers() {
			if !r.Up {
				return true
			}
		}
		return false
	})
	waitUntil(t, 3*time.Second, "amber lamp while the reader is down", func() bool { return wentHigh(s.pins["GPIO27"], t0) })
	s.pty.Plug()
	s.waitReaderUp()
	s.write(gs1Scan("LOT42", "after-replug"))
	evs := waitEvents(t, s.sub, 1, 10*time.Second)
	if evs[0].Serial != "after-replug" || evs[0].Verdict != dock.Accept {
		t.Fatalf("after replug: %+v", evs[0])
	}
}

// Garbage on the line: random bytes and a 1 MiB line without terminator
// become bad-scan events; the daemon keeps running and decides the next scan.
func TestGarbageOnTheLine(t *testing.T) {
	s := startStation(t)
	junk := make([]byte, 300)
	rand.Read(junk)
	junk = bytes.ReplaceAll(junk, []byte{'\r'}, []byte{'x'})
	s.write(string(junk) + "\r")
	s.write(strings.Repeat("A", 1<<20))
	s.write("\r")
	s.write(gs1Scan("LOT42", "after-garbage"))
	evs := waitEvents(t, s.sub, 3, 20*time.Second)
	if evs[0].Verdict != dock.Reject || evs[0].Reason != dock.ReasonBadScan {
		t.Fatalf("random bytes: %+v", evs[0])
	}
	if evs[1].Reason != dock.ReasonBadScan || evs[1].ErrorKind != "too_long" || len(evs[1].Raw) > 4096 {
		t.Fatalf("1 MiB line: reason %s kind %s raw %d bytes", evs[1].Reason, evs[1].ErrorKind, len(evs[1].Raw))
	}
	if evs[2].Serial != "after-garbage" || evs[2].Verdict != dock.Accept {
		t.Fatalf("scan after garbage: %+v", evs[2])
	}
}

// dockd killed with SIGKILL after scans were accepted but before the broker
// came back: after a restart every accepted event is delivered.
func TestKill9BeforeDelivery(t *testing.T) {
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	broker := persistentBroker(t)
	sub := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/door-9/events")
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(stationConfig(dir, pty.Path(), broker.URL(), "virtual")), 0o600)

	broker.Stop()
	p := startProc(t, cfgPath)
	for i := 0; i < 20; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("K%02d", i))))
	}
	waitUntil(t, 20*time.Second, "20 decisions logged", func() bool { return len(p.decided()) >= 20 })
	accepted := p.decided()
	p.kill9()

	broker.Start()
	startProc(t, cfgPath)
	got := waitEvents(t, sub, len(accepted), 30*time.Second)
	checkDelivery(t, accepted, got)
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(stationConfig(dir, "/dev/ttyUSB0", "tcp://127.0.0.1:1883", "gpio")), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", good}, nil, &out, &out); err != nil {
		t.Fatalf("good config rejected: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(stationConfig(dir, "/dev/ttyUSB0", "", "gpio"), "baud: 115200", "baud: 115201", 1)), 0o600)
	err := run(context.Background(), []string{"check-config", bad}, nil, &out, &out)
	var ee *exitError
	if err == nil || !asExit(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), bad+":9: readers[0].baud: 115201 is not a standard baud rate") {
		t.Fatalf("bad config: %v", err)
	}
}

func asExit(err error, target **exitError) bool {
	e, ok := err.(*exitError)
	if ok {
		*target = e
	}
	return ok
}

// The demo (make run): scans typed on stdin are decided, lit (virtual) and
// printed as central receives them from the embedded broker.
func TestDemoStation(t *testing.T) {
	in := strings.NewReader("(01)09506000134352(10)LOT42(21)S1\n(01)09506000134352(10)LOT43(21)S2\n")
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{"demo"}, in, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s", err, errb.String())
	}
	o := out.String()
	for _, want := range []string{"status page: http://127.0.0.1:", "GREEN  ACCEPT (ok)", "RED  REJECT (lot_recalled)", "central received event", `"lot": "LOT42"`, `"reason": "lot_recalled"`} {
		if !strings.Contains(o, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, o)
		}
	}
}

// The retained status is republished every mqtt.heartbeat, with a growing
// uptime, so central can tell a live station from a stale retained one.
func TestStatusHeartbeat(t *testing.T) {
	s := startStationWith(t, func(_, y string) string {
		return strings.Replace(y, "  ack_timeout: 2s\n", "  ack_timeout: 2s\n  heartbeat: 1s\n", 1)
	})
	var uptimes []int64
	s.sub.WaitFor(t, func(ms []testkit.Message) bool {
		uptimes = uptimes[:0]
		for _, m := range ms {
			var st Status
			if strings.HasSuffix(m.Topic, "/status") && json.Unmarshal(m.Payload, &st) == nil && st.State == "online" {
				uptimes = append(uptimes, st.UptimeS)
			}
		}
		return len(uptimes) >= 4
	}, 10*time.Second)
	if uptimes[len(uptimes)-1] <= uptimes[0] {
		t.Fatalf("uptime does not grow across heartbeats: %v", uptimes)
	}
}
