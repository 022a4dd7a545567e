// Package aigen turns the GS1 Barcode Syntax Dictionary into the Go source of
// the scan package's Application Identifier table (ai_table_gen.go).
//
// It is a pure function of its input: the same dictionary text always yields
// the same bytes, so a test can check that the committed table is current.
// The command in cmd/aigen wraps it with file I/O for go generate.
package aigen

import (
	"bytes"
	"fmt"
	"go/format"
	"sort"
	"strconv"
	"strings"
)

// DefaultCommit is the gs1/gs1-syntax-dictionary commit the committed table
// was generated from; it is written into the generated file's header.
const DefaultCommit = "ff2eb4bfc8f6"

// Linters maps each dictionary linter name the scan package implements to
// the Go identifier of its constant in package scan. A name missing here is
// reported as a warning by Generate and left out of the table (the component
// is then checked for length and character set only).
var Linters = map[string]string{
	"csum":           "lintCsum",
	"couponcode":     "lintCouponCode",
	"couponposoffer": "lintCouponPosOffer",
	"csumalpha":      "lintCsumAlpha",
	"gcppos1":        "lintGCPPos1",
	"gcppos2":        "lintGCPPos2",
	"hasnondigit":    "lintHasNonDigit",
	"hh":             "lintHH",
	"hhmi":           "lintHHMI",
	"hhmm":           "lintHHMI",
	"mi":             "lintMI",
	"ss":             "lintSS",
	"hyphen":         "lintHyphen",
	"iban":           "lintIBAN",
	"importeridx":    "lintImporterIdx",
	"iso3166":        "lintISO3166",
	"iso3166999":     "lintISO3166999",
	"iso3166alpha2":  "lintISO3166Alpha2",
	"iso4217":        "lintISO4217",
	"iso5218":        "lintISO5218",
	"latitude":       "lintLatitude",
	"longitude":      "lintLongitude",
	"mediatype":      "lintMediaType",
	"nonzero":        "lintNonZero",
	"nozeroprefix":   "lintNoZeroPrefix",
	"packagetype":    "lintPackageType",
	"pcenc":          "lintPcEnc",
	"pieceoftotal":   "lintPieceOfTotal",
	"posinseqslash":  "lintPosInSeqSlash",
	"winding":        "lintWinding",
	"yesno":          "lintYesNo",
	"yymmd0":         "lintYYMMD0",
	"yymmdd":         "lintYYMMDD",
	"yymmddhh":       "lintYYMMDDHH",
	"yyyymmd0":       "lintYYYYMMD0",
	"yyyymmdd":       "lintYYYYMMDD",
	"zero":           "lintZero",
}

// Component is one part of an AI's data field.
type Component struct {
	Cset     byte // 'N', 'X', 'Y' or 'Z'
	Min, Max int
	Optional bool
	Linters  []string // dictionary names, in order
}

// Entry is one AI after range expansion.
type Entry struct {
	AI         string
	Predefined bool // '*' flag: no FNC1 separator needed
	DLAttr     bool // '?' flag: allowed as a Digital Link data attribute
	Comps      []Component
	Req        [][][]string // each rule: alternatives; each alternative: AIs/patterns all required
	Ex         []string
	DLPKey     bool
	DLQual     [][]string // alternative qualifier sequences
	Title      string
}

// Parse reads dictionary text into entries in file order. Warnings name
// linters that are not in Linters; errors describe a malformed line.
func Parse(src []byte) (entries []Entry, warnings []string, err error) {
	seenWarn := map[string]bool{}
	for n, line := range strings.Split(string(src), "\n") {
		lineNo := n + 1
		title := ""
		if i := strings.IndexByte(line, '#'); i >= 0 {
			title = strings.TrimSpace(line[i+1:])
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ais, err := expandRange(f[0])
		if err != nil {
			return nil, nil, fmt.Errorf("aigen: line %d: %w", lineNo, err)
		}
		var e Entry
		e.Title = title
		rest := f[1:]
		if len(rest) > 0 && isFlags(rest[0]) {
			e.Predefined = strings.Contains(rest[0], "*")
			e.DLAttr = strings.Contains(rest[0], "?")
			rest = rest[1:]
		}
		for len(rest) > 0 && isSpec(rest[0]) {
			c, err := parseComponent(rest[0])
			if err != nil {
				return nil, nil, fmt.Errorf("aigen: line %d (AI %s): %w", lineNo, f[0], err)
			}
			var kept []string
			for _, l := range c.Linters {
				if _, ok := Linters[l]; ok {
					kept = append(kept, l)
					continue
				}
				if !seenWarn[l] {
					seenWarn[l] = true
					warnings = append(warnings, fmt.Sprintf("linter %q (first used by AI %s, line %d) is not implemented; its components get length and character-set checks only", l, f[0], lineNo))
				}
			}
			c.Linters = kept
			e.Comps = append(e.Comps, c)
			rest = rest[1:]
		}
		if len(e.Comps) == 0 {
			return nil, nil, fmt.Errorf("aigen: line %d (AI %s): no specification components", lineNo, f[0])
		}
		for _, a := range rest {
			k, v, hasV := strings.Cut(a, "=")
			switch k {
			case "req":
				var rule [][]string
				for _, alt := range strings.Split(v, ",") {
					rule = append(rule, strings.Split(alt, "+"))
				}
				e.Req = append(e.Req, rule)
			case "ex":
				e.Ex = append(e.Ex, strings.Split(v, ",")...)
			case "dlpkey":
				e.DLPKey = true
				if hasV {
					for _, alt := range strings.Split(v, "|") {
						e.DLQual = append(e.DLQual, strings.Split(alt, ","))
					}
				}
			default:
				w := fmt.Sprintf("unknown attribute %q on line %d ignored", a, lineNo)
				if !seenWarn[w] {
					seenWarn[w] = true
					warnings = append(warnings, w)
				}
			}
		}
		for _, ai := range ais {
			ee := e
			ee.AI = ai
			entries = append(entries, ee)
		}
	}
	if err := checkPrefixFree(entries); err != nil {
		return nil, nil, err
	}
	return entries, warnings, nil
}

func isFlags(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("*!?\"$%&'()+,-./:;<=>@[\\]^_`{|}~", rune(s[i])) {
			return false
		}
	}
	return s != ""
}

func isSpec(s string) bool {
	s = strings.TrimPrefix(s, "[")
	return len(s) >= 2 && strings.ContainsRune("NXYZ", rune(s[0])) && (s[1] >= '0' && s[1] <= '9' || s[1] == '.')
}

func parseComponent(tok string) (Component, error) {
	var c Component
	parts := strings.Split(tok, ",")
	t := parts[0]
	if strings.HasPrefix(t, "[") {
		if !strings.HasSuffix(t, "]") {
			return c, fmt.Errorf("component %q: unbalanced brackets", tok)
		}
		c.Optional = true
		t = t[1 : len(t)-1]
	}
	c.Cset = t[0]
	spec := t[1:]
	if strings.HasPrefix(spec, "..") {
		n, err := strconv.Atoi(spec[2:])
		if err != nil || n < 1 {
			return c, fmt.Errorf("component %q: bad length", tok)
		}
		c.Min, c.Max = 1, n
	} else {
		n, err := strconv.Atoi(spec)
		if err != nil || n < 1 {
			return c, fmt.Errorf("component %q: bad length", tok)
		}
		c.Min, c.Max = n, n
	}
	c.Linters = parts[1:]
	return c, nil
}

func expandRange(s string) ([]string, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		if !allDigits(s) || len(s) < 2 || len(s) > 4 {
			return nil, fmt.Errorf("bad AI %q", s)
		}
		return []string{s}, nil
	}
	if !allDigits(lo) || !allDigits(hi) || len(lo) != len(hi) || len(lo) < 2 || len(lo) > 4 {
		return nil, fmt.Errorf("bad AI range %q", s)
	}
	a, _ := strconv.Atoi(lo)
	b, _ := strconv.Atoi(hi)
	if b < a {
		return nil, fmt.Errorf("bad AI range %q", s)
	}
	var out []string
	for i := a; i <= b; i++ {
		out = append(out, fmt.Sprintf("%0*d", len(lo), i))
	}
	return out, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// checkPrefixFree verifies no AI is a prefix of another, which the decoder
// relies on to find AI boundaries in an element string.
func checkPrefixFree(es []Entry) error {
	set := map[string]bool{}
	for _, e := range es {
		if set[e.AI] {
			return fmt.Errorf("aigen: AI %s defined twice", e.AI)
		}
		set[e.AI] = true
	}
	for _, e := range es {
		for l := 2; l < len(e.AI); l++ {
			if set[e.AI[:l]] {
				return fmt.Errorf("aigen: AI %s is a prefix of AI %s", e.AI[:l], e.AI)
			}
		}
	}
	return nil
}

// Generate returns the gofmt-formatted Go source of ai_table_gen.go for
// package scan, plus any warnings from Parse.
func Generate(src []byte, commit string) ([]byte, []string, error) {
	entries, warnings, err := Parse(src)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by internal/scan/internal/aigen from the GS1 Barcode Syntax Dictionary, commit %s (Apache-2.0). DO NOT EDIT.\n\n", commit)
	b.WriteString("package scan\n\n")
	fmt.Fprintf(&b, "// aiTableSource names the dictionary edition aiTable was generated from.\nconst aiTableSource = %q\n\n", "GS1 Barcode Syntax Dictionary, commit "+commit+", Apache-2.0")
	b.WriteString("// aiTable holds every GS1 Application Identifier, ranges expanded, in dictionary order.\n")
	b.WriteString("var aiTable = [...]aiEntry{\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "{ai: %q", e.AI)
		if e.Predefined {
			b.WriteString(", predefined: true")
		}
		if e.DLAttr {
			b.WriteString(", dlAttr: true")
		}
		b.WriteString(", comps: []component{")
		for i, c := range e.Comps {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{cset: cset%c, min: %d, max: %d", c.Cset, c.Min, c.Max)
			if c.Optional {
				b.WriteString(", optional: true")
			}
			if len(c.Linters) > 0 {
				b.WriteString(", linters: []linter{")
				for j, l := range c.Linters {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString(Linters[l])
				}
				b.WriteString("}")
			}
			b.WriteString("}")
		}
		b.WriteString("}")
		if len(e.Req) > 0 {
			b.WriteString(", req: [][][]string{")
			for _, rule := range e.Req {
				b.WriteString("{")
				for _, alt := range rule {
					b.WriteString("{" + quoteList(alt) + "}, ")
				}
				b.WriteString("}, ")
			}
			b.WriteString("}")
		}
		if len(e.Ex) > 0 {
			b.WriteString(", ex: []string{" + quoteList(e.Ex) + "}")
		}
		if e.DLPKey {
			b.WriteString(", dlPKey: true")
		}
		if len(e.DLQual) > 0 {
			b.WriteString(", dlQual: [][]string{")
			for _, alt := range e.DLQual {
				b.WriteString("{" + quoteList(alt) + "}, ")
			}
			b.WriteString("}")
		}
		fmt.Fprintf(&b, ", title: %q},\n", e.Title)
	}
	b.WriteString("}\n")
	if len(warnings) > 0 {
		b.WriteString("\n// Generator warnings (linters left out of the table):\n")
		w := append([]string(nil), warnings...)
		sort.Strings(w)
		for _, s := range w {
			b.WriteString("//   - " + s + "\n")
		}
	}
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("aigen: formatting generated source: %w", err)
	}
	return out, warnings, nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// CodeLists are the lists GenerateCodes requires, in output order, with the
// Go constant each becomes in package scan.
var CodeLists = []struct{ Name, Const string }{
	{"iso4217", "codesISO4217"},
	{"iso3166", "codesISO3166"},
	{"iso3166alpha2", "codesISO3166Alpha2"},
	{"packagetype", "codesPackageType"},
}

// ParseCodeLists reads the code-list file (gs1data/codelists.txt): "#"
// comments, "[name]" headers, then white-space separated codes. Every list
// in CodeLists must be present and non-empty, no code may repeat within a
// list, and codes must be upper-case letters and digits.
func ParseCodeLists(src []byte) (map[string][]string, error) {
	lists := map[string][]string{}
	cur := ""
	for n, line := range strings.Split(string(src), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			cur = line[1 : len(line)-1]
			if _, dup := lists[cur]; dup {
				return nil, fmt.Errorf("aigen: code lists line %d: list %q defined twice", n+1, cur)
			}
			lists[cur] = nil
			continue
		}
		if cur == "" {
			return nil, fmt.Errorf("aigen: code lists line %d: codes before the first [list] header", n+1)
		}
		for _, c := range strings.Fields(line) {
			for i := 0; i < len(c); i++ {
				if !(c[i] >= '0' && c[i] <= '9' || c[i] >= 'A' && c[i] <= 'Z') {
					return nil, fmt.Errorf("aigen: code lists line %d: code %q in [%s] is not upper-case letters and digits", n+1, c, cur)
				}
			}
			lists[cur] = append(lists[cur], c)
		}
	}
	for _, l := range CodeLists {
		codes := lists[l.Name]
		if len(codes) == 0 {
			return nil, fmt.Errorf("aigen: code lists: list [%s] is missing or empty", l.Name)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			if seen[c] {
				return nil, fmt.Errorf("aigen: code lists: %q listed twice in [%s]", c, l.Name)
			}
			seen[c] = true
		}
	}
	return lists, nil
}

// GenerateCodes returns the gofmt-formatted Go source of codes_gen.go for
// package scan: one string constant per list, codes sorted and separated by
// single spaces.
func GenerateCodes(src []byte) ([]byte, error) {
	lists, err := ParseCodeLists(src)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("// Code generated by internal/scan/internal/aigen from gs1data/codelists.txt. DO NOT EDIT.\n\n")
	b.WriteString("package scan\n\n")
	for _, l := range CodeLists {
		codes := append([]string(nil), lists[l.Name]...)
		sort.Strings(codes)
		fmt.Fprintf(&b, "// %s is the [%s] list of gs1data/codelists.txt (%d codes).\n", l.Const, l.Name, len(codes))
		fmt.Fprintf(&b, "const %s = %q\n\n", l.Const, strings.Join(codes, " "))
	}
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("aigen: formatting generated code lists: %w", err)
	}
	return out, nil
}
