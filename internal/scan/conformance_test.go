package scan

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceVector is one line of testdata/conformance.txt.
type conformanceVector struct {
	line             int
	mode, expect, in string
	note             string
}

func readConformance(t testing.TB) []conformanceVector {
	f, err := os.Open(filepath.Join("testdata", "conformance.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []conformanceVector
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 3 || len(cols) > 4 {
			t.Fatalf("conformance.txt:%d: want 3 or 4 tab-separated columns, got %d", n, len(cols))
		}
		v := conformanceVector{line: n, mode: cols[0], expect: cols[1], in: strings.ReplaceAll(cols[2], "{GS}", "\x1d")}
		if len(cols) == 4 {
			v.note = strings.TrimPrefix(cols[3], "# ")
		}
		switch v.mode {
		case "strict", "lenient", "both":
		default:
			t.Fatalf("conformance.txt:%d: mode %q", n, v.mode)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestConformance checks the decoder against the vectors written from the
// GS1 General Specifications, the Syntax Dictionary and the Digital Link
// URI Syntax (testdata/conformance.txt).
func TestConformance(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC) }
	strict, err := NewDecoder(Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	lenient, err := NewDecoder(Config{Now: now, DigitalLink: DigitalLinkLenient})
	if err != nil {
		t.Fatal(err)
	}
	vs := readConformance(t)
	if len(vs) < 100 {
		t.Fatalf("only %d vectors read", len(vs))
	}
	for _, v := range vs {
		decs := map[string]*Decoder{"strict": strict, "lenient": lenient}
		if v.mode != "both" {
			decs = map[string]*Decoder{v.mode: decs[v.mode]}
		}
		for mode, d := range decs {
			s, err := d.Decode([]byte(v.in))
			got := ""
			switch {
			case err != nil:
				got = "error:" + string(err.(*Error).Kind)
			case s.Form == FormPlain && s.AIs == nil && !strings.HasPrefix(v.expect, "ok:"):
				got = "plain"
			default:
				got = "ok:" + EncodeHumanReadable(s.AIs)
			}
			if got != v.expect {
				t.Errorf("conformance.txt:%d (%s) %q: got %s, want %s (%s)%s", v.line, mode, v.in, got, v.expect, v.note, errSuffix(err))
			}
		}
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}
