package command

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/uplink/contract"
)

// A retained command is never executed, is answered retained on its id's
// topic, and is not remembered: the same id delivered live afterwards runs.
func TestRetainedCommandIsNotExecuted(t *testing.T) {
	x := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: x})
	topic := topics.Command(NameSetDirection)
	payload := cmdPayload("c-ret", `{"direction":"shipping"}`)
	for i := 0; i < 3; i++ { // every restart delivers it again
		rt, rb := h.HandleMessage(context.Background(), Message{Topic: topic, Payload: payload, Retained: true})
		r := decodeReply(t, rb)
		if rt != topics.Reply("c-ret") || r.OK || r.Error.Code != CodeRetained {
			t.Fatalf("retained copy answered on %s: %s", rt, rb)
		}
	}
	if n := x.count(NameSetDirection); n != 0 {
		t.Fatalf("a retained command ran %d times", n)
	}
	_, rb := h.HandleMessage(context.Background(), Message{Topic: topic, Payload: payload})
	if r := decodeReply(t, rb); !r.OK || x.count(NameSetDirection) != 1 {
		t.Fatalf("the live copy: %s (ran %d)", rb, x.count(NameSetDirection))
	}
}

// A command past issued_at+ttl_s is refused expired; one within it runs;
// with the clock not synchronised the age cannot be judged and it runs.
func TestExpiredCommand(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	synced := true
	x := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: x,
		Now: func() time.Time { return now }, ClockSynced: func() bool { return synced }})
	cmd := func(id string, issued time.Time, ttl int) []byte {
		return []byte(`{"schema":"dockd.command/1","id":"` + id + `","issued_at":"` + issued.Format(time.RFC3339) + `","ttl_s":` + itoa(ttl) + `,"args":{"direction":"shipping"}}`)
	}
	topic := topics.Command(NameSetDirection)
	_, rb := h.Handle(context.Background(), topic, cmd("late", now.Add(-10*time.Minute), 60))
	if r := decodeReply(t, rb); r.OK || r.Error.Code != CodeExpired || !strings.Contains(r.Error.Message, "too late") {
		t.Fatalf("late command: %s", rb)
	}
	// Redelivery of the late id gets the same refusal, still not run.
	if _, again := h.Handle(context.Background(), topic, cmd("late", now.Add(-10*time.Minute), 60)); string(again) != string(rb) || x.count(NameSetDirection) != 0 {
		t.Fatalf("redelivered late command: %s (ran %d)", again, x.count(NameSetDirection))
	}
	// Within ttl plus skew.
	if _, rb := h.Handle(context.Background(), topic, cmd("fresh", now.Add(-80*time.Second), 60)); !decodeReply(t, rb).OK {
		t.Fatalf("fresh command: %s", rb)
	}
	synced = false
	if _, rb := h.Handle(context.Background(), topic, cmd("unsynced", now.Add(-time.Hour), 60)); !decodeReply(t, rb).OK {
		t.Fatalf("with an unsynchronised clock the command should run: %s", rb)
	}
	if x.count(NameSetDirection) != 2 || x.direction != dock.Shipping {
		t.Fatalf("ran %d times", x.count(NameSetDirection))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// An oversized command is answered too_large on _invalid without being
// parsed; duplicate member names are malformed, and neither runs.
func TestOversizedAndDuplicateCommands(t *testing.T) {
	x := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: x, MaxPayload: 4096})
	big := cmdPayload("big", `{"direction":"shipping","pad":"`+strings.Repeat("x", 5000)+`"}`)
	rt, rb := h.Handle(context.Background(), topics.Command(NameSetDirection), big)
	if r := decodeReply(t, rb); rt != topics.Reply(contract.InvalidReplyID) || r.Error == nil || r.Error.Code != CodeTooLarge {
		t.Fatalf("oversized: %s %s", rt, rb)
	}
	dup := []byte(`{"schema":"dockd.command/1","id":"c18","id":"c19","args":{"direction":"shipping"}}`)
	rt, rb = h.Handle(context.Background(), topics.Command(NameSetDirection), dup)
	if r := decodeReply(t, rb); r.Error == nil || r.Error.Code != CodeMalformed || !strings.Contains(r.Error.Message, "duplicate") {
		t.Fatalf("duplicate id: %s %s", rt, rb)
	}
	if x.count(NameSetDirection) != 0 {
		t.Fatal("a refused command ran")
	}
}

// Clearing a retained command (an empty publish) is not a command: no reply.
func TestEmptyCommandIsNotAnswered(t *testing.T) {
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: newFake()})
	for _, retained := range []bool{false, true} {
		if rt, rb := h.HandleMessage(context.Background(), Message{Topic: topics.Command(NameSetDirection), Retained: retained}); rt != "" || rb != nil {
			t.Fatalf("empty message answered on %q: %s", rt, rb)
		}
	}
}
