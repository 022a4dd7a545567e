package scan

import (
	"math/rand"
	"strings"
)

// refCase is one generated scan with the category of rule it exercises. hr
// marks bracketed AI text (the human-readable form) rather than scan data.
type refCase struct {
	cat, in string
	hr      bool
}

// Values the generator knows to be valid for linters with closed domains.
var genLinterValue = map[linter]string{
	lintISO3166: "276", lintISO3166999: "999", lintISO3166Alpha2: "DE", lintISO4217: "978",
	lintISO5218: "1", lintWinding: "1", lintYesNo: "1", lintZero: "0", lintMediaType: "01",
	lintHH: "12", lintMI: "30", lintSS: "45", lintHHMI: "1230", lintHyphen: "-",
	lintImporterIdx: "A", lintPackageType: "BX", lintPosInSeqSlash: "1/2",
	lintLatitude: "0900000000", lintLongitude: "1800000000",
	lintYYMMD0: "260630", lintYYMMDD: "260630", lintYYMMDDHH: "26063012",
	lintYYYYMMD0: "20260630", lintYYYYMMDD: "20260630",
	lintIBAN: "GB82WEST12345698765432", lintCouponCode: "1061414112345610101234", lintCouponPosOffer: "1061414112345610123456",
	lintPieceOfTotal: "", lintNonZero: "", lintNoZeroPrefix: "",
}

// genComponent returns a valid value for one component at length n.
func genComponent(r *rand.Rand, c component, n int) string {
	for _, l := range c.linters {
		if v := genLinterValue[l]; v != "" && len(v) >= c.min && len(v) <= c.max {
			return v
		}
	}
	var b []byte
	switch c.cset {
	case csetN:
		for i := 0; i < n; i++ {
			b = append(b, byte('1'+r.Intn(9)))
		}
	case csetY:
		const y = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-/#"
		b = append(b, "1234"...)
		for len(b) < n {
			b = append(b, y[r.Intn(len(y))])
		}
	case csetZ:
		const z = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
		for len(b) < n {
			b = append(b, z[r.Intn(len(z))])
		}
	default:
		const x = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-./:"
		b = append(b, "1234"...)
		for len(b) < n {
			b = append(b, x[r.Intn(len(x))])
		}
	}
	b = b[:n]
	for _, l := range c.linters {
		switch l {
		case lintCsum:
			b[n-1] = gs1CheckDigit(string(b[:n-1]))
		case lintCsumAlpha:
			if n >= 3 {
				for i := range b[:n-2] {
					if b[i] < '0' || b[i] > '9' {
						b[i] = 'A'
					}
				}
				b[0] = 'X' // hasnondigit too
				copy(b[n-2:], checkPairFor(string(b[:n-2])))
			}
		case lintPieceOfTotal:
			h := n / 2
			copy(b, strings.Repeat("0", h-1)+"1"+strings.Repeat("0", h-1)+"2")
		case lintNonZero:
			b[0] = '1'
		}
	}
	return string(b)
}

func checkPairFor(s string) string {
	const cset32 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	const cset82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
	sum := 0
	for i := 0; i < len(s); i++ {
		sum += indexByte(cset82, s[i]) * primes[len(s)-1-i]
	}
	sum %= 1021
	return string([]byte{cset32[sum>>5], cset32[sum&31]})
}

// genValue returns a valid value for e; long picks the longest lengths.
func genValue(r *rand.Rand, e *aiEntry, long bool) string {
	var sb strings.Builder
	for _, c := range e.comps {
		if c.optional && !long && r.Intn(2) == 0 {
			break
		}
		n := c.min
		if c.max > c.min {
			if long {
				n = c.max
			} else {
				n = c.min + r.Intn(min(c.max-c.min+1, 8))
			}
		}
		sb.WriteString(genComponent(r, c, n))
	}
	return sb.String()
}

// concreteAI resolves a dictionary pattern ("31nn") to the first table AI
// matching it.
func concreteAI(pat string) *aiEntry {
	for i := range aiTable {
		if aiMatch(pat, aiTable[i].ai) {
			return &aiTable[i]
		}
	}
	return nil
}

// context returns e plus AIs that satisfy its requisites (and theirs),
// avoiding ex= conflicts where an alternative allows it.
func genContext(e *aiEntry) []*aiEntry {
	set := []*aiEntry{e}
	conflicts := func(x *aiEntry) bool {
		for _, m := range set {
			for _, p := range m.ex {
				if m != x && aiMatch(p, x.ai) {
					return true
				}
			}
			for _, p := range x.ex {
				if m != x && aiMatch(p, m.ai) {
					return true
				}
			}
		}
		return false
	}
	for round := 0; round < 6; round++ {
		ais := make([]AI, len(set))
		for i, m := range set {
			ais[i] = AI{AI: m.ai}
		}
		changed := false
		for _, m := range append([]*aiEntry(nil), set...) {
			for _, rule := range m.req {
				if reqMet(rule, ais) {
					continue
				}
			alts:
				for _, alt := range rule {
					var add []*aiEntry
					for _, pat := range alt {
						x := concreteAI(pat)
						if x == nil || conflicts(x) {
							continue alts
						}
						add = append(add, x)
					}
					for _, x := range add {
						if !containsEntry(set, x) {
							set = append(set, x)
						}
					}
					changed = true
					break
				}
				ais = ais[:0]
				for _, m := range set {
					ais = append(ais, AI{AI: m.ai})
				}
			}
		}
		if !changed {
			break
		}
	}
	return set
}

func containsEntry(set []*aiEntry, e *aiEntry) bool {
	for _, m := range set {
		if m == e {
			return true
		}
	}
	return false
}

// elementString joins AIs into GS1-128 scan data.
func elementString(ais []AI) string {
	var sb strings.Builder
	sb.WriteString("]C1")
	for i, a := range ais {
		sb.WriteString(a.AI)
		sb.WriteString(a.Value)
		if e := entryFor(a.AI); i < len(ais)-1 && (e == nil || !e.predefined) {
			sb.WriteByte(gs)
		}
	}
	return sb.String()
}

func withValues(r *rand.Rand, set []*aiEntry) []AI {
	out := make([]AI, len(set))
	for i, m := range set {
		out[i] = AI{AI: m.ai, Value: genValue(r, m, false)}
	}
	return out
}

// mutateAt returns v with the character at i replaced by c.
func mutateAt(v string, i int, c byte) string {
	if i < 0 || i >= len(v) {
		return v
	}
	return v[:i] + string(c) + v[i+1:]
}

// generateReferenceCases builds the differential test's inputs: for every
// AI a valid message and mutations by check digit, date, length, charset,
// separator, pairing and requisite; code-list sweeps; Digital Link shapes;
// and random byte mutations of valid messages.
func generateReferenceCases(r *rand.Rand) []refCase {
	var cs []refCase
	add := func(cat, in string) { cs = append(cs, refCase{cat: cat, in: in}) }
	addMsg := func(cat string, m []AI) {
		add(cat, elementString(m))
		hr := EncodeHumanReadable(m)
		// '|' is the reference's own composite-symbol separator in its
		// bracketed syntax, so it cannot stand for a data character there.
		if !strings.Contains(hr, "|") {
			cs = append(cs, refCase{cat: "hr_" + cat, in: hr, hr: true})
		}
	}
	var valid []string
	for i := range aiTable {
		e := &aiTable[i]
		set := genContext(e)
		for k := 0; k < 3; k++ {
			msg := withValues(r, set)
			if k == 2 {
				msg[0].Value = genValue(r, e, true)
			}
			addMsg("valid", msg)
			valid = append(valid, elementString(msg))
		}
		msg := withValues(r, set)
		v := msg[0].Value
		put := func(cat, nv string) {
			m := append([]AI(nil), msg...)
			m[0].Value = nv
			addMsg(cat, m)
		}
		pos := 0
		for _, c := range e.comps {
			n := c.min
			if c.max > c.min {
				n = len(v) - pos
			}
			if pos+n > len(v) {
				break
			}
			for _, l := range c.linters {
				switch l {
				case lintCsum:
					last := pos + n - 1
					put("check_digit", mutateAt(v, last, byte('0'+(v[last]-'0'+1)%10)))
				case lintCsumAlpha:
					put("check_digit", mutateAt(v, pos+n-1, 'Z'))
				case lintYYMMD0, lintYYMMDD, lintYYMMDDHH, lintYYYYMMD0, lintYYYYMMDD:
					o := pos
					if l == lintYYYYMMD0 || l == lintYYYYMMDD {
						o += 2
					}
					put("date", v[:o+2]+"13"+v[o+4:])
					put("date", v[:o+2]+"0230"+v[o+6:])
					put("date", v[:o+2]+"0229"+v[o+6:])
					put("date", v[:o+4]+"00"+v[o+6:])
				case lintHH, lintHHMI:
					put("date", v[:pos]+"24"+v[pos+2:])
				default:
					if gv := genLinterValue[l]; gv != "" && len(gv) == n {
						put("linter", v[:pos]+strings.Repeat("9", n)+v[pos+n:])
						put("linter", v[:pos]+strings.Repeat("0", n)+v[pos+n:])
					}
				}
			}
			// charset
			bad := byte('A')
			if c.cset != csetN {
				bad = "|~# $"[r.Intn(5)]
			}
			if n > 0 {
				put("charset", mutateAt(v, pos+r.Intn(n), bad))
			}
			pos += n
		}
		// length
		if len(v) > 1 {
			put("length", v[:len(v)-1])
		}
		put("length", v+strings.Repeat("1", e.maxLen()-len(v)+1))
		if !e.predefined {
			put("length", v+strings.Repeat("A", e.maxLen()-len(v)+1))
		}
		// separators
		if len(msg) > 1 && !e.predefined {
			add("separator", strings.Replace(elementString(msg), string(gs), "", 1))
			add("separator", strings.Replace(elementString(msg), string(gs), string(gs)+string(gs), 1))
		}
		add("separator", elementString(msg)+string(gs))
		add("separator", "]C1"+string(gs)+elementString(msg)[3:])
		// pairing and requisites
		if len(set) > 1 {
			addMsg("requisite", msg[:1])
		}
		for _, p := range e.ex {
			if x := concreteAI(p); x != nil && x != e {
				addMsg("pairing", append(append([]AI(nil), msg...), AI{AI: x.ai, Value: genValue(r, x, false)}))
			}
		}
		other := genValue(r, e, false)
		addMsg("pairing", append(append([]AI(nil), msg...), AI{AI: e.ai, Value: other}))
		addMsg("pairing", append(append([]AI(nil), msg...), msg[0]))
	}
	for _, hr := range []string{"(10)", "(01)09506000134352(10)", "01(10)A", "(01)09506000134352(10)A(B", "(01)09506000134352(10)A^B", "(01)0950600013435"} {
		cs = append(cs, refCase{cat: "hr_shape", in: hr, hr: true})
	}
	cs = append(cs, codeListCases()...)
	dl := digitalLinkCases(r)
	cs = append(cs, dl...)
	// The same element strings under the other GS1 symbology identifiers,
	// and non-GS1 identifiers (plain data for both sides).
	for i, in := range valid {
		if i%4 != 0 {
			continue
		}
		aim := []string{"]d2", "]Q3", "]e0", "]J1", "]C0", "]d1", "]Q1", "]A0", "]X9"}[r.Intn(9)]
		add("symbology", aim+in[3:])
	}
	for _, e := range []string{"]E04006381333931", "]E04006381333932", "]E0400638133393", "]E0400638133393A", "]E409638507", "]E496385074", "]E496385075", "]E00012345678905",
		"]E4963850741", "]E0040063813339", "]E00400638133393", "]E2" + "12"} {
		add("symbology", e)
	}
	// Random byte mutations of Digital Link URIs.
	const uriAlphabet = "0123456789AZaz-._~:/?#[]@!$&'()*+,;=% \x00"
	for i := 0; i < 1500; i++ {
		in := []byte(dl[r.Intn(len(dl))].in)
		for k := 0; k <= r.Intn(2); k++ {
			p := 11 + r.Intn(max(1, len(in)-11))
			switch r.Intn(3) {
			case 0:
				if p < len(in) {
					in[p] = uriAlphabet[r.Intn(len(uriAlphabet))]
				}
			case 1:
				if p < len(in) {
					in = append(in[:p], in[p+1:]...)
				}
			default:
				in = append(in[:p], append([]byte{uriAlphabet[r.Intn(len(uriAlphabet))]}, in[p:]...)...)
			}
		}
		add("dl_random", string(in))
	}
	// Random byte mutations of valid messages.
	const alphabet = "0123456789ABCZaz-/.%|^ \x1d()=+#"
	for i := 0; i < 2500; i++ {
		in := []byte(valid[r.Intn(len(valid))])
		for k := 0; k <= r.Intn(3); k++ {
			p := 3 + r.Intn(max(1, len(in)-3))
			switch r.Intn(3) {
			case 0:
				if p < len(in) {
					in[p] = alphabet[r.Intn(len(alphabet))]
				}
			case 1:
				if p < len(in) {
					in = append(in[:p], in[p+1:]...)
				}
			default:
				in = append(in[:p], append([]byte{alphabet[r.Intn(len(alphabet))]}, in[p:]...)...)
			}
		}
		add("random", string(in))
	}
	return cs
}

// codeListCases sweeps every code of the closed lists, plus the specific
// rules the issue names.
func codeListCases() []refCase {
	var cs []refCase
	add := func(cat, in string) { cs = append(cs, refCase{cat: cat, in: in}) }
	for i := 0; i < 1000; i++ {
		c := itoa(1000 + i)[1:]
		add("iso4217", "]C13910"+c+"123"+"\x1d8020REF1\x1d4159501101020917")
		add("iso3166", "]C1422"+c+"\x1d0109501101020917")
		add("iso3166", "]C17030"+c+"ABC\x1d0109501101020917")
	}
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			add("iso3166alpha2", "]C14307"+string(a)+string(b)+"\x1d00106141411234567897")
		}
	}
	for _, p := range strings.Fields(codesPackageType) {
		add("packagetype", "]C17041"+p+"\x1d00106141411234567897")
	}
	for _, p := range []string{"ZZZ", "BXX", "1", "A", "bx", "X1", "X21", "8D", "000"} {
		add("packagetype", "]C17041"+p+"\x1d00106141411234567897")
	}
	for _, v := range []string{"0", "00", "01", "1", "10", "999999999999"} {
		add("nozeroprefix", "]C18010061414112345\x1d8011"+v)
	}
	for _, v := range []string{"AB", "AB=", "AB==", "ABC=", "ABCD=", "ABCDE=", "ABCD==", "A===", "AB=C", "ABCDEFGH==", "ABCDEFG=="} {
		add("cset64", "]C100106141411234567897\x1d8030"+v)
	}
	for _, k := range []string{"2539501101530003", "2539501101530003A1", "2559501101530003", "25595011015300031", "800309501101530003", "800309501101530003X"} {
		add("digsig", "]C1"+k+"\x1d8030ABCD")
	}
	for _, v := range []string{"GB82WEST12345698765432", "GB83WEST12345698765432", "GB82west12345698765432", "XX82WEST12345698765432", "GB82", "GB82WEST1", "GB", "09501101530003", "GBXXWEST12345698765432", "DE89370400440532013000"} {
		add("iban", "]C18007"+v+"\x1d4159501101020917\x1d8020R")
	}
	coupons := []string{
		"1061414112345610101234", "0061414123456101011234", "70614141123456101234", "10614141123456", "106141411234561",
		"1061414112345610101234" + "1" + "0" + "1" + "5" + "0" + "123" + "9",
		"1061414112345610101234" + "1" + "0" + "1" + "5" + "0" + "123" + "0" + "614141",
		"1061414112345610101234" + "2" + "1" + "5" + "0" + "123" + "9",
		"1061414112345610101234" + "3" + "261231",
		"1061414112345610101234" + "3" + "261331",
		"1061414112345610101234" + "3" + "261231" + "4" + "260101",
		"1061414112345610101234" + "3" + "260101" + "4" + "261231",
		"1061414112345610101234" + "5" + "0" + "123456",
		"1061414112345610101234" + "6" + "1" + "0614141",
		"1061414112345610101234" + "6" + "8" + "0614141",
		"1061414112345610101234" + "9" + "0" + "0" + "0" + "0",
		"1061414112345610101234" + "9" + "3" + "0" + "0" + "0",
		"1061414112345610101234" + "9" + "0" + "0" + "0" + "2",
		"1061414112345610101234" + "7",
		"1061414112345610101234" + "9",
		"1061414112345610151234",
		"106141411234560",
		"1061414112345616101234",
		"A061414112345610101234",
	}
	for _, c := range coupons {
		add("coupon", "]C18110"+c)
	}
	for _, c := range []string{"1061414112345610123456", "0061414123456101234567", "2061414112345610123456", "1761414112345610123456", "10614141123456", "106141411234561012345", "10614141123456101234567", "1"} {
		add("coupon", "]C18112"+c)
	}
	return cs
}

// digitalLinkCases covers Digital Link shapes: every key with and without
// qualifiers, every data attribute, and malformed URIs.
func digitalLinkCases(r *rand.Rand) []refCase {
	var cs []refCase
	add := func(cat, in string) { cs = append(cs, refCase{cat: cat, in: "]Q1" + in}) }
	const dom = "https://id.example.com"
	gtin := "09506000134352"
	for i := range aiTable {
		e := &aiTable[i]
		if e.dlPKey {
			v := genValue(r, e, false)
			add("dl_key", dom+"/"+e.ai+"/"+pctEscape(v))
			add("dl_key", dom+"/some/prefix/"+e.ai+"/"+pctEscape(v))
			for _, alt := range e.dlQual {
				path := "/" + e.ai + "/" + pctEscape(v)
				for _, q := range alt {
					qe := entryFor(q)
					path += "/" + q + "/" + pctEscape(genValue(r, qe, false))
				}
				add("dl_qualifiers", dom+path)
				if len(alt) > 1 {
					// reversed order
					rp := "/" + e.ai + "/" + pctEscape(v)
					for k := len(alt) - 1; k >= 0; k-- {
						rp += "/" + alt[k] + "/" + pctEscape(genValue(r, entryFor(alt[k]), false))
					}
					add("dl_qualifiers", dom+rp)
				}
				// qualifier given as a query parameter
				add("dl_qualifiers", dom+"/"+e.ai+"/"+pctEscape(v)+"?"+alt[0]+"="+pctEscape(genValue(r, entryFor(alt[0]), false)))
			}
		}
		if e.dlAttr {
			set := genContext(e)
			var key *aiEntry
			for _, m := range set {
				if m.dlPKey {
					key = m
					break
				}
			}
			if key == nil {
				key = entryFor("01")
			}
			q := []string{}
			for _, m := range set {
				if m != key {
					q = append(q, m.ai+"="+pctEscape(genValue(r, m, false)))
				}
			}
			kv := genValue(r, key, false)
			add("dl_attribute", dom+"/"+key.ai+"/"+pctEscape(kv)+"?"+strings.Join(q, "&"))
			if e.comps[0].cset == csetX {
				add("dl_attribute", dom+"/"+key.ai+"/"+pctEscape(kv)+"?"+strings.Join(q, "&")+"&"+e.ai+"=A+B")
			}
		}
	}
	shapes := []string{
		dom + "/01/" + gtin,
		dom + "/01/" + gtin + "/10/ABC?17=260630",
		dom + "/01/" + gtin + "?17=260630&17=260630",
		dom + "/01/" + gtin + "?17=260630&17=260631",
		dom + "/01/" + gtin + "/10/ABC?10=ABC",
		dom + "/01/" + gtin + "?9999=1",
		dom + "/01/" + gtin + "?999=1",
		dom + "/01/" + gtin + "?99=A+B",
		dom + "/01/" + gtin + "?99=A%20B",
		dom + "/01/" + gtin + "?99=A%2BB",
		dom + "/01/" + gtin + "?99=",
		dom + "/01/" + gtin + "?=5",
		dom + "/01/" + gtin + "?linkType=all&x&&17=260630",
		dom + "/01/" + gtin + "#frag",
		dom + "/01/" + gtin + "?17=260630#frag",
		dom + "/01/9506000134352",
		dom + "/01/506000134352",
		dom + "/01/96385074",
		dom + "/01/" + gtin + "/",
		dom + "/01/" + gtin + "/10/ABC/",
		dom + "/01/",
		dom + "/01//10/ABC",
		dom + "/01",
		dom + "/",
		dom,
		dom + "?01=" + gtin,
		dom + "/about/us",
		dom + "/gtin/" + gtin,
		dom + "/01/" + gtin + "/99/X",
		dom + "/01/" + gtin + "/9999/X",
		dom + "/0109/" + gtin,
		dom + "/1/" + gtin,
		dom + "/01/" + gtin + "/21/A%2FB",
		dom + "/01/" + gtin + "/21/A%2fb",
		dom + "/01/" + gtin + "/21/A%G1",
		dom + "/01/" + gtin + "/21/A%00",
		dom + "/01/" + gtin + "/21/A%",
		dom + "/01/" + gtin + "/21/A+B",
		dom + "/01/" + gtin + "/21/A B",
		dom + "/01/" + gtin + "/21/A^B",
		dom + "/01/" + gtin + "/21/A%5EB",
		dom + "/01/" + gtin + "/21/" + strings.Repeat("X", 21),
		dom + "/00/106141411234567897/21/1",
		dom + "/00/106141411234567897?10=ABC",
		dom + "/01/" + gtin + "/22/V/10/L/21/S",
		dom + "/01/" + gtin + "/235/T",
		dom + "/01/" + gtin + "/22/V/235/T",
		"https://exa_mple.com/01/" + gtin,
		"https://exa~mple.com/01/" + gtin,
		"https://user@example.com/01/" + gtin,
		"https://example.com:8080/01/" + gtin,
		"https:///01/" + gtin,
		"https://example.com?01=" + gtin,
		"Https://example.com/01/" + gtin,
		"HTTPS://EXAMPLE.COM/01/" + gtin,
		"HTTP://example.com/01/" + gtin,
		"http://example.com/01/" + gtin,
		"hTTp://example.com/01/" + gtin,
		"https://example.com/01/" + gtin + "?3103=000250&3103=000250",
		"https://example.com/01/" + gtin + "?3103=000250&3102=000250",
		"https://example.com/414/0614141123452/254/A1",
		"https://example.com/414/0614141123452/7040/1AB-",
		"https://example.com/8004/0614141ABC?7040=1AB-",
		"https://example.com/253/9501101530003A1?8030=ABCD",
		"https://example.com/253/9501101530003?8030=ABCD",
		"https://example.com/8003/009501101530003X?8030=ABCD",
		"https://example.com/8010/0614141AB/8011/0",
		"https://example.com/8010/0614141AB/8011/12",
	}
	for _, s := range shapes {
		add("dl_shape", s)
	}
	return cs
}

// pctEscape percent-encodes what a URI path segment or query value cannot
// carry literally.
func pctEscape(v string) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			sb.WriteByte(c)
		} else {
			sb.WriteString("%" + strings.ToUpper(hexByte(c)))
		}
	}
	return sb.String()
}

func hexByte(c byte) string {
	const h = "0123456789abcdef"
	return string([]byte{h[c>>4], h[c&15]})
}
