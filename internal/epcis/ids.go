package epcis

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrBadKey wraps errors for a GTIN, SSCC or GLN that is not 14, 18 or 13
// digits with a valid check digit where one is checked.
var ErrBadKey = errors.New("epcis: malformed GS1 key")

// ErrConfig wraps errors for an unusable Config (a location, transaction or
// prefix table that check-config would refuse).
var ErrConfig = errors.New("epcis: invalid configuration")

// Prefixes is a GS1 Company Prefix length table: known GS1 Company
// Prefixes, or GS1's prefix-length rules, or both. An entry maps leading
// digits of a GS1 key (the key without its indicator or extension digit:
// the 13 digits of a GTIN-13 form, the 17 after an SSCC's extension digit,
// a GLN) to the length of the company prefix of every key that starts with
// them. The longest matching entry wins, so a known prefix ("0614141": 7)
// overrides a broader rule ("06": 9). The zero value knows nothing.
// Values are immutable; safe for concurrent use.
type Prefixes struct {
	m      map[string]int
	maxKey int
}

// NewPrefixes builds a table from entries: each key 1 to 12 digits, each
// length 6 to 12 (the lengths EPC URIs can express, GS1 TDS partition table).
func NewPrefixes(entries map[string]int) (Prefixes, error) {
	p := Prefixes{m: make(map[string]int, len(entries))}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := entries[k]
		if k == "" || len(k) > 12 || strings.Trim(k, "0123456789") != "" {
			return Prefixes{}, fmt.Errorf("%w: company prefix %q: want 1 to 12 digits (quote it in YAML so leading zeros stay)", ErrConfig, k)
		}
		if n < 6 || n > 12 {
			return Prefixes{}, fmt.Errorf("%w: company prefix %q: length %d is not 6 to 12 (EPC URIs cannot express other lengths)", ErrConfig, k, n)
		}
		p.m[k] = n
		p.maxKey = max(p.maxKey, len(k))
	}
	return p, nil
}

// Length returns the company prefix length of the key body (the digits
// after an indicator or extension digit, or a whole GLN), or 0 when no
// entry matches.
func (p Prefixes) Length(body string) int {
	for n := min(p.maxKey, len(body)); n > 0; n-- {
		if l, ok := p.m[body[:n]]; ok && l < len(body) {
			return l
		}
	}
	return 0
}

// Len is the number of entries.
func (p Prefixes) Len() int { return len(p.m) }

// SGTIN is the URI of one serialised trade item: urn:epc:id:sgtin:… when
// the company prefix length gcp is known (6..12), else the GS1 Digital Link
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
	// company prefix . extension digit + serial reference (check digit dropped)
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

// tagPrefixLength returns the company prefix length an EPC pure-identity
// URI of an SGTIN or SSCC tag carries (the tag's partition), or 0.
func tagPrefixLength(epc string) int {
	for _, scheme := range []string{"urn:epc:id:sgtin:", "urn:epc:id:sscc:"} {
		if rest, ok := strings.CutPrefix(epc, scheme); ok {
			if cp, _, ok := strings.Cut(rest, "."); ok && len(cp) >= 6 && len(cp) <= 12 {
				return len(cp)
			}
		}
	}
	return 0
}

// splitGTIN returns the company prefix and the indicator digit + item
// reference of a GTIN-14 (the check digit is dropped).
func splitGTIN(gtin string, gcp int) (cp, ref string) {
	return gtin[1 : 1+gcp], gtin[0:1] + gtin[1+gcp:13]
}

func checkKey(kind, key string, n int) error {
	if len(key) != n || strings.Trim(key, "0123456789") != "" {
		return fmt.Errorf("%w: %s %q is not %d digits", ErrBadKey, kind, key, n)
	}
	return nil
}

// checkDigitOK verifies the GS1 mod-10 check digit of a numeric key.
func checkDigitOK(key string) bool {
	sum := 0
	for i := len(key) - 2; i >= 0; i-- {
		d := int(key[i] - '0')
		if (len(key)-2-i)%2 == 0 {
			d *= 3
		}
		sum += d
	}
	return int(key[len(key)-1]-'0') == (10-sum%10)%10
}

// CheckLocation reports whether uri may name a readPoint or bizLocation:
// an SGLN pure-identity URI (urn:epc:id:sgln:CP.LR.EXT, company prefix and
// location reference 12 digits together), a GS1 Digital Link of a GLN
// (https://id.gs1.org/414/{gln}, optionally /254/{extension}), or an
// http(s) URI on a host the site owns. Other URNs (an unregistered
// namespace such as urn:dockd:) are refused: no consumer can resolve them.
func CheckLocation(uri string) error {
	switch {
	case uri == "":
		return fmt.Errorf("%w: missing", ErrConfig)
	case strings.HasPrefix(uri, "urn:epc:id:sgln:"):
		parts := strings.Split(strings.TrimPrefix(uri, "urn:epc:id:sgln:"), ".")
		if len(parts) != 3 {
			return fmt.Errorf("%w: %q: an SGLN is urn:epc:id:sgln:COMPANYPREFIX.LOCATIONREF.EXTENSION (e.g. urn:epc:id:sgln:0614141.00777.0)", ErrConfig, uri)
		}
		cp, lr, ext := parts[0], parts[1], parts[2]
		if len(cp) < 6 || len(cp) > 12 || len(cp)+len(lr) != 12 || strings.Trim(cp+lr, "0123456789") != "" {
			return fmt.Errorf("%w: %q: company prefix (6 to 12 digits) and location reference must be 12 digits together", ErrConfig, uri)
		}
		if ext == "" || !epcSafe(ext) {
			return fmt.Errorf("%w: %q: the extension must be 1 to 20 characters of GS1 AI encodable set 82, percent-escaped (use 0 for none)", ErrConfig, uri)
		}
		return nil
	case strings.HasPrefix(uri, "https://id.gs1.org/414/"):
		rest := strings.TrimPrefix(uri, "https://id.gs1.org/414/")
		gln, ext, hasExt := strings.Cut(rest, "/254/")
		if len(gln) != 13 || strings.Trim(gln, "0123456789") != "" || !checkDigitOK(gln) {
			return fmt.Errorf("%w: %q: a GLN is 13 digits with a valid check digit", ErrConfig, uri)
		}
		if hasExt && (ext == "" || strings.Contains(ext, "/")) {
			return fmt.Errorf("%w: %q: /254/ must be followed by one extension", ErrConfig, uri)
		}
		if !hasExt && rest != gln {
			return fmt.Errorf("%w: %q: after the GLN only /254/{extension} may follow", ErrConfig, uri)
		}
		return nil
	case strings.HasPrefix(uri, "https://") || strings.HasPrefix(uri, "http://"):
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: %q: not an absolute http(s) URI with a host", ErrConfig, uri)
		}
		if u.Host == "id.gs1.org" {
			return fmt.Errorf("%w: %q: on id.gs1.org a location is /414/{gln}", ErrConfig, uri)
		}
		return nil
	}
	return fmt.Errorf("%w: %q: want an SGLN (urn:epc:id:sgln:…), a GLN Digital Link (https://id.gs1.org/414/…) or an https URI the site owns", ErrConfig, uri)
}

// epcSafe reports whether s is already a valid EPC URI component: GS1 AI
// encodable set 82 with the characters TDS escapes written as %XX.
func epcSafe(s string) bool {
	if len(s) > 60 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		case c == '"' || c == '&' || c == '/' || c == '<' || c == '>' || c == '?' || c == '#':
			return false
		case c <= 0x20 || c >= 0x7f:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// CheckTransaction reports whether typ and tmpl configure business
// transactions: typ is empty (untyped) or a CBV 2.0 business transaction
// type (po, desadv, bol, …) or a URI; tmpl is empty or an absolute URI with
// exactly one "{id}", where the shipment id is put (percent-encoded).
func CheckTransaction(typ, tmpl string) error {
	if typ != "" && !BizTransactionTypes[typ] {
		if u, err := url.Parse(typ); err != nil || u.Scheme == "" {
			return fmt.Errorf("%w: transaction type %q: want a CBV business transaction type (%s) or a URI", ErrConfig, typ, strings.Join(sortedKeys(BizTransactionTypes), ", "))
		}
	}
	if tmpl == "" {
		return nil
	}
	if strings.Count(tmpl, "{id}") != 1 {
		return fmt.Errorf("%w: transaction URI %q: put {id} where the shipment id goes, once", ErrConfig, tmpl)
	}
	u, err := url.Parse(strings.Replace(tmpl, "{id}", "X1", 1))
	if err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "") {
		return fmt.Errorf("%w: transaction URI %q: not an absolute URI", ErrConfig, tmpl)
	}
	if rest, ok := strings.CutPrefix(tmpl, "urn:epcglobal:cbv:bt:"); ok {
		gln, id, _ := strings.Cut(rest, ":")
		if len(gln) != 13 || strings.Trim(gln, "0123456789") != "" || !checkDigitOK(gln) || id != "{id}" {
			return fmt.Errorf("%w: transaction URI %q: the CBV form is urn:epcglobal:cbv:bt:{GLN of the issuer}:{id}", ErrConfig, tmpl)
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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

// decimalString renders an N6 trade-measure value with d implied decimals
// exactly (no binary rounding on the way): "001250", 3 → 1.25.
func decimalValue(v string, d int) (float64, bool) {
	if len(v) != 6 || strings.Trim(v, "0123456789") != "" || d < 0 || d > 5 {
		return 0, false
	}
	s := v[:6-d] + "." + v[6-d:]
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}
