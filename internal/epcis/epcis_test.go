package epcis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/epcis/epcistest"
)

var at = time.Date(2026, 1, 15, 9, 30, 12, 345_000_000, time.UTC)

const (
	rp = "urn:epc:id:sgln:4012345.00001.door9"
	bl = "urn:epc:id:sgln:4012345.00001.0"
)

func testConfig(t testing.TB) Config {
	t.Helper()
	p, err := NewPrefixes(map[string]int{"4012345": 7, "0614141": 7})
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Prefixes: p, ReadPoint: rp, BizLocation: bl, Location: time.FixedZone("CET", 3600),
		TransactionType: "desadv", TransactionURI: "urn:epcglobal:cbv:bt:4012345000009:{id}",
	}
}

func base(dir dock.Direction, v dock.Verdict, r dock.Reason) dock.CustodyEvent {
	return dock.CustodyEvent{
		Schema: dock.EventSchema, ID: "0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11", Seq: 42,
		Site: "hamburg", Station: "hamburg-door-9", Door: "door-9", Direction: dir,
		Time: at, ClockSynced: true, Reader: "scanner-1", Raw: "x",
		Decision: dock.Decision{Verdict: v, Reason: r}, AllowlistVersion: "v7",
	}
}

// The identifier kinds a door sees, as the station records them, and the
// EPCIS "what" each must render to (literal JSON).
var kinds = []struct {
	name     string
	fill     func(*dock.CustodyEvent)
	instance bool
	what     string // the members from type to the object lists
}{
	{"lot barcode with count (AI 30)", func(e *dock.CustodyEvent) {
		e.GTIN, e.Lot, e.Qty = "04012345123456", "998877", 12
		e.AIs = []dock.AIValue{{AI: "01", Value: e.GTIN}, {AI: "30", Value: "12"}, {AI: "10", Value: "998877"}}
	}, false, `"type":"ObjectEvent",EVT,"quantityList":[{"epcClass":"urn:epc:class:lgtin:4012345.012345.998877","quantity":12}]`},
	{"serial barcode", func(e *dock.CustodyEvent) {
		e.GTIN, e.Serial, e.Lot = "80614141123458", "6789", "L1"
		e.AIs = []dock.AIValue{{AI: "01", Value: e.GTIN}, {AI: "10", Value: "L1"}, {AI: "21", Value: "6789"}}
	}, true, `"type":"ObjectEvent",EVT,"epcList":["urn:epc:id:sgtin:0614141.812345.6789"]`},
	{"SSCC", func(e *dock.CustodyEvent) {
		e.SSCC = "106141411234567897"
		e.AIs = []dock.AIValue{{AI: "00", Value: e.SSCC}}
	}, true, `"type":"ObjectEvent",EVT,"epcList":["urn:epc:id:sscc:0614141.1123456789"]`},
	{"pallet SSCC with content (AI 02 + 10 + 37)", func(e *dock.CustodyEvent) {
		e.SSCC, e.Lot, e.Qty = "106141411234567897", "L7", 40
		e.AIs = []dock.AIValue{{AI: "00", Value: e.SSCC}, {AI: "02", Value: "04012345123456"}, {AI: "10", Value: "L7"}, {AI: "37", Value: "40"}}
	}, true, `"type":"AggregationEvent",EVT,"parentID":"urn:epc:id:sscc:0614141.1123456789","childQuantityList":[{"epcClass":"urn:epc:class:lgtin:4012345.012345.L7","quantity":40}]`},
	{"SGTIN tag, known prefix", func(e *dock.CustodyEvent) {
		e.EPC, e.GTIN, e.Serial, e.Form = "urn:epc:id:sgtin:0614141.812345.6789", "80614141123458", "6789", "epc"
		e.Tag = &dock.TagRead{Antenna: 1, RSSI: -52}
	}, true, `"type":"ObjectEvent",EVT,"epcList":["urn:epc:id:sgtin:0614141.812345.6789"]`},
	{"SGTIN tag, prefix not in the table", func(e *dock.CustodyEvent) {
		e.EPC, e.GTIN, e.Serial, e.Form = "urn:epc:id:sgtin:9506000.013435.S1", "09506000134352", "S1", "epc"
		e.Tag = &dock.TagRead{Antenna: 2}
	}, true, `"type":"ObjectEvent",EVT,"epcList":["https://id.gs1.org/01/09506000134352/21/S1"]`},
}

// The decisions, and the EPCIS "why/where" each renders to per direction
// (literal JSON, DISP standing for the disposition, which may depend on
// whether the scan named an instance).
var decisions = []struct {
	v                  dock.Verdict
	r                  dock.Reason
	ship               string // matched shipment
	dispInst, dispCls  string
	receiving, shipped string
}{
	{dock.Accept, dock.ReasonOK, "ASN-1", "", "", crossedRcv("in_progress", true), crossedShp("in_transit", true)},
	{dock.Warn, dock.ReasonExpiresSoon, "ASN-1", "", "", crossedRcv("in_progress", true), crossedShp("in_transit", true)},
	{dock.Warn, dock.ReasonLotQuarantined, "", "", "", crossedRcv("non_sellable_other", false), crossedShp("non_sellable_other", false)},
	{dock.Warn, dock.ReasonLotRecalled, "", "", "", crossedRcv("recalled", false), crossedShp("recalled", false)},
	{dock.Reject, dock.ReasonLotRecalled, "ASN-1", "", "", refusedRcv("recalled", true), refusedShp("recalled", true)},
	{dock.Reject, dock.ReasonExpired, "", "", "", refusedRcv("expired", false), refusedShp("expired", false)},
	{dock.Reject, dock.ReasonLotQuarantined, "", "", "", refusedRcv("non_sellable_other", false), refusedShp("non_sellable_other", false)},
	{dock.Reject, dock.ReasonLotBlocked, "", "", "", refusedRcv("non_sellable_other", false), refusedShp("non_sellable_other", false)},
	{dock.Reject, dock.ReasonUnknownLot, "", "", "", refusedRcv("mismatch_class", false), refusedShp("mismatch_class", false)},
	{dock.Reject, dock.ReasonNotExpected, "", "mismatch_instance", "mismatch_class", refusedRcv("DISP", false), refusedShp("DISP", false)},
	{dock.Reject, dock.ReasonOverQuantity, "ASN-1", "", "", refusedRcv("mismatch_quantity", true), refusedShp("mismatch_quantity", true)},
	{dock.Reject, dock.ReasonDuplicateSerial, "", "", "", refusedRcv("mismatch_instance", false), refusedShp("mismatch_instance", false)},
	{dock.Reject, dock.ReasonSerialLotMismatch, "", "", "", refusedRcv("non_conformant", false), refusedShp("non_conformant", false)},
	{dock.Reject, dock.ReasonStorageFault, "", "", "", refusedRcv("", false), refusedShp("", false)},
}

const (
	bizTx = `"bizTransactionList":[{"type":"desadv","bizTransaction":"urn:epcglobal:cbv:bt:4012345000009:ASN-1"}],`
	rpJS  = `"readPoint":{"id":"urn:epc:id:sgln:4012345.00001.door9"},`
	blJS  = `"bizLocation":{"id":"urn:epc:id:sgln:4012345.00001.0"},`
)

func disp(d string) string {
	if d == "" {
		return ""
	}
	return `"disposition":"` + d + `",`
}

func tx(ship bool) string {
	if ship {
		return bizTx
	}
	return ""
}

func crossedRcv(d string, ship bool) string {
	return `"action":"OBSERVE","bizStep":"receiving",` + disp(d) + rpJS + blJS + tx(ship) +
		`"destinationList":[{"type":"location","destination":"urn:epc:id:sgln:4012345.00001.0"}],`
}

func crossedShp(d string, ship bool) string {
	return `"action":"OBSERVE","bizStep":"shipping",` + disp(d) + rpJS + tx(ship) +
		`"sourceList":[{"type":"location","source":"urn:epc:id:sgln:4012345.00001.0"}],`
}

func refusedRcv(d string, ship bool) string {
	return `"action":"OBSERVE","bizStep":"inspecting",` + disp(d) + rpJS + tx(ship)
}

func refusedShp(d string, ship bool) string {
	return `"action":"OBSERVE","bizStep":"inspecting",` + disp(d) + rpJS + blJS + tx(ship)
}

const (
	evtHead = `"eventID":"urn:uuid:EVENTID","eventTime":"2026-01-15T09:30:12.345Z","eventTimeZoneOffset":"+01:00"`
	wantID  = "032b03d4-8ded-5c14-9f1d-c130999f50d6" // uuid5(3d1f8a52-…, "hamburg-door-9\x0042\x00<id>"), checked with Python's uuid module
)

// TestRenderTable renders every identifier kind under every decision in
// both directions and compares the exact JSON; every rendering also passes
// GS1's EPCIS 2.0 schema and the CBV 2.0 vocabularies inside a document.
func TestRenderTable(t *testing.T) {
	cfg := testConfig(t)
	for _, k := range kinds {
		for _, d := range decisions {
			for _, dir := range []dock.Direction{dock.Receiving, dock.Shipping} {
				name := k.name + "/" + string(d.v) + "-" + string(d.r) + "/" + string(dir)
				t.Run(name, func(t *testing.T) {
					ev := base(dir, d.v, d.r)
					ev.Shipment = d.ship
					k.fill(&ev)
					why := d.receiving
					if dir == dock.Shipping {
						why = d.shipped
					}
					if k.instance {
						why = strings.Replace(why, "DISP", d.dispInst, 1)
					} else {
						why = strings.Replace(why, "DISP", d.dispCls, 1)
					}
					ship := ""
					if d.ship != "" {
						ship = `"dockd:shipment":"` + d.ship + `",`
					}
					want := "{" + strings.Replace(k.what, "EVT", evtHead, 1) + "," + why +
						`"dockd:eventID":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11","dockd:station":"hamburg-door-9","dockd:seq":42,"dockd:reader":"scanner-1",` +
						`"dockd:decision":"` + string(d.v) + `","dockd:reason":"` + string(d.r) + `",` + ship +
						`"dockd:clockSynced":true,"dockd:allowlistVersion":"v7"}`
					want = strings.Replace(want, "EVENTID", wantID, 1)
					e, err := Render(ev, cfg)
					if err != nil {
						t.Fatal(err)
					}
					got, err := json.Marshal(e)
					if err != nil {
						t.Fatal(err)
					}
					if string(got) != want {
						t.Errorf("rendering differs\n got: %s\nwant: %s", got, want)
					}
					doc, err := json.Marshal(NewDocument(cfg, at, e))
					if err != nil {
						t.Fatal(err)
					}
					epcistest.Require(t, doc)
				})
			}
		}
	}
}

// The four defects of issue 14, each stated as what a consumer reads.
func TestIssue14Defects(t *testing.T) {
	cfg := testConfig(t)
	render := func(ev dock.CustodyEvent) map[string]any {
		t.Helper()
		e, err := Render(ev, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
	t.Run("label count kept", func(t *testing.T) {
		ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		ev.GTIN, ev.Lot, ev.Qty = "09506000134352", "LOT42", 12
		ev.AIs = []dock.AIValue{{AI: "01", Value: ev.GTIN}, {AI: "30", Value: "12"}, {AI: "10", Value: "LOT42"}}
		m := render(ev)
		q := m["quantityList"].([]any)[0].(map[string]any)
		if q["quantity"] != 12.0 || q["epcClass"] != "https://id.gs1.org/01/09506000134352/10/LOT42" {
			t.Errorf("quantityList %v, want 12 of the lot", q)
		}
	})
	t.Run("one item, one identifier, barcode or tag", func(t *testing.T) {
		for _, known := range []bool{true, false} {
			c := cfg
			if !known {
				c.Prefixes = Prefixes{}
			}
			bar := base(dock.Receiving, dock.Accept, dock.ReasonOK)
			bar.GTIN, bar.Serial = "80614141123458", "6789"
			tag := bar
			tag.EPC, tag.Form, tag.Tag = "urn:epc:id:sgtin:0614141.812345.6789", "epc", &dock.TagRead{}
			eb, err1 := Render(bar, c)
			et, err2 := Render(tag, c)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if len(et.EPCList) != 1 || !slices.Equal(eb.EPCList, et.EPCList) {
				t.Errorf("prefix known %v: barcode %q, tag %q: want the same single identifier", known, eb.EPCList, et.EPCList)
			}
		}
	})
	t.Run("a tag's partition splits its URN even if the table disagrees", func(t *testing.T) {
		c := cfg
		c.Prefixes, _ = NewPrefixes(map[string]int{"0614141": 9}) // wrong for this prefix
		tag := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		tag.EPC, tag.GTIN, tag.Serial, tag.Tag = "urn:epc:id:sgtin:0614141.812345.6789", "80614141123458", "6789", &dock.TagRead{}
		e, err := Render(tag, c)
		if err != nil || !slices.Equal(e.EPCList, []string{"urn:epc:id:sgtin:0614141.812345.6789"}) {
			t.Errorf("tag under a wrong table entry: %v %v", e, err)
		}
	})
	t.Run("a reject is not a receipt", func(t *testing.T) {
		ev := base(dock.Receiving, dock.Reject, dock.ReasonLotRecalled)
		ev.GTIN, ev.Lot = "09506000134352", "LOT42"
		m := render(ev)
		if m["bizStep"] == "receiving" || m["bizStep"] == "accepting" || m["bizStep"] == "arriving" || m["bizLocation"] != nil || m["destinationList"] != nil {
			t.Errorf("refused goods render as arrived/received: %v", m)
		}
	})
	t.Run("no private URN namespace", func(t *testing.T) {
		ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		ev.GTIN, ev.Serial = "09506000134352", "S1"
		e, _ := Render(ev, Config{})
		b, _ := json.Marshal(NewDocument(Config{}, at, e))
		if strings.Contains(string(b), "urn:dockd") {
			t.Errorf("rendering uses urn:dockd: %s", b)
		}
	})
}

// Trade measures become a quantity with its UN/ECE unit; a count wins over
// a measure; logistic measures and ambiguous units are not quantities.
func TestQuantities(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct {
		ais  []dock.AIValue
		want string
	}{
		{[]dock.AIValue{{AI: "3103", Value: "001250"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":1.25,"uom":"KGM"}`},
		{[]dock.AIValue{{AI: "3922", Value: "1"}, {AI: "3202", Value: "000450"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":4.5,"uom":"LBR"}`},
		{[]dock.AIValue{{AI: "3150", Value: "000002"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":2,"uom":"LTR"}`},
		{[]dock.AIValue{{AI: "3615", Value: "012345"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":0.12345,"uom":"GLL"}`},
		{[]dock.AIValue{{AI: "30", Value: "7"}, {AI: "3103", Value: "001250"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":7}`},
		{[]dock.AIValue{{AI: "3301", Value: "001250"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":1}`}, // gross, logistic
		{[]dock.AIValue{{AI: "3122", Value: "000150"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":1}`}, // a width
		{[]dock.AIValue{{AI: "3570", Value: "000016"}}, `{"epcClass":"urn:epc:idpat:sgtin:4012345.912345.*","quantity":1}`}, // oz: weight or volume
	} {
		ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		ev.GTIN = "94012345123459"
		ev.AIs = append([]dock.AIValue{{AI: "01", Value: ev.GTIN}}, tc.ais...)
		e, err := Render(ev, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(e.QuantityList[0])
		if string(got) != tc.want {
			t.Errorf("%v: %s, want %s", tc.ais, got, tc.want)
		}
	}
	// A pallet without a count of its content: quantity unknown, left out.
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.SSCC = "106141411234567897"
	ev.AIs = []dock.AIValue{{AI: "00", Value: ev.SSCC}, {AI: "02", Value: "09506000134352"}}
	e, err := Render(ev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(e.ChildQuantityList)
	if string(got) != `[{"epcClass":"https://id.gs1.org/01/09506000134352"}]` {
		t.Errorf("pallet without AI 37: %s", got)
	}
	for p, u := range Measures {
		if len(p) != 3 || len(u) != 3 || strings.Trim(u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			t.Errorf("measure %s: unit %q is not a Rec. 20 code", p, u)
		}
	}
}

func TestPrefixes(t *testing.T) {
	p, err := NewPrefixes(map[string]int{"0": 7, "06": 9, "0614141": 7, "9506": 7})
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]int{
		"0614141123458": 7, // the known prefix beats the rule
		"0614142000005": 9, // the 06 rule
		"0123456789012": 7, // the 0 rule
		"9506000134352": 7,
		"8000000000000": 0,
		"":              0,
	} {
		if got := p.Length(body); got != want {
			t.Errorf("Length(%q) = %d, want %d", body, got, want)
		}
	}
	for _, bad := range []map[string]int{{"": 7}, {"06a": 7}, {"0614141": 5}, {"0614141": 13}, {"0123456789012": 7}} {
		if _, err := NewPrefixes(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("NewPrefixes(%v) = %v, want ErrConfig", bad, err)
		}
	}
	// A rendering follows the table: the SSCC's and the GTIN's company
	// prefix split where the table says.
	cfg := Config{Prefixes: p}
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "00614142000005", "A/B"
	e, _ := Render(ev, cfg)
	if want := "urn:epc:id:sgtin:061414200.0000.A%2FB"; e.EPCList[0] != want {
		t.Errorf("got %s, want %s", e.EPCList[0], want)
	}
}

func TestCheckLocation(t *testing.T) {
	for _, ok := range []string{
		"urn:epc:id:sgln:0614141.00777.0", "urn:epc:id:sgln:4012345.00001.door%2F9", "urn:epc:id:sgln:061414112345..x",
		"https://id.gs1.org/414/4012345000009", "https://id.gs1.org/414/4012345000009/254/door9",
		"https://acme.example/locations/hamburg/door-9",
	} {
		if strings.HasSuffix(ok, "..x") {
			continue // location reference may not be empty unless the prefix is 12 digits: covered below
		}
		if err := CheckLocation(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if err := CheckLocation("urn:epc:id:sgln:061414112345..x"); err != nil {
		t.Errorf("12-digit prefix with empty location reference: %v", err)
	}
	for _, bad := range []string{
		"", "urn:dockd:site:hamburg", "urn:epc:id:sgln:0614141.0077.0", "urn:epc:id:sgln:0614141.00777", "urn:epc:id:sgln:0614141.00777.a/b",
		"https://id.gs1.org/414/4012345000008", "https://id.gs1.org/414/4012345000009/x", "https://id.gs1.org/01/09506000134352",
		"door 9", "ftp://x/y",
	} {
		if err := CheckLocation(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

func TestCheckTransaction(t *testing.T) {
	for _, ok := range [][2]string{{"", ""}, {"po", "urn:epcglobal:cbv:bt:4012345000009:{id}"}, {"desadv", "https://erp.example/asn/{id}"}, {"https://erp.example/bt-types/asn", ""}} {
		if err := CheckTransaction(ok[0], ok[1]); err != nil {
			t.Errorf("%q %q: %v", ok[0], ok[1], err)
		}
	}
	for _, bad := range [][2]string{{"asn", ""}, {"po", "https://erp.example/asn/"}, {"po", "{id}"}, {"po", "urn:epcglobal:cbv:bt:4012345000008:{id}"}, {"po", "x/{id}/{id}"}} {
		if err := CheckTransaction(bad[0], bad[1]); !errors.Is(err, ErrConfig) {
			t.Errorf("%q %q accepted (%v)", bad[0], bad[1], err)
		}
	}
	// The id is percent-encoded into the template; an id that is a URI is
	// used as is when no template is set, and a bare id then gives nothing.
	if got := transactionURI("PO 7/1", "https://erp.example/po/{id}"); got != "https://erp.example/po/PO%207%2F1" {
		t.Errorf("got %s", got)
	}
	if got := transactionURI("urn:epcglobal:cbv:bt:4012345000009:A1", ""); got != "urn:epcglobal:cbv:bt:4012345000009:A1" {
		t.Errorf("got %s", got)
	}
	if got := transactionURI("ASN-1", ""); got != "" {
		t.Errorf("bare id without a template gave %s", got)
	}
}

// The station's document: exact bytes, created at the event's time (not
// the wall clock), identical on every rendering of the same stored bytes.
func TestStationDocument(t *testing.T) {
	cfg := testConfig(t)
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "80614141123458", "6789"
	stored, _ := json.Marshal(ev)
	a, err := StationDocument(stored, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"@context":["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",{"dockd":"https://dockd.invalid/epcis/"}],` +
		`"type":"EPCISDocument","schemaVersion":"2.0","creationDate":"2026-01-15T09:30:12.345Z","epcisBody":{"eventList":[` +
		`{"type":"ObjectEvent","eventID":"urn:uuid:` + wantID + `","eventTime":"2026-01-15T09:30:12.345Z","eventTimeZoneOffset":"+01:00",` +
		`"epcList":["urn:epc:id:sgtin:0614141.812345.6789"],"action":"OBSERVE","bizStep":"receiving","disposition":"in_progress",` + rpJS + blJS +
		`"destinationList":[{"type":"location","destination":"urn:epc:id:sgln:4012345.00001.0"}],` +
		`"dockd:eventID":"0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11","dockd:station":"hamburg-door-9","dockd:seq":42,"dockd:reader":"scanner-1",` +
		`"dockd:decision":"accept","dockd:reason":"ok","dockd:clockSynced":true,"dockd:allowlistVersion":"v7"}]}}`
	if string(a) != want {
		t.Errorf("document differs\n got: %s\nwant: %s", a, want)
	}
	epcistest.Require(t, a)
	time.Sleep(2 * time.Millisecond)
	b, _ := StationDocument(stored, cfg)
	if string(a) != string(b) {
		t.Error("two renderings of the same stored event differ")
	}
	for _, rec := range []string{
		`{"schema":"dockd.operator-event/1","kind":"operator","action":"acknowledge","id":"x","seq":3}`,
		`{"schema":"dockd.seq-gap/1","kind":"gap","id":"x","seq":9,"from":4,"to":8}`,
	} {
		if _, err := StationDocument([]byte(rec), cfg); !errors.Is(err, ErrNotRendered) {
			t.Errorf("%s: %v, want ErrNotRendered", rec, err)
		}
	}
	sim := ev
	sim.Simulated, sim.Reader, sim.Actor, sim.Via = true, "simulate", "user:anna", "page"
	simb, _ := json.Marshal(sim)
	if _, err := StationDocument(simb, cfg); !errors.Is(err, ErrNotRendered) {
		t.Errorf("simulated scan: %v, want ErrNotRendered", err)
	}
	bad := base(dock.Receiving, dock.Reject, dock.ReasonBadScan)
	bad.GTIN = "09506000134352" // a partial decode is not an identified object
	sb, _ := json.Marshal(bad)
	if _, err := StationDocument(sb, cfg); !errors.Is(err, ErrNoObject) {
		t.Errorf("bad scan: %v, want ErrNoObject", err)
	}
	other := cfg
	other.Site, other.Door = "hamburg", "door-8"
	if _, err := StationDocument(stored, other); !errors.Is(err, ErrOtherDoor) {
		t.Errorf("event of door-9 rendered for door-8: %v", err)
	}
	other.Door = "door-9"
	if _, err := StationDocument(stored, other); err != nil {
		t.Errorf("own door: %v", err)
	}
	if _, err := StationDocument([]byte("{"), cfg); err == nil {
		t.Error("broken JSON rendered")
	}
}

// The collector's wrappers validate too, empty or full.
func TestDocuments(t *testing.T) {
	cfg := testConfig(t)
	var evs []*Event
	for _, k := range kinds {
		ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		k.fill(&ev)
		e, err := Render(ev, cfg)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	for name, v := range map[string]any{
		"document":             NewDocument(cfg, at, evs...),
		"empty document":       NewDocument(cfg, at),
		"query document":       NewQueryDocument(cfg, at, "SimpleEventQuery", "", evs...),
		"subscription results": NewQueryDocument(cfg, at, "SimpleEventQuery", "sub-1", evs[0]),
		"empty query result":   NewQueryDocument(cfg, at, "SimpleEventQuery", ""),
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := epcistest.Validate(b); err != nil {
			t.Errorf("%s: %v\n%s", name, err, b)
		}
	}
}

func TestEventIDStable(t *testing.T) {
	if got := EventID("hamburg-door-9", 42, "0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11"); got != "urn:uuid:"+wantID {
		t.Fatalf("EventID = %s", got)
	}
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "09506000134352", "S1"
	a, _ := Render(ev, Config{})
	b, _ := Render(ev, Config{Location: time.FixedZone("x", 7200)}) // other options
	if a.EventID != b.EventID {
		t.Fatalf("eventID changed across renderings: %s %s", a.EventID, b.EventID)
	}
	seen := map[string]string{a.EventID: "base"}
	for name, f := range map[string]func(*dock.CustodyEvent){
		"seq":     func(e *dock.CustodyEvent) { e.Seq++ },
		"station": func(e *dock.CustodyEvent) { e.Station = "other" },
		"id":      func(e *dock.CustodyEvent) { e.ID = "1b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11" },
	} {
		e := ev
		f(&e)
		oe, _ := Render(e, Config{})
		if prev, dup := seen[oe.EventID]; dup {
			t.Errorf("changing %s gives the eventID of %s", name, prev)
		}
		seen[oe.EventID] = name
	}
}

func TestRenderRefuses(t *testing.T) {
	for name, f := range map[string]func(*dock.CustodyEvent){
		"short GTIN":        func(e *dock.CustodyEvent) { e.GTIN = "123" },
		"SSCC with letters": func(e *dock.CustodyEvent) { e.SSCC = "10614141123456789X" },
		"EPC not a URI":     func(e *dock.CustodyEvent) { e.EPC = "0" },
		"bad content GTIN": func(e *dock.CustodyEvent) {
			e.SSCC = "106141411234567897"
			e.AIs = []dock.AIValue{{AI: "02", Value: "12"}}
		},
	} {
		ev := base(dock.Receiving, dock.Reject, dock.ReasonUnknownGTIN)
		f(&ev)
		if _, err := Render(ev, Config{}); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: %v, want ErrBadKey", name, err)
		}
	}
	grai := base(dock.Receiving, dock.Reject, dock.ReasonUnknownGTIN)
	grai.EPC = "urn:epc:id:grai:0614141.12345.400"
	if e, err := Render(grai, Config{}); err != nil || !slices.Equal(e.EPCList, []string{grai.EPC}) {
		t.Errorf("GRAI tag: %v %v, want its URI as read", e, err)
	}
	ev := base(dock.Receiving, dock.Reject, dock.ReasonUnknownGTIN)
	if _, err := Render(ev, Config{}); !errors.Is(err, ErrNoObject) {
		t.Errorf("no object: %v, want ErrNoObject", err)
	}
}

// Every CBV term the renderer can emit is in the CBV 2.0 vocabulary files,
// and the transaction types the config accepts are exactly the CBV's.
func TestVocabulary(t *testing.T) {
	steps, err := epcistest.Terms("cbv-context-bizstep.jsonld")
	if err != nil {
		t.Fatal(err)
	}
	disps, _ := epcistest.Terms("cbv-context-disposition.jsonld")
	btts, _ := epcistest.Terms("cbv-context-biztransaction-type.jsonld")
	sdts, _ := epcistest.Terms("cbv-context-sourcedest-type.jsonld")
	reasons := []dock.Reason{dock.ReasonOK, dock.ReasonBadScan, dock.ReasonUnknownGTIN, dock.ReasonUnknownLot, dock.ReasonLotRecalled,
		dock.ReasonLotBlocked, dock.ReasonLotQuarantined, dock.ReasonExpired, dock.ReasonExpiresSoon, dock.ReasonUnknownSerial,
		dock.ReasonSerialLotMismatch, dock.ReasonDuplicateSerial, dock.ReasonNotInCustody, dock.ReasonAlreadyShipped,
		dock.ReasonNotExpected, dock.ReasonOverQuantity, dock.ReasonStorageFault}
	for _, v := range []dock.Verdict{dock.Accept, dock.Warn, dock.Reject} {
		for _, dir := range []dock.Direction{dock.Receiving, dock.Shipping} {
			if s := BizStep(v, dir); !slices.Contains(steps, s) {
				t.Errorf("bizStep %q not in CBV", s)
			}
			for _, r := range reasons {
				for _, inst := range []bool{true, false} {
					if d := Disposition(dock.Decision{Verdict: v, Reason: r}, dir, inst); d != "" && !slices.Contains(disps, d) {
						t.Errorf("disposition %q not in CBV", d)
					}
				}
			}
		}
	}
	if !slices.Contains(sdts, SourceDestLocation) {
		t.Errorf("%q not a CBV source/destination type", SourceDestLocation)
	}
	var ours []string
	for k := range BizTransactionTypes {
		ours = append(ours, k)
	}
	slices.Sort(ours)
	if !slices.Equal(ours, btts) {
		t.Errorf("BizTransactionTypes %v, CBV file %v", ours, btts)
	}
}

// The GS1 files are the release named in testdata/README.md, unmodified.
func TestTestdataIsTheGS1Release(t *testing.T) {
	for file, sum := range map[string]string{
		"EPCIS-JSON-Schema.json":                 "ed3228d7867198b4a5be9748fe77f473457c6ed98224fab28a950b4ce634a041",
		"cbv-context-bizstep.jsonld":             "d3af98b70b5aefa5b3879ab706ebd74d32a3eaaf0aeb4345adf8ed8bb316cd25",
		"cbv-context-disposition.jsonld":         "5f2a5ca9218d76a822d705eb7d8fc3ac11f764b3471b0408c903a2eacccb027a",
		"cbv-context-biztransaction-type.jsonld": "4c61e71959d24620a03e26bb02dc431953944cd44bd7289dcad3fd5244b376ed",
		"cbv-context-sourcedest-type.jsonld":     "547100c43e6b15fd0c82b063aae18e4911b560fe634c3e16320e18984f66b930",
		"GS1-NOTICE":                             "13735431422cb2d8e4ed89466cb9d907130f21d9aa22ec767510306db4e7782d",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if got := hex.EncodeToString(h[:]); got != sum {
			t.Errorf("%s: sha256 %s, want %s", file, got, sum)
		}
	}
}

// The schema as compiled here is not vacuous: broken documents fail it.
func TestSchemaCatchesViolations(t *testing.T) {
	cfg := testConfig(t)
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "09506000134352", "S1"
	for name, f := range map[string]func(*Event){
		"offset without colon": func(o *Event) { o.EventTimeZoneOffset = "+0100" },
		"unknown action":       func(o *Event) { o.Action = "SEE" },
		"bad time":             func(o *Event) { o.EventTime = "yesterday" },
		"no object":            func(o *Event) { o.EPCList = nil },
		"bizStep not CBV":      func(o *Event) { o.BizStep = "unloading dock" },
		"bizStep not a term":   func(o *Event) { o.BizStep = "rejecting" },
		"made-up CBV URI":      func(o *Event) { o.BizStep = "urn:epcglobal:cbv:bizstep:rejecting" }, // the schema's lookahead pattern
		"disposition not CBV":  func(o *Event) { o.Disposition = "refused" },
		"bad uom": func(o *Event) {
			o.QuantityList = []Quantity{{EPCClass: "https://id.gs1.org/01/09506000134352", UOM: "kg"}}
		},
		"transaction type": func(o *Event) { o.BizTransactionList = []BizTx{{Type: "asn", BizTransaction: "urn:x:1"}} },
		"aggregation, no kids": func(o *Event) {
			o.Type, o.ParentID, o.EPCList = "AggregationEvent", "urn:epc:id:sscc:0614141.1123456789", nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			e, _ := Render(ev, cfg)
			f(e)
			b, _ := json.Marshal(NewDocument(cfg, at, e))
			if err := epcistest.Validate(b); err == nil {
				t.Fatalf("accepted %s", b)
			}
		})
	}
}

// FuzzRenderJSON: any stored bytes either fail with an error or render a
// document that passes the EPCIS schema and the CBV vocabularies.
func FuzzRenderJSON(f *testing.F) {
	cfg := testConfig(f)
	for _, k := range kinds {
		ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
		k.fill(&ev)
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Add([]byte(`{"schema":"dockd.custody-event/1","gtin":"00000000000000","serial":"\u0000%/","decision":"warn","reason":"expired","direction":"shipping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := StationDocument(b, cfg)
		if err != nil {
			return
		}
		if err := epcistest.Validate(doc); err != nil {
			t.Fatalf("%v\ninput: %s", err, b)
		}
	})
}

func BenchmarkStationDocument(b *testing.B) {
	cfg := testConfig(b)
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "80614141123458", "6789"
	stored, _ := json.Marshal(ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := StationDocument(stored, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// Every example event in CONTRACT.md's EPCIS section is valid inside a
// document, so the documentation cannot drift into invalid EPCIS.
func TestContractExamples(t *testing.T) {
	b, err := os.ReadFile("../../uplink/contract/CONTRACT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Examples, one per kind")
	if !ok {
		t.Fatal("CONTRACT.md has no EPCIS examples section")
	}
	n := 0
	for _, block := range strings.Split(sec, "```json\n")[1:] {
		ev, _, _ := strings.Cut(block, "```")
		doc := `{"@context":["` + ContextURL + `",{"dockd":"` + DefaultNamespace + `"}],"type":"EPCISDocument","schemaVersion":"2.0",` +
			`"creationDate":"2026-11-25T14:23:19.700Z","epcisBody":{"eventList":[` + ev + `]}}`
		if err := epcistest.Validate([]byte(doc)); err != nil {
			t.Errorf("example %d: %v\n%s", n+1, err, ev)
		}
		n++
	}
	if n < 7 {
		t.Errorf("found %d examples, want one per kind (7)", n)
	}
}

// BenchmarkEventMarshal is the baseline for BenchmarkStationDocument: what
// the station already spends per scan marshalling the custody event.
func BenchmarkEventMarshal(b *testing.B) {
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "80614141123458", "6789"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocumentSize reports the document's size against its event's (the
// figure SCALING.md quotes); it fails only if a document outgrows 4 KiB.
func TestDocumentSize(t *testing.T) {
	cfg := testConfig(t)
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Lot, ev.Serial, ev.Shipment = "80614141123458", "L1", "6789", "ASN-1"
	ev.AIs = []dock.AIValue{{AI: "01", Value: ev.GTIN}, {AI: "10", Value: "L1"}, {AI: "21", Value: "6789"}}
	stored, _ := json.Marshal(ev)
	doc, err := StationDocument(stored, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("event %d B, EPCIS document %d B (%.1f×)", len(stored), len(doc), float64(len(doc))/float64(len(stored)))
	if len(doc) > 4096 {
		t.Errorf("document of %d bytes", len(doc))
	}
}

// A station document decodes and re-encodes to the same bytes, and its
// events re-wrap into a valid query document (the collector's path).
func TestDecodeDocumentRoundTrip(t *testing.T) {
	cfg := testConfig(t)
	for _, k := range kinds {
		ev := base(dock.Shipping, dock.Accept, dock.ReasonOK)
		ev.Shipment = "ASN-1"
		k.fill(&ev)
		stored, _ := json.Marshal(ev)
		doc, err := StationDocument(stored, cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeDocument(doc)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(d)
		if string(again) != string(doc) {
			t.Errorf("%s: round trip differs\n got: %s\nwant: %s", k.name, again, doc)
		}
		q, _ := json.Marshal(NewQueryDocument(cfg, at, "SimpleEventQuery", "", d.EPCISBody.EventList...))
		epcistest.Require(t, q)
	}
	for _, bad := range []string{`{`, `{"type":"EPCISQueryDocument"}`, `{"type":"EPCISDocument","epcisBody":{"eventList":[{"type":"TransformationEvent"}]}}`} {
		if _, err := DecodeDocument([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

// FuzzConfigAccepted: whatever locations and transaction settings
// check-config accepts render documents that pass the EPCIS schema.
func FuzzConfigAccepted(f *testing.F) {
	f.Add("urn:epc:id:sgln:4012345.00001.door%2F9", "desadv", "urn:epcglobal:cbv:bt:4012345000009:{id}", "ASN 1/2")
	f.Add("https://id.gs1.org/414/4012345000009/254/d9", "https://erp.example/t", "https://erp.example/asn/{id}", "x")
	f.Add("https://acme.example/doors/9?x=1#f", "", "", "urn:x:y")
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "80614141123458", "6789"
	f.Fuzz(func(t *testing.T, loc, typ, tmpl, id string) {
		if CheckLocation(loc) != nil || CheckTransaction(typ, tmpl) != nil || id == "" {
			return
		}
		c := Config{ReadPoint: loc, BizLocation: loc, TransactionType: typ, TransactionURI: tmpl}
		e := ev
		e.Shipment = id
		r, err := Render(e, c)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(NewDocument(c, at, r))
		if err := epcistest.Validate(b); err != nil {
			t.Fatalf("accepted config renders an invalid document: %v\n%s", err, b)
		}
	})
}
