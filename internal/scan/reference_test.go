package scan

// Differential test against the GS1 Barcode Syntax Engine (the reference
// decoder). The engine's C library is read from ../shared beside the
// repository, compiled with gcc together with testdata/gs1ref/driver.c into
// a cache directory outside the project (never into ../shared, which may be
// read-only), and driven over a batch of generated scans in one process.
// Both sides load the same Syntax Dictionary edition (gs1data/). Every
// disagreement fails the test unless it is listed, with its reason, in
// deliberateDifferences.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refOutcome is what one side made of one scan.
type refOutcome struct {
	ok    bool
	ais   []AI // ok: the AIs, in the reference's order (nil: plain data)
	kinds []Kind
	msg   string
}

// deliberateDifference is a disagreement with the reference that dockd
// keeps on purpose.
type deliberateDifference struct {
	name, reason string
	match        func(in string, ref, got refOutcome) bool
}

// deliberateDifferences lists every accepted disagreement. Keep it small:
// each entry needs a reason a reviewer can check.
var deliberateDifferences = []deliberateDifference{
	{
		name: "non-GS1 symbologies are plain scans",
		reason: "a dock also reads legacy labels that are not GS1 (Code 39, Code 128 without FNC1, " +
			"Aztec, PDF417, a lone EAN/UPC add-on ...) and matches them with decode.plain_patterns; the reference is a GS1-only " +
			"engine and refuses those symbology identifiers. dockd accepts them as plain data, never with AIs.",
		match: func(in string, ref, got refOutcome) bool {
			if len(in) < 3 || in[0] != ']' || ref.ok || ref.msg != "Unsupported symbology identifier" || !got.ok || got.ais != nil {
				return false
			}
			info, ok := aimLookup(in[1], in[2])
			return ok && !info.gs1 && info.ean <= 0
		},
	},
	{
		name: "UPC-A sent as 12 digits under ]E0",
		reason: "ISO/IEC 15424 sends UPC-A under ]E0 as 13 digits (leading 0), and the reference insists; " +
			"many scanners are set to drop that 0. dockd reads 12 digits under ]E0 as UPC-A and still " +
			"checks its check digit, so nothing invalid is accepted.",
		match: func(in string, ref, got refOutcome) bool {
			return strings.HasPrefix(in, "]E0") && len(in) == 15 && isDigits(in[3:]) &&
				ref.msg == "Primary scan data is too short" && (got.ok && got.ais == nil || !got.ok && got.kinds[0] == KindCheckDigit)
		},
	},
	{
		name: "a bracket that opens no known AI is data in human-readable text",
		reason: "printed human-readable text shows '(' and ')' in values as they are (both are CSET 82); " +
			"the reference's bracketed syntax wants a data '(' escaped as '\\('. dockd reads a '(' as the " +
			"start of an AI only when a known AI and ')' follow, as the reference does for those.",
		match: func(in string, ref, got refOutcome) bool {
			return strings.HasPrefix(in, "(") && ref.msg == "Failed to parse AI data" && got.ok && got.ais != nil
		},
	},
	{
		name: "text not starting with a bracketed AI is not human-readable",
		reason: "the reference is told the text is bracketed AI data; dockd has to recognise the form, and " +
			"text that does not start with '(known AI)' is read as an element string or plain data (with " +
			"a warning when it starts with an AI but does not validate), per decode.no_aim.",
		match: func(in string, ref, got refOutcome) bool {
			return !strings.HasPrefix(in, "(") && !strings.HasPrefix(in, "]") && ref.msg == "Failed to parse AI data" && got.ok && got.ais == nil
		},
	},
	{
		name: "NUL byte in the scan",
		reason: "the reference takes C strings, so the driver can only pass the bytes before a NUL and the " +
			"reference judges that truncated text; dockd sees every byte and refuses the NUL (it is in no " +
			"GS1 character set and not allowed in a URI). Only a dockd rejection is accepted here.",
		match: func(in string, ref, got refOutcome) bool {
			return strings.IndexByte(in, 0) >= 0 && !got.ok
		},
	},
}

// repoRootDir finds the directory holding go.mod.
func repoRootDir(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// buildReference compiles the engine and the driver, caching the binary by
// a hash of every input so repeated runs reuse it.
func buildReference(t testing.TB) string {
	src := filepath.Join(repoRootDir(t), "..", "shared", "gs1-syntax-engine", "src", "c-lib")
	if _, err := os.Stat(filepath.Join(src, "gs1encoders.h")); err != nil {
		t.Skipf("skipping: the GS1 Barcode Syntax Engine is not at %s (../shared beside the repository is absent here; CI provides it): %v", src, err)
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("the reference needs a C compiler to build: %v", err)
	}
	driver, err := filepath.Abs(filepath.Join("testdata", "gs1ref", "driver.c"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{driver}
	for _, pat := range []string{"*.c", "*.h", "*.inc", filepath.Join("syntax", "*.c"), filepath.Join("syntax", "*.h")} {
		m, _ := filepath.Glob(filepath.Join(src, pat))
		files = append(files, m...)
	}
	var cfiles []string
	h := sha256.New()
	flags := []string{"-O0", "-w", "-DGS1_LINTER_ERR_STR_EN", "-I" + src, "-I" + filepath.Join(src, "syntax")}
	fmt.Fprintln(h, cc, strings.Join(flags, " "))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(h, filepath.Base(f), len(b))
		h.Write(b)
		base := filepath.Base(f)
		if strings.HasSuffix(f, ".c") && (f == driver || !(strings.Contains(base, "test") || strings.Contains(base, "fuzzer") || base == "example.c")) {
			cfiles = append(cfiles, f)
		}
	}
	cache := filepath.Join(os.TempDir(), "dockd-gs1ref-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(cache, "driver")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(cache, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	args := append(append(flags, "-o", filepath.Join(tmp, "driver")), cfiles...)
	cmd := exec.Command(cc, args...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the reference: %s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "driver"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runReference feeds every input to the reference in one process.
func runReference(t testing.TB, bin string, cases []refCase) []refOutcome {
	var stdin bytes.Buffer
	inputs := cases
	for _, c := range cases {
		if c.hr {
			stdin.WriteByte('H')
		}
		stdin.WriteString(hex.EncodeToString([]byte(c.in)))
		stdin.WriteByte('\n')
	}
	dict, _ := filepath.Abs(filepath.Join("gs1data", "gs1-syntax-dictionary.txt"))
	cmd := exec.Command(bin, dict)
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the reference: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var res []refOutcome
	first := true
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if first {
			first = false
			if f[0] == "VERSION" {
				continue
			}
		}
		unhex := func(s string) string {
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatalf("reference output %q: %v", sc.Text(), err)
			}
			return string(b)
		}
		switch f[0] {
		case "OK":
			o := refOutcome{ok: true}
			for _, x := range f[1:] {
				hri := unhex(x)
				ai, v, ok := strings.Cut(strings.TrimPrefix(hri, "("), ") ")
				if !ok {
					t.Fatalf("reference HRI %q not understood", hri)
				}
				o.ais = append(o.ais, AI{AI: ai, Value: v})
			}
			res = append(res, o)
		case "ERR":
			msg := unhex(f[1])
			res = append(res, refOutcome{msg: msg, kinds: refKinds(msg)})
		default:
			t.Fatalf("reference output line %q not understood", sc.Text())
		}
	}
	if len(res) != len(inputs) {
		t.Fatalf("reference answered %d of %d inputs", len(res), len(inputs))
	}
	return res
}

// refKinds maps a reference error message to the dockd kinds that name the
// same fault. This is a mapping of vocabularies, not a tolerance: each
// message class has one meaning, and a second kind is listed only where
// dockd names the same fault more precisely (an over-long variable-length
// value followed by a known AI is dockd's missing_separator).
func refKinds(msg string) []Kind {
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(msg, x) {
				return true
			}
		}
		return false
	}
	switch {
	case has("symbology identifier"):
		return []Kind{KindBadSymbology}
	case has("Primary message check digit", "Primary data check digit"):
		return []Kind{KindCheckDigit}
	case has("Primary message may only contain digits", "Primary data must be all digits"):
		return []Kind{KindBadCharset}
	case has("Primary"):
		return []Kind{KindBadLength}
	case has("illegal ^", "illegal carat"):
		return []Kind{KindBadCharset}
	case has("No known AI is a prefix of: ^"):
		return []Kind{KindMissingSeparator} // an empty element: FNC1 where an AI should start
	case has("Failed to parse AI data"):
		// bracketed text that is not "(ai)value...": an empty value, or
		// text where an AI should start
		return []Kind{KindBadLength, KindUnknownAI}
	case has("No known AI is a prefix of", "Unrecognised AI"):
		return []Kind{KindUnknownAI}
	case has("URI", "DL ", "Domain", "key-qualifier", "is duplicated", "query param", "path info", "path element", "query element"):
		return []Kind{KindBadURI}
	case has("It is invalid to pair", "Required AIs", "Multiple instances", "Serial component must be present"):
		return []Kind{KindBadPairing}
	case has("data is too long", "value is too long"):
		return []Kind{KindBadLength, KindMissingSeparator}
	case has("data has incorrect length", "value is too short", "data is empty", "The AI data is empty", "Maximum data length", "Too many AIs"):
		return []Kind{KindBadLength}
	}
	// Linter messages: "AI (nn): <text>".
	l := strings.ToLower(msg)
	lhas := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(l, x) {
				return true
			}
		}
		return false
	}
	switch {
	case lhas("iban") && lhas("check characters"):
		return []Kind{KindCheckDigit}
	case lhas("iban"):
		return []Kind{KindBadValue}
	case lhas("coupon") && lhas("date"):
		return []Kind{KindBadDate}
	case lhas("coupon") && lhas("non-digit"):
		return []Kind{KindBadCharset}
	case lhas("coupon"):
		return []Kind{KindBadValue}
	case lhas("check digit", "check-character pair", "check character pair"):
		return []Kind{KindCheckDigit}
	case lhas("non-digit character was found", "non-cset", "pad characters"):
		return []Kind{KindBadCharset}
	case lhas("month", "day of", "illegal day", "hour", "minute", "second", "date is too", "date too"):
		return []Kind{KindBadDate}
	}
	return []Kind{KindBadValue}
}

// dockdOutcome decodes in with a strict decoder.
func dockdOutcome(d *Decoder, in string) refOutcome {
	s, err := d.Decode([]byte(in))
	if err != nil {
		e := err.(*Error)
		return refOutcome{kinds: []Kind{e.Kind}, msg: e.Error()}
	}
	o := refOutcome{ok: true}
	if s.Form == FormElementString || s.Form == FormDigitalLink || s.Form == FormHumanReadable {
		o.ais = append([]AI{}, s.AIs...)
		if o.ais == nil {
			o.ais = []AI{}
		}
	}
	return o
}

// agree compares outcomes: both accept with the same AIs (or both plain),
// or both reject with a matching kind.
func agree(ref, got refOutcome) bool {
	if ref.ok != got.ok {
		return false
	}
	if !ref.ok {
		for _, k := range ref.kinds {
			if k == got.kinds[0] {
				return true
			}
		}
		return false
	}
	if len(ref.ais) != len(got.ais) {
		return false
	}
	for i := range ref.ais {
		if ref.ais[i] != got.ais[i] {
			return false
		}
	}
	return true
}

func TestReferenceDifferential(t *testing.T) {
	bin := buildReference(t)
	// DOCKD_GS1REF_SEED (default 15) and DOCKD_GS1REF_ROUNDS (default 1:
	// one generated set, about 16,000 cases) allow longer local runs.
	seed, rounds := int64(15), 1
	if v, err := strconv.ParseInt(os.Getenv("DOCKD_GS1REF_SEED"), 10, 64); err == nil {
		seed = v
	}
	if v, err := strconv.Atoi(os.Getenv("DOCKD_GS1REF_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	var cases []refCase
	for i := 0; i < rounds; i++ {
		cases = append(cases, generateReferenceCases(rand.New(rand.NewSource(seed+int64(i))))...)
	}
	t.Logf("seed %d, %d round(s)", seed, rounds)
	// The conformance vectors too (strict reading; a URI without an AIM
	// identifier is given as a QR Code, which the reference needs).
	for _, v := range readConformance(t) {
		if v.mode == "lenient" {
			continue
		}
		in := v.in
		if !strings.HasPrefix(in, "]") {
			in = "]Q1" + in
		}
		cases = append(cases, refCase{cat: "conformance", in: in})
	}
	start := time.Now()
	refs := runReference(t, bin, cases)
	refTime := time.Since(start)
	d, err := NewDecoder(Config{Now: func() time.Time { return time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	byCat := map[string][2]int{}
	deliberate := map[string]int{}
	var failures []string
	accepted := 0
	for i, c := range cases {
		got := dockdOutcome(d, c.in)
		ref := refs[i]
		n := byCat[c.cat]
		n[0]++
		if ref.ok {
			accepted++
		}
		if agree(ref, got) {
			byCat[c.cat] = n
			continue
		}
		listed := false
		for _, dd := range deliberateDifferences {
			if dd.match(c.in, ref, got) {
				deliberate[dd.name]++
				listed = true
				break
			}
		}
		if listed {
			byCat[c.cat] = n
			continue
		}
		n[1]++
		byCat[c.cat] = n
		failures = append(failures, fmt.Sprintf("[%s] %q\n    reference: %s\n    dockd:     %s", c.cat, c.in, describeOutcome(ref), describeOutcome(got)))
	}
	cats := make([]string, 0, len(byCat))
	for c := range byCat {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		t.Logf("%-28s %5d cases, %d disagree", c, byCat[c][0], byCat[c][1])
	}
	for name, n := range deliberate {
		t.Logf("deliberate difference %q: %d cases", name, n)
	}
	t.Logf("%d cases (%d accepted by the reference), reference run %v", len(cases), accepted, refTime.Round(time.Millisecond))
	if len(failures) > 0 {
		show := failures
		if len(show) > 150 {
			show = show[:150]
		}
		t.Errorf("%d of %d cases disagree with the GS1 reference (not in deliberateDifferences):\n%s", len(failures), len(cases), strings.Join(show, "\n"))
	}
}

func describeOutcome(o refOutcome) string {
	if o.ok {
		if o.ais == nil {
			return "ok, plain data"
		}
		return fmt.Sprintf("ok %v", o.ais)
	}
	return fmt.Sprintf("error %v: %s", o.kinds, o.msg)
}
