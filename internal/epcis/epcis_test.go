package epcis

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/dockd/dockd/internal/dock"
)

// publishedSchema compiles GS1's EPCIS 2.0 JSON Schema from testdata.
func publishedSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile("testdata/EPCIS-JSON-Schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("rendering is not JSON: %v", err)
	}
	return s.Validate(v)
}

var at = time.Date(2026, 1, 15, 9, 30, 12, 345_000_000, time.UTC)

func base(dir dock.Direction, v dock.Verdict, r dock.Reason) dock.CustodyEvent {
	return dock.CustodyEvent{
		Schema: dock.EventSchema, ID: "0b7e4f0e-9d62-4f43-8a55-0c8f2d9c1a11", Seq: 42,
		Site: "hamburg", Station: "hamburg-door-9", Door: "door-9", Direction: dir,
		Time: at, ClockSynced: true, Reader: "scanner-1", Raw: "x",
		Decision: dock.Decision{Verdict: v, Reason: r}, AllowlistVersion: "v7",
	}
}

// gcp7 knows the GS1 example prefixes 0614141 and 4012345 (7 digits).
func gcp7(key string) int {
	if strings.HasPrefix(key[1:], "0614141") || strings.HasPrefix(key[1:], "4012345") {
		return 7
	}
	return 0
}

func TestRender(t *testing.T) {
	schema := publishedSchema(t)
	berlin := time.FixedZone("CET", 3600)
	with := func(ev dock.CustodyEvent, f func(*dock.CustodyEvent)) dock.CustodyEvent { f(&ev); return ev }
	cases := []struct {
		name     string
		ev       dock.CustodyEvent
		opt      Options
		epcs     []string
		class    string
		bizStep  string
		disp     string
		tzOffset string
	}{
		{"serialised item, TDS example, prefix known",
			with(base(dock.Receiving, dock.Accept, dock.ReasonOK), func(e *dock.CustodyEvent) { e.GTIN, e.Serial, e.Lot = "80614141123458", "6789", "L1" }),
			Options{CompanyPrefixLength: gcp7}, []string{"urn:epc:id:sgtin:0614141.812345.6789"}, "", "receiving", "in_progress", "+00:00"},
		{"serialised item, prefix unknown: Digital Link, serial escaped",
			with(base(dock.Shipping, dock.Accept, dock.ReasonOK), func(e *dock.CustodyEvent) { e.GTIN, e.Serial = "09506000134352", "A/B%1" }),
			Options{}, []string{"https://id.gs1.org/01/09506000134352/21/A%2FB%251"}, "", "shipping", "in_transit", "+00:00"},
		{"serial with characters EPC URIs escape",
			with(base(dock.Receiving, dock.Warn, dock.ReasonExpiresSoon), func(e *dock.CustodyEvent) { e.GTIN, e.Serial = "80614141123458", `a"b&c<d>e?f` }),
			Options{CompanyPrefixLength: gcp7}, []string{"urn:epc:id:sgtin:0614141.812345.a%22b%26c%3Cd%3Ee%3Ff"}, "", "receiving", "in_progress", "+00:00"},
		{"pallet SSCC, TDS example",
			with(base(dock.Receiving, dock.Accept, dock.ReasonOK), func(e *dock.CustodyEvent) { e.SSCC = "106141411234567897" }),
			Options{CompanyPrefixLength: gcp7, Location: berlin}, []string{"urn:epc:id:sscc:0614141.1123456789"}, "", "receiving", "in_progress", "+01:00"},
		{"pallet SSCC, Digital Link",
			with(base(dock.Shipping, dock.Reject, dock.ReasonNotExpected), func(e *dock.CustodyEvent) { e.SSCC = "106141411234567897" }),
			Options{}, []string{"https://id.gs1.org/00/106141411234567897"}, "", "shipping", "mismatch_instance", "+00:00"},
		{"lot-level scan, LGTIN TDS example",
			with(base(dock.Receiving, dock.Reject, dock.ReasonLotRecalled), func(e *dock.CustodyEvent) { e.GTIN, e.Lot = "04012345123456", "998877" }),
			Options{CompanyPrefixLength: gcp7, Location: time.FixedZone("X", -(5*3600 + 30*60))}, nil, "urn:epc:class:lgtin:4012345.012345.998877", "receiving", "recalled", "-05:30"},
		{"lot-level scan, Digital Link",
			with(base(dock.Receiving, dock.Reject, dock.ReasonExpired), func(e *dock.CustodyEvent) { e.GTIN, e.Lot = "09506000134352", "LOT 1" }),
			Options{}, nil, "https://id.gs1.org/01/09506000134352/10/LOT%201", "receiving", "expired", "+00:00"},
		{"product only",
			with(base(dock.Receiving, dock.Reject, dock.ReasonUnknownGTIN), func(e *dock.CustodyEvent) { e.GTIN = "80614141123458" }),
			Options{CompanyPrefixLength: gcp7}, nil, "urn:epc:idpat:sgtin:0614141.812345.*", "receiving", "non_conformant", "+00:00"},
		{"over quantity on a lot",
			with(base(dock.Receiving, dock.Reject, dock.ReasonOverQuantity), func(e *dock.CustodyEvent) { e.GTIN, e.Lot = "09506000134352", "L1" }),
			Options{}, nil, "https://id.gs1.org/01/09506000134352/10/L1", "receiving", "mismatch_quantity", "+00:00"},
		{"not expected lot",
			with(base(dock.Receiving, dock.Reject, dock.ReasonNotExpected), func(e *dock.CustodyEvent) { e.GTIN, e.Lot = "09506000134352", "L1" }),
			Options{}, nil, "https://id.gs1.org/01/09506000134352/10/L1", "receiving", "mismatch_class", "+00:00"},
		{"RFID tag EPC, unsynchronised clock",
			with(base(dock.Shipping, dock.Reject, dock.ReasonAlreadyShipped), func(e *dock.CustodyEvent) {
				e.EPC, e.GTIN, e.Serial, e.ClockSynced = "urn:epc:id:sgtin:0614141.812345.6789", "80614141123458", "6789", false
			}),
			Options{CompanyPrefixLength: gcp7, ReadPoint: "urn:epc:id:sgln:0614141.00777.{door}", BizLocation: "https://id.gs1.org/414/0614141007772"},
			[]string{"urn:epc:id:sgtin:0614141.812345.6789"}, "", "shipping", "non_conformant", "+00:00"},
		{"storage fault: no disposition",
			with(base(dock.Receiving, dock.Reject, dock.ReasonStorageFault), func(e *dock.CustodyEvent) { e.GTIN, e.Serial = "09506000134352", "S1" }),
			Options{}, []string{"https://id.gs1.org/01/09506000134352/21/S1"}, "", "receiving", "", "+00:00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oe, err := Render(tc.ev, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(oe)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, schema, b); err != nil {
				t.Fatalf("violates the published EPCIS 2.0 schema: %v\n%s", err, b)
			}
			checkRules(t, b)
			if !slices.Equal(oe.EPCList, tc.epcs) {
				t.Errorf("epcList %q, want %q", oe.EPCList, tc.epcs)
			}
			if tc.class != "" && (len(oe.QuantityList) != 1 || oe.QuantityList[0].EPCClass != tc.class || oe.QuantityList[0].Quantity != 1) {
				t.Errorf("quantityList %+v, want one of %s", oe.QuantityList, tc.class)
			}
			if tc.class == "" && len(oe.QuantityList) != 0 {
				t.Errorf("unexpected quantityList %+v", oe.QuantityList)
			}
			if oe.BizStep != tc.bizStep || oe.Disposition != tc.disp || oe.EventTimeZoneOffset != tc.tzOffset {
				t.Errorf("bizStep %q disposition %q offset %q, want %q %q %q", oe.BizStep, oe.Disposition, oe.EventTimeZoneOffset, tc.bizStep, tc.disp, tc.tzOffset)
			}
			if et, err := time.Parse(time.RFC3339Nano, oe.EventTime); err != nil || !et.Equal(tc.ev.Time) {
				t.Errorf("eventTime %q is not the scan time %v (%v)", oe.EventTime, tc.ev.Time, err)
			}
			if oe.Station != tc.ev.Station || oe.Seq != tc.ev.Seq || oe.Reason != string(tc.ev.Reason) || oe.ClockSynced != tc.ev.ClockSynced {
				t.Errorf("extension members %+v", oe)
			}
			if tc.opt.ReadPoint != "" && oe.ReadPoint.ID != "urn:epc:id:sgln:0614141.00777.door-9" {
				t.Errorf("readPoint %q", oe.ReadPoint.ID)
			}
		})
	}
}

// cbvBizSteps and cbvDispositions are the CBV 2.0 short names this
// renderer may use (a subset of the standard vocabularies).
var (
	cbvBizSteps     = []string{"receiving", "shipping"}
	cbvDispositions = []string{"in_progress", "in_transit", "non_conformant", "recalled", "expired", "mismatch_class", "mismatch_instance", "mismatch_quantity"}
	uuidURN         = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	offsetRE        = regexp.MustCompile(`^[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)$`)
	epcURI          = regexp.MustCompile(`^(urn:epc:id:(sgtin:[0-9]{6,12}\.[0-9]{1,7}|sscc:[0-9]{6,12}\.[0-9]{5,11})\.?|https://id\.gs1\.org/(01/[0-9]{14}/21/|00/[0-9]{18}$))`)
	classURI        = regexp.MustCompile(`^(urn:epc:class:lgtin:[0-9]{6,12}\.[0-9]{1,7}\.|urn:epc:idpat:sgtin:[0-9]{6,12}\.[0-9]{1,7}\.\*$|https://id\.gs1\.org/01/[0-9]{14}(/10/|$))`)
)

// checkRules checks the standard's rules on the JSON as a consumer sees it.
func checkRules(t *testing.T, b []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"@context", "type", "eventID", "eventTime", "eventTimeZoneOffset", "action", "bizStep", "readPoint", "bizLocation"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	ctx, _ := m["@context"].([]any)
	if len(ctx) == 0 || ctx[0] != ContextURL {
		t.Errorf("@context %v does not start with %s", m["@context"], ContextURL)
	}
	if m["type"] != "ObjectEvent" || m["action"] != "OBSERVE" {
		t.Errorf("type %v action %v", m["type"], m["action"])
	}
	if s, _ := m["bizStep"].(string); !slices.Contains(cbvBizSteps, s) {
		t.Errorf("bizStep %q is not a CBV short name", s)
	}
	if d, ok := m["disposition"].(string); ok && !slices.Contains(cbvDispositions, d) {
		t.Errorf("disposition %q is not a CBV short name", d)
	}
	if id, _ := m["eventID"].(string); !uuidURN.MatchString(id) {
		t.Errorf("eventID %q is not a version-5 UUID URN", id)
	}
	if o, _ := m["eventTimeZoneOffset"].(string); !offsetRE.MatchString(o) {
		t.Errorf("eventTimeZoneOffset %q", o)
	}
	if et, _ := m["eventTime"].(string); !strings.HasSuffix(et, "Z") {
		t.Errorf("eventTime %q not in UTC", et)
	}
	epcs, _ := m["epcList"].([]any)
	qs, _ := m["quantityList"].([]any)
	if len(epcs) == 0 && len(qs) == 0 {
		t.Error("neither epcList nor quantityList")
	}
	for _, e := range epcs {
		if !epcURI.MatchString(e.(string)) {
			t.Errorf("epc %q is neither a pure-identity URN nor a Digital Link", e)
		}
	}
	for _, q := range qs {
		c, _ := q.(map[string]any)["epcClass"].(string)
		if !classURI.MatchString(c) {
			t.Errorf("epcClass %q is neither an EPC class URN nor a Digital Link", c)
		}
	}
	for k := range m {
		if strings.HasPrefix(k, "dockd:") {
			continue
		}
		if !slices.Contains([]string{"@context", "type", "eventID", "eventTime", "eventTimeZoneOffset", "epcList", "quantityList", "action", "bizStep", "disposition", "readPoint", "bizLocation"}, k) {
			t.Errorf("member %q is neither standard nor a dockd: extension", k)
		}
	}
}

func TestEventIDStable(t *testing.T) {
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "09506000134352", "S1"
	a, _ := Render(ev, Options{})
	b, _ := Render(ev, Options{Location: time.FixedZone("x", 7200)}) // re-delivery, other options
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
		oe, _ := Render(e, Options{})
		if prev, dup := seen[oe.EventID]; dup {
			t.Errorf("changing %s gives the eventID of %s", name, prev)
		}
		seen[oe.EventID] = name
	}
}

func TestRenderRefuses(t *testing.T) {
	bad := base(dock.Receiving, dock.Reject, dock.ReasonBadScan)
	if _, err := Render(bad, Options{}); !errors.Is(err, ErrNoObject) {
		t.Fatalf("bad scan: %v, want ErrNoObject", err)
	}
	short := base(dock.Receiving, dock.Reject, dock.ReasonUnknownGTIN)
	short.GTIN = "123"
	if _, err := Render(short, Options{}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short GTIN: %v, want ErrBadKey", err)
	}
}

// TestSchemaCatchesViolations makes sure the published schema, as
// compiled here, is not vacuous: broken renderings must fail it.
func TestSchemaCatchesViolations(t *testing.T) {
	schema := publishedSchema(t)
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "09506000134352", "S1"
	oe, _ := Render(ev, Options{})
	for name, f := range map[string]func(*ObjectEvent){
		"offset without colon": func(o *ObjectEvent) { o.EventTimeZoneOffset = "+0100" },
		"unknown action":       func(o *ObjectEvent) { o.Action = "SEE" },
		"bad time":             func(o *ObjectEvent) { o.EventTime = "yesterday" },
		"no object":            func(o *ObjectEvent) { o.EPCList = nil },
		"no context":           func(o *ObjectEvent) { o.Context = nil },
		"bizStep not CBV":      func(o *ObjectEvent) { o.BizStep = "unloading dock" },
	} {
		t.Run(name, func(t *testing.T) {
			o := *oe
			f(&o)
			b, _ := json.Marshal(o)
			if name == "no context" {
				b = bytes.Replace(b, []byte(`"@context":null,`), nil, 1)
			}
			if err := validate(t, schema, b); err == nil {
				t.Fatalf("schema accepted %s", b)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	ev := base(dock.Receiving, dock.Accept, dock.ReasonOK)
	ev.GTIN, ev.Serial = "80614141123458", "6789"
	opt := Options{CompanyPrefixLength: gcp7}
	b.ReportAllocs()
	for b.Loop() {
		oe, err := Render(ev, opt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(oe); err != nil {
			b.Fatal(err)
		}
	}
}
