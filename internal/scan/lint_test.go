package scan

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockd/dockd/internal/scan/internal/aigen"
)

func TestLinters(t *testing.T) {
	tests := []struct {
		l    linter
		in   string
		want Kind // "" = passes
	}{
		{lintCsum, "09506000134352", ""},
		{lintCsum, "09506000134353", KindCheckDigit},
		{lintCsum, "4006381333931", ""},
		// GS1 GenSpecs 7.9.5 worked example (GMN) and a corrupted pair.
		{lintCsumAlpha, "1987654Ad4X4bL5ttr2310c2K", ""},
		{lintCsumAlpha, "1987654Ad4X4bL5ttr2310cXK", KindCheckDigit},
		{lintCsumAlpha, "1987654Ad4X4bL5ttr2310c2X", KindCheckDigit},
		{lintCsumAlpha, "2", KindCheckDigit},
		{lintGCPPos1, "0614", ""},
		{lintGCPPos1, "06A4", KindBadValue},
		{lintGCPPos2, "00614", ""},
		{lintGCPPos2, "0061", KindBadValue},
		{lintYYMMDD, "240229", ""},
		{lintYYMMDD, "230229", KindBadDate},
		{lintYYMMDD, "000229", ""}, // 2000 was a leap year
		{lintYYMMDD, "240230", KindBadDate},
		{lintYYMMDD, "241200", KindBadDate},
		{lintYYMMD0, "241200", ""},
		{lintYYMMD0, "241300", KindBadDate},
		{lintYYMMD0, "240431", KindBadDate},
		{lintYYMMDDHH, "24123123", ""},
		{lintYYMMDDHH, "24123124", KindBadDate},
		{lintYYYYMMDD, "19000229", KindBadDate}, // 1900 was not
		{lintYYYYMMDD, "20000229", ""},
		{lintYYYYMMD0, "20250200", ""},
		{lintHHMI, "2359", ""},
		{lintHHMI, "2400", KindBadDate},
		{lintHHMI, "1260", KindBadDate},
		{lintHH, "23", ""},
		{lintHH, "24", KindBadDate},
		{lintMI, "59", ""},
		{lintSS, "60", KindBadDate},
		{lintISO3166, "276", ""},
		{lintISO3166, "999", KindBadValue},
		{lintISO3166, "001", KindBadValue},
		{lintISO3166999, "999", ""},
		{lintISO3166Alpha2, "DE", ""},
		{lintISO3166Alpha2, "UK", KindBadValue},
		{lintISO4217, "978", ""},
		{lintISO4217, "000", KindBadValue},
		{lintISO5218, "9", ""},
		{lintISO5218, "3", KindBadValue},
		{lintIBAN, "GB82WEST12345698765432", ""},
		{lintIBAN, "GB83WEST12345698765432", KindCheckDigit},
		{lintIBAN, "XX82WEST12345698765432", KindBadValue},
		{lintIBAN, "GB82west12345698765432", KindBadValue},
		{lintIBAN, "GB82", KindBadValue},
		{lintIBAN, "GBXXWEST12345698765432", KindCheckDigit},
		{lintPackageType, "BX", ""},
		{lintPackageType, "ZZZ", KindBadValue},
		{lintCouponCode, "1061414112345610101234", ""},
		{lintCouponCode, "10614141123456", KindBadValue},
		{lintCouponCode, "1061414112345610101234" + "3" + "261331", KindBadDate},
		{lintCouponPosOffer, "1061414112345610123456", ""},
		{lintCouponPosOffer, "2061414112345610123456", KindBadValue},
		{lintImporterIdx, "_", ""},
		{lintImporterIdx, "+", KindBadValue},
		{lintLatitude, "1800000000", ""},
		{lintLatitude, "1800000001", KindBadValue},
		{lintLongitude, "3600000000", ""},
		{lintLongitude, "3600000001", KindBadValue},
		{lintMediaType, "10", ""},
		{lintMediaType, "11", KindBadValue},
		{lintMediaType, "80", ""},
		{lintMediaType, "00", KindBadValue},
		{lintNonZero, "0001", ""},
		{lintNonZero, "0000", KindBadValue},
		{lintZero, "0", ""},
		{lintZero, "1", KindBadValue},
		{lintNoZeroPrefix, "0", KindBadValue},
		{lintNoZeroPrefix, "10", ""},
		{lintNoZeroPrefix, "012", KindBadValue},
		{lintPcEnc, "A%20B", ""},
		{lintPcEnc, "A%2", KindBadValue},
		{lintPcEnc, "A%ZZ", KindBadValue},
		{lintPieceOfTotal, "0102", ""},
		{lintPieceOfTotal, "0302", KindBadValue},
		{lintPieceOfTotal, "0002", KindBadValue},
		{lintPosInSeqSlash, "1/3", ""},
		{lintPosInSeqSlash, "10/9", KindBadValue},
		{lintPosInSeqSlash, "01/2", KindBadValue},
		{lintPosInSeqSlash, "1//2", KindBadValue},
		{lintWinding, "9", ""},
		{lintWinding, "2", KindBadValue},
		{lintYesNo, "1", ""},
		{lintYesNo, "2", KindBadValue},
		{lintHyphen, "---", ""},
		{lintHyphen, "-x", KindBadValue},
		{lintHasNonDigit, "12a", ""},
		{lintHasNonDigit, "123", KindBadValue},
	}
	for _, tc := range tests {
		got := runLinter(tc.l, tc.in).kind
		if got != tc.want {
			t.Errorf("linter %d on %q = %q, want %q", tc.l, tc.in, got, tc.want)
		}
	}
}

func TestCharsets(t *testing.T) {
	tests := []struct {
		c  cset
		in string
		ok bool
	}{
		{csetN, "0123456789", true},
		{csetN, "12a", false},
		{csetX, "AZaz09!\"%&'()*+,-./:;<=>?_", true},
		{csetX, "A B", false},
		{csetX, "A#", false},
		{csetX, "A^", false},
		{csetY, "#-/09AZ", true},
		{csetY, "a", false},
		{csetZ, "Az09-_", true},
		{csetZ, "Az09==", true},
		{csetZ, "A=z", false},
		{csetZ, "A+", false},
	}
	for _, tc := range tests {
		if _, ok := checkCset(tc.c, tc.in); ok != tc.ok {
			t.Errorf("checkCset(%d, %q) = %v, want %v", tc.c, tc.in, ok, tc.ok)
		}
	}
}

func TestFullYear(t *testing.T) {
	// GS1 GenSpecs 7.12: a difference YY-current of 51..99 means the previous
	// century, -99..-50 the next one, otherwise the current one.
	for _, tc := range []struct{ yy, ref, want int }{
		{26, 2026, 2026}, {76, 2026, 2076}, {77, 2026, 1977}, {99, 2001, 1999}, {0, 2050, 2100}, {1, 2050, 2001}, {50, 2000, 2050}, {51, 2000, 1951},
	} {
		if got := fullYear(tc.yy, tc.ref); got != tc.want {
			t.Errorf("fullYear(%d, %d) = %d, want %d", tc.yy, tc.ref, got, tc.want)
		}
	}
}

func TestTableShape(t *testing.T) {
	for _, ai := range []string{"00", "01", "10", "21", "3103", "3929", "414", "8003", "8030", "91", "99"} {
		if aiIndex[ai] == nil {
			t.Errorf("AI %s missing from the generated table", ai)
		}
	}
	if e := aiIndex["01"]; !e.predefined || !e.dlPKey || len(e.dlQual) != 2 {
		t.Errorf("AI 01 = %+v", e)
	}
	if e := aiIndex["10"]; e.predefined || e.maxLen() != 20 {
		t.Errorf("AI 10 = %+v", e)
	}
	if len(aiTable) < 500 {
		t.Errorf("table has %d entries; ranges not expanded?", len(aiTable))
	}
	if !strings.Contains(aiTableSource, "ff2eb4bfc8f6") {
		t.Errorf("aiTableSource = %q", aiTableSource)
	}
}

// TestGeneratedTableUpToDate regenerates ai_table_gen.go from the dictionary
// (../shared/gs1 relative to the repository root) and compares.
func TestGeneratedTableUpToDate(t *testing.T) {
	// The dictionary and code lists are kept in the repository (gs1data/),
	// so this runs on a fresh clone.
	src, err := os.ReadFile(filepath.Join("gs1data", "gs1-syntax-dictionary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want, warnings, err := aigen.Generate(src, aigen.DefaultCommit)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	got, err := os.ReadFile("ai_table_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ai_table_gen.go is stale: run go generate ./internal/scan")
	}
	for _, w := range warnings {
		t.Errorf("generator warning (a dictionary linter is not implemented): %s", w)
	}
	csrc, err := os.ReadFile(filepath.Join("gs1data", "codelists.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cwant, err := aigen.GenerateCodes(csrc)
	if err != nil {
		t.Fatal(err)
	}
	if cgot, err := os.ReadFile("codes_gen.go"); err != nil || !bytes.Equal(cgot, cwant) {
		t.Fatalf("codes_gen.go is stale (%v): run go generate ./internal/scan", err)
	}
	// The kept dictionary is the edition in ../shared where that exists.
	if shared, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "gs1", "gs1-syntax-dictionary.txt")); err == nil && !bytes.Equal(shared, src) {
		t.Error("gs1data/gs1-syntax-dictionary.txt differs from ../shared/gs1: update the kept copy, DefaultCommit and go generate")
	}
}

func TestGeneratorWarnsOnUnknownLinter(t *testing.T) {
	src := []byte("01 *? N14,csum,frobnicate dlpkey # GTIN\n10 ? X..20 req=01 # LOT\n")
	_, warnings, err := aigen.Generate(src, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "frobnicate") {
		t.Errorf("warnings = %q", warnings)
	}
	if _, _, err := aigen.Generate([]byte("01 * N14\n011 * N3\n"), "test"); err == nil {
		t.Error("prefix clash not detected")
	}
}

func TestCodeListsParser(t *testing.T) {
	good := "# c\n[iso4217]\n978 840\n[iso3166]\n276\n[iso3166alpha2]\nDE\n[packagetype]\nBX 8\n"
	lists, err := aigen.ParseCodeLists([]byte(good))
	if err != nil || len(lists["iso4217"]) != 2 || lists["packagetype"][1] != "8" {
		t.Fatalf("ParseCodeLists = %v, %v", lists, err)
	}
	for name, src := range map[string]string{
		"missing list":  "[iso4217]\n978\n[iso3166]\n276\n[iso3166alpha2]\nDE\n",
		"duplicate":     strings.Replace(good, "978 840", "978 978", 1),
		"lower case":    strings.Replace(good, "BX", "bx", 1),
		"before header": "978\n" + good,
		"list twice":    good + "[iso4217]\n124\n",
	} {
		if _, err := aigen.ParseCodeLists([]byte(src)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
