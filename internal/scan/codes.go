package scan

import "strings"

// The code lists used by the iso3166, iso3166999, iso3166alpha2, iso4217 and
// packagetype linters come from gs1data/codelists.txt through the generated
// constants in codes_gen.go (go generate ./internal/scan).

var iso3166NumSet, iso4217NumSet [1000]bool
var iso3166Alpha2Set [26 * 26]bool
var packageTypeSet = map[string]bool{}

func init() {
	for _, c := range strings.Fields(codesISO3166) {
		iso3166NumSet[num3(c)] = true
	}
	for _, c := range strings.Fields(codesISO4217) {
		iso4217NumSet[num3(c)] = true
	}
	for _, c := range strings.Fields(codesISO3166Alpha2) {
		iso3166Alpha2Set[int(c[0]-'A')*26+int(c[1]-'A')] = true
	}
	for _, c := range strings.Fields(codesPackageType) {
		packageTypeSet[c] = true
	}
}

func num3(s string) int {
	return int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
}

func iso3166Num(s string) bool { return len(s) == 3 && isDigits(s) && iso3166NumSet[num3(s)] }
func iso4217Num(s string) bool { return len(s) == 3 && isDigits(s) && iso4217NumSet[num3(s)] }

func iso3166Alpha2(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
		iso3166Alpha2Set[int(s[0]-'A')*26+int(s[1]-'A')]
}

func packageType(s string) bool { return packageTypeSet[s] }
