package scan

import "strconv"

// cset is the character set of an AI component.
type cset uint8

// Character sets named by the dictionary's component types.
const (
	csetN cset = iota + 1 // digits
	csetX                 // GS1 AI encodable character set 82
	csetY                 // GS1 AI encodable character set 39
	csetZ                 // GS1 AI encodable character set 64 (base64url, '=' padding)
)

// linter is a content check named by the dictionary.
type linter uint8

// The linters implemented here. Names follow the dictionary.
const (
	lintCsum linter = iota + 1
	lintCsumAlpha
	lintGCPPos1
	lintGCPPos2
	lintHasNonDigit
	lintHH
	lintHHMI
	lintMI
	lintSS
	lintHyphen
	lintIBAN
	lintImporterIdx
	lintISO3166
	lintISO3166999
	lintISO3166Alpha2
	lintISO4217
	lintISO5218
	lintLatitude
	lintLongitude
	lintMediaType
	lintNonZero
	lintNoZeroPrefix
	lintPcEnc
	lintPieceOfTotal
	lintPosInSeqSlash
	lintWinding
	lintYesNo
	lintYYMMD0
	lintYYMMDD
	lintYYMMDDHH
	lintYYYYMMD0
	lintYYYYMMDD
	lintZero
	lintCouponCode
	lintCouponPosOffer
	lintPackageType
)

// component is one part of an AI's data field (see the dictionary header).
type component struct {
	cset     cset
	min, max int
	optional bool
	linters  []linter
}

// aiEntry is one row of the generated AI table.
type aiEntry struct {
	ai         string
	predefined bool // no FNC1 separator needed after it
	dlAttr     bool // allowed as a Digital Link data attribute
	comps      []component
	req        [][][]string // rules; each: alternatives; each: AIs/patterns all required
	ex         []string     // AIs/patterns it must not appear with
	dlPKey     bool         // Digital Link primary key
	dlQual     [][]string   // alternative ordered qualifier sequences
	title      string
}

// maxLen is the longest value the entry accepts.
func (e *aiEntry) maxLen() int {
	n := 0
	for _, c := range e.comps {
		n += c.max
	}
	return n
}

// minLen is the shortest value the entry accepts: its mandatory components
// at their minimum lengths.
func (e *aiEntry) minLen() int {
	n := 0
	for _, c := range e.comps {
		if !c.optional {
			n += c.min
		}
	}
	return n
}

// aiIndex maps an AI to its table entry.
var aiIndex = func() map[string]*aiEntry {
	m := make(map[string]*aiEntry, len(aiTable))
	for i := range aiTable {
		m[aiTable[i].ai] = &aiTable[i]
	}
	return m
}()

// aiByLen indexes the table by the numeric value of 2-, 3- and 4-digit AIs
// (entry index + 1; 0 = none) so that finding AI boundaries needs no hashing.
var aiByLen = func() (t struct {
	two   [100]uint16
	three [1000]uint16
	four  [10000]uint16
}) {
	for i := range aiTable {
		ai := aiTable[i].ai
		n := 0
		for j := 0; j < len(ai); j++ {
			n = n*10 + int(ai[j]-'0')
		}
		switch len(ai) {
		case 2:
			t.two[n] = uint16(i + 1)
		case 3:
			t.three[n] = uint16(i + 1)
		case 4:
			t.four[n] = uint16(i + 1)
		}
	}
	return t
}()

// lookupAI finds the AI that data starts with. It returns nil when the first
// two to four characters are not a known AI.
func lookupAI(data string) *aiEntry {
	n := 0
	for l := 1; l <= 4 && l <= len(data); l++ {
		c := data[l-1]
		if c < '0' || c > '9' {
			return nil
		}
		n = n*10 + int(c-'0')
		var k uint16
		switch l {
		case 2:
			k = aiByLen.two[n]
		case 3:
			k = aiByLen.three[n]
		case 4:
			k = aiByLen.four[n]
		}
		if k != 0 {
			return &aiTable[k-1]
		}
	}
	return nil
}

// entryFor returns the table entry of exactly ai, or nil.
func entryFor(ai string) *aiEntry {
	if len(ai) < 2 || len(ai) > 4 {
		return nil
	}
	if e := lookupAI(ai); e != nil && len(e.ai) == len(ai) {
		return e
	}
	return nil
}

// problem is a content error found inside one value; kind == "" means none.
type problem struct {
	kind Kind
	off  int // offset within the value
	msg  string
}

// validateValue checks v against the entry's components and linters.
func validateValue(e *aiEntry, v string) problem {
	pos := 0
	for i, c := range e.comps {
		if pos == len(v) && c.optional {
			break
		}
		rem := len(v) - pos
		n := c.max
		if c.min == c.max {
			if rem < n {
				return problem{KindBadLength, pos, "value too short: component " + strconv.Itoa(i+1) + " needs " + strconv.Itoa(n) + " characters"}
			}
		} else {
			if rem < c.min {
				return problem{KindBadLength, pos, "value too short"}
			}
			if rem < n {
				n = rem
			}
		}
		part := v[pos : pos+n]
		if off, ok := checkCset(c.cset, part); !ok {
			if c.cset == csetZ && part[off] == '=' {
				return problem{KindBadCharset, pos + off, "CSET 64 padding: at most two '=' and only when the length is a multiple of 3"}
			}
			return problem{KindBadCharset, pos + off, "character " + strconv.QuoteRune(rune(part[off])) + " not allowed in " + csetName(c.cset)}
		}
		for _, l := range c.linters {
			if p := runLinter(l, part); p.kind != "" {
				p.off += pos
				return p
			}
		}
		pos += n
	}
	if pos != len(v) {
		return problem{KindBadLength, pos, "value too long: at most " + strconv.Itoa(pos) + " characters"}
	}
	return problem{}
}

func csetName(c cset) string {
	switch c {
	case csetN:
		return "a numeric field"
	case csetX:
		return "CSET 82"
	case csetY:
		return "CSET 39"
	default:
		return "CSET 64"
	}
}

var cset82Tab, cset39Tab, cset64Tab [256]bool

func init() {
	for _, c := range "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz" {
		cset82Tab[c] = true
	}
	for _, c := range "#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" {
		cset39Tab[c] = true
	}
	for _, c := range "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz" {
		cset64Tab[c] = true
	}
}

// checkCset returns the offset of the first character outside the set.
func checkCset(c cset, s string) (int, bool) {
	switch c {
	case csetN:
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return i, false
			}
		}
	case csetX:
		for i := 0; i < len(s); i++ {
			if !cset82Tab[s[i]] {
				return i, false
			}
		}
	case csetY:
		for i := 0; i < len(s); i++ {
			if !cset39Tab[s[i]] {
				return i, false
			}
		}
	case csetZ:
		// base64url; '=' only as trailing padding: at most two, and only
		// when the padded length is a multiple of 3 (the dictionary's
		// cset64 test).
		end := len(s)
		for end > 0 && s[end-1] == '=' {
			end--
		}
		if pads := len(s) - end; pads > 2 || pads > 0 && len(s)%3 != 0 {
			return end, false
		}
		for i := 0; i < end; i++ {
			if !cset64Tab[s[i]] {
				return i, false
			}
		}
	}
	return 0, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// gs1CheckDigit computes the GS1 mod-10 check digit of the digits in s
// (which excludes the check digit). s must be all digits.
func gs1CheckDigit(s string) byte {
	sum := 0
	w := 3
	for i := len(s) - 1; i >= 0; i-- {
		sum += int(s[i]-'0') * w
		w = 4 - w
	}
	return byte('0' + (10-sum%10)%10)
}

// validCheckDigit reports whether the last digit of s is its GS1 check digit.
func validCheckDigit(s string) bool {
	return len(s) >= 2 && isDigits(s) && gs1CheckDigit(s[:len(s)-1]) == s[len(s)-1]
}

// runLinter applies one named content check to a component.
func runLinter(l linter, s string) problem {
	bad := func(k Kind, msg string) problem { return problem{kind: k, msg: msg} }
	switch l {
	case lintCsum:
		if !validCheckDigit(s) {
			if !isDigits(s) || len(s) < 2 {
				return bad(KindCheckDigit, "cannot carry a check digit")
			}
			return problem{KindCheckDigit, len(s) - 1, "check digit " + s[len(s)-1:] + " is wrong, expected " + string(gs1CheckDigit(s[:len(s)-1]))}
		}
	case lintCsumAlpha:
		if p := checkPair(s); p.kind != "" {
			return p
		}
	case lintGCPPos1, lintGCPPos2:
		start := 0
		if l == lintGCPPos2 {
			start = 1
		}
		if len(s) < start+4 || !isDigits(s[start:start+4]) {
			return bad(KindBadValue, "does not start with a GS1 Company Prefix")
		}
	case lintHasNonDigit:
		if isDigits(s) {
			return bad(KindBadValue, "must contain a non-digit character")
		}
	case lintHH:
		if n, ok := atoi2(s); !ok || n > 23 {
			return bad(KindBadDate, "hour "+s+" is not 00-23")
		}
	case lintMI, lintSS:
		if n, ok := atoi2(s); !ok || n > 59 {
			return bad(KindBadDate, s+" is not 00-59")
		}
	case lintHHMI:
		h, ok1 := atoi2(s[:min(2, len(s))])
		m, ok2 := atoi2(s[min(2, len(s)):])
		if !ok1 || !ok2 || h > 23 || m > 59 {
			return bad(KindBadDate, "time "+s+" is not HHMM")
		}
	case lintHyphen:
		for i := 0; i < len(s); i++ {
			if s[i] != '-' {
				return problem{KindBadValue, i, "only '-' is allowed here"}
			}
		}
	case lintIBAN:
		if p := checkIBAN(s); p.kind != "" {
			return p
		}
	case lintPackageType:
		if !packageType(s) {
			return bad(KindBadValue, s+" is not a package type code")
		}
	case lintCouponCode:
		return checkCouponCode(s)
	case lintCouponPosOffer:
		return checkCouponPosOffer(s)
	case lintImporterIdx:
		if len(s) != 1 || !(cset64Tab[s[0]]) {
			return bad(KindBadValue, "not a valid importer index character")
		}
	case lintISO3166:
		if !iso3166Num(s) {
			return bad(KindBadValue, s+" is not an ISO 3166 numeric country code")
		}
	case lintISO3166999:
		if s != "999" && !iso3166Num(s) {
			return bad(KindBadValue, s+" is not an ISO 3166 numeric country code or 999")
		}
	case lintISO3166Alpha2:
		if !iso3166Alpha2(s) {
			return bad(KindBadValue, s+" is not an ISO 3166 alpha-2 country code")
		}
	case lintISO4217:
		if !iso4217Num(s) {
			return bad(KindBadValue, s+" is not an ISO 4217 numeric currency code")
		}
	case lintISO5218:
		if s != "0" && s != "1" && s != "2" && s != "9" {
			return bad(KindBadValue, "sex code must be 0, 1, 2 or 9")
		}
	case lintLatitude, lintLongitude:
		limit := uint64(1800000000)
		if l == lintLongitude {
			limit = 3600000000
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || len(s) != 10 || n > limit {
			return bad(KindBadValue, "coordinate out of range")
		}
	case lintMediaType:
		if n, ok := atoi2(s); !ok || !(n >= 1 && n <= 10 || n >= 80) {
			return bad(KindBadValue, "not an AIDC media type (01-10, 80-99)")
		}
	case lintNonZero:
		for i := 0; i < len(s); i++ {
			if s[i] != '0' {
				return problem{}
			}
		}
		return bad(KindBadValue, "must not be zero")
	case lintNoZeroPrefix:
		// A leading zero is refused, the value "0" included (the
		// dictionary's nozeroprefix test: a serial with no zero prefix).
		if len(s) > 0 && s[0] == '0' {
			return bad(KindBadValue, "must not start with 0")
		}
	case lintPcEnc:
		for i := 0; i < len(s); i++ {
			if s[i] == '%' {
				if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
					return problem{KindBadValue, i, "invalid percent-encoding"}
				}
			}
		}
	case lintPieceOfTotal:
		if len(s)%2 != 0 || !isDigits(s) {
			return bad(KindBadValue, "piece/total malformed")
		}
		h := len(s) / 2
		p, _ := strconv.Atoi(s[:h])
		t, _ := strconv.Atoi(s[h:])
		if p == 0 || t == 0 || p > t {
			return bad(KindBadValue, "piece number must be 1..total")
		}
	case lintPosInSeqSlash:
		if p := posInSeq(s); p.kind != "" {
			return p
		}
	case lintWinding:
		if s != "0" && s != "1" && s != "9" {
			return bad(KindBadValue, "winding direction must be 0, 1 or 9")
		}
	case lintYesNo:
		if s != "0" && s != "1" {
			return bad(KindBadValue, "must be 0 or 1")
		}
	case lintZero:
		if s != "0" {
			return bad(KindBadValue, "must be 0")
		}
	case lintYYMMD0, lintYYMMDD, lintYYMMDDHH:
		if len(s) < 6 {
			return bad(KindBadDate, "date too short")
		}
		yy, _ := atoi2(s[:2])
		if p := checkDate(yy, yy%4 == 0, s[2:6], l == lintYYMMD0); p.kind != "" {
			return p
		}
		if l == lintYYMMDDHH {
			if h, ok := atoi2(s[6:]); !ok || h > 23 {
				return problem{KindBadDate, 6, "hour is not 00-23"}
			}
		}
	case lintYYYYMMD0, lintYYYYMMDD:
		if len(s) != 8 {
			return bad(KindBadDate, "date must be YYYYMMDD")
		}
		y, _ := strconv.Atoi(s[:4])
		leap := y%4 == 0 && (y%100 != 0 || y%400 == 0)
		if p := checkDate(y, leap, s[4:8], l == lintYYYYMMD0); p.kind != "" {
			p.off += 2
			return p
		}
	}
	return problem{}
}

// checkDate validates "MMDD" (at offset 2 of the date), DD 00 allowed if zeroDay.
func checkDate(_ int, leap bool, mmdd string, zeroDay bool) problem {
	m, ok1 := atoi2(mmdd[:2])
	d, ok2 := atoi2(mmdd[2:])
	if !ok1 || m < 1 || m > 12 {
		return problem{KindBadDate, 2, "month " + mmdd[:2] + " is not 01-12"}
	}
	max := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && leap {
		max = 29
	}
	if !ok2 || d > max || d == 0 && !zeroDay {
		return problem{KindBadDate, 4, "day " + mmdd[2:] + " does not exist in month " + mmdd[:2]}
	}
	return problem{}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

func posInSeq(s string) problem {
	bad := problem{KindBadValue, 0, "must be <position>/<total>"}
	pos, end, ok := cut(s, '/')
	if !ok || !isDigits(pos) || !isDigits(end) {
		return bad
	}
	if pos[0] == '0' || end[0] == '0' {
		return problem{KindBadValue, 0, "position and total must not be zero or zero-prefixed"}
	}
	if len(pos) > len(end) || len(pos) == len(end) && pos > end {
		return problem{KindBadValue, 0, "position exceeds total"}
	}
	return problem{}
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// checkPair validates the GS1 alphanumeric check character pair (General
// Specifications 7.9.5): data characters weighted by their CSET 82 position
// times ascending primes from the right, mod 1021, split into two CSET 32
// characters.
func checkPair(s string) problem {
	const cset32 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	const cset82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
	if len(s) < 2 {
		return problem{KindCheckDigit, 0, "too short for a check character pair"}
	}
	n := len(s) - 2
	if n > len(primes) {
		return problem{KindCheckDigit, 0, "too long for a check character pair"}
	}
	sum := 0
	for i := 0; i < n; i++ {
		w := indexByte(cset82, s[i])
		if w < 0 {
			return problem{KindBadCharset, i, "character not in CSET 82"}
		}
		sum += w * primes[n-1-i]
	}
	sum %= 1021
	if s[n] != cset32[sum>>5] || s[n+1] != cset32[sum&31] {
		return problem{KindCheckDigit, n, "check character pair " + s[n:] + " is wrong, expected " + string([]byte{cset32[sum>>5], cset32[sum&31]})}
	}
	return problem{}
}

var primes = func() []int {
	var p []int
	for n := 2; len(p) < 97; n++ {
		isP := true
		for _, q := range p {
			if q*q > n {
				break
			}
			if n%q == 0 {
				isP = false
				break
			}
		}
		if isP {
			p = append(p, n)
		}
	}
	return p
}()

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// checkIBAN checks an IBAN (ISO 13616) in the order the dictionary's iban
// test does: length at least 4, an ISO 3166 alpha-2 country, at most 34 and
// more than 10 characters, only digits and upper-case letters, and the
// mod-97 remainder 1. Structure errors are bad_value; only a wrong
// remainder (the check characters) is check_digit.
func checkIBAN(s string) problem {
	switch {
	case len(s) < 4:
		return problem{KindBadValue, 0, "IBAN too short"}
	case !iso3166Alpha2(s[:2]):
		return problem{KindBadValue, 0, "IBAN does not start with an ISO 3166 alpha-2 country code"}
	case len(s) > 34:
		return problem{KindBadValue, 0, "IBAN longer than 34 characters"}
	case len(s) <= 10:
		return problem{KindBadValue, 0, "IBAN too short"}
	}
	for i := 0; i < len(s); i++ {
		if c := s[(i+4)%len(s)]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return problem{KindBadValue, (i + 4) % len(s), "character " + strconv.QuoteRune(rune(c)) + " not allowed in an IBAN"}
		}
	}
	if !validIBAN(s) {
		return problem{KindCheckDigit, 2, "IBAN check characters " + s[2:4] + " are wrong"}
	}
	return problem{}
}

// validIBAN checks ISO 13616 structure: country (ISO 3166 alpha-2), two check
// digits, alphanumeric BBAN, and the mod-97 remainder 1.
func validIBAN(s string) bool {
	if len(s) < 5 || len(s) > 34 || !iso3166Alpha2(s[:2]) {
		return false
	}
	r := 0
	add := func(c byte) bool {
		switch {
		case c >= '0' && c <= '9':
			r = (r*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			r = (r*100 + int(c-'A') + 10) % 97
		default:
			return false
		}
		return true
	}
	for i := 4; i < len(s); i++ {
		if !add(s[i]) {
			return false
		}
	}
	for i := 0; i < 4; i++ {
		add(s[i])
	}
	return r == 1
}
