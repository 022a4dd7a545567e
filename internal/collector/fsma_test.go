package collector

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dockd/dockd/internal/epcis"
	"github.com/dockd/dockd/internal/epcis/epcistest"
	"github.com/dockd/dockd/internal/fsma204"
	"github.com/dockd/dockd/internal/fsma204/fsma204test"
	"github.com/dockd/dockd/internal/testkit"
)

const testGTIN = "09506000134352"

// sscc18 is a valid SSCC with serial reference n.
func sscc18(n int) string {
	body := fmt.Sprintf("0950600013%07d", n)
	return body + checkDigit(body)
}

// published is one event the fleet run published, with the KDEs the
// export must show for it ("" CTE: not a CTE, never exported).
type published struct {
	f        fakeStation
	seq      uint64
	id       string
	time     time.Time
	lot      string
	cte      string // Receiving | Shipping | ""
	qty      string
	unit     string
	tlc      string
	shipment string
	epcis    bool // has an EPCIS rendering (not simulated)
	sscc     string
	serial   string
}

// fleetRun publishes, through a real Mosquitto and collector, the events
// of a small fleet (two sites, four doors) into a private PostgreSQL: the
// lot LOT-A received, rejected, shipped, on a pallet, by weight, stored as
// raw bytes, simulated; other lots; operator and gap records. It returns
// what it published.
func fleetRun(t *testing.T) (*testkit.Postgres, []published) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	in1, in2 := newFake("hamburg", "in-1"), newFake("hamburg", "in-2")
	out1, kiel := newFake("hamburg", "out-1"), newFake("kiel", "in-7")
	t0 := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	seqs := map[string]uint64{}
	var all []published
	add := func(f fakeStation, minute int, p published, extra map[string]any) {
		seqs[f.station]++
		p.f, p.seq, p.id, p.time = f, seqs[f.station], uuid(), t0.Add(time.Duration(minute)*time.Minute)
		m := map[string]any{"time": p.time.Format(time.RFC3339Nano)}
		if p.lot != "" {
			m["lot"] = p.lot
		}
		for k, v := range extra {
			m[k] = v
		}
		pub.publish(f.topic(), f.eventWith(p.seq, p.id, m))
		all = append(all, p)
	}
	tlcA := "(01)" + testGTIN + "(10)LOT-A"
	// LOT-A received at two doors of hamburg, one of them at the same
	// minute as kiel's receipt (ties sort by station, then seq).
	add(in1, 0, published{lot: "LOT-A", cte: fsma204.Receiving, qty: "12", unit: "each", tlc: tlcA, shipment: "ASN-1001", epcis: true},
		map[string]any{"qty": 12, "shipment": "ASN-1001", "ais": []map[string]string{{"ai": "01", "value": testGTIN}, {"ai": "10", "value": "LOT-A"}, {"ai": "30", "value": "12"}}})
	add(kiel, 0, published{lot: "LOT-A", cte: fsma204.Receiving, qty: "1", unit: "each", tlc: tlcA, epcis: true}, map[string]any{"decision": "warn", "reason": "expiry_soon"})
	add(in2, 5, published{lot: "LOT-A", epcis: true}, map[string]any{"decision": "reject", "reason": "lot_recalled"}) // refused: not a CTE
	add(in2, 6, published{lot: "LOT-A", cte: fsma204.Receiving, qty: "2.5", unit: "KGM", tlc: tlcA, epcis: true},
		map[string]any{"ais": []map[string]string{{"ai": "01", "value": testGTIN}, {"ai": "10", "value": "LOT-A"}, {"ai": "3102", "value": "000250"}}})
	pallet := sscc18(42)
	add(in1, 10, published{lot: "LOT-A", cte: fsma204.Receiving, qty: "40", unit: "each", tlc: tlcA, epcis: true, sscc: pallet},
		map[string]any{"gtin": nil, "sscc": pallet, "qty": 40, "raw": "]C100" + pallet,
			"ais": []map[string]string{{"ai": "00", "value": pallet}, {"ai": "02", "value": testGTIN}, {"ai": "37", "value": "40"}, {"ai": "10", "value": "LOT-A"}}})
	add(in1, 11, published{lot: "LOT-A"}, map[string]any{"simulated": true, "reader": "simulated"}) // no goods seen
	// Stored as raw bytes: jsonb cannot hold the U+0000 the scanner sent.
	add(in2, 20, published{lot: "LOT-A", cte: fsma204.Receiving, qty: "1", unit: "each", tlc: tlcA, shipment: "=cmd|' /C calc'!A0", epcis: true},
		map[string]any{"raw": "bad\u0000frame", "shipment": "=cmd|' /C calc'!A0"})
	add(out1, 90, published{lot: "LOT-A", cte: fsma204.Shipping, qty: "1", unit: "each", tlc: tlcA, shipment: "SO-77", epcis: true, serial: "S-1"},
		map[string]any{"direction": "shipping", "serial": "S-1", "shipment": "SO-77"})
	add(out1, 91, published{lot: "LOT-A", cte: fsma204.Shipping, qty: "1", unit: "each", tlc: tlcA, epcis: true, serial: "S-2"},
		map[string]any{"direction": "shipping", "serial": "S-2"})
	// Other lots, the day after.
	for i := 0; i < 6; i++ {
		f := []fakeStation{in1, in2, kiel}[i%3]
		add(f, 24*60+i, published{lot: "LOT-B", cte: fsma204.Receiving, qty: "1", unit: "each", tlc: "(01)" + testGTIN + "(10)LOT-B", epcis: true}, nil)
	}
	// An operator record and a declared gap: never CTEs.
	seqs[in1.station]++
	pub.publish(in1.topic(), mustJSON(map[string]any{"schema": SchemaOperatorEvent, "kind": "operator", "action": "direction", "id": uuid(),
		"seq": seqs[in1.station], "site": in1.site, "station": in1.station, "door": in1.door, "direction": "receiving",
		"time": t0.Add(30 * time.Minute).Format(time.RFC3339), "clock_synced": true, "lot": "LOT-A"}))
	seqs[in1.station] += 3
	pub.publish(in1.topic(), in1.gap(seqs[in1.station], seqs[in1.station]-2, seqs[in1.station]-1))
	want := int64(len(all) + 2)
	waitRows(t, pg, want, 30*time.Second, `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM dead_letter)`)
	if n := pg.QueryInt(`SELECT count(*) FROM events WHERE raw IS NOT NULL`); n != 1 {
		t.Fatalf("%d events stored as raw bytes, want 1 (the fleet run must cover that path)", n)
	}
	if n := pg.QueryInt(`SELECT count(*) FROM dead_letter`); n != 0 {
		var reason string
		if c, err := pgx.Connect(context.Background(), pg.DSN()); err == nil {
			_ = c.QueryRow(context.Background(), `SELECT reason FROM dead_letter LIMIT 1`).Scan(&reason)
			c.Close(context.Background())
		}
		t.Fatalf("%d dead letters: %s", n, reason)
	}
	return pg, all
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// wantRows is the export's rows for the published events sel selects, in
// the export's order (time, station, seq), as the test computes them.
func wantRows(all []published, sel func(published) bool) [][]string {
	var ps []published
	for _, p := range all {
		if p.cte != "" && sel(p) {
			ps = append(ps, p)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if !a.time.Equal(b.time) {
			return a.time.Before(b.time)
		}
		if a.f.station != b.f.station {
			return a.f.station < b.f.station
		}
		return a.seq < b.seq
	})
	var out [][]string
	for _, p := range ps {
		r := make([]string, fsma204.NumColumns)
		r[fsma204.ColTLC], r[fsma204.ColQuantity], r[fsma204.ColUnit], r[fsma204.ColCTE] = p.tlc, p.qty, p.unit, p.cte
		r[fsma204.ColDate] = p.time.Format("2006-01-02")
		r[fsma204.ColTime] = p.time.Format("2006-01-02T15:04:05") + "+00:00"
		r[fsma204.ColLocation] = "site " + p.f.site + ", door " + p.f.door
		if p.shipment != "" {
			r[fsma204.ColRefDocType], r[fsma204.ColRefDocNumber] = "Expected shipment (ASN/PO)", p.shipment
		}
		r[fsma204.ColGTIN], r[fsma204.ColLot], r[fsma204.ColSSCC], r[fsma204.ColSerial] = testGTIN, p.lot, p.sscc, p.serial
		r[fsma204.ColDecision] = "accept"
		if p.f.station == "kiel-in-7" && p.lot == "LOT-A" {
			r[fsma204.ColDecision] = "warn"
		}
		r[fsma204.ColEventID], r[fsma204.ColStation], r[fsma204.ColSeq] = p.id, p.f.station, fmt.Sprint(p.seq)
		r[fsma204.ColSite], r[fsma204.ColDoor] = p.f.site, p.f.door
		out = append(out, r)
	}
	return out
}

func exportTo(t *testing.T, pg *testkit.Postgres, q ExportQuery, format string) ([]byte, int) {
	t.Helper()
	var b bytes.Buffer
	w, err := fsma204.NewWriter(format, &b)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ExportFSMA204(context.Background(), poolFor(t, pg), q, w)
	if err != nil {
		t.Fatalf("export %s: %v", q, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), n
}

func diffRows(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		for c := 0; c < fsma204.NumColumns; c++ {
			g := ""
			if c < len(got[i]) {
				g = got[i][c]
			}
			if g != want[i][c] {
				t.Errorf("%s: row %d (%s seq %s) %q = %q, want %q", what, i+1, want[i][fsma204.ColStation], want[i][fsma204.ColSeq],
					fsma204.Columns()[c], g, want[i][c])
			}
		}
	}
}

// TestFSMA204ExportAndEPCISQuery: the events of a fleet run stored by the
// real collector answer a recall request as CSV and XLSX (exactly the
// lot's receiving and shipping events, in order, with their KDEs), and as
// EPCIS 2.0 query results (schema-valid, exactly the matching events).
func TestFSMA204ExportAndEPCISQuery(t *testing.T) {
	pg, all := fleetRun(t)

	// The export's own order agrees with an independent query of the
	// stored CTEs of the lot.
	lotA := func(p published) bool { return p.lot == "LOT-A" }
	want := wantRows(all, lotA)
	if len(want) != 7 {
		t.Fatalf("test setup: %d LOT-A CTEs, want 7", len(want))
	}

	b, n := exportTo(t, pg, ExportQuery{Lot: "LOT-A"}, fsma204.FormatCSV)
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV export does not parse: %v\n%s", err, b)
	}
	if n != len(want) || len(recs) != len(want)+1 || strings.Join(recs[0], ",") != strings.Join(fsma204.Columns(), ",") {
		t.Fatalf("CSV export: %d rows reported, %d records; want a header and %d rows:\n%s", n, len(recs), len(want), b)
	}
	// The CSV guards the scanned shipment id that would be a formula.
	wantCSV := make([][]string, len(want))
	for i, r := range want {
		wantCSV[i] = append([]string{}, r...)
		wantCSV[i][fsma204.ColRefDocNumber] = fsma204.CSVCell(r[fsma204.ColRefDocNumber])
	}
	diffRows(t, "csv --lot LOT-A", recs[1:], wantCSV)
	if !bytes.Contains(b, []byte(`'=cmd|`)) {
		t.Errorf("the CSV export does not guard the formula in a shipment id:\n%s", b)
	}

	b, _ = exportTo(t, pg, ExportQuery{Lot: "LOT-A"}, fsma204.FormatXLSX)
	sheet, err := fsma204test.ReadXLSX(b)
	if err != nil {
		t.Fatalf("the XLSX export does not open: %v", err)
	}
	if len(sheet.Rows) != len(want)+1 || sheet.AutoFilter != fmt.Sprintf("A1:W%d", len(want)+1) {
		t.Fatalf("XLSX export: %d rows, autofilter %q", len(sheet.Rows), sheet.AutoFilter)
	}
	diffRows(t, "xlsx --lot LOT-A", sheet.Rows[1:], want)

	// A time range: the first day, both lots, and a range inside it.
	day := func(p published) bool { return p.time.Before(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) }
	from, _ := ParseExportTime("2026-03-01", nil, false)
	to, _ := ParseExportTime("2026-03-01", nil, true)
	b, _ = exportTo(t, pg, ExportQuery{From: from, To: to}, fsma204.FormatCSV)
	recs, err = csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantDay := wantRows(all, day)
	for i := range wantDay {
		wantDay[i][fsma204.ColRefDocNumber] = fsma204.CSVCell(wantDay[i][fsma204.ColRefDocNumber])
	}
	diffRows(t, "csv --from/--to 2026-03-01", recs[1:], wantDay)
	lo, hi := time.Date(2026, 3, 1, 6, 6, 0, 0, time.UTC), time.Date(2026, 3, 1, 7, 30, 0, 0, time.UTC)
	b, _ = exportTo(t, pg, ExportQuery{Lot: "LOT-A", From: lo, To: hi}, fsma204.FormatXLSX)
	if sheet, err = fsma204test.ReadXLSX(b); err != nil {
		t.Fatal(err)
	}
	diffRows(t, "xlsx lot and range", sheet.Rows[1:], wantRows(all, func(p published) bool {
		return lotA(p) && !p.time.Before(lo) && p.time.Before(hi)
	}))
	if _, err := ExportFSMA204(context.Background(), poolFor(t, pg), ExportQuery{}, fsma204.NewCSV(io.Discard)); err != ErrNoExportKey {
		t.Errorf("an export without lot or range: %v, want ErrNoExportKey", err)
	}

	// EPCIS query.
	srv := httptest.NewServer(EPCISHandler(poolFor(t, pg)))
	defer srv.Close()
	get := func(query string) (int, http.Header, []byte) {
		t.Helper()
		res, err := http.Get(srv.URL + "/epcis/events?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, body
	}
	ids := func(query string) []string {
		t.Helper()
		code, h, body := get(query)
		if code != 200 || h.Get("GS1-EPCIS-Version") != "2.0.0" {
			t.Fatalf("GET ?%s: %d %s", query, code, body)
		}
		epcistest.Require(t, body)
		var doc epcis.QueryDocument
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, e := range doc.EPCISBody.QueryResults.ResultsBody.EventList {
			out = append(out, e.DockdID)
		}
		return out
	}
	wantIDs := func(sel func(published) bool) []string {
		var ps []published
		for _, p := range all {
			if p.epcis && sel(p) {
				ps = append(ps, p)
			}
		}
		sort.SliceStable(ps, func(i, j int) bool {
			if !ps[i].time.Equal(ps[j].time) {
				return ps[i].time.Before(ps[j].time)
			}
			return ps[i].f.station < ps[j].f.station
		})
		out := []string{}
		for _, p := range ps {
			out = append(out, p.id)
		}
		return out
	}
	check := func(query string, sel func(published) bool) {
		t.Helper()
		got, want := ids(query), wantIDs(sel)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("GET /epcis/events?%s:\n got %v\nwant %v", query, got, want)
		}
	}
	check("MATCH_lot=LOT-A", lotA) // the refused receipt too, as inspecting
	check("EQ_bizStep=shipping&MATCH_lot=LOT-A", func(p published) bool { return p.cte == fsma204.Shipping })
	check("EQ_bizStep=inspecting", func(p published) bool { return p.cte == "" && p.epcis })
	urn := func(u string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return url.QueryEscape(u)
	}
	palletURN := urn(epcis.SSCC(pallet(all), 7))
	check("MATCH_epc="+urn(epcis.SGTIN(testGTIN, "S-2", 7)), func(p published) bool { return p.serial == "S-2" })
	check("MATCH_epc="+url.QueryEscape("https://id.gs1.org/01/"+testGTIN+"/21/S-1"), func(p published) bool { return p.serial == "S-1" })
	check("MATCH_epc="+palletURN, func(published) bool { return false }) // a pallet's SSCC is its parentID
	check("MATCH_anyEPC="+palletURN, func(p published) bool { return p.sscc == pallet(all) })
	check("MATCH_epcClass="+urn(epcis.Class(testGTIN, "LOT-B", 7)), func(p published) bool { return p.lot == "LOT-B" })
	check("MATCH_epcClass="+url.QueryEscape("https://id.gs1.org/01/"+testGTIN+"/10/LOT-A")+"&GE_eventTime=2026-03-01T06:06:00Z&LT_eventTime=2026-03-01T07:30:00%2B00:00",
		func(p published) bool {
			return lotA(p) && p.serial == "" && !p.time.Before(lo) && p.time.Before(hi)
		})
	check("GE_eventTime=2026-03-01T06:00:00+00:00&LT_eventTime=2026-03-01T06:00:01Z", func(p published) bool { return p.time.Equal(all[0].time) })

	// Pages: perPage=2 walked by the Link header gives the whole answer.
	var paged []string
	next := "/epcis/events?MATCH_lot=LOT-A|LOT-B&perPage=2"
	for pages := 0; next != ""; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		res, err := http.Get(srv.URL + next)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		epcistest.Require(t, body)
		var doc epcis.QueryDocument
		if err := json.Unmarshal(body, &doc); err != nil || res.StatusCode != 200 {
			t.Fatalf("page %d: %d %v", pages, res.StatusCode, err)
		}
		if len(doc.EPCISBody.QueryResults.ResultsBody.EventList) > 2 {
			t.Fatalf("page %d holds %d events, perPage 2", pages, len(doc.EPCISBody.QueryResults.ResultsBody.EventList))
		}
		for _, e := range doc.EPCISBody.QueryResults.ResultsBody.EventList {
			paged = append(paged, e.DockdID)
		}
		next = ""
		if l := res.Header.Get("Link"); l != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
		}
	}
	if want := wantIDs(func(p published) bool { return p.lot == "LOT-A" || p.lot == "LOT-B" }); strings.Join(paged, " ") != strings.Join(want, " ") {
		t.Errorf("paged:\n got %v\nwant %v", paged, want)
	}

	// Bad parameters: 400, an EPCIS QueryParameterException naming them.
	for query, words := range map[string]string{
		"MATCH_epc=urn:epc:id:sgtin:123":                     "MATCH_epc",
		"MATCH_epcClass=urn:epc:id:sgtin:9506000.013435.S-2": "not a class",
		"GE_eventTime=yesterday":                             "GE_eventTime",
		"perPage=0":                                          "perPage",
		"perPage=5000":                                       "perPage",
		"nextPageToken=zzz":                                  "nextPageToken",
		"EQ_disposition=in_progress":                         "EQ_disposition",
		"MATCH_epc=https://id.gs1.org/01/123/21/x":           "check digit",
		"MATCH_lot=":                                         "empty",
		"a=%zz":                                              "invalid",
	} {
		code, h, body := get(query)
		var p problem
		_ = json.Unmarshal(body, &p)
		if code != 400 || p.Type != "epcisException:QueryParameterException" || !strings.Contains(p.Title, words) ||
			h.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET ?%s: %d %s, want 400 naming %q", query, code, body, words)
		}
	}
}

func pallet(all []published) string {
	for _, p := range all {
		if p.sscc != "" {
			return p.sscc
		}
	}
	return ""
}

// FuzzParseEPCISQuery: any query string is parsed or refused with
// ErrQueryParameter, never a panic, and what parses builds its SQL.
func FuzzParseEPCISQuery(f *testing.F) {
	for _, s := range []string{
		"MATCH_epc=urn:epc:id:sgtin:0950600.013435.S-2",
		"MATCH_anyEPC=urn:epc:id:sscc:0950600013.0000042|https://id.gs1.org/00/095060001300000426",
		"MATCH_epcClass=https://id.gs1.org/01/09506000134352/10/LOT%2FA&EQ_bizStep=receiving",
		"MATCH_anyEPCClass=urn:epc:idpat:sgtin:0950600.013435.*",
		"GE_eventTime=2026-03-01T06:00:00+00:00&LT_eventTime=2026-03-02T00:00:00Z&perPage=10",
		"MATCH_lot=A&MATCH_lot=B&nextPageToken=" + encodeCursor(pageCursor{time.Unix(1, 0), "st", 3}),
		"EQ_bizStep=https://ref.gs1.org/cbv/BizStep-shipping",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 4096 {
			return
		}
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseEPCISQuery(v)
		if err != nil {
			if !strings.Contains(err.Error(), ErrQueryParameter.Error()) {
				t.Fatalf("error %v does not wrap ErrQueryParameter", err)
			}
			return
		}
		var args []any
		_ = q.where(&args)
		if q.PerPage < 1 || q.PerPage > EPCISMaxPerPage {
			t.Fatalf("perPage %d", q.PerPage)
		}
		for _, ks := range [][]gs1Key{q.EPC, q.AnyEPC, q.EPCClass} {
			for _, k := range ks {
				if k.GTIN != "" && (len(k.GTIN) != 14 || checkDigit(k.GTIN[:13]) != k.GTIN[13:]) {
					t.Fatalf("key %+v: a GTIN without a valid check digit", k)
				}
				if k.SSCC != "" && (len(k.SSCC) != 18 || checkDigit(k.SSCC[:17]) != k.SSCC[17:]) {
					t.Fatalf("key %+v: an SSCC without a valid check digit", k)
				}
			}
		}
	})
}
