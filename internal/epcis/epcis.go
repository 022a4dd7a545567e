// Package epcis renders dockd custody events as GS1 EPCIS 2.0 events in
// the JSON/JSON-LD binding, true to the CBV 2.0 vocabularies, and wraps
// them in EPCIS documents. It is pure: functions from a stored custody
// event (its JSON bytes or a dock.CustodyEvent) and a Config to values that
// marshal to the standard's JSON, deterministically, so the same stored
// event always renders to the same bytes (re-delivery is byte-identical).
//
// The station publishes StationDocument(event) on dockd/v1/{site}/{door}/
// epcis; the collector can call Render on stored events and wrap them with
// NewDocument or NewQueryDocument. uplink/contract/CONTRACT.md documents
// the modelling; this comment summarises it.
//
// # What happened at the door (CBV 2.0)
//
//   - Goods that crossed (accept, warn): bizStep receiving or shipping,
//     action OBSERVE. receiving adds the goods to the receiver's inventory
//     at bizLocation; shipping carries no bizLocation (the goods are in
//     transit, at no business location). disposition in_progress after
//     receiving, in_transit after shipping, unless a warning says
//     something lasting about the goods: lot_recalled → recalled, expired
//     → expired, lot_quarantined and lot_blocked → non_sellable_other.
//     destinationList (receiving) or sourceList (shipping) names the
//     site's bizLocation as type location.
//   - Goods refused at the door (reject): bizStep inspecting, never
//     receiving or shipping, so no consumer counting inventory by bizStep
//     counts them as received or shipped. A refused receipt has no
//     bizLocation (the goods did not enter the site's inventory); a refused
//     shipment keeps the site as bizLocation (the goods stay). disposition
//     says what was found; see Disposition.
//   - bizTransactionList carries the expected shipment (ASN/PO) the scan
//     matched, when Config.TransactionURI makes its id a URI.
//
// # What (identifiers and quantities)
//
// One item has one identifier whether read from a barcode or a tag: the
// EPC URN form (urn:epc:id:sgtin:…, urn:epc:id:sscc:…, urn:epc:class:
// lgtin:…) when Config.Prefixes knows the GS1 Company Prefix length of the
// key, else the GS1 Digital Link form (https://id.gs1.org/…) for barcode
// and tag alike. A tag's own partition gives the split of its URN, and
// wins over a table entry that disagrees with it. A lot or product scan
// is a quantityList entry whose quantity is the label's count (AI 30) or
// trade measure (AI 310n–366n net measures with their UN/ECE Rec. 20 unit),
// else 1. A pallet label with its content (AI 00 + 02 [+ 10] [+ 37]) is an
// AggregationEvent: parentID the SSCC, childQuantityList the content class
// and count.
//
// # Identity
//
// eventID is urn:uuid: of a name-based UUID (version 5, RFC 9562) over
// the station id, the sequence number and the dockd event id: the same on
// every re-delivery, distinct if a station's sequence ever restarts. dockd
// facts EPCIS has no field for travel as "dockd:" extension members.
package epcis

import (
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// ContextURL is the EPCIS 2.0 JSON-LD context every document names first.
const ContextURL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

// SchemaVersion is the schemaVersion of the documents built here.
const SchemaVersion = "2.0"

// DefaultNamespace is the IRI the "dockd:" extension prefix expands to.
const DefaultNamespace = "https://dockd.invalid/epcis/"

// ErrNoObject is returned by Render for an event that identifies no goods
// (a bad scan): EPCIS has no event without an object.
var ErrNoObject = errors.New("epcis: the event identifies no object")

// ErrNotRendered is returned for records that have no EPCIS rendering:
// operator records (kind "operator"), sequence-gap records (kind "gap") and
// simulated scans (a person injected them; no goods were seen).
var ErrNotRendered = errors.New("epcis: record kind has no EPCIS rendering")

// ErrOtherDoor is returned for an event recorded at another site or door
// than Config.Site and Config.Door (a backlog imported from another box):
// the configured readPoint and bizLocation would misstate where it happened.
var ErrOtherDoor = errors.New("epcis: event recorded at another door")

// Config says how events render. The zero value renders Digital Link
// identifiers, UTC offsets and no locations; a station's config always
// sets ReadPoint and BizLocation (check-config requires them).
type Config struct {
	// Prefixes is the company prefix length table for barcode scans.
	Prefixes Prefixes
	// ReadPoint is the URI of the door (CheckLocation), BizLocation the
	// URI of the site. Empty leaves them out.
	ReadPoint, BizLocation string
	// Location is the site's time zone: it gives eventTimeZoneOffset
	// (default UTC).
	Location *time.Location
	// TransactionType is the CBV business transaction type of shipment ids
	// (po, desadv, …; "" untyped). TransactionURI is the URI template of a
	// shipment id, with "{id}" where the id goes (CheckTransaction); empty
	// uses the id itself when it is an absolute URI, else no bizTransaction.
	TransactionType, TransactionURI string
	// Namespace is the IRI of the dockd: extension prefix (default
	// DefaultNamespace). It must end in '/' or '#'.
	Namespace string
	// Site and Door, when set, are the door ReadPoint and BizLocation
	// describe: events of any other site or door return ErrOtherDoor.
	Site, Door string
}

// Event is one EPCIS 2.0 ObjectEvent or AggregationEvent in the JSON
// binding, member order as marshalled. Marshal it with encoding/json.
type Event struct {
	Type                string     `json:"type"`
	EventID             string     `json:"eventID"`
	EventTime           string     `json:"eventTime"`
	EventTimeZoneOffset string     `json:"eventTimeZoneOffset"`
	EPCList             []string   `json:"epcList,omitempty"`
	ParentID            string     `json:"parentID,omitempty"`
	ChildQuantityList   []Quantity `json:"childQuantityList,omitempty"`
	QuantityList        []Quantity `json:"quantityList,omitempty"`
	Action              string     `json:"action"`
	BizStep             string     `json:"bizStep"`
	Disposition         string     `json:"disposition,omitempty"`
	ReadPoint           *Ref       `json:"readPoint,omitempty"`
	BizLocation         *Ref       `json:"bizLocation,omitempty"`
	BizTransactionList  []BizTx    `json:"bizTransactionList,omitempty"`
	SourceList          []Source   `json:"sourceList,omitempty"`
	DestinationList     []Dest     `json:"destinationList,omitempty"`

	// dockd extension members ("dockd:" is declared in the @context).
	DockdID          string `json:"dockd:eventID"`
	Station          string `json:"dockd:station"`
	Seq              uint64 `json:"dockd:seq"`
	Reader           string `json:"dockd:reader"`
	Decision         string `json:"dockd:decision"`
	Reason           string `json:"dockd:reason"`
	Shipment         string `json:"dockd:shipment,omitempty"`
	ClockSynced      bool   `json:"dockd:clockSynced"`
	AllowlistVersion string `json:"dockd:allowlistVersion,omitempty"`
}

// Quantity is one quantityList or childQuantityList element: a class of
// objects, how much of it (absent when the label does not say) and the
// UN/ECE Rec. 20 unit for a measure (absent for a count).
type Quantity struct {
	EPCClass string   `json:"epcClass"`
	Quantity *float64 `json:"quantity,omitempty"`
	UOM      string   `json:"uom,omitempty"`
}

// Ref is a readPoint or bizLocation.
type Ref struct {
	ID string `json:"id"`
}

// BizTx is one bizTransactionList element.
type BizTx struct {
	Type           string `json:"type,omitempty"`
	BizTransaction string `json:"bizTransaction"`
}

// Source is one sourceList element.
type Source struct {
	Type   string `json:"type"`
	Source string `json:"source"`
}

// Dest is one destinationList element.
type Dest struct {
	Type        string `json:"type"`
	Destination string `json:"destination"`
}

// CBV 2.0 terms this package emits (the tests check them against the CBV
// vocabulary files).
const (
	StepReceiving  = "receiving"
	StepShipping   = "shipping"
	StepInspecting = "inspecting"

	DispInProgress       = "in_progress"
	DispInTransit        = "in_transit"
	DispRecalled         = "recalled"
	DispExpired          = "expired"
	DispNonSellableOther = "non_sellable_other"
	DispNonConformant    = "non_conformant"
	DispMismatchClass    = "mismatch_class"
	DispMismatchInstance = "mismatch_instance"
	DispMismatchQuantity = "mismatch_quantity"

	SourceDestLocation = "location"
)

// BizTransactionTypes is the CBV 2.0 business transaction type vocabulary
// (bare names, as the JSON binding writes them).
var BizTransactionTypes = map[string]bool{
	"bol": true, "cert": true, "desadv": true, "inv": true, "pedigree": true, "po": true, "poc": true,
	"prodorder": true, "recadv": true, "rma": true, "testprd": true, "testres": true, "upevt": true,
}

// Crossed reports whether a decision let the goods cross the door.
func Crossed(v dock.Verdict) bool { return v == dock.Accept || v == dock.Warn }

// BizStep is the CBV 2.0 business step of a decision at a door running in
// direction d: receiving or shipping when the goods crossed, inspecting
// when they were refused.
func BizStep(v dock.Verdict, d dock.Direction) string {
	switch {
	case !Crossed(v):
		return StepInspecting
	case d == dock.Shipping:
		return StepShipping
	}
	return StepReceiving
}

// Disposition is the CBV 2.0 disposition of the goods after a decision.
// instance says whether the scan identified one instance (serial, SSCC,
// tag) rather than a class (product, lot).
//
// Goods that crossed: in_progress (receiving) or in_transit (shipping),
// except for warnings that say something lasting about the goods:
// lot_recalled → recalled, expired → expired, lot_quarantined and
// lot_blocked → non_sellable_other.
//
// Goods refused: lot_recalled → recalled; expired → expired;
// lot_quarantined, lot_blocked → non_sellable_other (the lot is held, not
// defective); unknown_gtin, unknown_lot → mismatch_class; unknown_serial,
// duplicate_serial, not_in_custody, already_shipped → mismatch_instance;
// not_expected → mismatch_instance or mismatch_class; over_quantity →
// mismatch_quantity; serial_lot_mismatch, expires_soon, and any other
// finding about the goods → non_conformant; storage_fault (the station
// could not read its list) → none ("").
func Disposition(dec dock.Decision, d dock.Direction, instance bool) string {
	if Crossed(dec.Verdict) {
		if dec.Verdict == dock.Warn {
			switch dec.Reason {
			case dock.ReasonLotRecalled:
				return DispRecalled
			case dock.ReasonExpired:
				return DispExpired
			case dock.ReasonLotQuarantined, dock.ReasonLotBlocked:
				return DispNonSellableOther
			}
		}
		if d == dock.Shipping {
			return DispInTransit
		}
		return DispInProgress
	}
	switch dec.Reason {
	case dock.ReasonLotRecalled:
		return DispRecalled
	case dock.ReasonExpired:
		return DispExpired
	case dock.ReasonLotQuarantined, dock.ReasonLotBlocked:
		return DispNonSellableOther
	case dock.ReasonUnknownGTIN, dock.ReasonUnknownLot:
		return DispMismatchClass
	case dock.ReasonUnknownSerial, dock.ReasonDuplicateSerial, dock.ReasonNotInCustody, dock.ReasonAlreadyShipped:
		return DispMismatchInstance
	case dock.ReasonNotExpected:
		if instance {
			return DispMismatchInstance
		}
		return DispMismatchClass
	case dock.ReasonOverQuantity:
		return DispMismatchQuantity
	case dock.ReasonStorageFault, dock.ReasonBufferFull:
		return ""
	}
	return DispNonConformant
}

// RenderJSON renders a stored custody event (the bytes the buffer holds
// and the events topic carries). Operator and gap records return
// ErrNotRendered; bytes that are not a custody event return an error.
func RenderJSON(stored []byte, c Config) (*Event, error) {
	var ev dock.CustodyEvent
	if err := json.Unmarshal(stored, &ev); err != nil {
		return nil, fmt.Errorf("epcis: decoding stored event: %w", err)
	}
	if ev.Kind != "" {
		return nil, fmt.Errorf("%w: kind %q (seq %d)", ErrNotRendered, ev.Kind, ev.Seq)
	}
	if ev.Schema != dock.EventSchema {
		return nil, fmt.Errorf("%w: schema %q (seq %d)", ErrNotRendered, ev.Schema, ev.Seq)
	}
	return Render(ev, c)
}

// Render turns ev into an EPCIS event. It returns ErrNoObject for a bad
// scan or an event without GTIN, SSCC or EPC, and an error wrapping
// ErrBadKey for a key of the wrong form. Pure; safe for concurrent use.
func Render(ev dock.CustodyEvent, c Config) (*Event, error) {
	if ev.Kind != "" {
		return nil, fmt.Errorf("%w: kind %q (seq %d)", ErrNotRendered, ev.Kind, ev.Seq)
	}
	if ev.Simulated {
		// A person typed it (dockd simulate): no reader saw goods, and an
		// EPCIS consumer has no way to tell a test from a receipt.
		return nil, fmt.Errorf("%w: simulated scan (seq %d)", ErrNotRendered, ev.Seq)
	}
	if (c.Site != "" && ev.Site != c.Site) || (c.Door != "" && ev.Door != c.Door) {
		return nil, fmt.Errorf("%w: seq %d was recorded at %s/%s, this station renders %s/%s", ErrOtherDoor, ev.Seq, ev.Site, ev.Door, c.Site, c.Door)
	}
	if ev.Reason == dock.ReasonBadScan {
		return nil, fmt.Errorf("%w (event %s, bad scan)", ErrNoObject, ev.ID)
	}
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	e := &Event{
		EventID:             EventID(ev.Station, ev.Seq, ev.ID),
		EventTime:           ev.Time.UTC().Format(timeFormat),
		EventTimeZoneOffset: offset(ev.Time.In(loc)),
		Action:              "OBSERVE",
		BizStep:             BizStep(ev.Verdict, ev.Direction),
		DockdID:             ev.ID,
		Station:             ev.Station,
		Seq:                 ev.Seq,
		Reader:              ev.Reader,
		Decision:            string(ev.Verdict),
		Reason:              string(ev.Reason),
		Shipment:            ev.Shipment,
		ClockSynced:         ev.ClockSynced,
		AllowlistVersion:    ev.AllowlistVersion,
	}
	if err := what(e, ev, c); err != nil {
		return nil, err
	}
	instance := e.Type == "AggregationEvent" || len(e.EPCList) > 0
	e.Disposition = Disposition(ev.Decision, ev.Direction, instance)
	if c.ReadPoint != "" {
		e.ReadPoint = &Ref{ID: c.ReadPoint}
	}
	crossed := Crossed(ev.Verdict)
	if c.BizLocation != "" {
		switch {
		case crossed && ev.Direction == dock.Receiving:
			e.BizLocation = &Ref{ID: c.BizLocation}
			e.DestinationList = []Dest{{Type: SourceDestLocation, Destination: c.BizLocation}}
		case crossed: // shipped: in transit, at no business location
			e.SourceList = []Source{{Type: SourceDestLocation, Source: c.BizLocation}}
		case ev.Direction == dock.Shipping: // refused for shipping: the goods stay
			e.BizLocation = &Ref{ID: c.BizLocation}
		}
	}
	if u := transactionURI(ev.Shipment, c.TransactionURI); u != "" {
		e.BizTransactionList = []BizTx{{Type: c.TransactionType, BizTransaction: u}}
	}
	return e, nil
}

// timeFormat is eventTime's form: UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// what fills the event's type and objects from the scan.
func what(e *Event, ev dock.CustodyEvent, c Config) error {
	tagLen := tagPrefixLength(ev.EPC)
	gcp := func(key string) int {
		// key is a GTIN-14 or SSCC-18: the company prefix starts after the
		// indicator or extension digit.
		n := c.Prefixes.Length(key[1:])
		if n == 0 {
			return 0 // unknown: Digital Link, for barcode and tag alike
		}
		if tagLen != 0 {
			return tagLen // the tag's partition is authoritative for its split
		}
		return n
	}
	if ev.SSCC != "" {
		if err := checkKey("SSCC", ev.SSCC, 18); err != nil {
			return err
		}
		u, err := SSCC(ev.SSCC, gcp(ev.SSCC))
		if err != nil {
			return err
		}
		if content, ok := ai(ev, "02"); ok {
			if err := checkKey("GTIN", content, 14); err != nil {
				return err
			}
			cls, err := Class(content, lotOf(ev), gcp(content))
			if err != nil {
				return err
			}
			q := Quantity{EPCClass: cls}
			q.Quantity, q.UOM = amount(ev, "37")
			e.Type, e.ParentID, e.ChildQuantityList = "AggregationEvent", u, []Quantity{q}
			return nil
		}
		e.Type, e.EPCList = "ObjectEvent", []string{u}
		return nil
	}
	e.Type = "ObjectEvent"
	if ev.GTIN != "" {
		if err := checkKey("GTIN", ev.GTIN, 14); err != nil {
			return err
		}
		if ev.Serial != "" {
			u, err := SGTIN(ev.GTIN, ev.Serial, gcp(ev.GTIN))
			if err != nil {
				return err
			}
			e.EPCList = []string{u}
			return nil
		}
		cls, err := Class(ev.GTIN, lotOf(ev), gcp(ev.GTIN))
		if err != nil {
			return err
		}
		q := Quantity{EPCClass: cls}
		q.Quantity, q.UOM = amount(ev, "30")
		if q.Quantity == nil {
			one := 1.0 // one labelled item
			q.Quantity = &one
		}
		e.QuantityList = []Quantity{q}
		return nil
	}
	if ev.EPC != "" { // a tag of another scheme (GRAI, GIAI, SGLN …): its URI as read
		if !strings.HasPrefix(ev.EPC, "urn:epc:id:") || !isAbsURI(ev.EPC) {
			return fmt.Errorf("%w: EPC %q is not a pure-identity URI", ErrBadKey, ev.EPC)
		}
		e.EPCList = []string{ev.EPC}
		return nil
	}
	return fmt.Errorf("%w (event %s, reason %s)", ErrNoObject, ev.ID, ev.Reason)
}

// amount is the quantity a label states: the count in countAI (30 for a
// trade item, 37 for a pallet's content), else the first net trade measure
// (Measures) in scan order with its unit; nil when the label says neither.
func amount(ev dock.CustodyEvent, countAI string) (*float64, string) {
	if v, ok := ai(ev, countAI); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			f := float64(n)
			return &f, ""
		}
	}
	for _, a := range ev.AIs {
		if len(a.AI) != 4 {
			continue
		}
		uom, ok := Measures[a.AI[:3]]
		if !ok {
			continue
		}
		if f, ok := decimalValue(a.Value, int(a.AI[3]-'0')); ok {
			return &f, uom
		}
	}
	return nil, ""
}

// Measures maps the first three digits of a GS1 net trade measure AI
// (310n–366n) to its UN/ECE Recommendation 20 unit code. Only measures of
// the goods themselves are quantities of their class: net weight, net
// volume, length and area of a variable-measure trade item. Widths and
// heights (dimensions, not amounts), logistic gross measures (they include
// the pallet), 337n (a ratio) and 357n (ounces of weight or volume: the
// unit is ambiguous) are not rendered.
var Measures = map[string]string{
	"310": "KGM", // net weight, kg
	"311": "MTR", // length, m
	"314": "MTK", // area, m²
	"315": "LTR", // net volume, l
	"316": "MTQ", // net volume, m³
	"320": "LBR", // net weight, lb
	"321": "INH", // length, in
	"322": "FOT", // length, ft
	"323": "YRD", // length, yd
	"350": "INK", // area, in²
	"351": "FTK", // area, ft²
	"352": "YDK", // area, yd²
	"356": "APZ", // net weight, troy oz
	"360": "QTL", // net volume, US liquid quart
	"361": "GLL", // net volume, US gallon
	"364": "INQ", // net volume, in³
	"365": "FTQ", // net volume, ft³
	"366": "YDQ", // net volume, yd³
}

// lotOf is the lot as the label printed it (AI 10): the scanned batch
// code when the list mapped it to a lot of another name.
func lotOf(ev dock.CustodyEvent) string {
	if ev.Batch != "" {
		return ev.Batch
	}
	return ev.Lot
}

func ai(ev dock.CustodyEvent, code string) (string, bool) {
	for _, a := range ev.AIs {
		if a.AI == code {
			return a.Value, true
		}
	}
	return "", false
}

// transactionURI is the bizTransaction URI of shipment id under tmpl.
func transactionURI(id, tmpl string) string {
	if id == "" {
		return ""
	}
	if tmpl != "" {
		return strings.Replace(tmpl, "{id}", dlEscape(id), 1)
	}
	if isAbsURI(id) {
		return id // already a URI
	}
	return ""
}

// isAbsURI reports whether s is an absolute URI (a scheme and something
// after it), as the EPCIS schema's uri format requires.
func isAbsURI(s string) bool {
	if strings.ContainsAny(s, " \"<>\\^`{|}") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && (u.Opaque != "" || u.Host != "" || u.Path != "")
}

// EventID is the eventID of the event with the given station, sequence
// number and dockd id: "urn:uuid:" and a version-5 UUID (RFC 9562 §5.5).
func EventID(station string, seq uint64, id string) string {
	h := sha1.New()
	h.Write(eventNamespace[:])
	fmt.Fprintf(h, "%s\x00%d\x00%s", station, seq, id)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// eventNamespace is the UUID namespace of dockd EPCIS event ids (a fixed,
// randomly chosen UUID: 3d1f8a52-7c4e-4b9a-9e21-5f0c6a8d2b74).
var eventNamespace = [16]byte{0x3d, 0x1f, 0x8a, 0x52, 0x7c, 0x4e, 0x4b, 0x9a, 0x9e, 0x21, 0x5f, 0x0c, 0x6a, 0x8d, 0x2b, 0x74}

// offset formats t's zone offset as ±HH:MM.
func offset(t time.Time) string {
	_, sec := t.Zone()
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	return fmt.Sprintf("%c%02d:%02d", sign, sec/3600, sec/60%60)
}
