package scan

import (
	"strconv"
	"strings"
)

// gs is the ASCII group separator that transmits FNC1 inside a message.
const gs = '\x1d'

// parsed is the outcome of reading AI data in any syntax.
type parsed struct {
	ais      []AI
	offArr   [16]int // offset in Input of each AI (first 16)
	offMore  []int   // offsets of AIs beyond the first 16
	warnings []string
}

// add records an AI found at input offset off.
func (p *parsed) add(a AI, off int) {
	if n := len(p.ais); n < len(p.offArr) {
		p.offArr[n] = off
	} else {
		p.offMore = append(p.offMore, off)
	}
	p.ais = append(p.ais, a)
}

// off returns the input offset of the i-th AI.
func (p *parsed) off(i int) int {
	if i < len(p.offArr) {
		return p.offArr[i]
	}
	return p.offMore[i-len(p.offArr)]
}

// elementError builds an *Error.
func elementError(k Kind, ai string, off int, msg string) *Error {
	return &Error{Kind: k, AI: ai, Offset: off, Msg: msg}
}

// parseElementString reads a GS1 element string. base is the offset of data
// within the scan input.
func (d *Decoder) parseElementString(data string, base int, p *parsed) *Error {
	if i := strings.IndexByte(data, '^'); i >= 0 {
		return elementError(KindBadCharset, "", base+i, "caret '^' is not valid in GS1 data; FNC1 must be transmitted as GS (0x1D)")
	}
	pos := 0
	if pos < len(data) && data[pos] == gs {
		pos++ // FNC1 in first position transmitted literally
	}
	if pos == len(data) {
		return elementError(KindBadLength, "", base, "no element string data")
	}
	for pos < len(data) {
		if data[pos] == gs {
			return elementError(KindMissingSeparator, "", base+pos, "empty element between separators")
		}
		e := lookupAI(data[pos:])
		if e == nil {
			return elementError(KindUnknownAI, "", base+pos, "no Application Identifier starts "+quotePrefix(data[pos:]))
		}
		vstart := pos + len(e.ai)
		var v string
		if e.predefined {
			n := e.maxLen()
			end := vstart + n
			if end > len(data) {
				end = len(data)
			}
			if i := strings.IndexByte(data[vstart:end], gs); i >= 0 {
				end = vstart + i
			}
			v = data[vstart:end]
			if len(v) != n {
				return elementError(KindBadLength, e.ai, base+vstart, "value has "+itoa(len(v))+" characters, AI "+e.ai+" needs "+itoa(n))
			}
			pos = end
			if pos < len(data) && data[pos] == gs {
				pos++ // superfluous FNC1 after a predefined-length AI
			}
		} else {
			end := len(data)
			if i := strings.IndexByte(data[vstart:], gs); i >= 0 {
				end = vstart + i
			}
			v = data[vstart:end]
			if max := e.maxLen(); len(v) > max {
				// The content of the first max characters is judged first
				// (as the reference does); only a clean prefix makes it a
				// length or separator error.
				if err := d.checkValue(e, v[:max], base+vstart, p); err != nil {
					return err
				}
				if next := lookupAI(data[vstart+max:]); next != nil {
					return elementError(KindMissingSeparator, e.ai, base+vstart+max, "value of variable-length AI "+e.ai+" exceeds "+itoa(max)+" characters; GS separator missing before AI "+next.ai+"?")
				}
				return elementError(KindBadLength, e.ai, base+vstart+max, "value longer than "+itoa(max)+" characters")
			}
			pos = end
			if pos < len(data) {
				pos++ // the GS
			}
		}
		if err := d.checkValue(e, v, base+vstart, p); err != nil {
			return err
		}
		p.add(AI{AI: e.ai, Value: v}, base+vstart-len(e.ai))
	}
	return nil
}

// checkValue validates one value, turning warnable problems into warnings.
func (d *Decoder) checkValue(e *aiEntry, v string, off int, p *parsed) *Error {
	pr := validateValue(e, v)
	if pr.kind == "" {
		return nil
	}
	if d.warn[pr.kind] {
		p.warnings = append(p.warnings, string(pr.kind)+": AI "+e.ai+": "+pr.msg)
		return nil
	}
	return elementError(pr.kind, e.ai, off+pr.off, pr.msg)
}

// parseHumanReadable reads "(01)...(10)..." text. Like the reference, it
// first reads every AI checking only lengths, then judges each value's
// content in order.
func (d *Decoder) parseHumanReadable(data string, base int, p *parsed) *Error {
	type hrItem struct {
		e           *aiEntry
		v           string
		aiOff, vOff int
	}
	var itemBuf [16]hrItem
	items := itemBuf[:0]
	pos := 0
	for pos < len(data) {
		e, n := hrAIAt(data[pos:])
		if e == nil {
			if n == 0 {
				return elementError(KindUnknownAI, "", base+pos, "expected a bracketed Application Identifier")
			}
			return elementError(KindUnknownAI, "", base+pos, "unknown Application Identifier "+data[pos:pos+n])
		}
		vstart := pos + n
		end := vstart
		for end < len(data) {
			if data[end] == '(' {
				if ne, _ := hrAIAt(data[end:]); ne != nil {
					break
				}
			}
			end++
		}
		v := data[vstart:end]
		if i := strings.IndexByte(v, gs); i >= 0 {
			return elementError(KindBadCharset, e.ai, base+vstart+i, "GS is not allowed in the human-readable form")
		}
		if min := e.minLen(); len(v) < min {
			return elementError(KindBadLength, e.ai, base+vstart, "value shorter than "+itoa(min)+" characters")
		}
		if max := e.maxLen(); len(v) > max {
			return elementError(KindBadLength, e.ai, base+vstart+max, "value longer than "+itoa(max)+" characters")
		}
		if i := strings.IndexByte(v, '^'); i >= 0 {
			return elementError(KindBadCharset, e.ai, base+vstart+i, "caret '^' is not valid in GS1 data")
		}
		items = append(items, hrItem{e, v, base + pos, base + vstart})
		pos = end
	}
	if len(items) == 0 {
		return elementError(KindBadLength, "", base, "no element data")
	}
	for _, it := range items {
		if err := d.checkValue(it.e, it.v, it.vOff, p); err != nil {
			return err
		}
		p.add(AI{AI: it.e.ai, Value: it.v}, it.aiOff)
	}
	return nil
}

// hrAIAt reports the AI bracketed at the start of s and the length of
// "(ai)". n is 0 when s does not start with "(digits)"; e is nil when the
// digits are not a known AI.
func hrAIAt(s string) (e *aiEntry, n int) {
	if len(s) < 4 || s[0] != '(' {
		return nil, 0
	}
	i := 1
	for i < len(s) && i <= 5 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i >= len(s) || s[i] != ')' || i-1 < 2 || i-1 > 4 {
		return nil, 0
	}
	return entryFor(s[1:i]), i + 1
}

// checkMessage applies the message-level rules: repeated AIs must agree,
// ex= pairs must not occur together and every req= rule must be met.
func (d *Decoder) checkMessage(p *parsed) *Error {
	report := func(ai string, off int, msg string) *Error {
		if d.warn[KindBadPairing] {
			p.warnings = append(p.warnings, string(KindBadPairing)+": AI "+ai+": "+msg)
			return nil
		}
		return elementError(KindBadPairing, ai, off, msg)
	}
	ais := p.ais
	for i := range ais {
		for j := i + 1; j < len(ais); j++ {
			if ais[i].AI == ais[j].AI && ais[i].Value != ais[j].Value {
				if err := report(ais[j].AI, p.off(j), "AI "+ais[j].AI+" repeated with a different value"); err != nil {
					return err
				}
			}
		}
	}
	// Digital signature (AI 8030): a GDTI (253), GCN (255) or GRAI (8003)
	// it signs must carry its serial component (GS1 General Specifications,
	// AI 8030 rules; the reference's DigSig validation).
	if i8030 := indexAI(ais, "8030"); i8030 >= 0 {
		for i, a := range ais {
			if a.AI != "253" && a.AI != "255" && a.AI != "8003" {
				continue
			}
			if e := entryFor(a.AI); e != nil && len(a.Value) == e.minLen() {
				if err := report(a.AI, p.off(i), "AI "+a.AI+" must carry its serial component when used with AI 8030 (digital signature)"); err != nil {
					return err
				}
			}
		}
	}
	for i, a := range ais {
		e := entryFor(a.AI)
		if e == nil {
			continue
		}
		for _, pat := range e.ex {
			for _, b := range ais {
				if b.AI != a.AI && aiMatch(pat, b.AI) {
					if err := report(a.AI, p.off(i), "AI "+a.AI+" must not appear with AI "+b.AI); err != nil {
						return err
					}
				}
			}
		}
		for _, rule := range e.req {
			if !reqMet(rule, ais) {
				if err := report(a.AI, p.off(i), "AI "+a.AI+" requires "+describeReq(rule)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func reqMet(rule [][]string, ais []AI) bool {
	for _, alt := range rule {
		all := true
		for _, pat := range alt {
			found := false
			for _, b := range ais {
				if aiMatch(pat, b.AI) {
					found = true
					break
				}
			}
			if !found {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func describeReq(rule [][]string) string {
	parts := make([]string, len(rule))
	for i, alt := range rule {
		parts[i] = strings.Join(alt, "+")
	}
	return "AI " + strings.Join(parts, " or ")
}

// aiMatch matches an AI against a dictionary pattern where 'n' is any digit.
func aiMatch(pat, ai string) bool {
	if len(pat) != len(ai) {
		return false
	}
	for i := 0; i < len(pat); i++ {
		if pat[i] != ai[i] && !(pat[i] == 'n' && ai[i] >= '0' && ai[i] <= '9') {
			return false
		}
	}
	return true
}

func quotePrefix(s string) string {
	if len(s) > 4 {
		s = s[:4]
	}
	return strconv.Quote(s)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

func indexAI(ais []AI, ai string) int {
	for i, a := range ais {
		if a.AI == ai {
			return i
		}
	}
	return -1
}
