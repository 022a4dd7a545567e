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
