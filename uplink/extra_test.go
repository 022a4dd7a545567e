package uplink

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/testkit"
)

// Records with Extra messages: each extra follows its event on the wire,
// records without extras are plain, and everything is acknowledged.
func TestExtraPublishedWithRecord(t *testing.T) {
	m := testkit.StartMosquitto(t)
	const extraTopic = "dockd/v1/s1/d1/epcis"
	sub := testkit.NewSubscriber(t, m.URL(), "dockd/v1/s1/d1/+")
	out := newMemOutbox()
	out.Append(30)
	cfg := testConfig(t, m.URL())
	cfg.StatusTopic, cfg.Will = "", nil
	cfg.Extra = func(r Record) []Message {
		if r.Seq%2 == 0 {
			return nil
		}
		return []Message{{Topic: extraTopic, Payload: fmt.Appendf(nil, "doc-%d", r.Seq)}}
	}
	baseline := runtime.NumGoroutine()
	c, err := New(cfg, out, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := startClient(t, c)
	msgs := sub.WaitCount(t, 45, 10*time.Second)
	checkOutboxDrained(t, out, 30)
	var got []string
	for _, msg := range msgs {
		switch msg.Topic {
		case eventsTopic:
			got = append(got, string(msg.Payload))
		case extraTopic:
			got = append(got, string(msg.Payload))
		}
	}
	var want []string
	for s := uint64(1); s <= 30; s++ {
		want = append(want, string(eventPayload(s)))
		if s%2 == 1 {
			want = append(want, fmt.Sprintf("doc-%d", s))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("wire order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := c.Stats(); st.Acked != 30 || st.Published != 30 {
		t.Errorf("stats %+v: want 30 records published and acknowledged", st)
	}
	stop()
	eventually(t, 5*time.Second, "the joined tokens' goroutines to end", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// A joined token completes only when every publish has, and reports the
// first error in publish order: an event whose EPCIS publish failed is not
// acknowledged.
func TestJoinedTokenWaitsForAll(t *testing.T) {
	ev, doc := newFakeToken(), newFakeToken()
	j := joinTokens([]mqtt.Token{ev, doc})
	ev.complete(nil)
	if j.WaitTimeout(50 * time.Millisecond) {
		t.Fatal("joined token completed while the second publish was outstanding")
	}
	lost := errors.New("connection lost")
	doc.complete(lost)
	if !j.WaitTimeout(time.Second) {
		t.Fatal("joined token did not complete")
	}
	if !errors.Is(j.Error(), lost) {
		t.Fatalf("error %v, want the second publish's", j.Error())
	}
	a, b := newFakeToken(), newFakeToken()
	first := errors.New("first")
	k := joinTokens([]mqtt.Token{a, b})
	b.complete(errors.New("second"))
	a.complete(first)
	<-k.Done()
	if !errors.Is(k.Error(), first) {
		t.Fatalf("error %v, want the first in publish order", k.Error())
	}
}
