package scan_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/scan"
)

const GS = "\x1d"

// fixedNow pins two-digit year resolution so expiry tests are stable.
func fixedNow() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

func newDec(t testing.TB, cfg scan.Config) *scan.Decoder {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	d, err := scan.NewDecoder(cfg)
	if err != nil {
		t.Fatalf("NewDecoder(%+v): %v", cfg, err)
	}
	return d
}

func ais(kv ...string) []scan.AI {
	var out []scan.AI
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, scan.AI{AI: kv[i], Value: kv[i+1]})
	}
	return out
}

type want struct {
	form      scan.Form
	symbology string
	ais       []scan.AI
	gtin      string
	lot       string
	serial    string
	sscc      string
	expiry    string // YYYY-MM-DD
	warn      bool   // expect at least one warning
	errKind   scan.Kind
	errOffset int // checked when errKind != "" and errOffset >= 0
	errAI     string
}

func check(t *testing.T, in string, s *scan.Scan, err error, w want) {
	t.Helper()
	if w.errKind != "" {
		var e *scan.Error
		if !errors.As(err, &e) {
			t.Fatalf("Decode(%q) err = %v, want *scan.Error of kind %s (scan %+v)", in, err, w.errKind, s)
		}
		if e.Kind != w.errKind {
			t.Fatalf("Decode(%q) kind = %s (%v), want %s", in, e.Kind, e, w.errKind)
		}
		if w.errOffset >= 0 && e.Offset != w.errOffset {
			t.Errorf("Decode(%q) offset = %d (%v), want %d", in, e.Offset, e, w.errOffset)
		}
		if w.errAI != "" && e.AI != w.errAI {
			t.Errorf("Decode(%q) AI = %q, want %q", in, e.AI, w.errAI)
		}
		if s == nil || s.Input != in {
			t.Errorf("Decode(%q) on error should return a scan echoing the input, got %+v", in, s)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode(%q) unexpected error: %v", in, err)
	}
	if s.Input != in {
		t.Errorf("Input = %q, want %q", s.Input, in)
	}
	if s.Form != w.form {
		t.Errorf("Decode(%q) form = %q, want %q", in, s.Form, w.form)
	}
	if s.Symbology != w.symbology {
		t.Errorf("Decode(%q) symbology = %q, want %q", in, s.Symbology, w.symbology)
	}
	if w.ais != nil && !reflect.DeepEqual(s.AIs, w.ais) {
		t.Errorf("Decode(%q) AIs = %v, want %v", in, s.AIs, w.ais)
	}
	for _, c := range []struct{ name, got, want string }{
		{"GTIN", s.GTIN(), w.gtin}, {"Lot", s.Lot(), w.lot}, {"Serial", s.Serial(), w.serial}, {"SSCC", s.SSCC(), w.sscc},
	} {
		if c.got != c.want {
			t.Errorf("Decode(%q) %s() = %q, want %q", in, c.name, c.got, c.want)
		}
	}
	exp := ""
	if y, m, d, ok := s.Expiry(); ok {
		exp = time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	}
	if exp != w.expiry {
		t.Errorf("Decode(%q) Expiry = %q, want %q", in, exp, w.expiry)
	}
	if w.warn != (len(s.Warnings) > 0) {
		t.Errorf("Decode(%q) warnings = %q, want warnings: %v", in, s.Warnings, w.warn)
	}
}

// Worked examples: GTIN 09506000134352 and SSCC 106141411234567897 follow
// the GS1 General Specifications' example numbering (GS1 prefixes 950 and
// 0614141); their check digits were verified independently of this package.
func TestDecodeBarcodes(t *testing.T) {
	typical := "]C1010950600013435217260630" + "10LOT42" + GS + "21S1"
	lot20 := "ABCDEFGHIJKLMNOPQRST"
	tests := []struct {
		name string
		cfg  scan.Config
		in   string
		w    want
	}{
		{"gs1-128 typical", scan.Config{}, typical, want{form: scan.FormElementString, symbology: "GS1-128",
			ais: ais("01", "09506000134352", "17", "260630", "10", "LOT42", "21", "S1"), gtin: "09506000134352", lot: "LOT42", serial: "S1", expiry: "2026-06-30"}},
		{"datamatrix trailing GS and FNC1 after fixed AI", scan.Config{}, "]d2" + "0109506000134352" + GS + "10L1" + GS, want{form: scan.FormElementString, symbology: "GS1 DataMatrix",
			ais: ais("01", "09506000134352", "10", "L1"), gtin: "09506000134352", lot: "L1"}},
		{"gs1 qr", scan.Config{}, "]Q3" + "00106141411234567897", want{form: scan.FormElementString, symbology: "GS1 QR", sscc: "106141411234567897"}},
		{"databar", scan.Config{}, "]e0" + "0109506000134352", want{form: scan.FormElementString, symbology: "GS1 DataBar", gtin: "09506000134352"}},
		// GS1 GenSpecs 3.4.8 (AI 17): day 00 means the last day of the month.
		{"expiry DD=00 is month end", scan.Config{}, "]C1" + "0109506000134352" + "17261100", want{form: scan.FormElementString, symbology: "GS1-128", gtin: "09506000134352", expiry: "2026-11-30"}},
		{"leap day 2028", scan.Config{}, "]C1" + "0109506000134352" + "17280229", want{form: scan.FormElementString, symbology: "GS1-128", gtin: "09506000134352", expiry: "2028-02-29"}},
		{"feb 00 of a leap year", scan.Config{}, "]C1" + "0109506000134352" + "17280200", want{form: scan.FormElementString, symbology: "GS1-128", gtin: "09506000134352", expiry: "2028-02-29"}},
		{"variable measure 3103", scan.Config{}, "]C1" + "0109506000134352" + "3103001250", want{form: scan.FormElementString, symbology: "GS1-128", gtin: "09506000134352"}},
		{"no AIM element string", scan.Config{}, "0109506000134352" + "10LOT42", want{form: scan.FormElementString, gtin: "09506000134352", lot: "LOT42"}},
		{"no AIM plain mode", scan.Config{NoAIM: "plain"}, "0109506000134352", want{form: scan.FormPlain}},
		{"no AIM bad element string falls back to plain with warning", scan.Config{}, "0109506000134353", want{form: scan.FormPlain, warn: true}},
		{"bare EAN-13", scan.Config{}, "5012345678900", want{form: scan.FormPlain, symbology: "EAN-13", gtin: "05012345678900"}},
		{"bare UPC-A", scan.Config{}, "036000291452", want{form: scan.FormPlain, symbology: "UPC-A", gtin: "00036000291452"}},
		{"AIM EAN-13", scan.Config{}, "]E04006381333931", want{form: scan.FormPlain, symbology: "EAN-13", gtin: "04006381333931"}},
		{"AIM EAN-8", scan.Config{}, "]E496385074", want{form: scan.FormPlain, symbology: "EAN-8", gtin: "00000096385074"}},
		{"AIM UPC-A as 12 digits", scan.Config{}, "]E0036000291452", want{form: scan.FormPlain, symbology: "UPC-A", gtin: "00036000291452"}},
		{"ITF-14", scan.Config{}, "]I1" + "10614141234567898"[:0] + "09506000134352", want{form: scan.FormPlain, symbology: "ITF-14", gtin: "09506000134352"}},
		{"code 128 plain", scan.Config{}, "]C0HELLO", want{form: scan.FormPlain, symbology: "Code 128"}},
		{"code 39 plain", scan.Config{}, "]A0ABC-123", want{form: scan.FormPlain, symbology: "Code 39"}},
		{"plain pattern", scan.Config{PlainPatterns: []string{`^LOT:(?P<lot>\w+)/SN:(?P<serial>\w+)$`, `^(?P<gtin>\d{13})-(?P<lot>\w+)$`}}, "]C0LOT:A7/SN:99", want{form: scan.FormPlain, symbology: "Code 128", lot: "A7", serial: "99"}},
		{"plain pattern gtin", scan.Config{NoAIM: "plain", PlainPatterns: []string{`^(?P<gtin>\d{13})-(?P<lot>\w+)$`}}, "4006381333931-B12", want{form: scan.FormPlain, gtin: "04006381333931", lot: "B12"}},
		{"human readable", scan.Config{}, "(01)09506000134352(10)LOT42(21)S1", want{form: scan.FormHumanReadable,
			ais: ais("01", "09506000134352", "10", "LOT42", "21", "S1"), gtin: "09506000134352", lot: "LOT42", serial: "S1"}},
		{"human readable value with parentheses", scan.Config{}, "(01)09506000134352(10)A(B)", want{form: scan.FormHumanReadable, gtin: "09506000134352", lot: "A(B)"}},
		{"warn turns check digit into warning", scan.Config{Warn: []scan.Kind{scan.KindCheckDigit}}, "]C10109506000134353", want{form: scan.FormElementString, symbology: "GS1-128", gtin: "09506000134353", warn: true}},
		{"warn turns pairing into warning", scan.Config{Warn: []scan.Kind{scan.KindBadPairing}}, "]C110LOT42", want{form: scan.FormElementString, symbology: "GS1-128", lot: "LOT42", warn: true}},

		// Errors, one or more per kind.
		{"check digit", scan.Config{}, "]C10109506000134353", want{errKind: scan.KindCheckDigit, errOffset: 18, errAI: "01"}},
		{"check digit EAN", scan.Config{}, "]E04006381333932", want{errKind: scan.KindCheckDigit, errOffset: 15}},
		// GS1 GenSpecs 7.9.5 example GMN check character pair.
		{"check pair", scan.Config{}, "]C18013" + "1987654Ad4X4bL5ttr2310cXK", want{errKind: scan.KindCheckDigit, errOffset: 3 + 4 + 23, errAI: "8013"}},
		{"unknown AI", scan.Config{}, "]C1" + "0109506000134352" + "2312345", want{errKind: scan.KindUnknownAI, errOffset: 19}},
		{"GS in human readable", scan.Config{}, "(01)09506000134352" + GS, want{errKind: scan.KindBadCharset, errOffset: 18}},
		{"unknown AI inside human readable value", scan.Config{}, "(01)09506000134352(23)X", want{errKind: scan.KindBadLength, errAI: "01", errOffset: -1}},
		{"bad date month", scan.Config{}, "]C1" + "0109506000134352" + "17261330", want{errKind: scan.KindBadDate, errOffset: 23, errAI: "17"}},
		{"bad date not leap", scan.Config{}, "]C1" + "0109506000134352" + "17270229", want{errKind: scan.KindBadDate, errAI: "17", errOffset: -1}},
		{"bad date hhmi", scan.Config{}, "]C1" + "0109506000134352" + "7003" + "2612312460", want{errKind: scan.KindBadDate, errAI: "7003", errOffset: -1}},
		{"bad length fixed", scan.Config{}, "]C1010950600013435", want{errKind: scan.KindBadLength, errOffset: 5, errAI: "01"}},
		{"bad length variable", scan.Config{}, "]C1" + "0109506000134352" + "10" + lot20 + "X", want{errKind: scan.KindBadLength, errAI: "10", errOffset: -1}},
		{"bad length empty value", scan.Config{}, "]C1" + "0109506000134352" + "10" + GS + "21S1", want{errKind: scan.KindBadLength, errAI: "10", errOffset: -1}},
		{"bad charset", scan.Config{}, "]C1" + "0109506000134352" + "10LOT 42", want{errKind: scan.KindBadCharset, errOffset: 24, errAI: "10"}},
		{"caret is illegal", scan.Config{}, "]C1" + "0109506000134352" + "10LOT^" + "21S1", want{errKind: scan.KindBadCharset, errOffset: 24}},
		{"numeric AI with letter", scan.Config{}, "]C1" + "01095060001343A2", want{errKind: scan.KindBadCharset, errOffset: 17}},
		{"missing separator", scan.Config{}, "]C1" + "0109506000134352" + "10" + lot20 + "21S1", want{errKind: scan.KindMissingSeparator, errOffset: 3 + 16 + 2 + 20, errAI: "10"}},
		{"req partner missing", scan.Config{}, "]C110LOT42", want{errKind: scan.KindBadPairing, errAI: "10", errOffset: 3}},
		{"serial without gtin", scan.Config{}, "]C121S1", want{errKind: scan.KindBadPairing, errAI: "21", errOffset: -1}},
		{"forbidden pair 01+37", scan.Config{}, "]C1" + "0109506000134352" + "3712", want{errKind: scan.KindBadPairing, errOffset: -1}},
		{"forbidden pair 01+02", scan.Config{}, "]C1" + "0109506000134352" + "0209506000134352" + "3712", want{errKind: scan.KindBadPairing, errOffset: -1}},
		{"repeated AI with other value", scan.Config{}, "]C1" + "0109506000134352" + "10A" + GS + "10B", want{errKind: scan.KindBadPairing, errAI: "10", errOffset: -1}},
		{"bad value country", scan.Config{}, "]C1" + "0109506000134352" + "422999", want{errKind: scan.KindBadValue, errAI: "422", errOffset: -1}},
		{"bad value currency", scan.Config{}, "]C1" + "8020REF1" + GS + "4150614141000012" + GS + "3911000123", want{errKind: scan.KindBadValue, errAI: "3911", errOffset: -1}},
		{"unknown AIM", scan.Config{}, "]C7ABC", want{errKind: scan.KindBadSymbology, errOffset: 0}},
		{"unknown AIM code", scan.Config{}, "]W0ABC", want{errKind: scan.KindBadSymbology, errOffset: 0}},
		{"truncated AIM", scan.Config{}, "]C", want{errKind: scan.KindBadSymbology, errOffset: 0}},
		{"EAN-13 wrong length", scan.Config{}, "]E012345", want{errKind: scan.KindBadLength, errOffset: 3}},
		{"EAN with letters", scan.Config{}, "]E0400638133393X", want{errKind: scan.KindBadCharset, errOffset: 15}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDec(t, tc.cfg)
			s, err := d.Decode([]byte(tc.in))
			check(t, tc.in, s, err, tc.w)
		})
	}
}

// GS1 Digital Link Standard 1.x URI syntax examples (section 4: /01/ key with
// /22/, /10/, /21/ qualifiers in that order; data attributes in the query).
func TestDigitalLink(t *testing.T) {
	tests := []struct {
		name string
		in   string
		w    want
	}{
		{"full", "https://id.gs1.org/01/09506000134352/10/AB-123/21/12345?17=290101", want{form: scan.FormDigitalLink,
			ais: ais("01", "09506000134352", "10", "AB-123", "21", "12345", "17", "290101"), gtin: "09506000134352", lot: "AB-123", serial: "12345", expiry: "2029-01-01"}},
		{"gtin-13 refused (zero-suppressed)", "https://example.com/01/4006381333931", want{errKind: scan.KindBadLength, errAI: "01", errOffset: 23}},
		{"gtin-8 refused (zero-suppressed)", "http://example.com/01/96385074", want{errKind: scan.KindBadLength, errAI: "01", errOffset: 22}},
		{"path prefix", "https://brand.example.com/some/path/01/09506000134352/21/XYZ", want{form: scan.FormDigitalLink, gtin: "09506000134352", serial: "XYZ"}},
		{"trailing slash refused", "https://brand.example.com/01/09506000134352/21/XYZ/", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"percent decoding", "https://example.com/01/09506000134352/21/A%2FB%25", want{form: scan.FormDigitalLink, gtin: "09506000134352", serial: "A/B%"}},
		{"non-AI query ignored", "https://example.com/01/09506000134352?foo=bar&17=290100&linkType=all#frag", want{form: scan.FormDigitalLink,
			ais: ais("01", "09506000134352", "17", "290100"), gtin: "09506000134352", expiry: "2029-01-31"}},
		{"sscc key", "https://example.com/00/106141411234567897", want{form: scan.FormDigitalLink, sscc: "106141411234567897"}},
		{"cpv and serial", "https://example.com/01/09506000134352/22/V1/21/S", want{form: scan.FormDigitalLink, gtin: "09506000134352", serial: "S"}},
		{"in a QR code", "]Q1https://id.gs1.org/01/09506000134352", want{form: scan.FormDigitalLink, symbology: "QR", gtin: "09506000134352"}},
		{"no key is an error, not plain", "https://example.com/products/123", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"no key: odd segments", "https://example.com/01", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"mixed-case scheme is plain data", "Https://example.com/01/09506000134352", want{form: scan.FormPlain}},
		{"upper-case scheme", "HTTPS://EXAMPLE.COM/01/09506000134352", want{form: scan.FormDigitalLink, gtin: "09506000134352"}},
		{"underscore in domain", "https://ex_ample.com/01/09506000134352", want{errKind: scan.KindBadURI, errOffset: 10}},
		{"empty domain", "https:///01/09506000134352", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"empty value", "https://example.com/01//10/A", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"convenience alpha not accepted", "https://example.com/gtin/09506000134352", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"unknown numeric query key", "https://example.com/01/09506000134352?9999=1", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"qualifier in the query", "https://example.com/01/09506000134352?10=ABC", want{errKind: scan.KindBadURI, errAI: "10", errOffset: -1}},
		{"repeated query AI", "https://example.com/01/09506000134352?17=290101&17=290101", want{errKind: scan.KindBadURI, errAI: "17", errOffset: -1}},
		{"plus in query is a space", "https://example.com/01/09506000134352?99=A+B", want{errKind: scan.KindBadCharset, errAI: "99", errOffset: -1}},
		{"bad order", "https://example.com/01/09506000134352/21/1/10/2", want{errKind: scan.KindBadURI, errAI: "01", errOffset: 20}},
		{"qualifier of other key", "https://example.com/00/106141411234567897/21/1", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"bad percent kept literally", "https://example.com/01/09506000134352/21/A%G1", want{form: scan.FormDigitalLink, gtin: "09506000134352", serial: "A%G1"}},
		{"NUL by percent", "https://example.com/01/09506000134352/21/A%00", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"AI 21 is not a data attribute", "https://example.com/01/09506000134352?21=5", want{errKind: scan.KindBadURI, errAI: "21", errOffset: -1}},
		{"bad check digit", "https://example.com/01/09506000134353", want{errKind: scan.KindCheckDigit, errAI: "01", errOffset: 36}},
		{"bad date attribute", "https://example.com/01/09506000134352?17=291301", want{errKind: scan.KindBadDate, errAI: "17", errOffset: -1}},
		{"req violated", "https://example.com/00/106141411234567897?10=ABC", want{errKind: scan.KindBadPairing, errAI: "10", errOffset: -1}},
	}
	d := newDec(t, scan.Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := d.Decode([]byte(tc.in))
			check(t, tc.in, s, err, tc.w)
		})
	}
}

// TestDigitalLinkLenient checks each rule decode.digital_link: lenient
// relaxes, and that everything else stays strict.
func TestDigitalLinkLenient(t *testing.T) {
	tests := []struct {
		name string
		in   string
		w    want
	}{
		{"rule 1: scheme case-insensitive", "Https://example.com/01/09506000134352", want{form: scan.FormDigitalLink, gtin: "09506000134352"}},
		{"rule 2: web link without AI-like parts is plain", "https://example.com/products/abc?lang=en", want{form: scan.FormPlain}},
		{"rule 2 does not cover AI-like paths", "https://example.com/01", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"rule 2 does not cover /gtin/ with a value", "https://example.com/gtin/09506000134352", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"rule 2 does not cover numeric query keys", "https://example.com/gtin?17=290101", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"rule 3: GTIN-13 padded", "https://example.com/01/4006381333931", want{form: scan.FormDigitalLink, ais: ais("01", "04006381333931"), gtin: "04006381333931"}},
		{"rule 3: GTIN-8 padded", "http://example.com/01/96385074", want{form: scan.FormDigitalLink, gtin: "00000096385074"}},
		{"rule 4: one trailing slash ignored", "https://example.com/01/09506000134352/21/XYZ/?17=290101", want{form: scan.FormDigitalLink, gtin: "09506000134352", serial: "XYZ", expiry: "2029-01-01"}},
		{"strict still: two trailing slashes", "https://example.com/01/09506000134352//", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"strict still: empty domain", "https:///01/09506000134352", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"strict still: underscore in domain", "https://ex_ample.com/01/09506000134352", want{errKind: scan.KindBadURI, errOffset: 10}},
		{"strict still: unknown numeric query key", "https://example.com/01/09506000134352?9999=1", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"strict still: qualifier in the query", "https://example.com/01/09506000134352?10=ABC", want{errKind: scan.KindBadURI, errAI: "10", errOffset: -1}},
		{"strict still: repeated AI", "https://example.com/01/09506000134352?17=290101&17=290101", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"strict still: empty value", "https://example.com/01//10/A", want{errKind: scan.KindBadURI, errOffset: -1}},
		{"strict still: unknown AI in the path", "https://example.com/01/09506000134352/9999/X", want{errKind: scan.KindBadURI, errOffset: -1}},
	}
	d := newDec(t, scan.Config{DigitalLink: scan.DigitalLinkLenient})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := d.Decode([]byte(tc.in))
			check(t, tc.in, s, err, tc.w)
		})
	}
}

// EPC Tag Data Standard (TDS 2.x) section 14.5.1 worked example:
// 3074257BF7194E4000001A85 = urn:epc:id:sgtin:0614141.812345.6789, which is
// (01)80614141123458 (21)6789. The other hex values were computed
// independently (big-integer arithmetic over the TDS field layouts, section
// 14.5) from the URIs given; the SSCC-96 one matches the TDS example.
func TestDecodeEPC(t *testing.T) {
	type ew struct {
		scheme     string
		filter     int
		part       int
		uri        string
		ais        []scan.AI
		errKind    scan.Kind
		errMessage string
	}
	tests := []struct {
		name, hex string
		w         ew
	}{
		{"sgtin-96 TDS example", "3074257BF7194E4000001A85", ew{scheme: "sgtin-96", filter: 3, part: 5, uri: "urn:epc:id:sgtin:0614141.812345.6789", ais: ais("01", "80614141123458", "21", "6789")}},
		{"sgtin-96 lower case", "3074257bf7194e4000001a85", ew{scheme: "sgtin-96", filter: 3, part: 5, uri: "urn:epc:id:sgtin:0614141.812345.6789", ais: ais("01", "80614141123458", "21", "6789")}},
		{"sgtin-96 with zero padding", "3074257BF7194E4000001A850000", ew{scheme: "sgtin-96", filter: 3, part: 5, uri: "urn:epc:id:sgtin:0614141.812345.6789", ais: ais("01", "80614141123458", "21", "6789")}},
		{"sscc-96", "3174257BF4499602D2000000", ew{scheme: "sscc-96", filter: 3, part: 5, uri: "urn:epc:id:sscc:0614141.1234567890", ais: ais("00", "106141412345678908")}},
		{"sgln-96", "3274257BF460720000000190", ew{scheme: "sgln-96", filter: 3, part: 5, uri: "urn:epc:id:sgln:0614141.12345.400", ais: ais("414", "0614141123452", "254", "400")}},
		{"grai-96", "3374257BF40C0E4000000190", ew{scheme: "grai-96", filter: 3, part: 5, uri: "urn:epc:id:grai:0614141.12345.400", ais: ais("8003", "00614141123452400")}},
		{"giai-96", "3474257BF400000000BC6038", ew{scheme: "giai-96", filter: 3, part: 5, uri: "urn:epc:id:giai:0614141.12345400", ais: ais("8004", "061414112345400")}},
		{"sgtin-198", "3674257BF7194E59B2C2BF1000000000000000000000000000", ew{scheme: "sgtin-198", filter: 3, part: 5, uri: "urn:epc:id:sgtin:0614141.812345.32a%2Fb", ais: ais("01", "80614141123458", "21", "32a/b")}},
		{"unprogrammed", "000000000000000000000000", ew{errKind: scan.KindBadEPC, errMessage: "unprogrammed"}},
		{"unknown header", "FF74257BF7194E4000001A85", ew{errKind: scan.KindBadEPCHeader}},
		{"unsupported gid-96 header", "3574257BF7194E4000001A85", ew{errKind: scan.KindBadEPCHeader}},
		{"partition 7", "307C257BF7194E4000001A85", ew{errKind: scan.KindBadPartition}},
		{"company prefix too big", "3000FFFFFFFFFF4000001A85", ew{errKind: scan.KindBadEPC}},
		{"not hex", "3074257BF7194E4000001AZ5", ew{errKind: scan.KindBadEPC}},
		{"too short", "3074257BF7194E40", ew{errKind: scan.KindBadEPC}},
		{"non-zero trailing bits", "3074257BF7194E4000001A8501", ew{errKind: scan.KindBadEPC}},
	}
	d := newDec(t, scan.Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := d.DecodeEPC(tc.hex)
			if tc.w.errKind != "" {
				var e *scan.Error
				if !errors.As(err, &e) || e.Kind != tc.w.errKind {
					t.Fatalf("DecodeEPC(%s) err = %v, want kind %s", tc.hex, err, tc.w.errKind)
				}
				if !strings.Contains(e.Msg, tc.w.errMessage) {
					t.Errorf("message %q does not mention %q", e.Msg, tc.w.errMessage)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEPC(%s): %v", tc.hex, err)
			}
			if s.Form != scan.FormEPC || s.EPC == nil {
				t.Fatalf("form %q EPC %v", s.Form, s.EPC)
			}
			if s.EPC.Scheme != tc.w.scheme || s.EPC.Filter != tc.w.filter || s.EPC.Partition != tc.w.part || s.EPC.URI != tc.w.uri {
				t.Errorf("EPC = %+v, want %s filter %d partition %d %s", *s.EPC, tc.w.scheme, tc.w.filter, tc.w.part, tc.w.uri)
			}
			if !reflect.DeepEqual(s.AIs, tc.w.ais) {
				t.Errorf("AIs = %v, want %v", s.AIs, tc.w.ais)
			}
		})
	}
}

func TestEncodeEPC(t *testing.T) {
	h, err := scan.EncodeSGTIN96(3, "0614141", "812345", 6789)
	if err != nil || h != "3074257BF7194E4000001A85" {
		t.Errorf("EncodeSGTIN96 = %q, %v; want the TDS example", h, err)
	}
	h, err = scan.EncodeSSCC96(3, "0614141", "1234567890")
	if err != nil || h != "3174257BF4499602D2000000" {
		t.Errorf("EncodeSSCC96 = %q, %v", h, err)
	}
	for _, bad := range []struct {
		filter   int
		cp, ref  string
		serial   uint64
		wantKind scan.Kind
	}{
		{8, "0614141", "812345", 1, scan.KindBadEPC},
		{3, "061414", "812345", 1, scan.KindBadPartition},
		{3, "06141A1", "812345", 1, scan.KindBadEPC},
		{3, "0614141", "812345", 1 << 38, scan.KindBadEPC},
	} {
		_, err := scan.EncodeSGTIN96(bad.filter, bad.cp, bad.ref, bad.serial)
		var e *scan.Error
		if !errors.As(err, &e) || e.Kind != bad.wantKind {
			t.Errorf("EncodeSGTIN96(%v) err = %v, want %s", bad, err, bad.wantKind)
		}
	}
}

func TestEncoders(t *testing.T) {
	in := ais("01", "09506000134352", "17", "260630", "10", "LOT42", "21", "S1")
	if got, want := scan.EncodeElementString(in), "0109506000134352"+"17260630"+"10LOT42"+GS+"21S1"; got != want {
		t.Errorf("EncodeElementString = %q, want %q", got, want)
	}
	if got, want := scan.EncodeHumanReadable(in), "(01)09506000134352(17)260630(10)LOT42(21)S1"; got != want {
		t.Errorf("EncodeHumanReadable = %q, want %q", got, want)
	}
	got, err := scan.EncodeDigitalLink("https://id.gs1.org/", in)
	if want := "https://id.gs1.org/01/09506000134352/10/LOT42/21/S1?17=260630"; err != nil || got != want {
		t.Errorf("EncodeDigitalLink = %q, %v; want %q", got, err, want)
	}
	if _, err := scan.EncodeDigitalLink("https://x.example", ais("10", "A")); err == nil {
		t.Error("EncodeDigitalLink without a key: want error")
	}
	if _, err := scan.EncodeDigitalLink("ftp://x", in); err == nil {
		t.Error("EncodeDigitalLink with ftp base: want error")
	}
	// Round trips through the decoder.
	d := newDec(t, scan.Config{})
	for _, enc := range []string{"]C1" + scan.EncodeElementString(in), scan.EncodeHumanReadable(in), got} {
		s, err := d.Decode([]byte(enc))
		if err != nil {
			t.Fatalf("Decode(%q): %v", enc, err)
		}
		if !sameAIs(s.AIs, in) {
			t.Errorf("round trip %q: AIs %v, want %v", enc, s.AIs, in)
		}
	}
}

func sameAIs(a, b []scan.AI) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[scan.AI]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
		if count[x] < 0 {
			return false
		}
	}
	return true
}

func TestJSONLine(t *testing.T) {
	d := newDec(t, scan.Config{})
	in := "]C1010950600013435217260630" + "10LOT42" + GS + "21S1"
	s, err := d.Decode([]byte(in))
	got := string(scan.JSONLine(in, s, err))
	want := `{"input":"]C1010950600013435217260630` + `10LOT42\u001d21S1","ok":true,"symbology":"GS1-128","form":"element_string","data":"010950600013435217260630` + `10LOT42\u001d21S1",` +
		`"ais":[{"ai":"01","value":"09506000134352"},{"ai":"17","value":"260630"},{"ai":"10","value":"LOT42"},{"ai":"21","value":"S1"}],` +
		`"gtin":"09506000134352","lot":"LOT42","serial":"S1","expiry":"2026-06-30"}`
	if got != want {
		t.Errorf("JSONLine =\n%s\nwant\n%s", got, want)
	}

	bad := "]C10109506000134353"
	s, err = d.Decode([]byte(bad))
	var obj map[string]any
	if err := json.Unmarshal(scan.JSONLine(bad, s, err), &obj); err != nil {
		t.Fatal(err)
	}
	e, _ := obj["error"].(map[string]any)
	if obj["ok"] != false || e == nil || e["kind"] != "check_digit" || e["ai"] != "01" || e["offset"] != float64(18) || obj["ais"] != nil {
		t.Errorf("error JSONLine = %v", obj)
	}

	s, err = d.DecodeEPC("3074257BF7194E4000001A85")
	line := string(scan.JSONLine("3074257BF7194E4000001A85", s, err))
	if !strings.Contains(line, `"epc":{"scheme":"sgtin-96","filter":3,"partition":5,"uri":"urn:epc:id:sgtin:0614141.812345.6789"}`) ||
		!strings.Contains(line, `"gtin":"80614141123458"`) || strings.Contains(line, "\n") {
		t.Errorf("EPC JSONLine = %s", line)
	}
}

func TestAccessors(t *testing.T) {
	d := newDec(t, scan.Config{})
	s, err := d.Decode([]byte("]C1" + "0109506000134352" + "15270100" + "11250101" + "3102012345" + "30" + "25"))
	if err != nil {
		t.Fatal(err)
	}
	if y, m, dd, ok := s.BestBefore(); !ok || y != 2027 || m != time.January || dd != 31 {
		t.Errorf("BestBefore = %d %v %d %v", y, m, dd, ok)
	}
	if y, m, dd, ok := s.ProductionDate(); !ok || y != 2025 || m != time.January || dd != 1 {
		t.Errorf("ProductionDate = %d %v %d %v", y, m, dd, ok)
	}
	if w, ok := s.NetWeightKg(); !ok || w < 123.449 || w > 123.451 {
		t.Errorf("NetWeightKg = %v %v", w, ok)
	}
	if n, ok := s.Count(); !ok || n != 25 {
		t.Errorf("Count = %v %v", n, ok)
	}
	if _, _, _, ok := s.Expiry(); ok {
		t.Error("Expiry present without AI 17")
	}
	if _, ok := s.Get("21"); ok {
		t.Error("Get(21) found a value that is not there")
	}
}

func TestNewDecoderRejectsBadConfig(t *testing.T) {
	for _, cfg := range []scan.Config{
		{NoAIM: "ean"},
		{PlainPatterns: []string{"("}},
		{PlainPatterns: []string{"^LOT(\\w+)$"}},
		{Warn: []scan.Kind{scan.KindUnknownAI}},
	} {
		if _, err := scan.NewDecoder(cfg); !errors.Is(err, scan.ErrConfig) {
			t.Errorf("NewDecoder(%+v) err = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestDecoderConcurrentUse(t *testing.T) {
	d := newDec(t, scan.Config{PlainPatterns: []string{`LOT(?P<lot>\d+)`}})
	inputs := []string{"]C1010950600013435217260630" + "10LOT42" + GS + "21S1", "https://id.gs1.org/01/09506000134352", "LOT77", "]C10109506000134353"}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				in := inputs[i%len(inputs)]
				s, err := d.Decode([]byte(in))
				if s == nil || s.Input != in || (i%len(inputs) == 3) != (err != nil) {
					t.Errorf("Decode(%q) = %v, %v", in, s, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
