package scan

// North American coupon codes: AI 8110 (coupon code identification for use
// in North America, the dictionary's couponcode linter) and AI 8112 (paperless
// coupon code identification, couponposoffer). The data is a sequence of
// digit fields; most fields are preceded by a one-digit value length
// indicator (VLI), and AI 8110 has optional fields introduced by a one-digit
// field identifier (1, 2, 3, 4, 5, 6, 9), each at most once and in that order.
// The structure follows the GS1 General Specifications (AI 8110/8112) and the
// GS1 US coupon guideline it cites.

// couponReader walks a coupon value; the first problem found sticks.
type couponReader struct {
	s   string
	pos int
	err problem
}

func (r *couponReader) failed() bool { return r.err.kind != "" }

func (r *couponReader) fail(k Kind, off int, msg string) {
	if !r.failed() {
		r.err = problem{k, off, msg}
	}
}

func (r *couponReader) atEnd() bool { return r.pos >= len(r.s) }

// digit reads one digit that must be in allowed.
func (r *couponReader) digit(field, allowed string) int {
	if r.failed() {
		return 0
	}
	if r.atEnd() {
		r.fail(KindBadValue, r.pos, "coupon "+field+" is missing")
		return 0
	}
	c := r.s[r.pos]
	if indexByte(allowed, c) < 0 {
		r.fail(KindBadValue, r.pos, "coupon "+field+" "+string(c)+" is not one of "+allowed)
		return 0
	}
	r.pos++
	return int(c - '0')
}

// take reads n digits.
func (r *couponReader) take(field string, n int) string {
	if r.failed() {
		return ""
	}
	if len(r.s)-r.pos < n {
		r.fail(KindBadValue, r.pos, "coupon "+field+" is shorter than "+itoa(n)+" digits")
		return ""
	}
	v := r.s[r.pos : r.pos+n]
	r.pos += n
	return v
}

// company reads a GS1 Company Prefix (or GLN) of n digits.
func (r *couponReader) company(field string, n int) {
	start := r.pos
	v := r.take(field, n)
	if !r.failed() && (len(v) < 4 || !isDigits(v[:4])) {
		r.fail(KindBadValue, start, "coupon "+field+" is not a GS1 Company Prefix")
	}
}

// date reads a YYMMDD date.
func (r *couponReader) date(field string) string {
	start := r.pos
	if len(r.s)-r.pos < 6 && !r.failed() {
		r.fail(KindBadDate, start, "coupon "+field+" is shorter than YYMMDD")
		return ""
	}
	v := r.take(field, 6)
	if r.failed() {
		return ""
	}
	yy, _ := atoi2(v[:2])
	if p := checkDate(yy, yy%4 == 0, v[2:6], false); p.kind != "" {
		r.fail(KindBadDate, start, "coupon "+field+" "+v+" is not a valid date")
	}
	return v
}

// optional reports whether the next digit is the field identifier id and
// consumes it.
func (r *couponReader) optional(id byte) bool {
	if r.failed() || r.atEnd() || r.s[r.pos] != id {
		return false
	}
	r.pos++
	return true
}

func (r *couponReader) done() problem {
	if !r.failed() && !r.atEnd() {
		r.fail(KindBadValue, r.pos, "coupon has excess data after its last field")
	}
	return r.err
}

// purchase reads a purchase requirement: VLI 1-5 and that many digits, a
// requirement code (0-4 or 9) and a three-digit family code.
func (r *couponReader) purchase(which string) {
	n := r.digit(which+" purchase requirement VLI", "12345")
	r.take(which+" purchase requirement", n)
	r.digit(which+" purchase requirement code", "012349")
	r.take(which+" purchase family code", 3)
}

// extraCompany reads an optional-field company prefix: VLI 0-6 (length
// VLI+6) or 9 (none: the primary company prefix applies).
func (r *couponReader) extraCompany(which string) {
	v := r.digit(which+" purchase company prefix VLI", "0123456789")
	if r.failed() {
		return
	}
	if v == 9 {
		return
	}
	if v > 6 {
		r.pos--
		r.fail(KindBadValue, r.pos, "coupon "+which+" purchase company prefix VLI must be 0-6 or 9")
		return
	}
	r.company(which+" purchase company prefix", v+6)
}

func checkDigitsOnly(s string) problem {
	if i := firstNonDigit(s); i >= 0 {
		return problem{KindBadCharset, i, "coupon data must be digits"}
	}
	return problem{}
}

// checkCouponCode validates AI 8110.
func checkCouponCode(s string) problem {
	if p := checkDigitsOnly(s); p.kind != "" {
		return p
	}
	r := &couponReader{s: s}
	gcp := r.digit("company prefix VLI", "0123456")
	r.company("company prefix", gcp+6)
	r.take("offer code", 6)
	save := r.digit("save value VLI", "12345")
	r.take("save value", save)
	r.purchase("1st")
	if r.optional('1') {
		r.digit("additional purchase rules code", "0123")
		r.purchase("2nd")
		r.extraCompany("2nd")
	}
	if r.optional('2') {
		r.purchase("3rd")
		r.extraCompany("3rd")
	}
	expiry := ""
	if r.optional('3') {
		expiry = r.date("expiration date")
	}
	if r.optional('4') {
		start := r.pos
		if d := r.date("start date"); !r.failed() && expiry != "" && d > expiry {
			r.fail(KindBadDate, start, "coupon start date "+d+" is after its expiration date "+expiry)
		}
	}
	if r.optional('5') {
		n := r.digit("serial number VLI", "0123456789")
		r.take("serial number", n+6)
	}
	if r.optional('6') {
		n := r.digit("retailer company prefix/GLN VLI", "1234567")
		r.company("retailer company prefix/GLN", n+6)
	}
	if r.optional('9') {
		r.digit("save value code", "01256")
		r.digit("save value applies-to-item", "012")
		r.digit("store coupon flag", "0123456789")
		r.digit("don't-multiply flag", "01")
	}
	return r.done()
}

// checkCouponPosOffer validates AI 8112.
func checkCouponPosOffer(s string) problem {
	if p := checkDigitsOnly(s); p.kind != "" {
		return p
	}
	r := &couponReader{s: s}
	r.digit("format code", "01")
	n := r.digit("funder VLI", "0123456")
	r.company("funder", n+6)
	r.take("offer code", 6)
	n = r.digit("serial number VLI", "0123456789")
	r.take("serial number", n+6)
	return r.done()
}
