package fsma204

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/fsma204/fsma204test"
)

var t0 = time.Date(2026, 3, 1, 7, 30, 0, 0, time.UTC)

func base() Event {
	return Event{ID: "e1", Station: "hh-in", Seq: 7, Site: "hh", Door: "in", Kind: "custody", Direction: "receiving",
		Decision: "accept", Reason: "ok", Time: t0, GTIN: "09506000134352", Lot: "LOT1"}
}

func TestFromEvent(t *testing.T) {
	chicago, err := time.LoadLocation("America/Chicago")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	cases := []struct {
		name string
		mod  func(*Event)
		loc  *time.Location
		want map[int]string
	}{
		{"count", func(e *Event) { e.Qty = 12; e.Shipment = "ASN-9" }, nil, map[int]string{ColTLC: "(01)09506000134352(10)LOT1",
			ColQuantity: "12", ColUnit: "each", ColCTE: Receiving, ColDate: "2026-03-01", ColTime: "2026-03-01T07:30:00+00:00",
			ColLocation: "site hh, door in", ColRefDocType: "Expected shipment (ASN/PO)", ColRefDocNumber: "ASN-9",
			ColProduct: "", ColPrevSource: "", ColNextRecipient: "", ColSeq: "7"}},
		{"one item, local zone", func(e *Event) { e.Direction = "shipping"; e.Decision = "warn" }, chicago,
			map[int]string{ColQuantity: "1", ColUnit: "each", ColCTE: Shipping, ColDate: "2026-03-01", ColTime: "2026-03-01T01:30:00-06:00", ColDecision: "warn"}},
		{"measure", func(e *Event) { e.AIs = []AI{{"01", "09506000134352"}, {"3103", "001250"}} }, nil,
			map[int]string{ColQuantity: "1.25", ColUnit: "KGM"}},
		{"batch printed on the label", func(e *Event) { e.Batch = "B-77" }, nil,
			map[int]string{ColTLC: "(01)09506000134352(10)B-77", ColLot: "B-77"}},
		{"pallet with content", func(e *Event) {
			e.GTIN, e.SSCC, e.Qty = "", "095060001343520011", 40
			e.AIs = []AI{{"00", e.SSCC}, {"02", "09506000134352"}, {"37", "40"}, {"10", "LOT1"}}
		}, nil, map[int]string{ColTLC: "(01)09506000134352(10)LOT1", ColGTIN: "09506000134352", ColQuantity: "40", ColUnit: "each", ColSSCC: "095060001343520011"}},
		{"pallet, no count", func(e *Event) { e.GTIN, e.SSCC = "", "095060001343520011" }, nil,
			map[int]string{ColTLC: "LOT1", ColQuantity: "1", ColUnit: "pallet"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := base()
			c.mod(&e)
			r, err := FromEvent(e, c.loc)
			if err != nil {
				t.Fatal(err)
			}
			for col, want := range c.want {
				if r[col] != want {
					t.Errorf("%s = %q, want %q", columns[col], r[col], want)
				}
			}
		})
	}
	for name, mod := range map[string]func(*Event){
		"rejected":  func(e *Event) { e.Decision = "reject" },
		"simulated": func(e *Event) { e.Simulated = true },
		"operator":  func(e *Event) { e.Kind = "operator" },
		"bad scan":  func(e *Event) { e.Reason = "bad_scan"; e.GTIN, e.Lot = "", "" },
		"no door":   func(e *Event) { e.Direction = "" },
	} {
		e := base()
		mod(&e)
		if _, err := FromEvent(e, nil); !errors.Is(err, ErrNotCTE) {
			t.Errorf("%s: %v, want ErrNotCTE", name, err)
		}
	}
}

// Both writers carry the same cells; CSV guards formulas, XLSX keeps text
// as typed strings (never formulas) and numbers as numbers.
func TestWriters(t *testing.T) {
	e := base()
	e.Lot = "=HYPERLINK(\"http://x\")"
	e.Shipment = "line1\nline2, \"quoted\" <&> \x01"
	e.Qty = 3
	r1, err := FromEvent(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	e2 := base()
	e2.Lot, e2.Seq = "@SUM(A1)", 8
	r2, _ := FromEvent(e2, nil)

	var cb bytes.Buffer
	w := NewCSV(&cb)
	for _, r := range []*Row{&r1, &r2} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil || w.Rows() != 2 {
		t.Fatal(err, w.Rows())
	}
	if !strings.Contains(cb.String(), "\r\n") {
		t.Error("CSV lines do not end in CRLF")
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("csv: %v, %d records", err, len(recs))
	}
	if strings.Join(recs[0], ",") != strings.Join(Columns(), ",") {
		t.Errorf("header %q", recs[0])
	}
	if got := recs[1][ColLot]; got != "'=HYPERLINK(\"http://x\")" {
		t.Errorf("lot cell %q: formula not guarded", got)
	}
	if got := recs[2][ColLot]; got != "'@SUM(A1)" {
		t.Errorf("lot cell %q: formula not guarded", got)
	}
	if recs[1][ColRefDocNumber] != e.Shipment {
		t.Errorf("shipment cell %q", recs[1][ColRefDocNumber])
	}

	var xb bytes.Buffer
	x := NewXLSX(&xb)
	for _, r := range []*Row{&r1, &r2} {
		if err := x.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := fsma204test.ReadXLSX(xb.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != SheetName || s.AutoFilter != "A1:W3" || !s.Frozen || len(s.Rows) != 3 {
		t.Fatalf("sheet %q autofilter %q frozen %v rows %d", s.Name, s.AutoFilter, s.Frozen, len(s.Rows))
	}
	if strings.Join(s.Rows[0], "|") != strings.Join(Columns(), "|") {
		t.Errorf("xlsx header %q", s.Rows[0])
	}
	if s.Rows[1][ColLot] != e.Lot || s.Rows[2][ColLot] != e2.Lot {
		t.Errorf("xlsx lots %q %q", s.Rows[1][ColLot], s.Rows[2][ColLot])
	}
	if want := strings.Replace(e.Shipment, "\x01", "\uFFFD", 1); s.Rows[1][ColRefDocNumber] != want {
		t.Errorf("xlsx shipment %q, want %q", s.Rows[1][ColRefDocNumber], want)
	}
	if !s.Numeric["C2"] || !s.Numeric["U3"] || s.Numeric["A2"] {
		t.Errorf("numeric cells %v: want Quantity and Seq as numbers only", s.Numeric)
	}

	// An empty export is a header and an autofilter over it.
	xb.Reset()
	x = NewXLSX(&xb)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := fsma204test.ReadXLSX(xb.Bytes()); err != nil || len(s.Rows) != 1 || s.AutoFilter != "A1:W1" {
		t.Fatalf("empty xlsx: %v %+v", err, s)
	}
}

func TestColName(t *testing.T) {
	for i, want := range map[int]string{0: "A", 22: "W", 25: "Z", 26: "AA", 51: "AZ", 52: "BA", 701: "ZZ", 702: "AAA"} {
		if got := colName(i); got != want {
			t.Errorf("colName(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestDecimal(t *testing.T) {
	for in, want := range map[[2]string]string{{"001250", "3"}: "1.25", {"000500", "0"}: "500", {"000000", "2"}: "0", {"123456", "5"}: "1.23456"} {
		if got, ok := decimal(in[0], int(in[1][0]-'0')); !ok || got != want {
			t.Errorf("decimal(%v) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkWriters: the cost of one row in each format (no database),
// from a stored event to bytes, discarded.
func BenchmarkWriters(b *testing.B) {
	e := base()
	e.Qty, e.Shipment = 12, "ASN-001234"
	for _, format := range []string{FormatCSV, FormatXLSX} {
		b.Run(format, func(b *testing.B) {
			w, _ := NewWriter(format, io.Discard)
			b.ReportAllocs()
			for i := 0; i < b.N && i < MaxXLSXRows; i++ {
				e.Seq = uint64(i)
				r, err := FromEvent(e, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := w.Write(&r); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
