// Package fsma204 turns stored dockd custody events into the rows of the
// electronic sortable spreadsheet US FDA may ask for under the Food
// Traceability Rule (FSMA section 204, 21 CFR part 1 subpart S): one row
// per Critical Tracking Event (CTE) with its Key Data Elements (KDEs),
// written as CSV (RFC 4180) or as an XLSX workbook, one row at a time.
// It is pure: no database, no files; the collector feeds it rows it
// streams from PostgreSQL and hands it an io.Writer.
//
// # Which events are CTEs
//
// A dock door sees two of the rule's CTEs: receiving (21 CFR 1.1345) and
// shipping (1.1340). A custody scan is one of them when the goods crossed
// the door: decision accept or warn, direction receiving or shipping. A
// scan refused at the door (reject) is not a CTE: the goods were not
// received (or not shipped), and counting them would misstate where a
// lot is. Simulated scans (a person typed them, no goods were seen), bad
// scans and operator or gap records are not CTEs either. FromEvent says
// which events are rows; the others are skipped.
//
// # The KDE columns and what dockd can say
//
// Columns lists the header row. Values:
//
//   - Traceability Lot Code: the lot as the label printed it (AI 10),
//     prefixed by its GTIN in GS1 element string form, "(01)GTIN(10)LOT",
//     the usual way to make a TLC unique across products. Without a GTIN
//     (an SSCC-only pallet label with a lot) the lot alone.
//   - Product Description: blank. dockd stores GTINs, not product master
//     data, and central has no product table; the GTIN column names the
//     product. A recall answer must fill it from the owner's item master.
//   - Quantity and Unit of Measure: the label's count (AI 30 for a trade
//     item, AI 37 for a pallet's content) with unit "each" (trade items of
//     the GTIN, whatever packaging level the GTIN identifies, e.g. a
//     case); else a net trade measure (AI 310n–366n) with its UN/ECE
//     Rec. 20 unit code (KGM, LBR, LTR …); else 1 each for a labelled item
//     and 1 "pallet" for an SSCC whose label says no count.
//   - Critical Tracking Event: Receiving or Shipping.
//   - Event Date and Event Time: the scan's time in the export's time zone
//     (default UTC), the time as RFC 3339 with its offset. Central does
//     not know a site's zone; pass it (dockd collect export --tz).
//   - Location Description: "site SITE, door DOOR" — dockd's ids. The GLN
//     or SGLN of a site is configured on the station for EPCIS only and
//     is not sent with the custody event, so central cannot give it.
//   - Immediate Previous Source / Immediate Subsequent Recipient /
//     Traceability Lot Code Source: blank. A scan at a door does not say
//     who shipped the goods or who will receive them; the shipment (ASN/PO)
//     id in the reference document columns is the link to that record.
//   - Reference Document Type and Number: "Expected shipment (ASN/PO)" and
//     the shipment id the station matched the scan to, when it did.
//   - GTIN, Lot, SSCC, Serial: the identifiers as scanned.
//   - dockd Decision, dockd Event ID, Station, Seq, Site, Door: for audit,
//     to find the stored event (and its raw scan) again.
package fsma204

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Column indexes of a Row, in header order.
const (
	ColTLC = iota
	ColProduct
	ColQuantity
	ColUnit
	ColCTE
	ColDate
	ColTime
	ColLocation
	ColPrevSource
	ColNextRecipient
	ColTLCSource
	ColRefDocType
	ColRefDocNumber
	ColGTIN
	ColLot
	ColSSCC
	ColSerial
	ColDecision
	ColEventID
	ColStation
	ColSeq
	ColSite
	ColDoor
	NumColumns
)

var columns = [NumColumns]string{
	"Traceability Lot Code",
	"Product Description",
	"Quantity",
	"Unit of Measure",
	"Critical Tracking Event",
	"Event Date",
	"Event Time",
	"Location Description",
	"Immediate Previous Source",
	"Immediate Subsequent Recipient",
	"Traceability Lot Code Source",
	"Reference Document Type",
	"Reference Document Number",
	"GTIN",
	"Lot",
	"SSCC",
	"Serial",
	"dockd Decision",
	"dockd Event ID",
	"Station",
	"Seq",
	"Site",
	"Door",
}

// Columns returns the header row, NumColumns names in Row order.
func Columns() []string { return append([]string(nil), columns[:]...) }

// numeric reports whether column c holds a number (a Quantity, a Seq):
// the XLSX writer stores those as numbers so they sort as numbers.
func numeric(c int) bool { return c == ColQuantity || c == ColSeq }

// Row is one CTE's cells, indexed by the Col constants.
type Row [NumColumns]string

// AI is one GS1 Application Identifier and its value, as stored.
type AI struct {
	AI    string `json:"ai"`
	Value string `json:"value"`
}

// Event is what a row is built from: the stored custody event's columns
// and the few payload members the KDEs need.
type Event struct {
	ID, Station string
	Seq         uint64
	Site, Door  string
	Kind        string // the events table's kind: "custody" for scans
	Direction   string // receiving | shipping
	Decision    string // accept | warn | reject
	Reason      string
	Time        time.Time
	GTIN, Lot   string
	Batch       string // the label's AI 10 when the list mapped it to Lot
	Serial      string
	SSCC        string
	Qty         int64 // the label's count (AI 30, else AI 37), 0 when absent
	Shipment    string
	Simulated   bool
	AIs         []AI
}

// CTE names.
const (
	Receiving = "Receiving"
	Shipping  = "Shipping"
)

// ErrNotCTE is returned by FromEvent for an event that is not a receiving
// or shipping CTE (see the package documentation).
var ErrNotCTE = errors.New("fsma204: not a receiving or shipping event")

// FromEvent builds the row of e with times in loc (nil: UTC). It returns
// an error wrapping ErrNotCTE for an event that is not a CTE.
func FromEvent(e Event, loc *time.Location) (Row, error) {
	var r Row
	switch {
	case e.Kind != "custody":
		return r, fmt.Errorf("%w: event %s is a %q record", ErrNotCTE, e.ID, e.Kind)
	case e.Decision != "accept" && e.Decision != "warn":
		return r, fmt.Errorf("%w: event %s was decided %q (the goods did not cross)", ErrNotCTE, e.ID, e.Decision)
	case e.Simulated:
		return r, fmt.Errorf("%w: event %s is a simulated scan", ErrNotCTE, e.ID)
	case e.Reason == "bad_scan" || (e.GTIN == "" && e.SSCC == "" && e.Lot == ""):
		return r, fmt.Errorf("%w: event %s identifies no goods", ErrNotCTE, e.ID)
	}
	switch e.Direction {
	case "receiving":
		r[ColCTE] = Receiving
	case "shipping":
		r[ColCTE] = Shipping
	default:
		return r, fmt.Errorf("%w: event %s has direction %q", ErrNotCTE, e.ID, e.Direction)
	}
	if loc == nil {
		loc = time.UTC
	}
	lot := e.Lot
	if e.Batch != "" {
		lot = e.Batch
	}
	gtin := e.GTIN
	content, hasContent := aiValue(e.AIs, "02")
	if e.SSCC != "" && hasContent && gtin == "" {
		gtin = content
	}
	switch {
	case lot != "" && gtin != "":
		r[ColTLC] = "(01)" + gtin + "(10)" + lot
	default:
		r[ColTLC] = lot
	}
	r[ColQuantity], r[ColUnit] = quantity(e, hasContent)
	t := e.Time.In(loc)
	r[ColDate] = t.Format("2006-01-02")
	r[ColTime] = t.Format("2006-01-02T15:04:05-07:00")
	r[ColLocation] = "site " + e.Site + ", door " + e.Door
	if e.Shipment != "" {
		r[ColRefDocType] = "Expected shipment (ASN/PO)"
		r[ColRefDocNumber] = e.Shipment
	}
	r[ColGTIN], r[ColLot], r[ColSSCC], r[ColSerial] = gtin, lot, e.SSCC, e.Serial
	r[ColDecision], r[ColEventID], r[ColStation] = e.Decision, e.ID, e.Station
	r[ColSeq] = strconv.FormatUint(e.Seq, 10)
	r[ColSite], r[ColDoor] = e.Site, e.Door
	return r, nil
}

// quantity is the amount and unit of measure the label states (see the
// package documentation).
func quantity(e Event, palletContent bool) (string, string) {
	if e.Qty > 0 {
		return strconv.FormatInt(e.Qty, 10), "each"
	}
	for _, a := range e.AIs {
		if len(a.AI) != 4 || a.AI[3] < '0' || a.AI[3] > '5' {
			continue
		}
		unit, ok := Measures[a.AI[:3]]
		if !ok {
			continue
		}
		if v, ok := decimal(a.Value, int(a.AI[3]-'0')); ok {
			return v, unit
		}
	}
	if e.SSCC != "" && e.Serial == "" && (e.GTIN == "" || palletContent) {
		return "1", "pallet"
	}
	return "1", "each"
}

// Measures maps the first three digits of a GS1 net trade measure AI to
// its UN/ECE Recommendation 20 unit code (the same set internal/epcis
// renders as quantities).
var Measures = map[string]string{
	"310": "KGM", "311": "MTR", "314": "MTK", "315": "LTR", "316": "MTQ",
	"320": "LBR", "321": "INH", "322": "FOT", "323": "YRD",
	"350": "INK", "351": "FTK", "352": "YDK", "356": "APZ",
	"360": "QTL", "361": "GLL", "364": "INQ", "365": "FTQ", "366": "YDQ",
}

// decimal renders a six-digit measure with d implied decimals exactly:
// "001250", 3 → "1.25"; "000500", 0 → "500".
func decimal(v string, d int) (string, bool) {
	if len(v) != 6 || strings.Trim(v, "0123456789") != "" {
		return "", false
	}
	ip := strings.TrimLeft(v[:6-d], "0")
	if ip == "" {
		ip = "0"
	}
	fp := strings.TrimRight(v[6-d:], "0")
	if fp == "" {
		return ip, true
	}
	return ip + "." + fp, true
}

func aiValue(ais []AI, code string) (string, bool) {
	for _, a := range ais {
		if a.AI == code {
			return a.Value, true
		}
	}
	return "", false
}
