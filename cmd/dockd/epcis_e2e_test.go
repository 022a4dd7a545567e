package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/epcis"
	"github.com/dockd/dockd/internal/epcis/epcistest"
	"github.com/dockd/dockd/internal/scan"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

const epcisTopic = "dockd/v1/test-site/door-9/epcis"

// epcisSection turns EPCIS on in a test station's config, in India's time
// zone (+05:30 all year, so the offset is known whatever the date).
func epcisSection(y string) string {
	y = strings.Replace(y, "  direction: receiving\n", "  direction: receiving\n  time_zone: Asia/Kolkata\n", 1)
	return y + `epcis:
  enabled: true
  read_point: urn:epc:id:sgln:9506000.00001.door9
  biz_location: urn:epc:id:sgln:9506000.00001.0
  company_prefixes:
    "9506000": 7
  transaction_type: desadv
  transaction_uri: "urn:epcglobal:cbv:bt:9506000000015:{id}"
`
}

// epcisDoc is what a test reads back from a document.
type epcisDoc struct {
	raw   []byte
	event map[string]any
	seq   uint64
}

func epcisDocs(t testing.TB, msgs []testkit.Message) []epcisDoc {
	t.Helper()
	var out []epcisDoc
	for _, m := range msgs {
		if m.Topic != epcisTopic {
			continue
		}
		var d struct {
			Type      string `json:"type"`
			EPCISBody struct {
				EventList []map[string]any `json:"eventList"`
			} `json:"epcisBody"`
		}
		if err := json.Unmarshal(m.Payload, &d); err != nil || d.Type != "EPCISDocument" || len(d.EPCISBody.EventList) != 1 {
			t.Fatalf("epcis payload is not a one-event EPCISDocument (%v): %s", err, m.Payload)
		}
		ev := d.EPCISBody.EventList[0]
		seq, _ := ev["dockd:seq"].(float64)
		out = append(out, epcisDoc{raw: m.Payload, event: ev, seq: uint64(seq)})
	}
	return out
}

// Scans of every kind through a running station with EPCIS on: each scan
// record's event is followed by its EPCIS document, which validates against
// GS1's schema and the CBV vocabularies, names the event by eventID and
// seq, and says what the door decided; bad scans get none; a tag and a
// barcode of the same item carry the same identifier.
func TestEPCISEndToEnd(t *testing.T) {
	tagPTY := testkit.NewPTY(t)
	tagHex, err := scan.EncodeSGTIN96(1, "9506000", "013435", 1000)
	if err != nil {
		t.Fatal(err)
	}
	testkit.NewMercury(t, tagPTY, testkit.MercuryConfig{Tags: []testkit.MercuryTag{{EPC: tagHex, RSSI: -50, Antenna: 1}}})
	s := startStationWith(t, func(_, y string) string {
		y = strings.Replace(y, "readers:\n", "readers:\n  - id: uhf-1\n    type: rfid\n    profile: thingmagic-m6e-nano\n    region: EU\n    port: "+tagPTY.Path()+"\n    dedupe_window: 1h\n", 1)
		return epcisSection(y)
	})
	g := demoGTIN
	sscc := withCheckDigit("39506000000000001")
	list := fmt.Sprintf(`{"gtin":%[1]q,"lot":"OK","status":"released"}
{"gtin":%[1]q,"lot":"RC","status":"recalled","recall_id":"RC-9"}
{"shipment":"ASN-9","door":"door-9","direction":"receiving","gtin":%[1]q,"lot":"OK"}
{"shipment":"ASN-9","door":"door-9","direction":"receiving","gtin":%[1]q,"lot":"RC"}
{"shipment":"ASN-9","door":"door-9","direction":"receiving","sscc":%[2]q}
`, g, sscc)
	if _, err := s.d.list.Import(context.Background(), strings.NewReader(list), allowlist.ImportOptions{Version: "e2e"}); err != nil {
		t.Fatal(err)
	}
	scans := []string{
		scanOf(g, "OK", "S1"),                              // accepted, serialised, on ASN-9
		scanOf(g, "OK", "", "3012"),                        // accepted lot label with a count of 12
		scanOf(g, "RC", ""),                                // recalled: refused at the door
		"]C100" + sscc + "02" + g + "10OK" + gs + "3740\r", // pallet with its content
		"]C10102x\r",                                       // bad scan: no EPCIS
		scanOf(g, "OK", "1000"),                            // the barcode of the tagged item
	}
	for i, sc := range scans {
		s.write(sc)
		s.waitDecisions(i+1, 10*time.Second) // the tag may be decided in between
	}
	evs := s.waitDecisions(len(scans)+1, 10*time.Second) // and the tag
	msgs := s.sub.WaitFor(t, func(msgs []testkit.Message) bool { return len(epcisDocs(t, msgs)) >= len(scans) }, 20*time.Second)
	time.Sleep(200 * time.Millisecond) // a stray document for the bad scan would show now
	msgs = s.sub.Messages()
	docs := epcisDocs(t, msgs)
	if len(docs) != len(scans) {
		t.Fatalf("%d EPCIS documents for %d records with goods", len(docs), len(scans))
	}

	// Where each record's event and document arrived.
	eventAt, docAt := map[uint64]int{}, map[uint64]int{}
	for i, m := range msgs {
		switch m.Topic {
		case "dockd/v1/test-site/door-9/events":
			contracttest.Require(t, contract.EventSchemaFile, m.Payload) // with "shipment" where matched
			var e dock.CustodyEvent
			json.Unmarshal(m.Payload, &e)
			eventAt[e.Seq] = i
		case epcisTopic:
			var d struct {
				EPCISBody struct {
					EventList []struct {
						Seq uint64 `json:"dockd:seq"`
					} `json:"eventList"`
				} `json:"epcisBody"`
			}
			json.Unmarshal(m.Payload, &d)
			docAt[d.EPCISBody.EventList[0].Seq] = i
		}
	}
	bySeq := map[uint64]dock.CustodyEvent{}
	for _, e := range evs {
		bySeq[e.Seq] = e
	}
	var last uint64
	byKind := map[string]map[string]any{}
	for _, d := range docs {
		epcistest.Require(t, d.raw)
		e, ok := bySeq[d.seq]
		if !ok {
			t.Fatalf("document for seq %d, which the station never decided", d.seq)
		}
		if d.seq <= last {
			t.Errorf("document for seq %d after seq %d: not in order", d.seq, last)
		}
		last = d.seq
		if eventAt[d.seq] >= docAt[d.seq] {
			t.Errorf("seq %d: the document arrived before its event", d.seq)
		}
		if d.event["eventID"] != epcis.EventID(e.Station, e.Seq, e.ID) || d.event["dockd:eventID"] != e.ID {
			t.Errorf("seq %d: eventID %v / dockd:eventID %v do not name event %s", d.seq, d.event["eventID"], d.event["dockd:eventID"], e.ID)
		}
		if d.event["eventTimeZoneOffset"] != "+05:30" {
			t.Errorf("seq %d: offset %v, want the site's +05:30", d.seq, d.event["eventTimeZoneOffset"])
		}
		if e.Reason == dock.ReasonBadScan {
			t.Errorf("a bad scan (seq %d) got an EPCIS document", d.seq)
		}
		switch {
		case e.Reader == "uhf-1":
			byKind["tag"] = d.event
		case e.SSCC != "":
			byKind["pallet"] = d.event
		case e.Reason == dock.ReasonLotRecalled:
			byKind["recalled"] = d.event
		case e.Qty == 12:
			byKind["count"] = d.event
		case e.Serial == "1000":
			byKind["barcode"] = d.event
		case e.Serial == "S1":
			byKind["serial"] = d.event
		}
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	same := func(v any, want string) bool { // member order aside
		var w any
		json.Unmarshal([]byte(want), &w)
		return js(v) == js(w)
	}
	for kind, want := range map[string][2]string{
		"serial":   {"epcList", `["urn:epc:id:sgtin:9506000.013435.S1"]`},
		"count":    {"quantityList", `[{"epcClass":"urn:epc:class:lgtin:9506000.013435.OK","quantity":12}]`},
		"recalled": {"bizStep", `"inspecting"`},
		"pallet":   {"childQuantityList", `[{"epcClass":"urn:epc:class:lgtin:9506000.013435.OK","quantity":40}]`},
		"tag":      {"epcList", `["urn:epc:id:sgtin:9506000.013435.1000"]`},
		"barcode":  {"epcList", `["urn:epc:id:sgtin:9506000.013435.1000"]`},
	} {
		ev, ok := byKind[kind]
		if !ok {
			t.Errorf("no document for the %s scan", kind)
			continue
		}
		if !same(ev[want[0]], want[1]) {
			t.Errorf("%s: %s = %s, want %s", kind, want[0], js(ev[want[0]]), want[1])
		}
	}
	if ev := byKind["recalled"]; ev != nil && (ev["disposition"] != "recalled" || ev["bizLocation"] != nil) {
		t.Errorf("recalled lot refused at the door: %s", js(ev))
	}
	if ev := byKind["serial"]; ev != nil && !same(ev["bizTransactionList"], `[{"type":"desadv","bizTransaction":"urn:epcglobal:cbv:bt:9506000000015:ASN-9"}]`) {
		t.Errorf("serial on ASN-9: bizTransactionList %s", js(ev["bizTransactionList"]))
	}
	if ev := byKind["pallet"]; ev != nil && (ev["type"] != "AggregationEvent" || ev["parentID"] != "urn:epc:id:sscc:9506000.3000000001") {
		t.Errorf("pallet: %s", js(ev))
	}
}

// Re-delivery after kill -9 is byte-identical. Scans are stored while the
// broker is down and the station is killed with SIGKILL; a restart
// delivers them. Then the buffer is put back as it was at the kill — the
// state a power cut leaves when the broker's PUBACKs arrived but the
// station's acknowledgement never reached the disk — and a third start
// delivers them again: every EPCIS document must be the same bytes, with
// the same eventID, although three processes at three wall-clock times
// rendered them.
func TestEPCISRedeliveryAfterKill9(t *testing.T) {
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	broker := persistentBroker(t)
	sub := testkit.NewSubscriber(t, broker.URL(), epcisTopic)
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(epcisSection(stationConfig(dir, pty.Path(), broker.URL(), "virtual"))), 0o600)

	broker.Stop()
	p := startProc(t, cfgPath)
	const n = 8
	for i := 0; i < n; i++ {
		lot := "LOT42"
		if i%3 == 2 {
			lot = "LOT43" // recalled: a reject renders too
		}
		pty.Write([]byte(gs1Scan(lot, fmt.Sprintf("R%02d", i))))
	}
	waitUntil(t, 20*time.Second, "decisions logged", func() bool { return len(p.decided()) >= n })
	p.kill9()
	saved, err := os.ReadFile(filepath.Join(dir, "buffer.db"))
	if err != nil {
		t.Fatal(err)
	}

	broker.Start()
	p2 := startProc(t, cfgPath)
	first := epcisDocs(t, sub.WaitFor(t, func(m []testkit.Message) bool { return len(epcisDocs(t, m)) >= n }, 30*time.Second))
	p2.kill9()
	if err := os.WriteFile(filepath.Join(dir, "buffer.db"), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a different wall-clock second for the third process
	startProc(t, cfgPath)
	all := epcisDocs(t, sub.WaitFor(t, func(m []testkit.Message) bool { return len(epcisDocs(t, m)) >= 2*n }, 30*time.Second))

	firstBySeq := map[uint64][]byte{}
	for _, d := range first[:n] {
		firstBySeq[d.seq] = d.raw
		epcistest.Require(t, d.raw)
	}
	if len(firstBySeq) != n {
		t.Fatalf("first delivery: %d distinct records, want %d", len(firstBySeq), n)
	}
	resent := 0
	for _, d := range all[n:] {
		orig, ok := firstBySeq[d.seq]
		if !ok {
			t.Errorf("re-delivered seq %d was never delivered before", d.seq)
			continue
		}
		if !bytes.Equal(orig, d.raw) {
			t.Errorf("seq %d re-delivered with different bytes:\n first: %s\n again: %s", d.seq, orig, d.raw)
		}
		resent++
	}
	if resent < n {
		t.Errorf("%d records re-delivered, want %d", resent, n)
	}
}

// In receipt delivery the EPCIS documents travel with their records: while
// central has not receipted, each is resent with its event after
// receipt_timeout, byte for byte; after the receipt, no more.
func TestEPCISWithReceiptDelivery(t *testing.T) {
	s := startStationWith(t, func(_, y string) string { return epcisSection(receiptYAML(y, "1s", "1h")) })
	central := testkit.NewCentral(t, []string{s.broker.URL()}, e2eEvents, e2eReceipts, e2eStation)
	scanN(s, "E", 4)
	seen := map[uint64][]byte{}
	counts := func(msgs []testkit.Message) map[uint64]int {
		n := map[uint64]int{}
		for _, d := range epcisDocs(t, msgs) {
			if p, ok := seen[d.seq]; ok && !bytes.Equal(p, d.raw) {
				t.Fatalf("seq %d: EPCIS resent with other bytes:\n%s\n%s", d.seq, p, d.raw)
			}
			seen[d.seq] = d.raw
			n[d.seq]++
		}
		return n
	}
	s.sub.WaitFor(t, func(msgs []testkit.Message) bool {
		n := counts(msgs)
		for seq := uint64(1); seq <= 4; seq++ {
			if n[seq] < 2 {
				return false
			}
		}
		return true
	}, 15*time.Second)
	for _, p := range seen {
		epcistest.Require(t, p)
	}
	central.Receipt(t, 4)
	waitUntil(t, 10*time.Second, "buffer empty after the receipt", func() bool {
		return s.d.queue.Stats().Depth == 0 && s.d.up.Stats().Unconfirmed == 0
	})
	before := counts(s.sub.Messages())
	time.Sleep(2500 * time.Millisecond) // more than receipt_timeout: nothing may come again
	after := counts(s.sub.Messages())
	for seq, n := range after {
		if n != before[seq] {
			t.Errorf("seq %d: EPCIS published again after its receipt (%d → %d)", seq, before[seq], n)
		}
	}
}
