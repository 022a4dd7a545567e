package uplink

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/testkit"
)

// interopBroker is what the interop tests need from a broker harness; both
// testkit.Mosquitto and testkit.NATS provide it.
type interopBroker interface {
	URL() string
	Kill()
	Start()
}

// interopBrokers are the brokers every interop test runs against, with the
// behaviour that differs between them (see uplink/SCALING.md, "Interop").
var interopBrokers = []struct {
	name  string
	start func(t *testing.T) interopBroker
	// retainedSurvivesRestart: the harness's Mosquitto runs without
	// persistence; NATS keeps retained messages and sessions in JetStream
	// on disk, so they survive a restart.
	retainedSurvivesRestart bool
	// sharedSubs: "$share/group/filter" splits messages among the group.
	sharedSubs bool
}{
	{"mosquitto", func(t *testing.T) interopBroker { return testkit.StartMosquitto(t) }, false, true},
	{"nats", func(t *testing.T) interopBroker { return testkit.StartNATS(t) }, true, false},
}

func forEachBroker(t *testing.T, fn func(t *testing.T, b interopBroker, retainedSurvives, sharedSubs bool)) {
	for _, ib := range interopBrokers {
		t.Run(ib.name, func(t *testing.T) { fn(t, ib.start(t), ib.retainedSurvivesRestart, ib.sharedSubs) })
	}
}

func TestInteropDeliversInOrder(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b interopBroker, _, _ bool) {
		sub := testkit.NewSubscriber(t, b.URL(), eventsTopic)
		out := newMemOutbox()
		out.Append(50)
		c, err := New(testConfig(t, b.URL()), out, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		w := newConnWatch(c)
		startClient(t, c)
		w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
		for i := 0; i < 5; i++ {
			out.Append(10)
		}
		sub.WaitCount(t, 100, 15*time.Second)
		checkOutboxDrained(t, out, 100)
		seqs := seqsOf(t, sub.Messages())
		checkDelivery(t, seqs, 100, 1)
		if len(seqs) != 100 {
			t.Errorf("%d messages over one connection, want exactly 100", len(seqs))
		}
	})
}

// TestInteropOutageAndReconnect kills the broker while events are in flight
// and being appended, restarts it, and checks at-least-once, in-order
// delivery of everything.
func TestInteropOutageAndReconnect(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b interopBroker, keepsSessions, _ bool) {
		sub := testkit.NewSubscriber(t, b.URL(), eventsTopic)
		out := newMemOutbox()
		c, err := New(testConfig(t, b.URL()), out, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		w := newConnWatch(c)
		startClient(t, c)
		w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
		stopAppend := appender(out, 4, 2*time.Millisecond)
		sub.WaitCount(t, 40, 10*time.Second)
		b.Kill()
		// Mosquitto (no persistence) forgets the subscriber's session: hold
		// the outbox until it has subscribed again (see uplink_test.go).
		out.Hold(true)
		w.wait(t, "connection loss noticed", 10*time.Second, func(_, d int) bool { return d >= 1 })
		b.Start()
		sub.WaitSubscriptions(t, 2, 20*time.Second)
		w.wait(t, "reconnected", 20*time.Second, func(u, _ int) bool { return u >= 2 })
		out.Hold(false)
		last := stopAppend()
		msgs := sub.WaitFor(t, allArrived(t, last), 30*time.Second)
		checkOutboxDrained(t, out, last)
		st := c.Stats()
		// Each replay of a range must come from a reconnect: the station
		// resends what was not PUBACKed; and a broker that keeps sessions
		// across a restart (NATS, in JetStream; the flag that says its
		// retained messages survive) also redelivers to the subscriber what
		// it had not seen acknowledged. Mosquitto here keeps nothing.
		maxRuns := int(st.Connects)
		if keepsSessions {
			maxRuns += sub.Subscriptions() - 1
		}
		checkDelivery(t, seqsOf(t, msgs), last, maxRuns)
		t.Logf("%d records in %d messages over %d connections (%d resent)", last, len(msgs), st.Connects, st.Resent)
	})
}

// TestInteropRetainedStatusAndWill: the retained online status reaches late
// subscribers, a clean shutdown leaves the offline status retained, a
// vanished process gets its will published, and what a broker restart does
// to the retained status (differs by broker).
func TestInteropRetainedStatusAndWill(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b interopBroker, retainedSurvives, _ bool) {
		sub := testkit.NewSubscriber(t, b.URL(), statusTopic)
		c, err := New(testConfig(t, b.URL()), newMemOutbox(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		c.SetStatus([]byte(`{"state":"online","v":1}`))
		stop := startClient(t, c)
		sub.WaitFor(t, lastPayloadIs(`{"state":"online","v":1}`), 30*time.Second)
		c.SetStatus([]byte(`{"state":"online","v":2}`))
		sub.WaitFor(t, lastPayloadIs(`{"state":"online","v":2}`), 30*time.Second)
		late := testkit.NewSubscriber(t, b.URL(), statusTopic)
		if m := late.WaitCount(t, 1, 30*time.Second)[0]; string(m.Payload) != `{"state":"online","v":2}` || !m.Retained {
			t.Errorf("late subscriber got %q retained=%v, want v2 retained", m.Payload, m.Retained)
		}
		stop()
		sub.WaitFor(t, lastPayloadIs(willPayload), 30*time.Second)
		after := testkit.NewSubscriber(t, b.URL(), statusTopic)
		if m := after.WaitCount(t, 1, 30*time.Second)[0]; string(m.Payload) != willPayload || !m.Retained {
			t.Errorf("after clean shutdown the retained status is %q (retained=%v), want %s", m.Payload, m.Retained, willPayload)
		}

		// The will, when the station process is SIGKILLed.
		cmd := testkit.SelfCommand("-test.run=^TestUplinkChildProcess$")
		cmd.Env = append(os.Environ(), childBrokerEnv+"="+b.URL())
		if err := cmd.Start(); err != nil {
			t.Fatalf("start child: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sub.WaitFor(t, lastPayloadIs(`{"state":"online","pid":"child"}`), 20*time.Second)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		sub.WaitFor(t, lastPayloadIs(willPayload), 30*time.Second)
		vanished := testkit.NewSubscriber(t, b.URL(), statusTopic)
		if m := vanished.WaitCount(t, 1, 30*time.Second)[0]; string(m.Payload) != willPayload || !m.Retained {
			t.Errorf("retained status after the process vanished is %q (retained=%v), want the will", m.Payload, m.Retained)
		}

		// A broker restart: the retained status survives only on a broker
		// that persists it.
		b.Kill()
		b.Start()
		probe := testkit.NewSubscriber(t, b.URL(), "#")
		pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("interop-marker").SetProtocolVersion(4))
		if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("marker connect: %v", tok.Error())
		}
		defer pub.Disconnect(50)
		if tok := pub.Publish("interop/marker", 1, false, "m"); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("marker publish: %v", tok.Error())
		}
		keptWill := func(ms []testkit.Message) bool {
			for _, m := range ms {
				if m.Topic == statusTopic && m.Retained && string(m.Payload) == willPayload {
					return true
				}
			}
			return false
		}
		// Mosquitto sends retained messages on subscribe, before anything
		// published later, so once the marker is in, what was retained is
		// in. NATS may deliver retained messages after live ones: where the
		// retained status should survive, wait for it as well.
		msgs := probe.WaitFor(t, func(ms []testkit.Message) bool {
			for _, m := range ms {
				if m.Topic == "interop/marker" {
					return !retainedSurvives || keptWill(ms)
				}
			}
			return false
		}, 30*time.Second)
		if kept := keptWill(msgs); kept != retainedSurvives {
			t.Errorf("retained status survived a broker restart: %v, want %v", kept, retainedSurvives)
		}
	})
}

// TestInteropSharedSubscription checks what "$share/central/…" does with
// MQTT 3.1.1 clients: Mosquitto 2 splits the messages among the group, each
// delivered to exactly one member; NATS 2.9 grants the subscription but
// delivers nothing to it (it is not a shared subscription there; use a
// NATS queue group on the NATS side instead).
func TestInteropSharedSubscription(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b interopBroker, _, shared bool) {
		const n = 40
		got := make(chan string, 4*n)
		var members []mqtt.Client
		for i := 0; i < 2; i++ {
			id := fmt.Sprintf("central-%d", i)
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetProtocolVersion(4).SetOrderMatters(true))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("%s connect: %v", id, tok.Error())
			}
			defer c.Disconnect(50)
			tok := c.Subscribe("$share/central/dockd/v1/+/+/events", 1, func(_ mqtt.Client, m mqtt.Message) {
				got <- id + " " + string(m.Payload())
			})
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("%s subscribe: %v", id, tok.Error())
			}
			members = append(members, c)
		}
		sub := testkit.NewSubscriber(t, b.URL(), "dockd/v1/+/+/events") // a plain subscriber sees everything
		out := newMemOutbox()
		out.Append(n)
		c, err := New(testConfig(t, b.URL()), out, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		startClient(t, c)
		checkOutboxDrained(t, out, n)
		sub.WaitCount(t, n, 10*time.Second)
		perMember := map[string]int{}
		seen := map[string]int{}
		if shared {
			for len(seen) < n {
				select {
				case g := <-got:
					id, p, _ := strings.Cut(g, " ")
					perMember[id]++
					seen[p]++
				case <-time.After(10 * time.Second):
					t.Fatalf("shared group received %d of %d distinct events", len(seen), n)
				}
			}
		}
		// Anything still coming would be a duplicate (or, on NATS, a sign
		// that shared subscriptions started to work).
		time.Sleep(200 * time.Millisecond)
	drain:
		for {
			select {
			case g := <-got:
				id, p, _ := strings.Cut(g, " ")
				perMember[id]++
				seen[p]++
			default:
				break drain
			}
		}
		total := 0
		for _, k := range perMember {
			total += k
		}
		if shared {
			if total != n || len(perMember) != 2 {
				t.Errorf("shared group got %d deliveries split %v, want %d split over both members", total, perMember, n)
			}
		} else if total != 0 {
			t.Errorf("$share subscribers got %d messages (%v): the broker now supports shared subscriptions; update SCALING.md", total, perMember)
		}
		t.Logf("shared subscription deliveries per member: %v", perMember)
	})
}
