package contract_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

func TestSchemasCompile(t *testing.T) {
	files, err := fs.Glob(contract.Schemas, "*.schema.json")
	if err != nil || len(files) != 12 {
		t.Fatalf("embedded schemas %v (%v), want 12", files, err)
	}
	for _, f := range files {
		if _, err := contracttest.Compile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestTopics(t *testing.T) {
	tp := contract.Topics{Site: "hh", Door: "d9"}
	for _, tc := range []struct{ got, want string }{
		{tp.Events(), "dockd/v1/hh/d9/events"},
		{tp.Status(), "dockd/v1/hh/d9/status"},
		{tp.EPCIS(), "dockd/v1/hh/d9/epcis"},
		{tp.Command("light-test"), "dockd/v1/hh/d9/cmd/light-test"},
		{tp.CommandFilter(), "dockd/v1/hh/d9/cmd/+"},
		{tp.Reply("c-1"), "dockd/v1/hh/d9/cmd-reply/c-1"},
		{tp.ReplyFilter(), "dockd/v1/hh/d9/cmd-reply/+"},
		{tp.AllowlistFilter(), "dockd/v1/hh/allowlist/#"},
		{tp.Receipts(), "dockd/v1/hh/d9/receipts"},
		{tp.ReceiptProbe(), "dockd/v1/hh/d9/receipt-probe"},
		{contract.Topics{Prefix: "acme/dockd/v1", Site: "hh", Door: "d9"}.Events(), "acme/dockd/v1/hh/d9/events"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		topic, name string
		ok          bool
	}{
		{"dockd/v1/hh/d9/cmd/light-test", "light-test", true},
		{"dockd/v1/hh/d9/cmd/", "", false},
		{"dockd/v1/hh/d9/cmd/a/b", "", false},
		{"dockd/v1/hh/d1/cmd/light-test", "", false},
		{"dockd/v1/hh/d9/cmd-reply/x", "", false},
		{"dockd/v1/hh/d9/cmd/+", "", false},
	} {
		name, ok := tp.CommandName(tc.topic)
		if name != tc.name || ok != tc.ok {
			t.Errorf("CommandName(%q) = %q, %v; want %q, %v", tc.topic, name, ok, tc.name, tc.ok)
		}
	}
}

// TestExamples checks hand-written payloads, the ones CONTRACT.md shows,
// against the schemas, both ways.
func TestExamples(t *testing.T) {
	for _, tc := range []struct {
		name, file, payload string
		valid               bool
	}{
		{"event", contract.EventSchemaFile, `{"schema":"dockd.custody-event/1","id":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11","seq":42,"site":"hamburg","station":"hamburg-door-9","door":"door-9","direction":"receiving","time":"2026-01-15T09:30:12.345Z","clock_synced":true,"reader":"scanner-1","raw":"]C10109506000134352 10LOT42\u001d21S1","symbology":"]C1","form":"gs1","ais":[{"ai":"01","value":"09506000134352"},{"ai":"10","value":"LOT42"},{"ai":"21","value":"S1"}],"gtin":"09506000134352","lot":"LOT42","serial":"S1","decision":"accept","reason":"ok","allowlist_version":"v7"}`, true},
		{"bad scan without error_kind", contract.EventSchemaFile, `{"schema":"dockd.custody-event/1","id":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11","seq":1,"site":"h","station":"h-d","door":"d","direction":"receiving","time":"2026-01-15T09:30:12Z","clock_synced":false,"reader":"r","raw":"?","decision":"reject","reason":"bad_scan"}`, false},
		{"offline will", contract.StatusSchemaFile, `{"schema":"dockd.station-status/1","station":"hamburg-door-9","site":"hamburg","door":"door-9","state":"offline"}`, true},
		{"online without buffer", contract.StatusSchemaFile, `{"schema":"dockd.station-status/1","station":"s","site":"s","door":"d","state":"online"}`, false},
		{"command", contract.CommandSchemaFile, `{"schema":"dockd.command/1","id":"c-1","name":"set-direction","args":{"direction":"shipping"}}`, true},
		{"command args for another name", contract.CommandSchemaFile, `{"schema":"dockd.command/1","id":"c-1","name":"set-direction","args":{"shipment":"A"}}`, false},
		{"reply ok", contract.CommandReplySchemaFile, `{"schema":"dockd.command-reply/1","id":"c-1","command":"set-direction","station":"s","ok":true,"time":"2026-01-15T09:30:12Z","result":{"direction":"shipping"}}`, true},
		{"reply error", contract.CommandReplySchemaFile, `{"schema":"dockd.command-reply/1","id":"","command":"x","station":"s","ok":false,"time":"2026-01-15T09:30:12Z","error":{"code":"malformed","message":"no id"}}`, true},
		{"reply failed without error", contract.CommandReplySchemaFile, `{"schema":"dockd.command-reply/1","id":"c-1","command":"x","station":"s","ok":false,"time":"2026-01-15T09:30:12Z"}`, false},
		{"allowlist delta header", contract.AllowlistDeltaSchemaFile, `{"schema":"dockd.allowlist-delta/1","version":"v2","seq":2,"base_seq":1,"sha256":"` + strings.Repeat("ab", 32) + `"}`, true},
		{"allowlist delta without base", contract.AllowlistDeltaSchemaFile, `{"schema":"dockd.allowlist-delta/1","version":"v2","seq":2,"sha256":"` + strings.Repeat("ab", 32) + `"}`, false},
		{"allowlist row", contract.AllowlistRowSchemaFile, `{"gtin":"09506000134352","lot":"L1","status":"recalled","recall_id":"RC-1"}`, true},
		{"allowlist row, bad status", contract.AllowlistRowSchemaFile, `{"gtin":"09506000134352","lot":"L1","status":"gone"}`, false},
		{"receipt", contract.ReceiptSchemaFile, `{"schema":"dockd.receipt/1","station":"hamburg-door-9","upto":1042,"time":"2026-01-15T09:30:13Z","collector":"central-1"}`, true},
		{"receipt upto negative", contract.ReceiptSchemaFile, `{"schema":"dockd.receipt/1","station":"s","upto":-1,"time":"2026-01-15T09:30:13Z","collector":"c"}`, false},
		{"receipt without station", contract.ReceiptSchemaFile, `{"schema":"dockd.receipt/1","upto":1,"time":"2026-01-15T09:30:13Z","collector":"c"}`, false},
		{"receipt probe", contract.ReceiptProbeSchemaFile, `{"schema":"dockd.receipt-probe/1","station":"hamburg-door-9","id":"7f3a","time":"2026-01-15T09:30:13Z"}`, true},
		{"seq gap", contract.SeqGapSchemaFile, `{"schema":"dockd.seq-gap/1","kind":"gap","id":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a12","seq":45,"site":"hamburg","station":"hamburg-door-9","door":"door-9","time":"2026-01-15T09:30:14Z","from":43,"to":44,"reason":"buffer commit failed: no space left on device"}`, true},
		{"seq gap without range", contract.SeqGapSchemaFile, `{"schema":"dockd.seq-gap/1","kind":"gap","id":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a12","seq":45,"site":"h","station":"h-d","door":"d","time":"2026-01-15T09:30:14Z","reason":"x"}`, false},
		{"allowlist ack rejected without reason", contract.AllowlistAckSchemaFile, `{"schema":"dockd.allowlist-ack/1","topic":"t","kind":"delta","seq":3,"status":"rejected","active_version":"v1","active_seq":1}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := contracttest.Validate(tc.file, []byte(tc.payload))
			if (err == nil) != tc.valid {
				t.Fatalf("valid=%v, want %v: %v", err == nil, tc.valid, err)
			}
		})
	}
}
