package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// Central changes what a door accepts over MQTT, through the daemon's own
// wiring: a chunked snapshot becomes active at once (scans decide on it), a
// delta on it recalls a lot, a delta on a stale base is refused and the
// list in force stays. Every payload central sends and every ack the
// station publishes follows its schema.
func TestAllowlistOverMQTT(t *testing.T) {
	s := startStation(t)
	waitUntil(t, 10*time.Second, "uplink connected", s.d.up.Connected)
	central := newPahoPublisher(t, s.broker.URL(), "central-lists")
	base := "dockd/v1/test-site/allowlist"
	pub := func(topic string, payload []byte) {
		t.Helper()
		if err := central.Publish(context.Background(), topic, payload); err != nil {
			t.Fatalf("publishing %s: %v", topic, err)
		}
	}
	ack := func(seq uint64, n int) allowlist.Ack {
		t.Helper()
		var a allowlist.Ack
		s.sub.WaitFor(t, func(ms []testkit.Message) bool {
			seen := 0
			for _, m := range ms {
				if strings.HasSuffix(m.Topic, "/door-9/allowlist/ack") {
					contracttest.Require(t, contract.AllowlistAckSchemaFile, m.Payload)
					var x allowlist.Ack
					json.Unmarshal(m.Payload, &x)
					if x.Seq == seq {
						if seen++; seen == n {
							a = x
							return true
						}
					}
				}
			}
			return false
		}, 20*time.Second)
		return a
	}
	decide := func(lot string) dock.CustodyEvent {
		t.Helper()
		n := len(s.waitDecisions(0, time.Second))
		s.write(gs1Scan(lot, "M"+lot))
		evs := s.waitDecisions(n+1, 10*time.Second)
		return evs[len(evs)-1]
	}

	// A snapshot in two chunks; the manifest arrives last.
	rows := []string{
		fmt.Sprintf(`{"gtin":%q,"lot":"NEW1","status":"released"}`, demoGTIN),
		fmt.Sprintf(`{"gtin":%q,"lot":"NEW2","status":"released"}`, demoGTIN),
	}
	for _, r := range rows {
		contracttest.Require(t, contract.AllowlistRowSchemaFile, []byte(r))
	}
	body := strings.Join(rows, "\n") + "\n"
	half := len(body) / 2
	sum := sha256.Sum256([]byte(body))
	manifest := fmt.Sprintf(`{"schema":"dockd.allowlist-snapshot/1","version":"v100","seq":100,"format":"jsonl","chunks":2,"bytes":%d,"sha256":%q}`, len(body), hex.EncodeToString(sum[:]))
	contracttest.Require(t, contract.AllowlistManifestSchemaFile, []byte(manifest))
	pub(base+"/snapshot/100/chunk/1", []byte(body[half:]))
	pub(base+"/snapshot/100/chunk/0", []byte(body[:half]))
	pub(base+"/snapshot/100/manifest", []byte(manifest))
	if a := ack(100, 1); a.Status != allowlist.StatusApplied || a.ActiveVer != "v100" {
		t.Fatalf("snapshot ack %+v", a)
	}
	if ev := decide("NEW1"); ev.Verdict != dock.Accept || ev.AllowlistVersion != "v100" {
		t.Fatalf("scan on the new list: %+v", ev)
	}
	if ev := decide("LOT42"); ev.Reason != dock.ReasonUnknownLot {
		t.Fatalf("a lot only the old list had: %s", ev.Reason)
	}

	delta := func(seq, baseSeq int, rows ...string) []byte {
		b := strings.Join(rows, "\n") + "\n"
		h := sha256.Sum256([]byte(b))
		hdr := fmt.Sprintf(`{"schema":"dockd.allowlist-delta/1","version":"v%d","seq":%d,"base_seq":%d,"sha256":%q}`, seq, seq, baseSeq, hex.EncodeToString(h[:]))
		contracttest.Require(t, contract.AllowlistDeltaSchemaFile, []byte(hdr))
		return []byte(hdr + "\n" + b)
	}
	pub(base+"/delta/101", delta(101, 100, fmt.Sprintf(`{"gtin":%q,"lot":"NEW1","status":"recalled","recall_id":"RC-9"}`, demoGTIN)))
	if a := ack(101, 1); a.Status != allowlist.StatusApplied {
		t.Fatalf("delta ack %+v", a)
	}
	if ev := decide("NEW1"); ev.Reason != dock.ReasonLotRecalled || !strings.Contains(ev.Detail, "RC-9") {
		t.Fatalf("after the recall delta: %+v", ev)
	}

	// A delta built on v100 again (central missed v101) is refused.
	pub(base+"/delta/102", delta(102, 100, fmt.Sprintf(`{"op":"delete","gtin":%q,"lot":"NEW2"}`, demoGTIN)))
	if a := ack(102, 1); a.Status != allowlist.StatusRejected || a.Reason != "base_mismatch" || a.ActiveVer != "v101" {
		t.Fatalf("stale delta ack %+v", a)
	}
	if ev := decide("NEW2"); ev.Verdict != dock.Accept {
		t.Fatalf("the list in force changed after a refused delta: %+v", ev)
	}
}
