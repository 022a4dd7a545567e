package scan

import (
	"strconv"
	"strings"
)

// Digital Link modes (Config.DigitalLink).
const (
	// DigitalLinkStrict judges Digital Link URIs as the GS1 Barcode Syntax
	// Engine does with its default settings (GS1 Digital Link Standard: URI
	// Syntax): only the exact schemes http://, https://, HTTP:// and
	// HTTPS:// start a Digital Link, and every such URI must be a valid one.
	DigitalLinkStrict = "strict"
	// DigitalLinkLenient relaxes exactly four rules, each documented on
	// Config.DigitalLink and in the README; everything else is strict.
	DigitalLinkLenient = "lenient"
)

// uriChars are the characters RFC 3986 allows in a URI.
var uriChars = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%" {
		t[c] = true
	}
	return
}()

// badDomainChar reports characters a Digital Link domain must not contain.
func badDomainChar(c byte) bool {
	return strings.IndexByte("_~?#@!$&'()*+,;=%", c) >= 0
}

// schemeLen returns the length of the http(s) scheme that starts s in this
// decoder's mode, or 0 when s does not start a Digital Link candidate.
func (d *Decoder) schemeLen(s string) int {
	for _, p := range [...][2]string{{"https://", "HTTPS://"}, {"http://", "HTTP://"}} {
		n := len(p[0])
		if len(s) < n {
			continue
		}
		if h := s[:n]; h == p[0] || h == p[1] || d.dlLenient && strings.EqualFold(h, p[0]) {
			return n
		}
	}
	return 0
}

// looksLikeDL reports whether a URI carries anything that could be GS1
// data: a path segment or query key made only of digits (an AI, or a key
// value such as /gtin/09506000134352). In lenient mode a URI without one is
// an ordinary web link and a plain scan.
func looksLikeDL(uri string) bool {
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	path, query, _ := strings.Cut(uri, "?")
	for _, seg := range strings.Split(path, "/") {
		if isDigits(seg) {
			return true
		}
	}
	for _, kv := range strings.Split(query, "&") {
		if k, _, _ := strings.Cut(kv, "="); isDigits(k) {
			return true
		}
	}
	return false
}

// dlItem is one AI value read from a Digital Link, before content checks.
type dlItem struct {
	e      *aiEntry
	v      string
	aiOff  int  // offset of the AI (path segment or query key)
	valOff int  // offset of the value
	exact  bool // v is byte-for-byte the URI text (offsets inside it are valid)
}

// parseDigitalLink reads a GS1 Digital Link URI (GS1 Digital Link Standard:
// URI Syntax). The checks and their order follow the reference decoder: URI
// characters, scheme, domain, the primary key found by walking AI/value
// pairs back from the end of the path, value lengths, query parameters,
// the key-qualifier sequence, duplicates, data attributes, then the content
// of every value. isDL is false, with no error, only in lenient mode for a
// URI with nothing that reads as GS1 data.
func (d *Decoder) parseDigitalLink(uri string, base int, p *parsed) (isDL bool, err *Error) {
	if d.dlLenient && !looksLikeDL(uri) {
		return false, nil
	}
	bad := func(ai string, off int, msg string) (bool, *Error) {
		return true, elementError(KindBadURI, ai, off, msg)
	}
	for i := 0; i < len(uri); i++ {
		if !uriChars[uri[i]] {
			return bad("", base+i, "character "+quotePrefix(uri[i:i+1])+" is not allowed in a URI")
		}
	}
	dom := d.schemeLen(uri)
	slash := strings.IndexByte(uri[dom:], '/')
	for i := dom; i < len(uri) && (slash < 0 || i < dom+slash); i++ {
		if badDomainChar(uri[i]) {
			return bad("", base+i, "character "+quotePrefix(uri[i:i+1])+" is not allowed in the domain")
		}
	}
	if slash <= 0 {
		return bad("", base+dom, "URI must have a domain and a path")
	}
	pathOff := dom + slash
	rest := uri[pathOff:]
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	path, query, hasQuery := strings.Cut(rest, "?")
	if d.dlLenient && len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1] // lenient: one trailing slash ignored
	}
	// Path segments and their offsets in the input.
	var segBuf [24]string
	var offBuf [24]int
	segs, offs := segBuf[:0], offBuf[:0]
	for pos := 0; pos < len(path); {
		end := strings.IndexByte(path[pos+1:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += pos + 1
		}
		segs = append(segs, path[pos+1:end])
		offs = append(offs, base+pathOff+pos+1)
		pos = end
	}
	// The primary key: walk AI/value pairs back from the end of the path.
	key := -1
	for i := len(segs) - 2; i >= 0; i -= 2 {
		e := entryFor(segs[i])
		if e == nil {
			break
		}
		if e.dlPKey {
			key = i
			break
		}
	}
	if key < 0 {
		return bad("", base+pathOff, "no GS1 Digital Link primary key (a key AI followed by AI/value pairs to the end of the path)")
	}
	var itemBuf [12]dlItem
	items := itemBuf[:0]
	for j := key; j < len(segs); j += 2 {
		e := entryFor(segs[j])
		raw := segs[j+1]
		if raw == "" {
			return bad(e.ai, offs[j+1], "AI "+e.ai+" has an empty value in the path")
		}
		v, ok := uriUnescape(raw, false)
		if !ok {
			return bad(e.ai, offs[j+1], "AI "+e.ai+" value decodes to a NUL character")
		}
		it := dlItem{e: e, v: v, aiOff: offs[j], valOff: offs[j+1], exact: v == raw}
		if d.dlLenient && e.ai == "01" && (len(v) == 8 || len(v) == 12 || len(v) == 13) && isDigits(v) {
			it.v, it.exact = pad14(v), false // lenient: zero-suppressed GTIN
		}
		if err := dlLength(it); err != nil {
			return true, err
		}
		items = append(items, it)
	}
	nPath := len(items)
	if hasQuery {
		qOff := base + pathOff + len(path) + 1
		if d.dlLenient && len(rest) > len(path) && rest[len(path)] == '/' {
			qOff++ // the ignored trailing slash
		}
		for query != "" {
			param, next, _ := strings.Cut(query, "&")
			k, raw, eq := strings.Cut(param, "=")
			if eq && isDigitsOrEmpty(k) {
				e := entryFor(k)
				if e == nil {
					key := k
					if len(key) > 8 {
						key = key[:8] + "..."
					}
					return bad("", qOff, "query key "+strconv.Quote(key)+" is all digits but not a known AI")
				}
				if raw == "" {
					return bad(e.ai, qOff, "AI "+e.ai+" has an empty value in the query")
				}
				v, ok := uriUnescape(raw, true)
				if !ok {
					return bad(e.ai, qOff, "AI "+e.ai+" value decodes to a NUL character")
				}
				it := dlItem{e: e, v: v, aiOff: qOff, valOff: qOff + len(k) + 1, exact: v == raw}
				if d.dlLenient && e.ai == "01" && (len(v) == 8 || len(v) == 12 || len(v) == 13) && isDigits(v) {
					it.v, it.exact = pad14(v), false
				}
				if err := dlLength(it); err != nil {
					return true, err
				}
				items = append(items, it)
			}
			qOff += len(param) + 1
			query = next
		}
	}
	// Key qualifiers in the path must follow one of the key's sequences.
	pk := items[0].e
	var qualBuf [12]string
	quals := qualBuf[:0]
	for _, it := range items[1:nPath] {
		quals = append(quals, it.e.ai)
	}
	if !validQualifiers(pk, quals) {
		return bad(pk.ai, items[0].aiOff, "key qualifiers after /"+pk.ai+"/ are not allowed or not in the order "+describeQual(pk.dlQual))
	}
	for i := range items {
		for j := 0; j < i; j++ {
			if items[i].e == items[j].e {
				return bad(items[i].e.ai, items[i].aiOff, "AI "+items[i].e.ai+" appears more than once in the URI")
			}
		}
	}
	for _, it := range items[nPath:] {
		if !it.e.dlAttr {
			return bad(it.e.ai, it.aiOff, "AI "+it.e.ai+" is not permitted as a Digital Link data attribute")
		}
		for j := 0; j <= len(quals) && len(pk.dlQual) > 0; j++ {
			var seqBuf [13]string
			seq := append(append(append(seqBuf[:0], quals[:j]...), it.e.ai), quals[j:]...)
			if validQualifiers(pk, seq) {
				return bad(it.e.ai, it.aiOff, "AI "+it.e.ai+" is a key qualifier of /"+pk.ai+"/ and belongs in the path, not the query")
			}
		}
	}
	for _, it := range items {
		if err := d.checkValue(it.e, it.v, it.valOff, p); err != nil {
			if !it.exact {
				err.Offset = it.valOff
			}
			return true, err
		}
		p.add(AI{AI: it.e.ai, Value: it.v}, it.aiOff)
	}
	return true, nil
}

func isDigitsOrEmpty(s string) bool { return s == "" || isDigits(s) }

// dlLength checks a Digital Link value's length against its AI, and refuses
// a caret (the reference checks both before any content check).
func dlLength(it dlItem) *Error {
	if min := it.e.minLen(); len(it.v) < min {
		return elementError(KindBadLength, it.e.ai, it.valOff, "value shorter than "+itoa(min)+" characters")
	}
	if max := it.e.maxLen(); len(it.v) > max {
		return elementError(KindBadLength, it.e.ai, it.valOff, "value longer than "+itoa(max)+" characters")
	}
	if i := strings.IndexByte(it.v, '^'); i >= 0 {
		off := it.valOff
		if it.exact {
			off += i
		}
		return elementError(KindBadCharset, it.e.ai, off, "caret '^' is not valid in GS1 data")
	}
	return nil
}

// validQualifiers reports whether quals (the path AIs after the key) is an
// in-order selection from one of the key's qualifier sequences.
func validQualifiers(pk *aiEntry, quals []string) bool {
	if len(quals) == 0 {
		return true
	}
	for _, alt := range pk.dlQual {
		k, ok := 0, true
		for _, q := range quals {
			for k < len(alt) && alt[k] != q {
				k++
			}
			if k == len(alt) {
				ok = false
				break
			}
			k++
		}
		if ok {
			return true
		}
	}
	return false
}

func describeQual(q [][]string) string {
	if len(q) == 0 {
		return "(none allowed)"
	}
	parts := make([]string, len(q))
	for i, alt := range q {
		parts[i] = strings.Join(alt, ",")
	}
	return strings.Join(parts, " | ")
}

// uriUnescape decodes %XX escapes. A '%' not followed by two hex digits is
// kept as a literal '%' (and then judged as data). In a query value '+'
// stands for a space (application/x-www-form-urlencoded). ok is false when
// the result would contain a NUL.
func uriUnescape(s string, query bool) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && (!query || strings.IndexByte(s, '+') < 0) {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if c == 0 {
				return "", false
			}
			b = append(b, c)
			i += 2
		case query && s[i] == '+':
			b = append(b, ' ')
		default:
			b = append(b, s[i])
		}
	}
	return string(b), true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
