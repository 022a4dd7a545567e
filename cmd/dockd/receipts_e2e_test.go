package main

// Receipt delivery end to end: the daemon wired as `dockd run` wires it, a
// real Mosquitto, bbolt files, and a tiny central (testkit.Central) that
// publishes receipts by hand.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

const (
	e2eStation  = "test-site-door-9"
	e2eEvents   = "dockd/v1/test-site/door-9/events"
	e2eReceipts = "dockd/v1/test-site/door-9/receipts"
)

// receiptYAML switches a test station's config to receipt delivery.
func receiptYAML(y, timeout, alarm string) string {
	return strings.Replace(y, "  ack_timeout: 2s\n",
		"  ack_timeout: 2s\n  heartbeat: 1s\n  delivery: receipt\n  receipt_timeout: "+timeout+"\n  receipt_alarm: "+alarm+"\n", 1)
}

func scanN(s *testStation, prefix string, n int) {
	for i := 0; i < n; i++ {
		s.write(gs1Scan("LOT42", fmt.Sprintf("%s%03d", prefix, i)))
	}
	s.waitDecisions(n, 20*time.Second)
}

// In receipt mode events the broker acknowledged stay in buffer.db (past
// the custody checkpoint and the ack ticks) until central's receipt; they
// are published again, byte for byte, after receipt_timeout; the status,
// the page and /metrics show them as unconfirmed.
func TestReceiptDeliveryKeepsEventsUntilReceipt(t *testing.T) {
	s := startStationWith(t, func(_, y string) string { return receiptYAML(y, "1s", "1h") })
	central := testkit.NewCentral(t, []string{s.broker.URL()}, e2eEvents, e2eReceipts, e2eStation)
	scanN(s, "R", 10)
	waitUntil(t, 10*time.Second, "10 events PUBACKed and unconfirmed", func() bool {
		st := s.d.up.Stats()
		return st.AckedSeq == 10 && st.Unconfirmed == 10
	})
	time.Sleep(2500 * time.Millisecond) // custody flush (500 ms) and ack ticks (1 s) have run
	if st := s.d.queue.Stats(); st.Depth != 10 || st.LastAckSeq != 0 {
		t.Fatalf("buffer %+v: want all 10 PUBACKed events kept until a receipt", st)
	}
	status := s.d.status("online")
	if status.Buffer.Unconfirmed == nil || *status.Buffer.Unconfirmed != 10 || *status.Buffer.UnconfirmedOldestAgeS < 2 {
		t.Fatalf("status buffer %+v: want 10 unconfirmed, oldest >= 2 s", status.Buffer)
	}
	b, _ := json.Marshal(status)
	if err := contracttest.Validate(contract.StatusSchemaFile, b); err != nil {
		t.Fatalf("status with unconfirmed does not match the schema: %v\n%s", err, b)
	}
	if snap := newStatusSource(s.d).Snapshot(); snap.Buffer.Unconfirmed == nil || *snap.Buffer.Unconfirmed != 10 {
		t.Fatalf("status page snapshot buffer %+v", snap.Buffer)
	}

	// Resent after receipt_timeout with identical bytes.
	first := map[uint64][]byte{}
	central.Subs[0].WaitFor(t, func(ms []testkit.Message) bool {
		counts := map[uint64]int{}
		for _, m := range ms {
			var ev dock.CustodyEvent
			if json.Unmarshal(m.Payload, &ev) != nil {
				t.Fatalf("payload %s", m.Payload)
			}
			if p, ok := first[ev.Seq]; ok && !bytes.Equal(p, m.Payload) {
				t.Fatalf("seq %d resent with other bytes:\n%s\n%s", ev.Seq, p, m.Payload)
			}
			first[ev.Seq] = m.Payload
			counts[ev.Seq]++
		}
		for seq := uint64(1); seq <= 10; seq++ {
			if counts[seq] < 2 {
				return false
			}
		}
		return true
	}, 15*time.Second)

	central.Receipt(t, 6)
	waitUntil(t, 10*time.Second, "buffer down to 4 after receipt 6", func() bool { return s.d.queue.Stats().Depth == 4 })
	central.Receipt(t, 10)
	waitUntil(t, 10*time.Second, "buffer empty after receipt 10", func() bool {
		return s.d.queue.Stats().Depth == 0 && s.d.up.Stats().Unconfirmed == 0
	})
	if !strings.Contains(s.logs.String(), "no receipt within receipt_timeout") {
		t.Error("resend not logged")
	}
}

// An ACL that denies the station's events topic: Mosquitto PUBACKs the
// 3.1.1 publish and drops it (and then the connection). In receipt mode nothing is lost: the
// events stay unconfirmed in the buffer, and after receipt_alarm the buffer
// alarm (amber background) and a log line say so.
func TestReceiptDeliveryACLDeniedRaisesAlarm(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	testkit.WriteMosquittoPasswd(t, pw, map[string]string{"station": "st-pw", "central": "ce-pw"})
	acl := filepath.Join(dir, "acl")
	os.WriteFile(acl, []byte("user central\ntopic read dockd/v1/+/+/events\ntopic write dockd/v1/+/+/receipts\n\n"+
		"user station\ntopic readwrite dockd/v1/test-site/door-9/status\ntopic read dockd/v1/test-site/door-9/receipts\n"+
		"topic read dockd/v1/test-site/door-9/cmd/#\n"), 0o600) // no write on …/events
	m := testkit.StartMosquitto(t, testkit.WithMosqAuth(pw, acl))
	stationPw := filepath.Join(dir, "station.pw")
	os.WriteFile(stationPw, []byte("st-pw\n"), 0o600)

	s := startStationWith(t, func(_, y string) string {
		y = regexp.MustCompile(`(?m)^  broker: .*$`).ReplaceAllString(y,
			fmt.Sprintf("  broker: %q\n  username: station\n  password_file: %s", m.URL(), stationPw))
		return receiptYAML(y, "1s", "3s")
	})
	if s.d.cfg.MQTT.Broker != m.URL() {
		t.Fatalf("station not pointed at the ACL broker: %s", s.d.cfg.MQTT.Broker)
	}
	scanN(s, "D", 5)
	// Mosquitto 2.0 PUBACKs a denied QoS 1 publish of a 3.1.1 client and
	// then drops the connection (uplink/security_test.go), so the station
	// sees a flapping connection; either way no receipt ever comes.
	waitUntil(t, 10*time.Second, "5 denied events sent and unconfirmed", func() bool { return s.d.up.Stats().Unconfirmed == 5 })
	waitUntil(t, 15*time.Second, "buffer alarm for stalled receipts", func() bool {
		return slices.Contains(s.d.light.State().Conditions, dock.ConditionBufferHigh)
	})
	if st := s.d.queue.Stats(); st.Depth != 5 {
		t.Fatalf("buffer depth %d, want the 5 denied events kept", st.Depth)
	}
	if !s.d.status("online").Buffer.Alarm {
		t.Error("status does not show the alarm")
	}
	logs := s.logs.String()
	if strings.Count(logs, "receipts stalled") != 1 || !strings.Contains(logs, "buffer alarm") {
		t.Errorf("want one 'receipts stalled' line and a buffer alarm line in the log")
	}
	if st := s.d.up.Stats(); st.Resent == 0 {
		t.Errorf("uplink %+v: the denied events were never published again", st)
	}
}

// kill -9 and restart in receipt mode: every event the broker acknowledged
// but central did not receipt is published again by the restarted daemon,
// with the same bytes; after the receipt the buffer file is empty.
func TestReceiptDeliveryResendAfterKill9(t *testing.T) {
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{broker.URL()}, e2eEvents, e2eReceipts, e2eStation)
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(receiptYAML(stationConfig(dir, pty.Path(), broker.URL(), "virtual"), "1h", "2h")), 0o600)

	status := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/door-9/status")
	// bufferDepth waits for a heartbeat status (every 1 s) made after
	// now that shows depth.
	bufferDepth := func(depth int) {
		t.Helper()
		since := time.Now()
		status.WaitFor(t, func(ms []testkit.Message) bool {
			var st Status
			return len(ms) > 0 && json.Unmarshal(ms[len(ms)-1].Payload, &st) == nil && st.State == "online" &&
				st.Time.After(since) && st.Buffer.Depth == depth
		}, 20*time.Second)
	}
	p := startProc(t, cfgPath)
	for i := 0; i < 10; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("K%02d", i))))
	}
	central.Subs[0].WaitCount(t, 10, 20*time.Second)
	central.Receipt(t, 4)
	bufferDepth(6) // the receipt applied (past the custody checkpoint)
	// The delivered mark is written with the next append (or AckDelay
	// later): one more scan makes it durable. Without it a kill -9 resends
	// 1..4 as well (duplicates, which the contract allows).
	pty.Write([]byte(gs1Scan("LOT42", "K10")))
	central.Subs[0].WaitCount(t, 11, 20*time.Second)
	p.kill9()
	before := central.Subs[0].Messages()

	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Depth != 7 || st.OldestSeq != 5 {
		t.Fatalf("buffer after kill -9: %+v, want the 7 unreceipted events 5..11", st)
	}
	q.Close()

	p2 := startProc(t, cfgPath)
	after := central.Subs[0].WaitCount(t, len(before)+7, 20*time.Second)[len(before):]
	for i, m := range after {
		if !bytes.Equal(m.Payload, before[4+i].Payload) {
			t.Fatalf("resend %d after restart differs:\n%s\n%s", i, m.Payload, before[4+i].Payload)
		}
	}
	central.Receipt(t, 11)
	bufferDepth(0)
	p2.cmd.Process.Signal(syscall.SIGTERM)
	<-p2.done
	q, err = buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st := q.Stats(); st.Depth != 0 || st.LastAckSeq != 11 {
		t.Fatalf("buffer after the receipt and a clean stop: %+v, want empty, acked to 11", st)
	}
}

// The gap record the daemon builds is what the contract says.
func TestGapRecordMatchesContract(t *testing.T) {
	d := &daemon{cfg: config.Config{Station: config.Station{Site: "hamburg", Door: "door-9", ID: "hamburg-door-9"}}}
	b, err := d.gapRecord(45, 43, 44, "buffer commit failed: "+strings.Repeat("x", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if err := contracttest.Validate(contract.SeqGapSchemaFile, b); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	var g seqGap
	json.Unmarshal(b, &g)
	if g.Seq != 45 || g.From != 43 || g.To != 44 || g.Kind != "gap" || g.Schema != contract.SeqGapSchema {
		t.Fatalf("%s", b)
	}
}

// answerReceiptProbes is the part of central that answers dockd doctor's
// receipt probes (CONTRACT.md, Receipts): a receipt with upto for the
// probe's station on that station's receipts topic.
func answerReceiptProbes(t *testing.T, broker string, upto uint64) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("central-probe-answerer").SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("dockd/v1/+/+/receipt-probe", 1, func(cl mqtt.Client, m mqtt.Message) {
		if contracttest.Validate(contract.ReceiptProbeSchemaFile, m.Payload()) != nil {
			return
		}
		var p struct{ Station string }
		json.Unmarshal(m.Payload(), &p)
		topic := strings.TrimSuffix(m.Topic(), "/"+contract.LevelReceiptProbe) + "/" + contract.LevelReceipts
		cl.Publish(topic, 1, false, testkit.ReceiptPayload(p.Station, upto))
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
}

// dockd doctor with receipt delivery checks the receipt round trip: it
// fails (with a fix naming the collector) while nobody answers the probe,
// and passes once central does.
func TestDoctorReceiptRoundTrip(t *testing.T) {
	dir := t.TempDir()
	scanner := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	importSample(t, dir)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(receiptYAML(stationConfig(dir, scanner.Path(), broker.URL(), "virtual"), "30s", "5m")), 0o600)

	rep, code := doctorJSON(t, []string{"--config", path, "--timeout", "2s"}, nil)
	if code != 1 {
		t.Fatalf("exit %d without a collector, want 1", code)
	}
	wantRow(t, rep, "broker round trip", levelPass, "", "")
	wantRow(t, rep, "receipts", levelFail, "no receipt for test-site-door-9", "dockd collect")

	answerReceiptProbes(t, broker.URL(), 0)
	rep, _ = doctorJSON(t, []string{"--config", path, "--timeout", "2s"}, nil)
	wantRow(t, rep, "receipts", levelPass, "from collector testkit-central (confirmed up to seq 0)", "")
}

// mqtt.brokers: the daemon fails over to the second broker when the one in
// use is killed with -9 mid-stream; with receipt delivery every event
// reaches central (nothing the dead broker had acknowledged is lost) and
// the buffer empties.
func TestBrokersFailoverDaemon(t *testing.T) {
	b2 := testkit.StartMosquitto(t)
	s := startStationWith(t, func(_, y string) string {
		y = regexp.MustCompile(`(?m)^  broker: (.*)$`).ReplaceAllString(y, fmt.Sprintf("  brokers: [$1, %q]", b2.URL()))
		return receiptYAML(y, "2s", "1h")
	})
	if len(s.d.cfg.MQTT.Brokers) != 2 {
		t.Fatalf("brokers %v", s.d.cfg.MQTT.Brokers)
	}
	central := testkit.NewCentral(t, []string{s.broker.URL(), b2.URL()}, e2eEvents, e2eReceipts, e2eStation)
	central.AutoReceipt(t, 200*time.Millisecond)
	waitUntil(t, 10*time.Second, "connected to the first broker", func() bool { return s.d.up.Stats().Broker == s.broker.URL() && s.d.up.Connected() })
	for i := 0; i < 40; i++ {
		s.write(gs1Scan("LOT42", fmt.Sprintf("B%03d", i)))
		if i == 20 {
			s.broker.Kill()
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.waitDecisions(40, 20*time.Second)
	waitUntil(t, 30*time.Second, "every event at central", func() bool { return central.Prefix(t) >= 40 })
	waitUntil(t, 15*time.Second, "buffer empty after receipts", func() bool { return s.d.queue.Stats().Depth == 0 })
	if st := s.d.up.Stats(); st.Broker != b2.URL() {
		t.Errorf("after the kill connected to %q, want the second broker %s", st.Broker, b2.URL())
	}
}

// The byte budget counts unconfirmed events: with the broker up and
// acknowledging everything but no receipt, the buffer fills and scans are
// refused with buffer_full; a receipt frees it.
func TestReceiptDeliveryBudgetCountsUnconfirmed(t *testing.T) {
	s := startStationWith(t, func(_, y string) string {
		return receiptYAML(y, "1h", "2h") + "buffer:\n  max_bytes: 1MiB\n"
	})
	central := testkit.NewCentral(t, []string{s.broker.URL()}, e2eEvents, e2eReceipts, e2eStation)
	waitUntil(t, 10*time.Second, "connected", s.d.up.Connected)
	stored := 0
	var refused *dock.CustodyEvent
	for i := 0; i < 4000 && refused == nil; i += 50 {
		for j := i; j < i+50; j++ {
			s.write(gs1Scan("LOT42", fmt.Sprintf("U%05d", j)))
		}
		evs := s.waitDecisions(i+50, 20*time.Second)
		for k := i; k < len(evs); k++ {
			if evs[k].Reason == dock.ReasonBufferFull {
				refused = &evs[k]
				break
			}
			stored++
		}
	}
	if refused == nil {
		t.Fatal("4000 scans into a 1 MiB buffer without receipts and none was refused")
	}
	if !s.d.up.Connected() || s.d.up.Stats().AckedSeq == 0 {
		t.Fatalf("the broker was not up and acknowledging: %+v", s.d.up.Stats())
	}
	if st := s.d.queue.Stats(); st.Depth != stored || !st.Full {
		t.Fatalf("buffer %+v, want full with all %d stored events", st, stored)
	}
	newest := s.d.queue.Stats().NewestSeq
	waitUntil(t, 20*time.Second, "every stored event at central", func() bool { return central.Prefix(t) >= newest })
	central.Receipt(t, newest)
	waitUntil(t, 10*time.Second, "buffer emptied by the receipt", func() bool { return s.d.queue.Stats().Depth == 0 })
	n := len(s.waitDecisions(0, time.Second))
	s.write(gs1Scan("LOT42", "AFTER"))
	if ev := s.waitDecisions(n+1, 10*time.Second)[n]; ev.Reason != dock.ReasonOK {
		t.Fatalf("scan after the receipt: %s", ev.Reason)
	}
	t.Logf("%d events stored before buffer_full with the broker up", stored)
}

// dockd doctor probes every broker of mqtt.brokers: a standby that is down
// is a warning (the station runs on the first).
func TestDoctorFailoverBrokers(t *testing.T) {
	dir := t.TempDir()
	scanner := testkit.NewPTY(t)
	a, b, c := testkit.StartMosquitto(t), testkit.StartMosquitto(t), testkit.StartMosquitto(t)
	c.Stop()
	importSample(t, dir)
	path := filepath.Join(dir, "dockd.yaml")
	y := regexp.MustCompile(`(?m)^  broker: .*$`).ReplaceAllString(stationConfig(dir, scanner.Path(), a.URL(), "virtual"),
		fmt.Sprintf("  brokers: [%q, %q, %q]", a.URL(), b.URL(), c.URL()))
	os.WriteFile(path, []byte(y), 0o600)
	rep, _ := doctorJSON(t, []string{"--config", path, "--timeout", "2s"}, nil)
	wantRow(t, rep, "broker round trip", levelPass, "", "")
	wantRow(t, rep, "failover broker 2", levelPass, b.URL(), "")
	wantRow(t, rep, "failover broker 3", levelWarn, "refused", "remove it from mqtt.brokers")
}
