package testkit

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func mqttCanDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func TestMosquittoLifecycle(t *testing.T) {
	m := StartMosquitto(t)
	u, err := url.Parse(m.URL())
	if err != nil {
		t.Fatalf("URL %q: %v", m.URL(), err)
	}
	if u.Scheme != "tcp" || u.Hostname() != "127.0.0.1" || u.Port() == "1883" || u.Port() == "" {
		t.Fatalf("URL %q: want tcp://127.0.0.1:<free port other than 1883>", m.URL())
	}
	addr := m.Addr()
	steps := []struct {
		name   string
		do     func()
		accept bool
	}{
		{"started", func() {}, true},
		{"stopped", m.Stop, false},
		{"restarted", m.Start, true},
		{"killed", m.Kill, false},
		{"restarted again", m.Start, true},
	}
	for _, s := range steps {
		s.do()
		if got := mqttCanDial(addr); got != s.accept {
			t.Fatalf("%s: port %s accepts=%v, want %v", s.name, addr, got, s.accept)
		}
		if m.Running() != s.accept {
			t.Fatalf("%s: Running()=%v", s.name, m.Running())
		}
		if m.Addr() != addr {
			t.Fatalf("%s: address changed from %s to %s", s.name, addr, m.Addr())
		}
	}
	log, err := os.ReadFile(m.LogPath())
	if err != nil {
		t.Fatalf("read broker log: %v", err)
	}
	if n := strings.Count(string(log), "running"); n < 3 {
		t.Errorf("broker log shows %d starts, want 3:\n%s", n, log)
	}
}

// mqttRawConnect is an MQTT 3.1.1 CONNECT with clean session, keepalive 60 s,
// client id "raw".
var mqttRawConnect = []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'r', 'a', 'w'}

func TestMosquittoPauseAcceptsButNeverAnswers(t *testing.T) {
	m := StartMosquitto(t)
	m.Pause()
	conn, err := net.DialTimeout("tcp", m.Addr(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial paused broker: %v (the kernel should still accept)", err)
	}
	defer conn.Close()
	if _, err := conn.Write(mqttRawConnect); err != nil {
		t.Fatalf("write CONNECT to paused broker: %v", err)
	}
	ack := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := io.ReadFull(conn, ack); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("paused broker answered: %x, %v", ack[:n], err)
	}

	m.Resume()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil {
		t.Fatalf("no CONNACK after Resume: %v", err)
	}
	if !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x, want 20020000", ack)
	}
}

func mqttPublish(t *testing.T, c mqtt.Client, topic string, retained bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %q to %s: %v", payload, topic, tok.Error())
	}
}

func TestSubscriberRecordsAndResubscribes(t *testing.T) {
	m := StartMosquitto(t)
	sub := NewSubscriber(t, m.URL(), "t/#")
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("pub").
		SetAutoReconnect(true).SetMaxReconnectInterval(50 * time.Millisecond))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(100) })

	mqttPublish(t, pub, "t/a", false, "one")
	mqttPublish(t, pub, "other", false, "not matched")
	mqttPublish(t, pub, "t/b", true, "two")
	msgs := sub.WaitCount(t, 2, 10*time.Second)

	m.Kill()
	m.Start()
	sub.WaitSubscriptions(t, 2, 10*time.Second)
	mqttEventually(t, 10*time.Second, pub.IsConnectionOpen)
	mqttPublish(t, pub, "t/c", false, "three")
	msgs = sub.WaitCount(t, 3, 10*time.Second)

	want := []Message{{Topic: "t/a", Payload: []byte("one")}, {Topic: "t/b", Payload: []byte("two")}, {Topic: "t/c", Payload: []byte("three")}}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	for i, w := range want {
		g := msgs[i]
		if g.Topic != w.Topic || !bytes.Equal(g.Payload, w.Payload) || g.Retained || g.At.IsZero() {
			t.Errorf("message %d: %+v, want topic %s payload %q, not retained, with time", i, g, w.Topic, w.Payload)
		}
	}

	// A new subscriber sees a retained message with the flag set.
	mqttPublish(t, pub, "t/r", true, "kept")
	late := NewSubscriber(t, m.URL(), "t/r")
	got := late.WaitCount(t, 1, 10*time.Second)
	if !got[0].Retained || string(got[0].Payload) != "kept" {
		t.Errorf("late subscriber got %+v, want retained \"kept\"", got[0])
	}
}

func mqttEventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll with a deadline
	}
}
