package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Message is one MQTT message as a Subscriber saw it.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	At       time.Time // arrival at the subscriber
}

// Subscriber is a paho client subscribed at QoS 1 to one topic filter that
// records every message it receives, in arrival order.
//
// What it guarantees:
//   - While its broker keeps running, nothing is lost: it uses a persistent
//     session (CleanSession false, a fixed client id), so messages published
//     while it reconnects are queued by the broker and delivered afterwards.
//   - Across a broker restart it reconnects (every 50 ms) and subscribes
//     again, but the harness broker has no persistence, so a restart forgets
//     its session: messages published after the restart and before
//     Subscriptions() has grown are not delivered to it. A test that restarts
//     the broker must wait with WaitSubscriptions before letting publishers
//     resend.
//   - Messages arrive in the order the broker sends them (paho's ordered
//     router); duplicates are kept (QoS 1 is at least once), so tests see
//     exactly what a consumer would see.
//
// Messages, Subscriptions and the Wait methods are safe for concurrent use.
type Subscriber struct {
	filter string
	cli    mqtt.Client

	mu      sync.Mutex
	msgs    []Message
	subs    int
	changed chan struct{} // closed and replaced on every new message or subscription
}

// NewSubscriber connects to brokerURL, subscribes to filter at QoS 1 and
// returns once the subscription is acknowledged. It disconnects at
// t.Cleanup.
func NewSubscriber(t testing.TB, brokerURL, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{filter: filter, changed: make(chan struct{})}
	var idb [6]byte
	_, _ = rand.Read(idb[:])
	opts := mqtt.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID("testkit-sub-" + hex.EncodeToString(idb[:])).
		SetCleanSession(false).
		SetProtocolVersion(4).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(50 * time.Millisecond).
		SetConnectTimeout(2 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(s.record). // session messages that arrive before the re-subscribe
		SetOnConnectHandler(s.onConnect)
	s.cli = mqtt.NewClient(opts)
	t.Cleanup(func() { s.cli.Disconnect(100) })
	tok := s.cli.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscriber %s: connect to %s timed out", filter, brokerURL)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscriber %s: connect to %s: %v", filter, brokerURL, err)
	}
	s.WaitSubscriptions(t, 1, 10*time.Second)
	return s
}

// onConnect runs in its own goroutine after every (re)connect.
func (s *Subscriber) onConnect(c mqtt.Client) {
	tok := c.Subscribe(s.filter, 1, s.record)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return // the connection dropped again; the next onConnect retries
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok && st.Result()[s.filter] == 0x80 {
		return // refused by the broker
	}
	s.mu.Lock()
	s.subs++
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *Subscriber) record(_ mqtt.Client, m mqtt.Message) {
	msg := Message{
		Topic:    m.Topic(),
		Payload:  append([]byte(nil), m.Payload()...),
		Retained: m.Retained(),
		At:       time.Now(),
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, msg)
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *Subscriber) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Messages returns a copy of every message received so far, in arrival order.
func (s *Subscriber) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Subscriptions is how many times the subscription has been acknowledged:
// 1 after NewSubscriber, plus one per reconnect.
func (s *Subscriber) Subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs
}

// WaitSubscriptions waits until Subscriptions() >= n, failing t after
// timeout.
func (s *Subscriber) WaitSubscriptions(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	s.wait(t, timeout, fmt.Sprintf("%d subscriptions to %q", n, s.filter), func(_ []Message, subs int) bool { return subs >= n })
}

// WaitCount waits until at least n messages have arrived and returns them,
// failing t after timeout.
func (s *Subscriber) WaitCount(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	s.wait(t, timeout, fmt.Sprintf("%d messages on %q", n, s.filter), func(ms []Message, _ int) bool { return len(ms) >= n })
	return s.Messages()
}

// WaitFor waits until ok returns true for the messages received so far and
// returns them, failing t after timeout. ok runs on the test goroutine
// without locks held (it may call t.Fatal) and must not modify the slice.
func (s *Subscriber) WaitFor(t testing.TB, ok func([]Message) bool, timeout time.Duration) []Message {
	t.Helper()
	s.wait(t, timeout, fmt.Sprintf("condition on messages of %q", s.filter), func(ms []Message, _ int) bool { return ok(ms) })
	return s.Messages()
}

// wait blocks until cond holds for a snapshot of the messages and the
// subscription count, or timeout passes.
func (s *Subscriber) wait(t testing.TB, timeout time.Duration, what string, cond func(msgs []Message, subs int) bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		// Elements are never modified once appended, so a capped slice of
		// them is a safe snapshot.
		msgs := s.msgs[:len(s.msgs):len(s.msgs)]
		subs, ch := s.subs, s.changed
		s.mu.Unlock()
		if cond(msgs, subs) {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("subscriber: waited %v for %s; have %d messages, %d subscriptions", timeout, what, len(msgs), subs)
			return
		}
	}
}
