package collector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/epcis"
)

// EPCIS query over HTTP: GET /epcis/events answers a small subset of the
// EPCIS 2.0 REST query interface (GS1 EPCIS 2.0 §12, the SimpleEventQuery
// parameters) from the stored custody events, rendered with internal/epcis
// and wrapped in an EPCISQueryDocument. Supported parameters (a list value
// is '|'-separated or the parameter repeated; an event must match every
// parameter given, and any one value of a list):
//
//   - MATCH_epc: an item or logistic unit in epcList (an SGTIN, an SSCC
//     without content); MATCH_anyEPC: in epcList or parentID (a pallet's
//     SSCC too). EPC URNs (urn:epc:id:sgtin/sscc), EPC patterns of a whole
//     product (urn:epc:idpat:sgtin:CP.IR.*) and GS1 Digital Link URIs
//     (https://HOST/01/GTIN/21/SERIAL, …/00/SSCC, …/01/GTIN) are accepted
//     and compared as GS1 keys, whichever form the event renders.
//   - MATCH_epcClass, MATCH_anyEPCClass (the same here: dockd events have
//     no inputs or outputs): a class in quantityList or childQuantityList,
//     a lot (urn:epc:class:lgtin:…, …/01/GTIN/10/LOT) or a whole product.
//   - EQ_bizStep: receiving, shipping, inspecting (bare CBV names or their
//     https://ref.gs1.org/cbv/BizStep- / urn:epcglobal:cbv:bizstep: forms).
//   - GE_eventTime, LT_eventTime: RFC 3339 times.
//   - MATCH_lot (a dockd extension, not EPCIS): the events' stored lot.
//   - perPage (1..1000, default 100) and nextPageToken: results come
//     oldest first; a full page carries a Link header
//     `<…&nextPageToken=T>; rel="next"` to the next one.
//
// Anything else (other parameters, named queries, subscriptions, the
// capture interface, master data, top-level resources) is not served: an
// unknown parameter is a 400 QueryParameterException, so a client never
// mistakes an ignored filter for an answer.

// Query parameter limits.
const (
	EPCISDefaultPerPage = 100
	EPCISMaxPerPage     = 1000
	epcisMaxValues      = 100 // values in one list parameter
)

// ErrQueryParameter wraps every error ParseEPCISQuery returns.
var ErrQueryParameter = errors.New("bad EPCIS query parameter")

// gs1Key is an identifier as GS1 keys: kind sgtin (GTIN+Serial), sscc,
// lgtin (GTIN+Lot) or product (GTIN: every instance or class of it).
type gs1Key struct {
	Kind, GTIN, Serial, SSCC, Lot string
}

// covers reports whether the query key q selects the event's key e.
func (q gs1Key) covers(e gs1Key) bool {
	if q.Kind == "product" {
		return e.GTIN == q.GTIN && (e.Kind == "sgtin" || e.Kind == "lgtin" || e.Kind == "product")
	}
	return q == e
}

// EPCISQuery is a parsed GET /epcis/events request.
type EPCISQuery struct {
	EPC, AnyEPC, EPCClass []gs1Key
	BizStep               []string
	GE, LT                time.Time
	Lot                   []string
	PerPage               int
	after                 *pageCursor
}

type pageCursor struct {
	Time    time.Time
	Station string
	Seq     int64
}

func qerr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrQueryParameter, fmt.Sprintf(format, args...))
}

// ParseEPCISQuery reads the query parameters of GET /epcis/events. Every
// error wraps ErrQueryParameter and names the parameter and value at
// fault. It never panics.
func ParseEPCISQuery(v url.Values) (EPCISQuery, error) {
	q := EPCISQuery{PerPage: EPCISDefaultPerPage}
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		var vals []string
		for _, raw := range v[name] {
			vals = append(vals, strings.Split(raw, "|")...)
		}
		if len(vals) > epcisMaxValues {
			return q, qerr("%s: %d values, at most %d", name, len(vals), epcisMaxValues)
		}
		for _, s := range vals {
			if s == "" {
				return q, qerr("%s: empty value", name)
			}
		}
		one := func() (string, error) {
			if len(vals) != 1 {
				return "", qerr("%s takes one value, got %d", name, len(vals))
			}
			return vals[0], nil
		}
		switch name {
		case "MATCH_epc", "MATCH_anyEPC", "MATCH_epcClass", "MATCH_anyEPCClass":
			class := strings.Contains(name, "Class")
			for _, s := range vals {
				k, err := parseGS1URI(s)
				if err != nil {
					return q, qerr("%s=%q: %v", name, s, err)
				}
				if class && (k.Kind == "sgtin" || k.Kind == "sscc") {
					return q, qerr("%s=%q: an %s is one instance, not a class (use MATCH_epc or MATCH_anyEPC)", name, s, k.Kind)
				}
				if !class && k.Kind == "lgtin" {
					return q, qerr("%s=%q: a lot is a class, not an instance (use MATCH_epcClass)", name, s)
				}
				switch name {
				case "MATCH_epc":
					q.EPC = append(q.EPC, k)
				case "MATCH_anyEPC":
					q.AnyEPC = append(q.AnyEPC, k)
				default:
					q.EPCClass = append(q.EPCClass, k)
				}
			}
		case "EQ_bizStep":
			for _, s := range vals {
				b := strings.TrimPrefix(strings.TrimPrefix(s, "https://ref.gs1.org/cbv/BizStep-"), "urn:epcglobal:cbv:bizstep:")
				if b == "" || strings.ContainsAny(b, ":/") {
					return q, qerr("EQ_bizStep=%q: not a CBV business step", s)
				}
				q.BizStep = append(q.BizStep, b)
			}
		case "GE_eventTime", "LT_eventTime":
			s, err := one()
			if err != nil {
				return q, err
			}
			// An unencoded '+' of an offset arrives as a space.
			t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
			if err != nil {
				return q, qerr("%s=%q: want an RFC 3339 time such as 2026-03-01T08:00:00Z", name, s)
			}
			if name == "GE_eventTime" {
				q.GE = t
			} else {
				q.LT = t
			}
		case "MATCH_lot":
			q.Lot = append(q.Lot, vals...)
		case "perPage":
			s, err := one()
			if err != nil {
				return q, err
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > EPCISMaxPerPage {
				return q, qerr("perPage=%q: want 1 to %d", s, EPCISMaxPerPage)
			}
			q.PerPage = n
		case "nextPageToken":
			s, err := one()
			if err != nil {
				return q, err
			}
			c, err := decodeCursor(s)
			if err != nil {
				return q, qerr("nextPageToken=%q: %v", s, err)
			}
			q.after = &c
		default:
			return q, qerr("%q is not a supported query parameter (supported: MATCH_epc, MATCH_anyEPC, MATCH_epcClass, MATCH_anyEPCClass, EQ_bizStep, GE_eventTime, LT_eventTime, MATCH_lot, perPage, nextPageToken)", name)
		}
	}
	return q, nil
}

func encodeCursor(c pageCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Time.UnixMicro(), 10) + "|" + strconv.FormatInt(c.Seq, 10) + "|" + c.Station))
}

func decodeCursor(s string) (pageCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pageCursor{}, errors.New("not a token this collector issued")
	}
	parts := strings.SplitN(string(b), "|", 3)
	if len(parts) != 3 {
		return pageCursor{}, errors.New("not a token this collector issued")
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || !nameRe.MatchString(parts[2]) {
		return pageCursor{}, errors.New("not a token this collector issued")
	}
	return pageCursor{Time: time.UnixMicro(us).UTC(), Station: parts[2], Seq: seq}, nil
}

// parseGS1URI reads an EPC URN, EPC pattern or GS1 Digital Link URI of a
// trade item, lot, product or logistic unit as GS1 keys.
func parseGS1URI(s string) (gs1Key, error) {
	switch {
	case strings.HasPrefix(s, "urn:epc:id:sgtin:"):
		p := strings.SplitN(strings.TrimPrefix(s, "urn:epc:id:sgtin:"), ".", 3)
		if len(p) != 3 || p[2] == "" {
			return gs1Key{}, errors.New("want urn:epc:id:sgtin:COMPANYPREFIX.ITEMREF.SERIAL")
		}
		g, err := gtinOf(p[0], p[1])
		ser, err2 := url.PathUnescape(p[2])
		if err != nil || err2 != nil {
			return gs1Key{}, errors.Join(err, err2)
		}
		return gs1Key{Kind: "sgtin", GTIN: g, Serial: ser}, nil
	case strings.HasPrefix(s, "urn:epc:idpat:sgtin:"):
		p := strings.Split(strings.TrimPrefix(s, "urn:epc:idpat:sgtin:"), ".")
		if len(p) != 3 || p[2] != "*" {
			return gs1Key{}, errors.New("want urn:epc:idpat:sgtin:COMPANYPREFIX.ITEMREF.*")
		}
		g, err := gtinOf(p[0], p[1])
		if err != nil {
			return gs1Key{}, err
		}
		return gs1Key{Kind: "product", GTIN: g}, nil
	case strings.HasPrefix(s, "urn:epc:class:lgtin:"):
		p := strings.SplitN(strings.TrimPrefix(s, "urn:epc:class:lgtin:"), ".", 3)
		if len(p) != 3 || p[2] == "" {
			return gs1Key{}, errors.New("want urn:epc:class:lgtin:COMPANYPREFIX.ITEMREF.LOT")
		}
		g, err := gtinOf(p[0], p[1])
		lot, err2 := url.PathUnescape(p[2])
		if err != nil || err2 != nil {
			return gs1Key{}, errors.Join(err, err2)
		}
		return gs1Key{Kind: "lgtin", GTIN: g, Lot: lot}, nil
	case strings.HasPrefix(s, "urn:epc:id:sscc:"):
		p := strings.Split(strings.TrimPrefix(s, "urn:epc:id:sscc:"), ".")
		if len(p) != 2 || len(p[0])+len(p[1]) != 17 || !digits(p[0]+p[1]) || len(p[1]) < 1 {
			return gs1Key{}, errors.New("want urn:epc:id:sscc:COMPANYPREFIX.SERIALREF (17 digits)")
		}
		body := p[1][:1] + p[0] + p[1][1:]
		return gs1Key{Kind: "sscc", SSCC: body + checkDigit(body)}, nil
	case strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://"):
		u, err := url.Parse(s)
		if err != nil {
			return gs1Key{}, errors.New("not a URI")
		}
		seg := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
		for i := 0; i+1 < len(seg); i++ {
			if seg[i] != "00" && seg[i] != "01" {
				continue
			}
			rest := seg[i:]
			val := func(j int) (string, error) { return url.PathUnescape(rest[j]) }
			if rest[0] == "00" && len(rest) == 2 {
				k, _ := val(1)
				if len(k) != 18 || !digits(k) || checkDigit(k[:17]) != k[17:] {
					return gs1Key{}, errors.New("the SSCC is not 18 digits with a valid check digit")
				}
				return gs1Key{Kind: "sscc", SSCC: k}, nil
			}
			if rest[0] != "01" {
				break
			}
			g, _ := val(1)
			if len(g) == 8 || len(g) == 12 || len(g) == 13 {
				g = strings.Repeat("0", 14-len(g)) + g
			}
			if len(g) != 14 || !digits(g) || checkDigit(g[:13]) != g[13:] {
				return gs1Key{}, errors.New("the GTIN is not 14 digits with a valid check digit")
			}
			switch {
			case len(rest) == 2:
				return gs1Key{Kind: "product", GTIN: g}, nil
			case len(rest) == 4 && (rest[2] == "21" || rest[2] == "10"):
				v, err := val(3)
				if err != nil || v == "" {
					return gs1Key{}, errors.New("bad percent-encoding")
				}
				if rest[2] == "21" {
					return gs1Key{Kind: "sgtin", GTIN: g, Serial: v}, nil
				}
				return gs1Key{Kind: "lgtin", GTIN: g, Lot: v}, nil
			}
			break
		}
		return gs1Key{}, errors.New("want a GS1 Digital Link URI of the form …/01/GTIN[/21/SERIAL|/10/LOT] or …/00/SSCC")
	}
	return gs1Key{}, errors.New("want an EPC URN (urn:epc:id:sgtin:…, urn:epc:id:sscc:…, urn:epc:class:lgtin:…, urn:epc:idpat:sgtin:…) or a GS1 Digital Link URI")
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// gtinOf is the GTIN-14 of an EPC's company prefix and item reference
// (indicator digit first): 13 digits together.
func gtinOf(cp, ref string) (string, error) {
	if len(cp)+len(ref) != 13 || len(cp) < 6 || len(cp) > 12 || !digits(cp+ref) {
		return "", errors.New("company prefix and item reference are not 13 digits")
	}
	body := ref[:1] + cp + ref[1:]
	return body + checkDigit(body), nil
}

// checkDigit is the GS1 mod-10 check digit of body.
func checkDigit(body string) string {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 3
		}
		sum += d
	}
	return strconv.Itoa((10 - sum%10) % 10)
}

// matches reports whether the rendered event e satisfies every parameter
// of q (the exact test; the SQL only narrows).
func (q *EPCISQuery) matches(e *epcis.Event) bool {
	keys := func(uris ...string) []gs1Key {
		var out []gs1Key
		for _, u := range uris {
			if k, err := parseGS1URI(u); err == nil {
				out = append(out, k)
			}
		}
		return out
	}
	anyOf := func(want []gs1Key, have []gs1Key) bool {
		for _, w := range want {
			for _, h := range have {
				if w.covers(h) {
					return true
				}
			}
		}
		return false
	}
	if len(q.EPC) > 0 && !anyOf(q.EPC, keys(e.EPCList...)) {
		return false
	}
	if len(q.AnyEPC) > 0 && !anyOf(q.AnyEPC, keys(append(append([]string{}, e.EPCList...), e.ParentID)...)) {
		return false
	}
	if len(q.EPCClass) > 0 {
		var cls []string
		for _, x := range append(append([]epcis.Quantity{}, e.QuantityList...), e.ChildQuantityList...) {
			cls = append(cls, x.EPCClass)
		}
		if !anyOf(q.EPCClass, keys(cls...)) {
			return false
		}
	}
	if len(q.BizStep) > 0 {
		ok := false
		for _, b := range q.BizStep {
			ok = ok || b == e.BizStep
		}
		if !ok {
			return false
		}
	}
	return true
}

// where is the SQL narrowing of q: a superset of the matching events.
func (q *EPCISQuery) where(args *[]any) string {
	arg := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	conds := []string{"kind = 'custody'"}
	keyCond := func(ks []gs1Key) string {
		var or []string
		for _, k := range ks {
			switch k.Kind {
			case "sgtin":
				or = append(or, "(gtin = "+arg(k.GTIN)+" AND serial = "+arg(k.Serial)+")")
			case "sscc":
				or = append(or, "sscc = "+arg(k.SSCC))
			case "lgtin":
				// A pallet's content GTIN is in its payload, not the gtin column.
				or = append(or, "lot = "+arg(k.Lot))
			case "product":
				or = append(or, "gtin = "+arg(k.GTIN)+" OR doc->'ais' @> "+arg(fmt.Sprintf(`[{"ai":"02","value":%q}]`, k.GTIN))+"::jsonb")
			}
		}
		return "(" + strings.Join(or, " OR ") + ")"
	}
	for _, ks := range [][]gs1Key{q.EPC, q.AnyEPC, q.EPCClass} {
		if len(ks) > 0 {
			conds = append(conds, keyCond(ks))
		}
	}
	if len(q.BizStep) > 0 {
		var or []string
		for _, b := range q.BizStep {
			switch b {
			case epcis.StepReceiving:
				or = append(or, "(verdict IN ('accept', 'warn') AND direction = 'receiving')")
			case epcis.StepShipping:
				or = append(or, "(verdict IN ('accept', 'warn') AND direction = 'shipping')")
			case epcis.StepInspecting:
				or = append(or, "verdict NOT IN ('accept', 'warn')")
			}
		}
		if len(or) == 0 {
			or = []string{"false"} // a step dockd never records
		}
		conds = append(conds, "("+strings.Join(or, " OR ")+")")
	}
	if len(q.Lot) > 0 {
		conds = append(conds, "lot = ANY("+arg(q.Lot)+"::text[])")
	}
	if !q.GE.IsZero() {
		conds = append(conds, "time >= "+arg(q.GE))
	}
	if !q.LT.IsZero() {
		conds = append(conds, "time < "+arg(q.LT))
	}
	if q.after != nil {
		conds = append(conds, "(time, station, seq) > ("+arg(q.after.Time)+"::timestamptz, "+arg(q.after.Station)+"::text, "+arg(q.after.Seq)+"::bigint)")
	}
	return strings.Join(conds, " AND ")
}

// EPCISEvents runs q: the matching stored custody events rendered as
// EPCIS 2.0 events (internal/epcis, central's rendering: Digital Link
// identifiers, UTC, no readPoint or bizLocation — those are station
// configuration central does not have), oldest first, at most q.PerPage.
// next is the token of the following page, "" when this page is not full.
// Events without an EPCIS rendering (simulated and bad scans) are skipped.
func EPCISEvents(ctx context.Context, db Querier, q EPCISQuery) (events []*epcis.Event, next string, err error) {
	if q.PerPage <= 0 || q.PerPage > EPCISMaxPerPage {
		q.PerPage = EPCISDefaultPerPage
	}
	chunk := q.PerPage + q.PerPage/4 + 10
	events = []*epcis.Event{}
	var last pageCursor
	for {
		var args []any
		sql := `SELECT time, station, seq, coalesce(convert_to(doc::text, 'UTF8'), raw) FROM events WHERE ` + q.where(&args) +
			` ORDER BY time, station, seq LIMIT ` + strconv.Itoa(chunk)
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return nil, "", fmt.Errorf("epcis query: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			var c pageCursor
			var payload []byte
			if err := rows.Scan(&c.Time, &c.Station, &c.Seq, &payload); err != nil {
				rows.Close()
				return nil, "", fmt.Errorf("epcis query: %w", err)
			}
			last = c
			e, err := epcis.RenderJSON(payload, epcis.Config{})
			if err != nil || !q.matches(e) {
				continue // no rendering (simulated, bad scan), or narrowed by SQL only
			}
			events = append(events, e)
			if len(events) == q.PerPage {
				rows.Close()
				return events, encodeCursor(c), rows.Err()
			}
		}
		if err := rows.Err(); err != nil {
			return nil, "", fmt.Errorf("epcis query: %w", err)
		}
		if n < chunk {
			return events, "", nil
		}
		q.after = &last
	}
}

// problem is an RFC 7807 body, the EPCIS 2.0 REST binding's error form.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
}

// EPCISHandler serves GET /epcis/events (see EPCISQuery for the supported
// parameters) as an EPCISQueryDocument (application/ld+json) with
// GS1-EPCIS-Version 2.0.0. A bad parameter is answered 400 with an RFC 7807
// problem of type epcisException:QueryParameterException naming it, a
// database failure 503.
func EPCISHandler(db Querier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("GS1-EPCIS-Version", "2.0.0")
		fail := func(code int, typ string, err error) {
			w.Header().Set("Content-Type", "application/problem+json")
			writeJSON(w, code, problem{Type: "epcisException:" + typ, Title: err.Error(), Status: code})
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			fail(http.StatusMethodNotAllowed, "ImplementationException", errors.New("only GET: this collector serves queries, not capture"))
			return
		}
		vals, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			fail(http.StatusBadRequest, "QueryParameterException", fmt.Errorf("%w: %v", ErrQueryParameter, err))
			return
		}
		q, err := ParseEPCISQuery(vals)
		if err != nil {
			fail(http.StatusBadRequest, "QueryParameterException", err)
			return
		}
		events, next, err := EPCISEvents(r.Context(), db, q)
		if err != nil {
			fail(http.StatusServiceUnavailable, "ImplementationException", err)
			return
		}
		if next != "" {
			vals.Set("nextPageToken", next)
			w.Header().Set("Link", "<"+r.URL.Path+"?"+vals.Encode()+`>; rel="next"`)
		}
		w.Header().Set("Content-Type", "application/ld+json")
		doc := epcis.NewQueryDocument(epcis.Config{}, time.Now(), "SimpleEventQuery", "", events...)
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(doc)
	})
}
