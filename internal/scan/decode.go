package scan

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ErrConfig marks a Config that NewDecoder rejects; the returned error wraps
// it and says which field and value are wrong.
var ErrConfig = errors.New("scan: invalid config")

// Config controls a Decoder. The zero value is valid.
type Config struct {
	// NoAIM says how to read data without an AIM symbology identifier:
	// "gs1" (default when empty) or "plain". See the package doc.
	NoAIM string
	// PlainPatterns are regular expressions (RE2 syntax) tried in order on
	// plain scans; the first that matches supplies the named groups "lot",
	// "serial" and "gtin". Each must have at least one of those groups.
	PlainPatterns []string
	// Warn lists error kinds to report as warnings instead of errors. Only
	// KindCheckDigit, KindBadDate, KindBadValue, KindBadCharset and
	// KindBadPairing may be listed.
	Warn []Kind
	// DigitalLink says how Digital Link URIs are judged: "strict" (default
	// when empty) or "lenient".
	//
	// strict matches the GS1 Barcode Syntax Engine's defaults: only
	// http://, https://, HTTP:// and HTTPS:// start a Digital Link (any
	// other spelling of the scheme is plain data), and a URI that starts
	// one must be a valid Digital Link or the scan is a KindBadURI (or
	// content) error, never a plain scan.
	//
	// lenient relaxes exactly these rules, all else staying strict:
	//   1. the scheme is matched case-insensitively (RFC 3986), so
	//      "Https://" is a Digital Link candidate too;
	//   2. a URI with no path segment or query key made only of digits is
	//      an ordinary web link and a plain scan, not a bad_uri error;
	//   3. a zero-suppressed GTIN-8, -12 or -13 in /01/ (or ?01=) is
	//      padded to 14 digits instead of refused as too short;
	//   4. one trailing '/' after the last path value is ignored.
	DigitalLink string
	// Now is the clock used to resolve two-digit years (GS1 General
	// Specifications 7.12); nil means time.Now.
	Now func() time.Time
}

// Decoder decodes scans. It is immutable and safe for concurrent use.
type Decoder struct {
	plainGS1  bool
	dlLenient bool
	patterns  []plainPattern
	warn      map[Kind]bool
	now       func() time.Time
}

type plainPattern struct {
	re                   *regexp.Regexp
	lot, serial, gtinIdx int
}

var warnable = map[Kind]bool{KindCheckDigit: true, KindBadDate: true, KindBadValue: true, KindBadCharset: true, KindBadPairing: true}

// NewDecoder validates cfg and returns a Decoder. Errors wrap ErrConfig.
func NewDecoder(cfg Config) (*Decoder, error) {
	d := &Decoder{warn: map[Kind]bool{}, now: cfg.Now}
	if d.now == nil {
		d.now = time.Now
	}
	switch cfg.NoAIM {
	case "", "gs1":
		d.plainGS1 = true
	case "plain":
	default:
		return nil, fmt.Errorf("%w: NoAIM %q is not \"gs1\" or \"plain\"", ErrConfig, cfg.NoAIM)
	}
	switch cfg.DigitalLink {
	case "", DigitalLinkStrict:
	case DigitalLinkLenient:
		d.dlLenient = true
	default:
		return nil, fmt.Errorf("%w: DigitalLink %q is not %q or %q", ErrConfig, cfg.DigitalLink, DigitalLinkStrict, DigitalLinkLenient)
	}
	for i, p := range cfg.PlainPatterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: PlainPatterns[%d] %q: %w", ErrConfig, i, p, err)
		}
		pp := plainPattern{re: re, lot: re.SubexpIndex("lot"), serial: re.SubexpIndex("serial"), gtinIdx: re.SubexpIndex("gtin")}
		if pp.lot < 0 && pp.serial < 0 && pp.gtinIdx < 0 {
			return nil, fmt.Errorf("%w: PlainPatterns[%d] %q has no named group lot, serial or gtin", ErrConfig, i, p)
		}
		d.patterns = append(d.patterns, pp)
	}
	for _, k := range cfg.Warn {
		if !warnable[k] {
			return nil, fmt.Errorf("%w: Warn kind %q cannot be downgraded to a warning", ErrConfig, k)
		}
		d.warn[k] = true
	}
	return d, nil
}

// aimInfo describes one AIM symbology identifier.
type aimInfo struct {
	name string
	gs1  bool // data is a GS1 element string
	ean  int  // EAN/UPC length class: 13, 8, or -1 for add-on only; 0 otherwise
	itf  bool
}

// aimLookup maps "]" code modifier to a symbology (ISO/IEC 15424 and the
// GS1 General Specifications 5.4 symbology identifiers).
func aimLookup(code, mod byte) (aimInfo, bool) {
	in := func(set string) bool { return strings.IndexByte(set, mod) >= 0 }
	switch code {
	case 'C':
		switch mod {
		case '1':
			return aimInfo{name: "GS1-128", gs1: true}, true
		case '0', '2', '4':
			return aimInfo{name: "Code 128"}, true
		}
	case 'd':
		switch {
		case in("25"):
			return aimInfo{name: "GS1 DataMatrix", gs1: true}, true
		case in("01346"):
			return aimInfo{name: "DataMatrix"}, true
		}
	case 'Q':
		switch {
		case in("34"):
			return aimInfo{name: "GS1 QR", gs1: true}, true
		case in("01256"):
			return aimInfo{name: "QR"}, true
		}
	case 'e':
		if in("0123") {
			return aimInfo{name: "GS1 DataBar", gs1: true}, true
		}
	case 'J':
		switch mod {
		case '1':
			return aimInfo{name: "GS1 DotCode", gs1: true}, true
		case '0':
			return aimInfo{name: "DotCode"}, true
		}
	case 'E':
		switch mod {
		case '0', '3':
			return aimInfo{name: "EAN-13", ean: 13}, true
		case '4':
			return aimInfo{name: "EAN-8", ean: 8}, true
		case '1', '2':
			return aimInfo{name: "EAN add-on", ean: -1}, true
		}
	case 'I':
		if in("013") {
			return aimInfo{name: "ITF", itf: true}, true
		}
	case 'A':
		if in("01234567") {
			return aimInfo{name: "Code 39"}, true
		}
	case 'L':
		if in("012") {
			return aimInfo{name: "PDF417"}, true
		}
	case 'z':
		if in("0123456789ABC") {
			return aimInfo{name: "Aztec"}, true
		}
	}
	return aimInfo{}, false
}

// Decode decodes one barcode read. It always returns a non-nil Scan; when
// err is non-nil (always an *Error) the Scan holds only what was determined
// before the failure (Input, AIM, Symbology, Data) and no AIs.
func (d *Decoder) Decode(raw []byte) (*Scan, error) {
	s := &Scan{Input: string(raw), refYear: d.now().Year()}
	if err := d.decode(s); err != nil {
		s.AIs, s.EPC, s.Form = nil, nil, ""
		s.gtin, s.lot, s.serial = "", "", ""
		return s, err
	}
	return s, nil
}

func (d *Decoder) decode(s *Scan) *Error {
	in := s.Input
	if len(in) > 0 && in[0] == ']' {
		if len(in) < 3 {
			return elementError(KindBadSymbology, "", 0, "truncated AIM symbology identifier")
		}
		info, ok := aimLookup(in[1], in[2])
		if !ok {
			return elementError(KindBadSymbology, "", 0, "unknown AIM symbology identifier "+quotePrefix(in[:3]))
		}
		s.AIM, s.Symbology, s.Data = in[:3], info.name, in[3:]
		switch {
		case info.gs1:
			if strings.HasPrefix(s.Data, "\x1d") && strings.IndexByte(s.Data, '^') < 0 {
				// The identifier already stands for FNC1 in first position;
				// a GS here is an empty element.
				return elementError(KindMissingSeparator, "", 3, "GS directly after the symbology identifier "+s.AIM+": FNC1 in first position is implied by it and is not transmitted")
			}
			return d.finishGS1(s, FormElementString, 3)
		case info.ean != 0:
			return d.decodeEAN(s, info, 3)
		case info.itf:
			s.Form = FormPlain
			if len(s.Data) == 14 && validCheckDigit(s.Data) {
				s.Symbology, s.gtin = "ITF-14", s.Data
			}
			return nil
		}
		return d.decodeOther(s, 3)
	}
	s.Data = in
	if !d.plainGS1 {
		return d.decodeOther(s, 0)
	}
	if d.schemeLen(in) > 0 || isHR(in) {
		return d.decodeOther(s, 0)
	}
	var esErr *Error
	if len(in) > 0 && (in[0] == gs || lookupAI(in) != nil) {
		t := *s
		esErr = d.finishGS1(&t, FormElementString, 0)
		if esErr == nil {
			*s = t
			return nil
		}
	}
	if n := len(in); (n == 8 || n == 12 || n == 13) && validCheckDigit(in) {
		s.Form = FormPlain
		s.Symbology = map[int]string{8: "EAN-8", 12: "UPC-A", 13: "EAN-13"}[n]
		s.gtin = pad14(in)
		return nil
	}
	if err := d.decodeOther(s, 0); err != nil {
		return err
	}
	if esErr != nil {
		s.Warnings = append(s.Warnings, "read as plain, not a valid GS1 element string: "+esErr.Error())
	}
	return nil
}

// finishGS1 parses s.Data as an element string or, for FormHumanReadable,
// as bracketed text, and applies the message rules.
func (d *Decoder) finishGS1(s *Scan, form Form, base int) *Error {
	var p parsed
	p.ais = make([]AI, 0, 6)
	var err *Error
	if form == FormHumanReadable {
		err = d.parseHumanReadable(s.Data, base, &p)
	} else {
		err = d.parseElementString(s.Data, base, &p)
	}
	if err != nil {
		return err
	}
	if err := d.checkMessage(&p); err != nil {
		return err
	}
	s.Form, s.AIs = form, p.ais
	s.Warnings = append(s.Warnings, p.warnings...)
	return nil
}

// decodeOther handles data that is not (declared) a GS1 element string:
// Digital Link, human-readable AI text, or plain.
func (d *Decoder) decodeOther(s *Scan, base int) *Error {
	data := s.Data
	if d.schemeLen(data) > 0 {
		var p parsed
		isDL, err := d.parseDigitalLink(data, base, &p)
		if err != nil {
			return err
		}
		if isDL {
			if err := d.checkMessage(&p); err != nil {
				return err
			}
			s.Form, s.AIs = FormDigitalLink, p.ais
			s.Warnings = append(s.Warnings, p.warnings...)
			return nil
		}
	} else if isHR(data) {
		return d.finishGS1(s, FormHumanReadable, base)
	}
	s.Form = FormPlain
	d.applyPatterns(s)
	return nil
}

func (d *Decoder) applyPatterns(s *Scan) {
	for _, pp := range d.patterns {
		m := pp.re.FindStringSubmatch(s.Data)
		if m == nil {
			continue
		}
		if pp.lot > 0 {
			s.lot = m[pp.lot]
		}
		if pp.serial > 0 {
			s.serial = m[pp.serial]
		}
		if pp.gtinIdx > 0 && m[pp.gtinIdx] != "" {
			g := m[pp.gtinIdx]
			if n := len(g); (n == 8 || n == 12 || n == 13 || n == 14) && validCheckDigit(g) {
				s.gtin = pad14(g)
			} else {
				s.Warnings = append(s.Warnings, "plain pattern gtin "+quotePrefix(g)+" is not a valid GTIN; ignored")
			}
		}
		return
	}
}

// decodeEAN validates EAN-13/UPC-A/EAN-8 data declared by an AIM identifier.
func (d *Decoder) decodeEAN(s *Scan, info aimInfo, base int) *Error {
	s.Form = FormPlain
	data := s.Data
	if info.ean < 0 {
		return nil
	}
	if i := firstNonDigit(data); i >= 0 {
		return elementError(KindBadCharset, "", base+i, info.name+" data must be digits")
	}
	num := data
	if s.AIM == "]E3" && (len(data) == 15 || len(data) == 18) {
		num = data[:13]
	}
	switch {
	case info.ean == 8 && len(num) == 8:
	case info.ean == 13 && len(num) == 13:
		if num[0] == '0' {
			s.Symbology = "UPC-A"
		}
	case info.ean == 13 && len(num) == 12:
		s.Symbology = "UPC-A"
	default:
		return elementError(KindBadLength, "", base, info.name+" data has "+itoa(len(data))+" digits")
	}
	if !validCheckDigit(num) {
		if !d.warn[KindCheckDigit] {
			return elementError(KindCheckDigit, "", base+len(num)-1, "check digit "+num[len(num)-1:]+" is wrong, expected "+string(gs1CheckDigit(num[:len(num)-1])))
		}
		s.Warnings = append(s.Warnings, "check_digit: "+s.Symbology+" check digit is wrong")
	}
	s.gtin = pad14(num)
	return nil
}

func firstNonDigit(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return i
		}
	}
	return -1
}

func pad14(g string) string {
	if len(g) >= 14 {
		return g
	}
	return strings.Repeat("0", 14-len(g)) + g
}

func isURI(s string) bool {
	return hasPrefixFold(s, "https://") || hasPrefixFold(s, "http://")
}

func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}

// isHR reports whether s starts like the human-readable AI form with a
// known AI.
func isHR(s string) bool {
	e, _ := hrAIAt(s)
	return e != nil
}
