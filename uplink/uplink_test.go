package uplink

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/testkit"
)

func TestNewValidates(t *testing.T) {
	good := Config{Broker: "tcp://127.0.0.1:1", ClientID: "c", EventsTopic: "e"}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"mqtts no port", func(c *Config) { c.Broker = "mqtts://broker.example" }, true},
		{"no client id", func(c *Config) { c.ClientID = "" }, false},
		{"no events topic", func(c *Config) { c.EventsTopic = "" }, false},
		{"bad scheme", func(c *Config) { c.Broker = "ws://127.0.0.1:1" }, false},
		{"no host", func(c *Config) { c.Broker = "tcp://" }, false},
		{"inflight too big", func(c *Config) { c.InFlight = 70000 }, false},
		{"negative inflight", func(c *Config) { c.InFlight = -1 }, false},
		{"sub-second keepalive", func(c *Config) { c.KeepAlive = 500 * time.Millisecond }, false},
		{"max below min backoff", func(c *Config) { c.MinBackoff = time.Second; c.MaxBackoff = time.Millisecond }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			c, err := New(cfg, newMemOutbox(), nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.cfg.InFlight != DefaultInFlight && cfg.InFlight == 0 {
					t.Errorf("InFlight default %d, want %d", c.cfg.InFlight, DefaultInFlight)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: err %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(good, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with nil outbox: %v, want ErrInvalidConfig", err)
	}
}

// fakeToken is a paho token completed by the test.
type fakeToken struct {
	done chan struct{}
	err  error
}

func newFakeToken() *fakeToken          { return &fakeToken{done: make(chan struct{})} }
func (f *fakeToken) complete(err error) { f.err = err; close(f.done) }
func (f *fakeToken) Wait() bool         { <-f.done; return true }
func (f *fakeToken) WaitTimeout(d time.Duration) bool {
	select {
	case <-f.done:
		return true
	case <-time.After(d):
		return false
	}
}
func (f *fakeToken) Done() <-chan struct{} { return f.done }
func (f *fakeToken) Error() error          { return f.err }

// fakeConn reports a connection state; other mqtt.Client methods are unused.
type fakeConn struct {
	mqtt.Client
	open bool
}

func (f fakeConn) IsConnectionOpen() bool { return f.open }

func TestTakeAcksStopsAtGap(t *testing.T) {
	tests := []struct {
		name     string
		complete []int  // indexes of tokens completed without error
		failed   int    // index completed with an error, -1 for none
		open     bool   // connection still up
		wantSeq  uint64 // ackedSeq afterwards
		wantLeft int    // records still in flight
		wantErr  bool
	}{
		{"none done", nil, -1, true, 0, 4, false},
		{"prefix", []int{0, 1}, -1, true, 11, 2, false},
		{"gap at head", []int{1, 2, 3}, -1, true, 0, 4, false},
		{"gap in middle", []int{0, 2, 3}, -1, true, 10, 3, false},
		{"all", []int{0, 1, 2, 3}, -1, true, 13, 0, false},
		{"error after prefix", []int{0}, 1, true, 10, 3, true},
		{"connection down", []int{0, 1}, -1, false, 0, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{}
			lost := &lostSignal{ch: make(chan struct{})}
			toks := make([]*fakeToken, 4)
			q := make([]pub, 4)
			for i := range toks {
				toks[i] = newFakeToken()
				q[i] = pub{seq: uint64(10 + i), tok: toks[i], sent: time.Now()}
			}
			for _, i := range tc.complete {
				toks[i].complete(nil)
			}
			if tc.failed >= 0 {
				toks[tc.failed].complete(errors.New("connection lost before Publish completed"))
			}
			left, err := c.takeAcks(fakeConn{open: tc.open}, q, lost)
			if (err != nil) != tc.wantErr {
				t.Fatalf("takeAcks err %v, want error %v", err, tc.wantErr)
			}
			if c.ackedSeq != tc.wantSeq {
				t.Errorf("ackedSeq %d, want %d", c.ackedSeq, tc.wantSeq)
			}
			if len(left) != tc.wantLeft {
				t.Errorf("%d left in flight, want %d", len(left), tc.wantLeft)
			}
		})
	}
}

func TestDeliversInOrder(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), eventsTopic)
	out := newMemOutbox()
	out.Append(50) // queued before the first connection
	baseline := runtime.NumGoroutine()

	c, err := New(testConfig(t, m.URL()), out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w := newConnWatch(c)
	stop := startClient(t, c)
	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
	for i := 0; i < 5; i++ { // and appended while connected, in bursts
		out.Append(10)
	}

	msgs := sub.WaitCount(t, 100, 10*time.Second)
	checkOutboxDrained(t, out, 100)
	time.Sleep(100 * time.Millisecond) // let a stray duplicate show up if there were one
	msgs = sub.Messages()
	seqs := seqsOf(t, msgs)
	if len(seqs) != 100 {
		t.Errorf("%d messages delivered over one connection, want exactly 100", len(seqs))
	}
	checkDelivery(t, seqs, 100, 1)
	for _, msg := range msgs {
		if msg.Retained {
			t.Errorf("event %s published retained", msg.Payload)
		}
	}
	st := c.Stats()
	if st.Acked != 100 || st.AckedSeq != 100 || st.OutboxSeq != 100 || st.InFlight != 0 || !st.Connected || st.Connects != 1 {
		t.Errorf("stats %+v, want 100 acked through seq 100, nothing in flight, 1 connection", st)
	}
	if st.Published != 100 || st.Resent != 0 {
		t.Errorf("published %d (resent %d), want 100 (0)", st.Published, st.Resent)
	}
	if st.PublishLatencyAvg <= 0 || st.LastAck.IsZero() {
		t.Errorf("latency/last-ack not recorded: %+v", st)
	}

	stop()
	eventually(t, 5*time.Second, "goroutines back to the level before Run", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// appender appends burst records every period until stopped, returning the
// last Seq appended.
func appender(out *memOutbox, burst int, period time.Duration) (stop func() uint64) {
	done := make(chan struct{})
	var last atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				last.Store(out.Append(burst))
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return last.Load()
	}
}

func TestBrokerKillAndRestart(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), eventsTopic)
	out := newMemOutbox()
	c, err := New(testConfig(t, m.URL()), out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w := newConnWatch(c)
	startClient(t, c)
	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })

	stopAppend := appender(out, 4, 2*time.Millisecond)
	sub.WaitCount(t, 40, 10*time.Second)
	m.Kill() // records are in flight and still being appended
	// The restarted broker has forgotten the subscriber's session: hold the
	// outbox until the subscriber is back, so nothing is published into a
	// broker with no subscription (that would be the broker's loss, not ours).
	out.Hold(true)
	w.wait(t, "connection loss noticed", 10*time.Second, func(_, d int) bool { return d >= 1 })
	time.Sleep(200 * time.Millisecond) // a few failed reconnects, more appends
	m.Start()
	sub.WaitSubscriptions(t, 2, 10*time.Second)
	w.wait(t, "reconnected", 10*time.Second, func(u, _ int) bool { return u >= 2 })
	out.Hold(false)
	time.Sleep(50 * time.Millisecond)
	last := stopAppend()

	msgs := sub.WaitFor(t, allArrived(t, last), 20*time.Second)
	checkOutboxDrained(t, out, last)
	st := c.Stats()
	checkDelivery(t, seqsOf(t, msgs), last, int(st.Connects))
	if st.Connects < 2 {
		t.Errorf("Connects %d, want >= 2", st.Connects)
	}
	t.Logf("delivered %d records in %d messages over %d connections (%d resent)", last, len(msgs), st.Connects, st.Resent)
}

func TestStalledBrokerIsDroppedAndResumed(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), eventsTopic)
	out := newMemOutbox()
	cfg := testConfig(t, m.URL())
	c, err := New(cfg, out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w := newConnWatch(c)
	startClient(t, c)
	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })

	stopAppend := appender(out, 1, 2*time.Millisecond)
	sub.WaitCount(t, 30, 10*time.Second)
	m.Pause()
	pausedAt := time.Now()
	before := c.Stats()
	goroutines := runtime.NumGoroutine()
	// Stay stalled through detection and several connect attempts, sampling
	// the in-flight count all along: it must stay bounded.
	var detect time.Duration
	maxInFlight := 0
	for time.Since(pausedAt) < 3500*time.Millisecond {
		maxInFlight = max(maxInFlight, c.Stats().InFlight)
		if _, d := w.counts(); d >= 1 && detect == 0 {
			detect = time.Since(pausedAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if detect == 0 {
		t.Fatalf("stalled broker not detected within 3.5s (AckTimeout %v, KeepAlive %v)", cfg.AckTimeout, cfg.KeepAlive)
	}
	during := c.Stats()
	if maxInFlight > cfg.InFlight {
		t.Errorf("in flight reached %d, limit %d", maxInFlight, cfg.InFlight)
	}
	if n := during.Published - before.Published; n > uint64(cfg.InFlight) {
		t.Errorf("%d publishes while the broker was stalled, want <= InFlight %d", n, cfg.InFlight)
	}
	if during.Acked-before.Acked > uint64(cfg.InFlight) { // only PUBACKs already on the wire
		t.Errorf("acked %d records while stalled", during.Acked-before.Acked)
	}
	if g := runtime.NumGoroutine(); g > goroutines+30 {
		t.Errorf("goroutines grew from %d to %d while stalled", goroutines, g)
	}
	if c.Connected() {
		t.Errorf("Connected() true while the broker is stalled")
	}

	m.Resume()
	w.wait(t, "reconnected after resume", 15*time.Second, func(u, _ int) bool { return u >= 2 })
	time.Sleep(50 * time.Millisecond)
	last := stopAppend()
	msgs := sub.WaitFor(t, allArrived(t, last), 20*time.Second)
	checkOutboxDrained(t, out, last)
	st := c.Stats()
	checkDelivery(t, seqsOf(t, msgs), last, int(st.Connects))
	t.Logf("stall detected after %v; max in flight %d; %d records over %d connections (%d resent)",
		detect.Round(time.Millisecond), maxInFlight, last, st.Connects, st.Resent)
}

func TestResumesFromOutboxAfterProcessRestart(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), eventsTopic)
	out := newMemOutbox()
	out.Append(30)

	c1, err := New(testConfig(t, m.URL()), out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop1 := startClient(t, c1)
	sub.WaitCount(t, 30, 10*time.Second)
	checkOutboxDrained(t, out, 30)
	stop1()
	out.Append(30) // queued while the process is "down"

	c2, err := New(testConfig(t, m.URL()), out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	startClient(t, c2)
	sub.WaitCount(t, 60, 10*time.Second)
	checkOutboxDrained(t, out, 60)
	checkDelivery(t, seqsOf(t, sub.Messages()), 60, 2)
	if st := c2.Stats(); st.Acked != 30 {
		t.Errorf("second process acked %d, want 30 (it must resume from the outbox)", st.Acked)
	}
}

func TestStatusRetainedAndOfflineOnShutdown(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), statusTopic)
	c, err := New(testConfig(t, m.URL()), newMemOutbox(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.SetStatus([]byte(`{"state":"online","v":1}`))
	stop := startClient(t, c)
	sub.WaitFor(t, lastPayloadIs(`{"state":"online","v":1}`), 10*time.Second)
	c.SetStatus([]byte(`{"state":"online","v":2}`)) // while connected
	sub.WaitFor(t, lastPayloadIs(`{"state":"online","v":2}`), 10*time.Second)

	late := testkit.NewSubscriber(t, m.URL(), statusTopic)
	msgs := late.WaitCount(t, 1, 10*time.Second)
	if string(msgs[0].Payload) != `{"state":"online","v":2}` || !msgs[0].Retained {
		t.Errorf("late subscriber got %q retained=%v, want the v2 status retained", msgs[0].Payload, msgs[0].Retained)
	}

	stop()
	sub.WaitFor(t, lastPayloadIs(willPayload), 10*time.Second)
	if c.Connected() {
		t.Error("Connected() after Run returned")
	}
	after := testkit.NewSubscriber(t, m.URL(), statusTopic)
	msgs = after.WaitCount(t, 1, 10*time.Second)
	if string(msgs[0].Payload) != willPayload || !msgs[0].Retained {
		t.Errorf("after shutdown the retained status is %q (retained=%v), want %s", msgs[0].Payload, msgs[0].Retained, willPayload)
	}
}

func lastPayloadIs(p string) func([]testkit.Message) bool {
	return func(ms []testkit.Message) bool { return len(ms) > 0 && string(ms[len(ms)-1].Payload) == p }
}

const childBrokerEnv = "DOCKD_UPLINK_CHILD_BROKER"

// TestUplinkChildProcess is the station process TestWillWhenProcessVanishes
// kills; it does nothing in a normal test run.
func TestUplinkChildProcess(t *testing.T) {
	broker := os.Getenv(childBrokerEnv)
	if broker == "" {
		t.Skip("helper process for TestWillWhenProcessVanishes")
	}
	cfg := testConfig(t, broker)
	cfg.ClientID = "dockd-child"
	c, err := New(cfg, newMemOutbox(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetStatus([]byte(`{"state":"online","pid":"child"}`))
	_ = c.Run(context.Background()) // until SIGKILLed
}

func TestWillWhenProcessVanishes(t *testing.T) {
	m := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, m.URL(), statusTopic)
	cmd := testkit.SelfCommand("-test.run=^TestUplinkChildProcess$")
	cmd.Env = append(os.Environ(), childBrokerEnv+"="+m.URL())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", os.Args[0], err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sub.WaitFor(t, lastPayloadIs(`{"state":"online","pid":"child"}`), 20*time.Second)
	if n := len(sub.Messages()); n != 1 {
		t.Errorf("%d status messages before the kill, want only the online one", n)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	sub.WaitFor(t, lastPayloadIs(willPayload), 10*time.Second)

	late := testkit.NewSubscriber(t, m.URL(), statusTopic)
	msgs := late.WaitCount(t, 1, 10*time.Second)
	if string(msgs[0].Payload) != willPayload || !msgs[0].Retained {
		t.Errorf("retained status after the process vanished is %q (retained=%v), want the will %s", msgs[0].Payload, msgs[0].Retained, willPayload)
	}
}

func TestHandleReceivesDownlinkAcrossRestart(t *testing.T) {
	m := testkit.StartMosquitto(t)
	c, err := New(testConfig(t, m.URL()), newMemOutbox(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	c.Handle("dockd/v1/s1/d1/cmd/#", 1, func(topic string, payload []byte) {
		got <- topic + " " + string(payload)
	})
	w := newConnWatch(c)
	startClient(t, c)

	pubc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("central").
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(50 * time.Millisecond))
	if tok := pubc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("central connect: %v", tok.Error())
	}
	t.Cleanup(func() { pubc.Disconnect(100) })
	send := func(payload string) {
		t.Helper()
		tok := pubc.Publish("dockd/v1/s1/d1/cmd/allowlist", 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("central publish %q: %v", payload, tok.Error())
		}
	}
	expect := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Errorf("handler got %q, want %q", g, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler did not receive %q", want)
		}
	}

	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
	send("v1")
	expect("dockd/v1/s1/d1/cmd/allowlist v1")

	m.Kill()
	w.wait(t, "connection loss noticed", 10*time.Second, func(_, d int) bool { return d >= 1 })
	m.Start()
	w.wait(t, "reconnected", 10*time.Second, func(u, _ int) bool { return u >= 2 })
	eventually(t, 10*time.Second, "central reconnected", pubc.IsConnectionOpen)
	send("v2")
	expect("dockd/v1/s1/d1/cmd/allowlist v2")
}
