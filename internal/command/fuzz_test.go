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
// it must never panic, and every message on a command topic must get one
// reply that satisfies command-reply.schema.json, on this station's reply
// topic.
func FuzzHandle(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.cmd, []byte(tc.payload))
	}
	f.Add("set-direction", []byte(`{"schema":"dockd.command/1","id":"a","args":{"direction":"shipping","direction":"x"}}`))
	f.Add("open-shipment", []byte(`{"schema":"dockd.command/1","id":"a","args":{"shipment":"\u0000"}}`))
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: newFake(), CacheSize: 4, Timeout: time.Second})
		topic := topics.Base() + "/cmd/" + name
		rt, rb := h.Handle(context.Background(), topic, payload)
		if _, ok := topics.CommandName(topic); !ok {
			if rt != "" {
				t.Fatalf("answered a foreign topic %q", topic)
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
		if _, again := h.Handle(context.Background(), topic, payload); !strings.HasSuffix(rt, contract.InvalidReplyID) && string(again) != string(rb) {
			t.Fatalf("redelivery got another reply:\n%s\n%s", rb, again)
		}
	})
}
