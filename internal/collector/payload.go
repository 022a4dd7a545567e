package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Schema names the collector stores (see uplink/contract). Anything else on
// an events topic is dead-lettered.
const (
	SchemaCustodyEvent  = "dockd.custody-event/1"
	SchemaOperatorEvent = "dockd.operator-event/1"
	SchemaSeqGap        = "dockd.seq-gap/1"
	SchemaReceipt       = "dockd.receipt/1"
	SchemaReceiptProbe  = "dockd.receipt-probe/1"
)

// Record kinds, the events table's kind column.
const (
	KindCustody  = "custody"
	KindOperator = "operator"
	KindGap      = "gap"
)

// MaxPayload is the largest events payload the collector accepts (a custody
// event is under 2 KiB); anything larger is dead-lettered.
const MaxPayload = 256 << 10

// ErrBadPayload is wrapped by every error Parse returns: the message is not
// a storable record (not JSON, unknown schema, a missing or malformed
// field, a topic that does not match). Such a message is dead-lettered.
var ErrBadPayload = errors.New("bad events payload")

// PayloadError says what was wrong with one message. It wraps
// ErrBadPayload.
type PayloadError struct {
	Reason string
}

func (e *PayloadError) Error() string { return "bad events payload: " + e.Reason }

// Unwrap makes errors.Is(err, ErrBadPayload) hold.
func (e *PayloadError) Unwrap() error { return ErrBadPayload }

func bad(format string, args ...any) error {
	return &PayloadError{Reason: fmt.Sprintf(format, args...)}
}

// Record is one parsed, validated message from an events topic: a custody
// event, an operator event or a declared sequence gap. Parse fills it; it
// holds nothing the payload did not say except Site and Door, which come
// from the topic (and must equal the payload's).
type Record struct {
	Topic   string
	Schema  string
	Kind    string // KindCustody, KindOperator or KindGap
	ID      string // lower-case UUID
	Seq     uint64 // ≥ 1, ≤ MaxInt64
	Station string
	Site    string
	Door    string
	Time    time.Time

	Direction string // "" when absent (gap records)
	Decision  string // custody events only
	Reason    string // custody: the decision's reason; gap: why
	GTIN      string
	Lot       string
	Serial    string
	SSCC      string
	Qty       int64 // 0 when absent

	GapFrom, GapTo uint64 // KindGap: seqs GapFrom..GapTo were never stored

	// Payload is the message as received. JSONB says whether PostgreSQL's
	// jsonb can hold it as it is: it cannot store the character U+0000 or
	// an unpaired surrogate escape, which a scanner's raw bytes may put in
	// a payload; such a record is stored with its exact bytes instead.
	Payload []byte
	JSONB   bool
}

var (
	uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// jsonbUnsafe matches escapes jsonb refuses: \u0000 and surrogates
	// (a valid pair is refused only by this coarse check; it then goes to
	// the raw column, losing nothing).
	jsonbUnsafe = regexp.MustCompile(`\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})`)
)

// wire is the union of the fields the collector reads; unknown fields are
// ignored (the contract lets optional fields be added).
type wire struct {
	Schema    string  `json:"schema"`
	Kind      *string `json:"kind"`
	ID        string  `json:"id"`
	Seq       *uint64 `json:"seq"`
	Site      string  `json:"site"`
	Station   string  `json:"station"`
	Door      string  `json:"door"`
	Direction string  `json:"direction"`
	Time      string  `json:"time"`
	Decision  string  `json:"decision"`
	Reason    string  `json:"reason"`
	GTIN      string  `json:"gtin"`
	Lot       string  `json:"lot"`
	Serial    string  `json:"serial"`
	SSCC      string  `json:"sscc"`
	Qty       *int64  `json:"qty"`
	From      *uint64 `json:"from"`
	To        *uint64 `json:"to"`
	Action    string  `json:"action"`
}

// SplitEventsTopic returns the site and door of PREFIX/SITE/DOOR/events,
// and ok false for any other topic (or a site or door that is not a valid
// topic level name).
func SplitEventsTopic(prefix, topic string) (site, door string, ok bool) {
	rest, found := strings.CutPrefix(topic, prefix+"/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "events" || !nameRe.MatchString(parts[0]) || !nameRe.MatchString(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// Parse validates one message received on an events topic under prefix
// and returns the record to store. Every error wraps ErrBadPayload and
// names what was wrong. It never panics, whatever the input, and keeps no
// reference to payload beyond the returned Record.Payload.
func Parse(prefix, topic string, payload []byte) (Record, error) {
	site, door, ok := SplitEventsTopic(prefix, topic)
	if !ok {
		return Record{}, bad("topic %q is not %s/SITE/DOOR/events", topic, prefix)
	}
	if len(payload) > MaxPayload {
		return Record{}, bad("payload of %d bytes is over the %d byte limit", len(payload), MaxPayload)
	}
	if !utf8.Valid(payload) {
		return Record{}, bad("payload is not valid UTF-8")
	}
	var w wire
	if err := json.Unmarshal(payload, &w); err != nil {
		return Record{}, bad("not a JSON object of the events contract: %v", err)
	}
	r := Record{Topic: topic, Schema: w.Schema, Site: site, Door: door}
	switch w.Schema {
	case SchemaCustodyEvent:
		r.Kind = KindCustody
	case SchemaOperatorEvent:
		r.Kind = KindOperator
		if w.Kind == nil || *w.Kind != KindOperator {
			return Record{}, bad("%s: kind must be %q", w.Schema, KindOperator)
		}
	case SchemaSeqGap:
		r.Kind = KindGap
		if w.Kind == nil || *w.Kind != KindGap {
			return Record{}, bad("%s: kind must be %q", w.Schema, KindGap)
		}
	case "":
		return Record{}, bad(`no "schema" member`)
	default:
		return Record{}, bad("unknown schema %q", truncate(w.Schema, 80))
	}
	if !uuidRe.MatchString(w.ID) {
		return Record{}, bad("%s: id %q is not a lower-case UUID", w.Schema, truncate(w.ID, 80))
	}
	r.ID = w.ID
	if w.Seq == nil || *w.Seq < 1 || *w.Seq > math.MaxInt64 {
		return Record{}, bad("%s: seq missing or outside 1..%d", w.Schema, int64(math.MaxInt64))
	}
	r.Seq = *w.Seq
	if w.Station == "" || len(w.Station) > 200 {
		return Record{}, bad("%s: station must be 1..200 bytes", w.Schema)
	}
	r.Station = w.Station
	if w.Site != site || w.Door != door {
		return Record{}, bad("%s: payload site/door %q/%q does not match topic %q", w.Schema, truncate(w.Site, 80), truncate(w.Door, 80), topic)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Record{}, bad("%s: time %q is not RFC 3339", w.Schema, truncate(w.Time, 80))
	}
	r.Time = t.UTC()

	switch r.Kind {
	case KindCustody, KindOperator:
		if w.Direction != "receiving" && w.Direction != "shipping" {
			return Record{}, bad("%s: direction %q is not receiving or shipping", w.Schema, truncate(w.Direction, 80))
		}
		r.Direction = w.Direction
	case KindGap:
		if w.Direction != "" {
			r.Direction = w.Direction
		}
	}
	switch r.Kind {
	case KindCustody:
		switch w.Decision {
		case "accept", "warn", "reject":
		default:
			return Record{}, bad("%s: decision %q is not accept, warn or reject", w.Schema, truncate(w.Decision, 80))
		}
		if w.Reason == "" || len(w.Reason) > 64 {
			return Record{}, bad("%s: reason missing", w.Schema)
		}
		r.Decision, r.Reason = w.Decision, w.Reason
		r.GTIN, r.Lot, r.Serial, r.SSCC = w.GTIN, w.Lot, w.Serial, w.SSCC
		if w.Qty != nil {
			if *w.Qty < 1 || *w.Qty > math.MaxInt32 {
				return Record{}, bad("%s: qty %d outside 1..%d", w.Schema, *w.Qty, math.MaxInt32)
			}
			r.Qty = *w.Qty
		}
	case KindOperator:
		if w.Action == "" {
			return Record{}, bad("%s: action missing", w.Schema)
		}
		r.Reason = w.Action
	case KindGap:
		if w.From == nil || w.To == nil || *w.From < 1 || *w.To < *w.From || *w.To >= r.Seq {
			return Record{}, bad("%s: from..to must satisfy 1 ≤ from ≤ to < seq (%d)", w.Schema, r.Seq)
		}
		r.GapFrom, r.GapTo = *w.From, *w.To
		r.Reason = truncate(w.Reason, 200)
	}
	r.Payload = bytes.Clone(payload)
	r.JSONB = !jsonbUnsafe.Match(payload)
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Probe is a dockd.receipt-probe/1 (sent by `dockd doctor` on
// PREFIX/SITE/DOOR/receipt-probe): central answers it with one ordinary
// receipt for Station and stores nothing.
type Probe struct {
	Station, Site, Door, ID string
}

// SplitProbeTopic returns the site and door of PREFIX/SITE/DOOR/receipt-probe.
func SplitProbeTopic(prefix, topic string) (site, door string, ok bool) {
	rest, found := strings.CutPrefix(topic, prefix+"/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "receipt-probe" || !nameRe.MatchString(parts[0]) || !nameRe.MatchString(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// ParseProbe validates a receipt probe. Errors wrap ErrBadPayload.
func ParseProbe(prefix, topic string, payload []byte) (Probe, error) {
	site, door, ok := SplitProbeTopic(prefix, topic)
	if !ok {
		return Probe{}, bad("topic %q is not %s/SITE/DOOR/receipt-probe", topic, prefix)
	}
	var w struct {
		Schema  string `json:"schema"`
		Station string `json:"station"`
		ID      string `json:"id"`
	}
	if len(payload) > 4096 || json.Unmarshal(payload, &w) != nil || w.Schema != SchemaReceiptProbe {
		return Probe{}, bad("not a %s", SchemaReceiptProbe)
	}
	if w.Station == "" || len(w.Station) > 200 || len(w.ID) > 64 {
		return Probe{}, bad("%s: station must be 1..200 bytes, id at most 64", SchemaReceiptProbe)
	}
	return Probe{Station: w.Station, Site: site, Door: door, ID: w.ID}, nil
}
