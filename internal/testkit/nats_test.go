package testkit

import (
	"net/url"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestNATSLifecycle(t *testing.T) {
	n := StartNATS(t)
	u, err := url.Parse(n.URL())
	if err != nil {
		t.Fatalf("URL %q: %v", n.URL(), err)
	}
	if u.Scheme != "tcp" || u.Hostname() != "127.0.0.1" || u.Port() == "1883" || u.Port() == "4222" {
		t.Fatalf("URL %q: want tcp://127.0.0.1:<free port>", n.URL())
	}
	if strings.HasSuffix(n.NATSURL(), ":4222") {
		t.Fatalf("NATS client port is the system one: %s", n.NATSURL())
	}
	addr := n.Addr()
	steps := []struct {
		name   string
		do     func()
		accept bool
	}{
		{"started", func() {}, true},
		{"stopped", n.Stop, false},
		{"restarted", n.Start, true},
		{"killed", n.Kill, false},
		{"restarted again", n.Start, true},
	}
	for _, s := range steps {
		s.do()
		if got := mqttCanDial(addr); got != s.accept {
			t.Fatalf("%s: MQTT port %s accepts=%v, want %v", s.name, addr, got, s.accept)
		}
		if n.Running() != s.accept {
			t.Fatalf("%s: Running()=%v", s.name, n.Running())
		}
	}
}

// TestNATSMQTTRetainedSurvivesRestart shows the harness's MQTT interface
// works with the testkit Subscriber and that, unlike the Mosquitto harness,
// retained messages survive a restart (they live in JetStream on disk).
func TestNATSMQTTRetainedSurvivesRestart(t *testing.T) {
	n := StartNATS(t)
	sub := NewSubscriber(t, n.URL(), "t/+")
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(n.URL()).SetClientID("testkit-nats-pub").SetProtocolVersion(4))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	tok := pub.Publish("t/a", 1, true, "hello")
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	pub.Disconnect(100)
	if got := sub.WaitCount(t, 1, 10*time.Second); string(got[0].Payload) != "hello" {
		t.Fatalf("got %q", got[0].Payload)
	}
	n.Kill()
	n.Start()
	late := NewSubscriber(t, n.URL(), "t/a")
	got := late.WaitCount(t, 1, 15*time.Second)
	if string(got[0].Payload) != "hello" || !got[0].Retained {
		t.Fatalf("after restart got %q retained=%v, want retained hello", got[0].Payload, got[0].Retained)
	}
}

// TestNATSClusterSessionSurvivesMemberKill: a 3-member cluster routes MQTT
// between members, and a persistent session made on one member outlives a
// kill -9 of that member: the client reconnects to another member and gets
// what was published meanwhile (the session lives in replicated JetStream).
func TestNATSClusterSessionSurvivesMemberKill(t *testing.T) {
	c := StartNATSCluster(t, 3)
	// wait is how long a connect may keep failing: JetStream answers
	// "timeout" to the MQTT layer while it elects leaders, and after a
	// member's kill that was seen to last over 30 s on a loaded machine.
	wait := 30 * time.Second
	connect := func(id string, clean bool, urls ...string) mqtt.Client {
		t.Helper()
		o := mqtt.NewClientOptions().SetClientID(id).SetCleanSession(clean).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
		for _, u := range urls {
			o.AddBroker(u)
		}
		deadline := time.Now().Add(wait)
		for {
			cli := mqtt.NewClient(o)
			tok := cli.Connect()
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				return cli
			}
			if time.Now().After(deadline) {
				t.Fatalf("connect %s to %v: %v", id, urls, tok.Error())
			}
			time.Sleep(200 * time.Millisecond) // JetStream cluster still electing
		}
	}
	got := make(chan string, 16)
	handler := func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }
	sub := connect("testkit-cluster-sub", false, c.Nodes[1].URL())
	if tok := sub.Subscribe("t/x", 1, handler); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := connect("testkit-cluster-pub", true, c.Nodes[0].URL())
	// A member's death makes JetStream elect new stream leaders; a publish
	// meanwhile can time out and the member then drops the client. Resend
	// on a new connection (as a station does) until it is acknowledged.
	publish := func(s string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			tok := pub.Publish("t/x", 1, false, s)
			if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %v", s, tok.Error())
			}
			pub.Disconnect(0)
			pub = connect("testkit-cluster-pub", true, c.Nodes[0].URL())
		}
	}
	publish("one")
	select {
	case s := <-got:
		if s != "one" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("message published on member 0 never reached the subscriber on member 1")
	}
	// Every member sets up its MQTT streams and consumers on its first
	// client. Let the third do that before the kill: a member killed while
	// another is still creating its consumers leaves that one retrying the
	// creation for a long time, which is a start-up race, not what this
	// test is about.
	connect("testkit-cluster-probe", true, c.Nodes[2].URL()).Disconnect(100)
	c.Nodes[1].Kill()
	wait = 120 * time.Second
	publish("two") // the subscriber is offline; its session keeps it
	sub2 := connect("testkit-cluster-sub", false, c.Nodes[2].URL())
	sub2.AddRoute("t/x", handler)
	defer sub2.Disconnect(100)
	// At least once: "one" may come again if its ack did not reach the
	// replicas before the kill.
	for {
		select {
		case s := <-got:
			if s == "two" {
				c.Nodes[1].Start()
				return
			}
			if s != "one" {
				t.Fatalf("after the member kill got %q, want two", s)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the session did not survive the kill of its member")
		}
	}
}
