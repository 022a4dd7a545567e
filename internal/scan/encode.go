package scan

import (
	"encoding/json"
	"strings"
)

// EncodeElementString writes ais as a GS1 element string (no AIM prefix),
// with a GS after every value whose AI is not predefined-length, except the
// last. AIs not in the table are treated as variable-length. Values are not
// validated.
func EncodeElementString(ais []AI) string {
	var b strings.Builder
	for i, a := range ais {
		b.WriteString(a.AI)
		b.WriteString(a.Value)
		if i < len(ais)-1 {
			if e := entryFor(a.AI); e == nil || !e.predefined {
				b.WriteByte(gs)
			}
		}
	}
	return b.String()
}

// EncodeHumanReadable writes ais as "(ai)value..." text. Values are written
// as they are; a value containing "(NN)" for a known AI NN does not read back
// unambiguously.
func EncodeHumanReadable(ais []AI) string {
	var b strings.Builder
	for _, a := range ais {
		b.WriteByte('(')
		b.WriteString(a.AI)
		b.WriteByte(')')
		b.WriteString(a.Value)
	}
	return b.String()
}

// EncodeDigitalLink writes ais as a GS1 Digital Link URI under base (e.g.
// "https://id.gs1.org"). The first primary-key AI goes in the path, followed
// by the key qualifiers present (in the dictionary's order); every other AI
// becomes a query parameter and must be allowed as a data attribute. Errors
// are *Error with KindBadURI.
func EncodeDigitalLink(base string, ais []AI) (string, error) {
	if !isURI(base) {
		return "", &Error{Kind: KindBadURI, Msg: "base " + quotePrefix(base) + " is not an http or https URI"}
	}
	key := -1
	for i, a := range ais {
		if e := entryFor(a.AI); e != nil && e.dlPKey {
			key = i
			break
		}
	}
	if key < 0 {
		return "", &Error{Kind: KindBadURI, Msg: "no Digital Link primary key AI among the AIs"}
	}
	pk := entryFor(ais[key].AI)
	used := make([]bool, len(ais))
	used[key] = true
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "/"))
	b.WriteString("/" + pk.ai + "/" + pctEncode(ais[key].Value))
	// Choose the qualifier sequence that covers the most qualifiers present.
	var best []int
	for _, alt := range pk.dlQual {
		var idx []int
		for _, q := range alt {
			for i, a := range ais {
				if !used[i] && a.AI == q {
					idx = append(idx, i)
					break
				}
			}
		}
		if len(idx) > len(best) {
			best = idx
		}
	}
	for _, i := range best {
		used[i] = true
		b.WriteString("/" + ais[i].AI + "/" + pctEncode(ais[i].Value))
	}
	sep := byte('?')
	for i, a := range ais {
		if used[i] {
			continue
		}
		e := entryFor(a.AI)
		if e == nil || !e.dlAttr {
			return "", &Error{Kind: KindBadURI, AI: a.AI, Msg: "AI " + a.AI + " cannot be expressed in a Digital Link URI here"}
		}
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(a.AI + "=" + pctEncode(a.Value))
	}
	return b.String(), nil
}

// pctEncode percent-encodes everything but RFC 3986 unreserved characters.
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

// EncodeSGTIN96 returns the upper-case hex of an SGTIN-96 EPC (TDS 14.5.1).
// itemRef includes the indicator digit as its first digit, as in the EPC URI;
// len(companyPrefix)+len(itemRef) must be 13 with a 6..12 digit prefix.
// Errors are *Error with KindBadEPC.
func EncodeSGTIN96(filter int, companyPrefix string, itemRef string, serial uint64) (string, error) {
	if serial >= 1<<38 {
		return "", &Error{Kind: KindBadEPC, Msg: "serial exceeds 38 bits"}
	}
	return encode96(0x30, &partSGTIN, filter, companyPrefix, itemRef, 38, serial)
}

// EncodeSSCC96 returns the upper-case hex of an SSCC-96 EPC (TDS 14.5.2).
// serialRef includes the extension digit as its first digit;
// len(companyPrefix)+len(serialRef) must be 17. Errors are *Error with
// KindBadEPC.
func EncodeSSCC96(filter int, companyPrefix string, serialRef string) (string, error) {
	return encode96(0x31, &partSSCC, filter, companyPrefix, serialRef, 24, 0)
}

func encode96(header byte, tab *[7]partition, filter int, cp, ref string, tailBits int, tail uint64) (string, error) {
	if filter < 0 || filter > 7 {
		return "", &Error{Kind: KindBadEPC, Msg: "filter must be 0..7"}
	}
	if !isDigits(cp) || (ref != "" && !isDigits(ref)) {
		return "", &Error{Kind: KindBadEPC, Msg: "company prefix and reference must be digits"}
	}
	part := -1
	for i, p := range tab {
		if p.cpDigits == len(cp) && p.refDigits == len(ref) {
			part = i
		}
	}
	if part < 0 {
		return "", &Error{Kind: KindBadPartition, Msg: "no partition for a " + itoa(len(cp)) + "-digit company prefix with a " + itoa(len(ref)) + "-digit reference"}
	}
	p := tab[part]
	cpV, ok1 := parseUint(cp)
	refV, ok2 := parseUint(ref)
	if !ok1 || !ok2 {
		return "", &Error{Kind: KindBadEPC, Msg: "number out of range"}
	}
	var b [12]byte
	putBits(b[:], 0, 8, uint64(header))
	putBits(b[:], 8, 3, uint64(filter))
	putBits(b[:], 11, 3, uint64(part))
	putBits(b[:], 14, p.cpBits, cpV)
	putBits(b[:], 14+p.cpBits, p.refBits, refV)
	putBits(b[:], 14+p.cpBits+p.refBits, tailBits, tail)
	const hx = "0123456789ABCDEF"
	out := make([]byte, 24)
	for i, c := range b {
		out[2*i], out[2*i+1] = hx[c>>4], hx[c&15]
	}
	return string(out), nil
}

func parseUint(s string) (uint64, bool) {
	var v uint64
	if len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		v = v*10 + uint64(s[i]-'0')
	}
	return v, true
}

// jsonLine is the `dockd decode` output object; field order is the wire order.
type jsonLine struct {
	Input     string     `json:"input"`
	OK        bool       `json:"ok"`
	Symbology string     `json:"symbology,omitempty"`
	Form      Form       `json:"form,omitempty"`
	Data      string     `json:"data,omitempty"`
	AIs       []jsonAI   `json:"ais,omitempty"`
	GTIN      string     `json:"gtin,omitempty"`
	Lot       string     `json:"lot,omitempty"`
	Serial    string     `json:"serial,omitempty"`
	SSCC      string     `json:"sscc,omitempty"`
	Expiry    string     `json:"expiry,omitempty"`
	EPC       *jsonEPC   `json:"epc,omitempty"`
	Warnings  []string   `json:"warnings,omitempty"`
	Error     *jsonError `json:"error,omitempty"`
}

type jsonAI struct {
	AI    string `json:"ai"`
	Value string `json:"value"`
}

type jsonEPC struct {
	Scheme    string `json:"scheme"`
	Filter    int    `json:"filter"`
	Partition int    `json:"partition"`
	URI       string `json:"uri"`
}

type jsonError struct {
	Kind    Kind   `json:"kind"`
	AI      string `json:"ai,omitempty"`
	Offset  int    `json:"offset"`
	Message string `json:"message"`
}

// JSONLine renders one decode result as the single-line JSON object printed
// by `dockd decode` (no trailing newline). input is echoed as given; fields
// that do not apply are omitted. err that is not an *Error is reported with
// an empty kind.
func JSONLine(input string, s *Scan, err error) []byte {
	o := jsonLine{Input: input, OK: err == nil}
	if s != nil {
		o.Symbology, o.Form, o.Data = s.Symbology, s.Form, s.Data
		if s.Form == FormEPC {
			o.Data = ""
		}
		for _, a := range s.AIs {
			o.AIs = append(o.AIs, jsonAI(a))
		}
		o.GTIN, o.Lot, o.Serial, o.SSCC = s.GTIN(), s.Lot(), s.Serial(), s.SSCC()
		if y, m, d, ok := s.Expiry(); ok {
			o.Expiry = zpad(uint64(y), 4) + "-" + zpad(uint64(m), 2) + "-" + zpad(uint64(d), 2)
		}
		if s.EPC != nil {
			o.EPC = &jsonEPC{s.EPC.Scheme, s.EPC.Filter, s.EPC.Partition, s.EPC.URI}
		}
		o.Warnings = s.Warnings
	}
	if err != nil {
		je := &jsonError{Message: err.Error()}
		if e, ok := err.(*Error); ok {
			je = &jsonError{Kind: e.Kind, AI: e.AI, Offset: e.Offset, Message: e.Msg}
		}
		o.Error = je
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if e := enc.Encode(o); e != nil {
		// Only invalid UTF-8 cannot occur here (encoding/json replaces it), so
		// this is unreachable; still return a valid object.
		return []byte(`{"input":"","ok":false}`)
	}
	return []byte(strings.TrimSuffix(b.String(), "\n"))
}
