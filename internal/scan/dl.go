package scan

import "strings"

// parseDigitalLink reads a GS1 Digital Link URI (GS1 Digital Link Standard:
// URI Syntax 1.x). isDL is false, with no error, when the URI has no
// primary-key path structure: it is then an ordinary URI and a plain scan.
func (d *Decoder) parseDigitalLink(uri string, base int, p *parsed) (isDL bool, err *Error) {
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	rest := uri[strings.Index(uri, "://")+3:]
	restOff := base + len(uri) - len(rest)
	slash := strings.IndexAny(rest, "/?")
	if slash <= 0 || rest[slash] != '/' {
		return false, nil // no authority or no path
	}
	path := rest[slash:]
	query := ""
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path, query = path[:q], path[q+1:]
	}
	pathOff := restOff + slash
	// Split the path into segments, remembering offsets.
	var segBuf [24]string
	var offBuf [24]int
	segs, offs := segBuf[:0], offBuf[:0]
	for pos := 0; pos < len(path); {
		// path[pos] == '/'
		end := strings.IndexByte(path[pos+1:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += pos + 1
		}
		segs = append(segs, path[pos+1:end])
		offs = append(offs, pathOff+pos+1)
		pos = end
	}
	if n := len(segs); n > 0 && segs[n-1] == "" {
		segs, offs = segs[:n-1], offs[:n-1]
	}
	key := -1
	for i := 0; i+1 < len(segs); i++ {
		if (len(segs)-i)%2 != 0 {
			continue
		}
		e := entryFor(segs[i])
		if e == nil || !e.dlPKey {
			continue
		}
		ok := true
		for j := i + 2; j < len(segs); j += 2 {
			if entryFor(segs[j]) == nil {
				ok = false
				break
			}
		}
		if ok {
			key = i
			break
		}
	}
	if key < 0 {
		return false, nil
	}
	pk := entryFor(segs[key])
	// Qualifiers must follow one of the key's allowed sequences, in order.
	if n := (len(segs) - key - 2) / 2; n > 0 {
		fits := false
		for _, alt := range pk.dlQual {
			k, ok := 0, true
			for j := key + 2; j < len(segs); j += 2 {
				for k < len(alt) && alt[k] != segs[j] {
					k++
				}
				if k == len(alt) {
					ok = false
					break
				}
				k++
			}
			if ok {
				fits = true
				break
			}
		}
		if !fits {
			return true, elementError(KindBadURI, pk.ai, offs[key], "key qualifiers after /"+pk.ai+"/ are not allowed or not in the order "+describeQual(pk.dlQual))
		}
	}
	for j := key; j < len(segs); j += 2 {
		e := entryFor(segs[j])
		v, ok := pctDecode(segs[j+1])
		if !ok {
			return true, elementError(KindBadURI, e.ai, offs[j+1], "invalid percent-encoding")
		}
		exact := len(v) == len(segs[j+1])
		if e.ai == "01" && (len(v) == 8 || len(v) == 12 || len(v) == 13) && isDigits(v) {
			v, exact = pad14(v), false
		}
		if err := d.dlValue(e, v, offs[j], offs[j+1], exact, p); err != nil {
			return true, err
		}
	}
	qOff := pathOff + len(path) + 1
	for query != "" {
		param := query
		next := ""
		if i := strings.IndexByte(query, '&'); i >= 0 {
			param, next = query[:i], query[i+1:]
		}
		k, v, eq := strings.Cut(param, "=")
		vOff := qOff + len(k)
		if eq {
			vOff++
		}
		if e := entryFor(k); e != nil {
			if !e.dlAttr {
				return true, elementError(KindBadURI, e.ai, qOff, "AI "+e.ai+" is not permitted as a Digital Link data attribute")
			}
			dv, ok := pctDecode(v)
			if !ok {
				return true, elementError(KindBadURI, e.ai, qOff, "invalid percent-encoding")
			}
			if err := d.dlValue(e, dv, qOff, vOff, len(dv) == len(v), p); err != nil {
				return true, err
			}
		}
		qOff += len(param) + 1
		query = next
	}
	return true, nil
}

// dlValue validates and records one Digital Link value found at URI offset
// off. When the value was percent-decoded or normalised (exact false),
// errors point at the start of the value rather than into it.
func (d *Decoder) dlValue(e *aiEntry, v string, aiOff, off int, exact bool, p *parsed) *Error {
	if max := e.maxLen(); len(v) > max {
		return elementError(KindBadLength, e.ai, off, "value longer than "+itoa(max)+" characters")
	}
	if err := d.checkValue(e, v, off, p); err != nil {
		if !exact {
			err.Offset = off
		}
		return err
	}
	p.add(AI{AI: e.ai, Value: v}, aiOff)
	return nil
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

// pctDecode decodes %XX escapes; '+' is left as is (path semantics).
func pctDecode(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
		i += 2
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
