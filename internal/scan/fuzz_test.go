package scan_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dockd/dockd/internal/scan"
)

// checkErr asserts the error contract: nil or *scan.Error with an offset
// inside the input.
func checkErr(t *testing.T, in string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *scan.Error
	if !errors.As(err, &e) {
		t.Fatalf("input %q: error %v (%T) is not *scan.Error", in, err, err)
	}
	if _, ok := err.(*scan.Error); !ok {
		t.Fatalf("input %q: error %T is wrapped, want *scan.Error itself", in, err)
	}
	if e.Kind == "" || e.Offset < 0 || e.Offset > len(in) {
		t.Fatalf("input %q: bad error %+v", in, e)
	}
}

// roundTrip re-encodes a successful barcode scan in its own form and checks
// the decoder reads back the same AIs.
func roundTrip(t *testing.T, d *scan.Decoder, s *scan.Scan) {
	t.Helper()
	var enc string
	switch s.Form {
	case scan.FormElementString:
		enc = s.AIM + scan.EncodeElementString(s.AIs)
	case scan.FormHumanReadable:
		enc = s.AIM + scan.EncodeHumanReadable(s.AIs)
	case scan.FormDigitalLink:
		var err error
		enc, err = scan.EncodeDigitalLink("https://example.com", s.AIs)
		if err != nil {
			t.Fatalf("EncodeDigitalLink(%v) from %q: %v", s.AIs, s.Input, err)
		}
		enc = s.AIM + enc
	default:
		return
	}
	s2, err := d.Decode([]byte(enc))
	if err != nil {
		t.Fatalf("re-encoded %q (from %q) does not decode: %v", enc, s.Input, err)
	}
	if s2.Form != s.Form {
		t.Fatalf("re-encoded %q (from %q): form %s, want %s", enc, s.Input, s2.Form, s.Form)
	}
	if s.Form == scan.FormDigitalLink {
		if !sameAIs(s2.AIs, s.AIs) {
			t.Fatalf("re-encoded %q (from %q): AIs %v, want %v", enc, s.Input, s2.AIs, s.AIs)
		}
	} else if !reflect.DeepEqual(s2.AIs, s.AIs) {
		t.Fatalf("re-encoded %q (from %q): AIs %v, want %v", enc, s.Input, s2.AIs, s.AIs)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"]C1010950600013435217260630" + "10LOT42" + GS + "21S1",
		"]d20109506000134352" + GS + "10L1" + GS,
		"]Q300106141411234567897",
		"0109506000134352" + "10LOT42",
		"(01)09506000134352(10)LOT42(21)S1",
		"]E04006381333931",
		"5012345678900",
		"]C1" + "8013" + "1987654Ad4X4bL5ttr2310c2K",
		"]C1" + "8020REF1" + GS + "4150614141000012" + GS + "3911978123",
		"https://id.gs1.org/01/09506000134352/10/AB-123/21/12345?17=290101",
		"]C7x", "]", "^", "(99)X", "",
	} {
		f.Add([]byte(s))
	}
	d := newDec(f, scan.Config{PlainPatterns: []string{`LOT(?P<lot>\w+)`}})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := d.Decode(data)
		in := string(data)
		if s == nil || s.Input != in {
			t.Fatalf("Decode(%q) scan = %+v", in, s)
		}
		checkErr(t, in, err)
		if !json.Valid(scan.JSONLine(in, s, err)) {
			t.Fatalf("JSONLine(%q) is not valid JSON", in)
		}
		if err == nil {
			roundTrip(t, d, s)
		}
	})
}

func FuzzDigitalLink(f *testing.F) {
	for _, s := range []string{
		"https://id.gs1.org/01/09506000134352/10/AB-123/21/12345?17=290101",
		"https://example.com/01/4006381333931",
		"http://example.com/some/prefix/01/09506000134352/22/V1/21/S%2F1?3103=000250&x=y",
		"https://example.com/00/106141411234567897",
		"https://example.com/414/0614141123452/254/A1",
		"https://example.com/8003/00614141123452400",
		"https://example.com/01/09506000134352/21/1/10/2",
		"Https://example.com/01/09506000134352/",
		"https://example.com/about?lang=en",
		"https://example.com/01/09506000134352?99=A+B&9999=1",
	} {
		f.Add(s)
	}
	d := newDec(f, scan.Config{})
	lenient := newDec(f, scan.Config{DigitalLink: scan.DigitalLinkLenient})
	f.Fuzz(func(t *testing.T, uri string) {
		s, err := d.Decode([]byte(uri))
		checkErr(t, uri, err)
		if err == nil {
			roundTrip(t, d, s)
		}
		// lenient only relaxes: a Digital Link strict accepts, lenient accepts
		// with the same reading.
		ls, lerr := lenient.Decode([]byte(uri))
		checkErr(t, uri, lerr)
		if err == nil && s.Form == scan.FormDigitalLink && (lerr != nil || ls.Form != s.Form || !reflect.DeepEqual(ls.AIs, s.AIs)) {
			t.Fatalf("%q: strict read %s %v, lenient %v %v", uri, s.Form, s.AIs, lerr, ls.AIs)
		}
		if lerr == nil && ls.Form == scan.FormDigitalLink {
			roundTrip(t, lenient, ls)
		}
	})
}

func FuzzDecodeEPC(f *testing.F) {
	for _, s := range []string{
		"3074257BF7194E4000001A85", "3174257BF4499602D2000000", "3274257BF460720000000190",
		"3374257BF40C0E4000000190", "3474257BF400000000BC6038",
		"3674257BF7194E59B2C2BF1000000000000000000000000000", "000000000000000000000000", "307C257BF7194E4000001A85",
	} {
		f.Add(s)
	}
	d := newDec(f, scan.Config{})
	f.Fuzz(func(t *testing.T, hex string) {
		s, err := d.DecodeEPC(hex)
		if s == nil {
			t.Fatal("nil scan")
		}
		checkErr(t, hex, err)
		if err != nil {
			if s.EPC != nil || s.AIs != nil {
				t.Fatalf("DecodeEPC(%q) failed but returned identity %+v", hex, s)
			}
			return
		}
		h := strings.ToUpper(strings.TrimSpace(hex))
		uri := s.EPC.URI
		parts := strings.Split(uri[strings.LastIndexByte(uri[:strings.IndexByte(uri, '.')], ':')+1:], ".")
		switch s.EPC.Scheme {
		case "sgtin-96":
			serial, perr := strconv.ParseUint(parts[2], 10, 64)
			if perr != nil {
				t.Fatalf("URI %s serial: %v", s.EPC.URI, perr)
			}
			got, eerr := scan.EncodeSGTIN96(s.EPC.Filter, parts[0], parts[1], serial)
			if eerr != nil || got != h[:24] {
				t.Fatalf("re-encode %s = %q, %v; want %s", s.EPC.URI, got, eerr, h[:24])
			}
		case "sscc-96":
			got, eerr := scan.EncodeSSCC96(s.EPC.Filter, parts[0], parts[1])
			if eerr != nil || got[:18] != h[:18] {
				t.Fatalf("re-encode %s = %q, %v; want prefix %s", s.EPC.URI, got, eerr, h[:18])
			}
		}
		if g := s.GTIN(); g != "" && (len(g) != 14 || strings.Trim(g, "0123456789") != "") {
			t.Fatalf("GTIN %q is not 14 digits", g)
		}
	})
}
