// Package epcis renders custody events as GS1 EPCIS 2.0 ObjectEvents in
// JSON-LD, for central systems that speak EPCIS rather than the dockd event
// schema. It is pure: a function from a dock.CustodyEvent and Options to a
// value that marshals to the standard's JSON binding.
//
// # Choices
//
//   - Object identifiers. EPC pure-identity URIs (urn:epc:id:sgtin:…,
//     urn:epc:id:sscc:…, urn:epc:class:lgtin:…) split a GS1 key at the end
//     of the GS1 Company Prefix, whose length (6 to 12 digits) cannot be
//     derived from the key itself; it needs GS1's prefix table. When
//     Options.CompanyPrefixLength knows the length, the URN forms are used;
//     otherwise the GS1 Digital Link URIs (https://id.gs1.org/01/{gtin}/21/
//     {serial}, /00/{sscc}, /01/{gtin}/10/{lot}), which EPCIS 2.0 accepts
//     for the same identifiers and which need no prefix length. A guessed
//     length would produce a wrong identifier, so there is no guessing.
//   - Event identity. eventID is urn:uuid: of a name-based UUID (version 5,
//     RFC 9562: SHA-1 over a fixed dockd namespace and the station id, the
//     sequence number and the dockd event id). It is the same on every
//     re-delivery of the event, and stays unique if a station's sequence
//     ever restarts (new buffer file) because the random event id is part
//     of the name. The CBV 2.0 event hash (ni:///sha-256;…?ver=CBV2.0) is
//     not implemented: its canonical form is intricate and a near-miss
//     would be worse than a documented UUID.
//   - bizStep is receiving or shipping from the door's direction, action
//     always OBSERVE (the station observes goods; it does not commission
//     or decommission them). disposition follows the decision, see
//     Disposition.
//   - dockd facts EPCIS has no field for (station, seq, decision, reason,
//     reader, clock state, allowlist version) travel as extension members
//     with the prefix "dockd:", declared in @context.
package epcis

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// ContextURL is the EPCIS 2.0 JSON-LD context every event names first.
const ContextURL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

// DefaultNamespace is the IRI the "dockd:" extension prefix expands to.
const DefaultNamespace = "urn:dockd:epcis:"

// ErrNoObject is returned by Render for an event that identifies no goods
// (a bad scan): EPCIS has no ObjectEvent without an object.
var ErrNoObject = errors.New("epcis: the event identifies no object")

// ErrBadKey wraps errors for a GTIN or SSCC that is not 14 or 18 digits.
var ErrBadKey = errors.New("epcis: malformed GS1 key")

// Options configure the rendering. The zero value renders with Digital
// Link identifiers, UTC offsets and private URNs for the locations.
type Options struct {
	// CompanyPrefixLength returns the length (6..12) of the GS1 Company
	// Prefix of a GTIN-14 or SSCC-18, or 0 when unknown (Digital Link URIs
	// are used then). It must be safe for concurrent use if Render is.
	CompanyPrefixLength func(key string) int
	// ReadPoint is the URI of the door; "{site}" and "{door}" are replaced.
	// Default "urn:dockd:site:{site}:door:{door}". An SGLN such as
	// urn:epc:id:sgln:0614141.00777.door9 is what CBV recommends.
	ReadPoint string
	// BizLocation is the URI of the site; "{site}" is replaced. Default
	// "urn:dockd:site:{site}".
	BizLocation string
	// Location gives eventTimeZoneOffset (default UTC).
	Location *time.Location
	// Namespace is the IRI of the dockd: extension prefix (default
	// DefaultNamespace). It must end in ':', '/' or '#'.
	Namespace string
}

// ObjectEvent is one EPCIS 2.0 ObjectEvent in the JSON binding. Marshal it
// with encoding/json.
type ObjectEvent struct {
	Context             []any      `json:"@context"`
	Type                string     `json:"type"`
	EventID             string     `json:"eventID"`
	EventTime           string     `json:"eventTime"`
	EventTimeZoneOffset string     `json:"eventTimeZoneOffset"`
	EPCList             []string   `json:"epcList,omitempty"`
	QuantityList        []Quantity `json:"quantityList,omitempty"`
	Action              string     `json:"action"`
	BizStep             string     `json:"bizStep"`
	Disposition         string     `json:"disposition,omitempty"`
	ReadPoint           Ref        `json:"readPoint"`
	BizLocation         Ref        `json:"bizLocation"`

	Station          string `json:"dockd:station"`
	Seq              uint64 `json:"dockd:seq"`
	Reader           string `json:"dockd:reader"`
	Decision         string `json:"dockd:decision"`
	Reason           string `json:"dockd:reason"`
	ClockSynced      bool   `json:"dockd:clockSynced"`
	AllowlistVersion string `json:"dockd:allowlistVersion,omitempty"`
}

// Quantity is one quantityList element: a class of objects and a count.
type Quantity struct {
	EPCClass string  `json:"epcClass"`
	Quantity float64 `json:"quantity"`
	UOM      string  `json:"uom,omitempty"`
}

// Ref is a readPoint or bizLocation.
type Ref struct {
	ID string `json:"id"`
}

// Render turns ev into an ObjectEvent. It returns ErrNoObject for an event
// without GTIN, SSCC or EPC, and an error wrapping ErrBadKey for a key of
// the wrong form. Render is pure and safe for concurrent use.
func Render(ev dock.CustodyEvent, opt Options) (*ObjectEvent, error) {
	ns := opt.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	loc := opt.Location
	if loc == nil {
		loc = time.UTC
	}
	oe := &ObjectEvent{
		Context:             []any{ContextURL, map[string]string{"dockd": ns}},
		Type:                "ObjectEvent",
		EventID:             EventID(ev.Station, ev.Seq, ev.ID),
		EventTime:           ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		EventTimeZoneOffset: offset(ev.Time.In(loc)),
		Action:              "OBSERVE",
		BizStep:             BizStep(ev.Direction),
		Disposition:         Disposition(ev.Decision, ev.Direction, ev.Serial != "" || ev.SSCC != "" || ev.EPC != ""),
		ReadPoint:           Ref{ID: expand(opt.ReadPoint, "urn:dockd:site:{site}:door:{door}", ev.Site, ev.Door)},
		BizLocation:         Ref{ID: expand(opt.BizLocation, "urn:dockd:site:{site}", ev.Site, ev.Door)},
		Station:             ev.Station,
		Seq:                 ev.Seq,
		Reader:              ev.Reader,
		Decision:            string(ev.Verdict),
		Reason:              string(ev.Reason),
		ClockSynced:         ev.ClockSynced,
		AllowlistVersion:    ev.AllowlistVersion,
	}
	gcp := func(key string) int {
		if opt.CompanyPrefixLength == nil {
			return 0
		}
		if n := opt.CompanyPrefixLength(key); n >= 6 && n <= 12 {
			return n
		}
		return 0
	}
	if ev.EPC != "" {
		oe.EPCList = append(oe.EPCList, ev.EPC)
	}
	if ev.SSCC != "" {
		u, err := SSCC(ev.SSCC, gcp(ev.SSCC))
		if err != nil {
			return nil, err
		}
		if u != ev.EPC {
			oe.EPCList = append(oe.EPCList, u)
		}
	}
	if ev.GTIN != "" {
		n := gcp(ev.GTIN)
		switch {
		case ev.Serial != "":
			u, err := SGTIN(ev.GTIN, ev.Serial, n)
			if err != nil {
				return nil, err
			}
			if u != ev.EPC {
				oe.EPCList = append(oe.EPCList, u)
			}
		case len(oe.EPCList) == 0:
			c, err := Class(ev.GTIN, ev.Lot, n)
			if err != nil {
				return nil, err
			}
			oe.QuantityList = []Quantity{{EPCClass: c, Quantity: 1}}
		}
	}
	if len(oe.EPCList) == 0 && len(oe.QuantityList) == 0 {
		return nil, fmt.Errorf("%w (event %s, reason %s)", ErrNoObject, ev.ID, ev.Reason)
	}
	return oe, nil
}

// BizStep is the CBV 2.0 business step of a door running in direction d.
func BizStep(d dock.Direction) string {
	if d == dock.Shipping {
		return "shipping"
	}
	return "receiving"
}

// Disposition is the CBV 2.0 disposition after a decision:
//
//   - accept and warn (the goods crossed the door): receiving → in_progress
//     (at the dock, not yet put away or sellable); shipping → in_transit.
//   - reject (the goods were refused at the door and stay where they were):
//     lot_recalled → recalled; expired → expired; not_expected →
//     mismatch_instance for a serialised item or pallet, mismatch_class for
//     a product or lot; over_quantity → mismatch_quantity; every other
//     product reason (unknown product/lot/serial, blocked, quarantined,
//     duplicate, wrong custody, bad scan) → non_conformant.
//   - buffer_full and storage_fault say nothing about the goods: no
//     disposition ("").
func Disposition(dec dock.Decision, d dock.Direction, instance bool) string {
	if dec.Verdict == dock.Accept || dec.Verdict == dock.Warn {
		if d == dock.Shipping {
			return "in_transit"
		}
		return "in_progress"
	}
	switch dec.Reason {
	case dock.ReasonLotRecalled:
		return "recalled"
	case dock.ReasonExpired:
		return "expired"
	case dock.ReasonNotExpected:
		if instance {
			return "mismatch_instance"
		}
		return "mismatch_class"
	case dock.ReasonOverQuantity:
		return "mismatch_quantity"
	case dock.ReasonBufferFull, dock.ReasonStorageFault:
		return ""
	}
	return "non_conformant"
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

// SGTIN is the URI of one serialised trade item: urn:epc:id:sgtin:… when
// the company prefix length gcp is known (6..12), else the Digital Link
// https://id.gs1.org/01/{gtin}/21/{serial}.
func SGTIN(gtin, serial string, gcp int) (string, error) {
	if err := checkKey("GTIN", gtin, 14); err != nil {
		return "", err
	}
	if gcp == 0 {
		return "https://id.gs1.org/01/" + gtin + "/21/" + dlEscape(serial), nil
	}
	cp, ref := splitGTIN(gtin, gcp)
	return "urn:epc:id:sgtin:" + cp + "." + ref + "." + epcEscape(serial), nil
}

// SSCC is the URI of a logistic unit: urn:epc:id:sscc:… when gcp is known,
// else https://id.gs1.org/00/{sscc}.
func SSCC(sscc string, gcp int) (string, error) {
	if err := checkKey("SSCC", sscc, 18); err != nil {
		return "", err
	}
	if gcp == 0 {
		return "https://id.gs1.org/00/" + sscc, nil
	}
	// extension digit + company prefix + serial reference + check digit
	return "urn:epc:id:sscc:" + sscc[1:1+gcp] + "." + sscc[0:1] + sscc[1+gcp:17], nil
}

// Class is the EPC class of a product (lot empty) or of one lot of it:
// urn:epc:class:lgtin:… or urn:epc:idpat:sgtin:….* when gcp is known, else
// https://id.gs1.org/01/{gtin}/10/{lot} or https://id.gs1.org/01/{gtin}.
func Class(gtin, lot string, gcp int) (string, error) {
	if err := checkKey("GTIN", gtin, 14); err != nil {
		return "", err
	}
	if gcp == 0 {
		if lot == "" {
			return "https://id.gs1.org/01/" + gtin, nil
		}
		return "https://id.gs1.org/01/" + gtin + "/10/" + dlEscape(lot), nil
	}
	cp, ref := splitGTIN(gtin, gcp)
	if lot == "" {
		return "urn:epc:idpat:sgtin:" + cp + "." + ref + ".*", nil
	}
	return "urn:epc:class:lgtin:" + cp + "." + ref + "." + epcEscape(lot), nil
}

// splitGTIN returns the company prefix and the indicator digit + item
// reference of a GTIN-14 (the check digit is dropped).
func splitGTIN(gtin string, gcp int) (cp, ref string) {
	return gtin[1 : 1+gcp], gtin[0:1] + gtin[1+gcp:13]
}

func checkKey(kind, key string, n int) error {
	if len(key) != n {
		return fmt.Errorf("%w: %s %q is not %d digits", ErrBadKey, kind, key, n)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < '0' || key[i] > '9' {
			return fmt.Errorf("%w: %s %q is not %d digits", ErrBadKey, kind, key, n)
		}
	}
	return nil
}

// epcEscape escapes a serial or lot for an EPC URI (GS1 TDS): the
// characters of GS1 AI encodable set 82 that are not URI-safe are written
// %XX, as is anything outside it.
func epcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '%' || c == '&' || c == '/' || c == '<' || c == '>' || c == '?' || c == '#':
			fmt.Fprintf(&b, "%%%02X", c)
		case c > 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// dlEscape percent-encodes everything but RFC 3986 unreserved characters,
// as GS1 Digital Link requires for a path value.
func dlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func expand(tmpl, def, site, door string) string {
	if tmpl == "" {
		tmpl = def
	}
	return strings.NewReplacer("{site}", site, "{door}", door).Replace(tmpl)
}

// offset formats t's zone offset as ±HH:MM.
func offset(t time.Time) string {
	_, sec := t.Zone()
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	return fmt.Sprintf("%c%02d:%02d", sign, sec/3600, sec/60%60)
}
