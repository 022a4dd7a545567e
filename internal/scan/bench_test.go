package scan_test

import (
	"testing"

	"github.com/dockd/dockd/internal/scan"
)

var sink *scan.Scan

// BenchmarkDecodeElementString is the typical 4-AI GS1-128 case; target < 1 µs.
func BenchmarkDecodeElementString(b *testing.B) {
	d := newDec(b, scan.Config{})
	in := []byte("]C1010950600013435217260630" + "10LOT42" + GS + "21S1")
	b.ReportAllocs()
	for b.Loop() {
		s, err := d.Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		sink = s
	}
}

func BenchmarkDecodeHumanReadable(b *testing.B) {
	d := newDec(b, scan.Config{})
	in := []byte("(01)09506000134352(17)260630(10)LOT42(21)S1")
	b.ReportAllocs()
	for b.Loop() {
		s, err := d.Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		sink = s
	}
}

func BenchmarkDecodeDigitalLink(b *testing.B) {
	d := newDec(b, scan.Config{})
	in := []byte("https://id.gs1.org/01/09506000134352/10/AB-123/21/12345?17=290101")
	b.ReportAllocs()
	for b.Loop() {
		s, err := d.Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		sink = s
	}
}

func BenchmarkDecodeSGTIN96(b *testing.B) {
	d := newDec(b, scan.Config{})
	b.ReportAllocs()
	for b.Loop() {
		s, err := d.DecodeEPC("3074257BF7194E4000001A85")
		if err != nil {
			b.Fatal(err)
		}
		sink = s
	}
}

func BenchmarkJSONLine(b *testing.B) {
	d := newDec(b, scan.Config{})
	in := "]C1010950600013435217260630" + "10LOT42" + GS + "21S1"
	s, err := d.Decode([]byte(in))
	b.ReportAllocs()
	for b.Loop() {
		_ = scan.JSONLine(in, s, err)
	}
}
