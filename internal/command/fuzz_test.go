package command

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// FuzzHandle feeds arbitrary command names and payloads to a Handler:
// it must never panic, and every non-empty message on a command topic must
// get one reply that satisfies command-reply.schema.json, on this
// station's reply topic; a retained one never runs.
func FuzzHandle(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.cmd, []byte(tc.payload), false)
	}
	f.Add("set-direction", []byte(`{"schema":"dockd.command/1","id":"a","args":{"direction":"shipping","direction":"x"}}`), false)
	f.Add("open-shipment", []byte(`{"schema":"dockd.command/1","id":"a","args":{"shipment":"\u0000"}}`), false)
	f.Add("light-test", []byte(`{"schema":"dockd.command/1","id":"a","issued_at":"2020-01-01T00:00:00Z","ttl_s":5}`), false)
	f.Add("light-test", []byte(`{"schema":"dockd.command/1","id":"a","id":"b"}`), true)
	f.Fuzz(func(t *testing.T, name string, payload []byte, retained bool) {
		x := newFake()
		h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: x, CacheSize: 4, Timeout: time.Second, MaxPayload: 512})
		topic := topics.Base() + "/cmd/" + name
		rt, rb := h.HandleMessage(context.Background(), Message{Topic: topic, Payload: payload, Retained: retained})
		if retained && x.total() != 0 {
			t.Fatalf("a retained command ran")
		}
		if _, ok := topics.CommandName(topic); !ok || len(payload) == 0 {
			if rt != "" {
				t.Fatalf("answered a foreign topic or an empty message: %q", topic)
			}
			return
		}
		if !strings.HasPrefix(rt, topics.Base()+"/cmd-reply/") {
			t.Fatalf("reply topic %q", rt)
		}
		if !json.Valid(rb) {
			t.Fatalf("reply is not JSON: %q", rb)
		}
		if err := contracttest.Validate(contract.CommandReplySchemaFile, rb); err != nil {
			t.Fatalf("reply violates the schema: %v\n%s", err, rb)
		}
		// A second delivery gets the same bytes.
		if _, again := h.HandleMessage(context.Background(), Message{Topic: topic, Payload: payload, Retained: retained}); !retained && !strings.HasSuffix(rt, contract.InvalidReplyID) && string(again) != string(rb) {
			t.Fatalf("redelivery got another reply:\n%s\n%s", rb, again)
		}
	})
}
