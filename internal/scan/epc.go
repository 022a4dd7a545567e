package scan

import (
	"strconv"
	"strings"
)

// EPC binary decoding per the GS1 EPC Tag Data Standard (TDS) section 14
// (EPC binary encodings) with the partition tables of section 14.5.

// partition is one row of a TDS partition table: bits and decimal digits of
// the company prefix and of the reference field that follows it.
type partition struct{ cpBits, cpDigits, refBits, refDigits int }

var (
	// TDS Table 14-2 (SGTIN), 14-5 (SSCC), 14-8 (SGLN), 14-11 (GRAI), 14-14 (GIAI-96).
	partSGTIN = [7]partition{{40, 12, 4, 1}, {37, 11, 7, 2}, {34, 10, 10, 3}, {30, 9, 14, 4}, {27, 8, 17, 5}, {24, 7, 20, 6}, {20, 6, 24, 7}}
	partSSCC  = [7]partition{{40, 12, 18, 5}, {37, 11, 21, 6}, {34, 10, 24, 7}, {30, 9, 28, 8}, {27, 8, 31, 9}, {24, 7, 34, 10}, {20, 6, 38, 11}}
	partSGLN  = [7]partition{{40, 12, 1, 0}, {37, 11, 4, 1}, {34, 10, 7, 2}, {30, 9, 11, 3}, {27, 8, 14, 4}, {24, 7, 17, 5}, {20, 6, 21, 6}}
	partGRAI  = [7]partition{{40, 12, 4, 0}, {37, 11, 7, 1}, {34, 10, 10, 2}, {30, 9, 14, 3}, {27, 8, 17, 4}, {24, 7, 20, 5}, {20, 6, 24, 6}}
	partGIAI  = [7]partition{{40, 12, 42, 13}, {37, 11, 45, 14}, {34, 10, 48, 15}, {30, 9, 52, 16}, {27, 8, 55, 17}, {24, 7, 58, 18}, {20, 6, 62, 19}}
)

var pow10 = func() [20]uint64 {
	var p [20]uint64
	p[0] = 1
	for i := 1; i < 20; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// DecodeEPC decodes the hex EPC of an RFID tag. It always returns a non-nil
// Scan (Form "epc" on success) and, on failure, an *Error whose Offset is a
// hex-digit offset. Supported: SGTIN-96, SGTIN-198, SSCC-96, SGLN-96,
// GRAI-96, GIAI-96. The identity is also exposed as AIs (01+21, 00, 414+254,
// 8003, 8004) so GTIN, Serial and SSCC work as for barcodes.
func (d *Decoder) DecodeEPC(hexStr string) (*Scan, error) {
	s := &Scan{Input: hexStr, Data: hexStr, refYear: d.now().Year()}
	if err := decodeEPC(s, strings.TrimSpace(hexStr)); err != nil {
		s.AIs, s.EPC = nil, nil
		return s, err
	}
	s.Form = FormEPC
	return s, nil
}

func epcErr(k Kind, off int, msg string) *Error { return &Error{Kind: k, Offset: off, Msg: msg} }

func decodeEPC(s *Scan, h string) *Error {
	if len(h) < 2 {
		return epcErr(KindBadEPC, 0, "EPC too short")
	}
	if len(h) > 128 {
		return epcErr(KindBadEPC, 128, "EPC longer than 512 bits")
	}
	b := make([]byte, (len(h)+1)/2)
	zero := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isHex(c) {
			return epcErr(KindBadEPC, i, "not a hexadecimal digit: "+strconv.QuoteRune(rune(c)))
		}
		v := unhex(c)
		if i%2 == 0 {
			b[i/2] = v << 4
		} else {
			b[i/2] |= v
		}
		if v != 0 {
			zero = false
		}
	}
	if zero {
		return epcErr(KindBadEPC, 0, "tag is unprogrammed (all-zero EPC)")
	}
	var scheme string
	var bits int
	switch b[0] {
	case 0x30:
		scheme, bits = "sgtin-96", 96
	case 0x31:
		scheme, bits = "sscc-96", 96
	case 0x32:
		scheme, bits = "sgln-96", 96
	case 0x33:
		scheme, bits = "grai-96", 96
	case 0x34:
		scheme, bits = "giai-96", 96
	case 0x36:
		scheme, bits = "sgtin-198", 198
	default:
		return epcErr(KindBadEPCHeader, 0, "EPC header 0x"+strings.ToUpper(h[:2])+" is unknown or not supported")
	}
	need := (bits + 3) / 4
	if len(h) < need {
		return epcErr(KindBadEPC, len(h), scheme+" needs "+itoa(need)+" hex digits, got "+itoa(len(h)))
	}
	// Anything beyond the scheme's bits must be zero padding.
	for i := bits; i < len(h)*4; i++ {
		if getBits(b, i, 1) != 0 {
			return epcErr(KindBadEPC, i/4, "non-zero bits after the end of the "+scheme+" encoding")
		}
	}
	filter := int(getBits(b, 8, 3))
	part := int(getBits(b, 11, 3))
	if part > 6 {
		return epcErr(KindBadPartition, 3, "partition value 7 is invalid")
	}
	epc := &EPC{Scheme: scheme, Filter: filter, Partition: part, Hex: strings.ToUpper(h)}
	s.EPC = epc
	var tab *[7]partition
	switch scheme {
	case "sgtin-96", "sgtin-198":
		tab = &partSGTIN
	case "sscc-96":
		tab = &partSSCC
	case "sgln-96":
		tab = &partSGLN
	case "grai-96":
		tab = &partGRAI
	case "giai-96":
		tab = &partGIAI
	}
	pt := tab[part]
	cpV := getBits(b, 14, pt.cpBits)
	refV := getBits(b, 14+pt.cpBits, pt.refBits)
	if cpV >= pow10[pt.cpDigits] {
		return epcErr(KindBadEPC, 3, "company prefix "+strconv.FormatUint(cpV, 10)+" has more than "+itoa(pt.cpDigits)+" digits")
	}
	if refV >= pow10[pt.refDigits] {
		return epcErr(KindBadEPC, (14+pt.cpBits)/4, "reference "+strconv.FormatUint(refV, 10)+" has more than "+itoa(pt.refDigits)+" digits")
	}
	cp := zpad(cpV, pt.cpDigits)
	ref := zpad(refV, pt.refDigits)
	if scheme == "giai-96" {
		ref = strconv.FormatUint(refV, 10)
	}
	after := 14 + pt.cpBits + pt.refBits
	switch scheme {
	case "sgtin-96", "sgtin-198":
		var serial string
		if scheme == "sgtin-96" {
			serial = strconv.FormatUint(getBits(b, after, 38), 10)
		} else {
			var sb []byte
			for i := 0; i < 20; i++ {
				c := byte(getBits(b, after+7*i, 7))
				if c == 0 {
					for j := i + 1; j < 20; j++ {
						if getBits(b, after+7*j, 7) != 0 {
							return epcErr(KindBadEPC, (after+7*j)/4, "serial has characters after its terminating zero")
						}
					}
					break
				}
				if !cset82Tab[c] {
					return epcErr(KindBadEPC, (after+7*i)/4, "serial character "+strconv.QuoteRune(rune(c))+" is not in CSET 82")
				}
				sb = append(sb, c)
			}
			if len(sb) == 0 {
				return epcErr(KindBadEPC, after/4, "empty serial")
			}
			serial = string(sb)
		}
		body := ref[:1] + cp + ref[1:]
		gtin := body + string(gs1CheckDigit(body))
		epc.URI = "urn:epc:id:sgtin:" + cp + "." + ref + "." + uriEscape(serial)
		s.AIs = []AI{{"01", gtin}, {"21", serial}}
	case "sscc-96":
		body := ref[:1] + cp + ref[1:]
		epc.URI = "urn:epc:id:sscc:" + cp + "." + ref
		s.AIs = []AI{{"00", body + string(gs1CheckDigit(body))}}
	case "sgln-96":
		body := cp + ref
		ext := getBits(b, after, 41)
		epc.URI = "urn:epc:id:sgln:" + cp + "." + ref + "." + strconv.FormatUint(ext, 10)
		s.AIs = []AI{{"414", body + string(gs1CheckDigit(body))}}
		if ext != 0 {
			s.AIs = append(s.AIs, AI{"254", strconv.FormatUint(ext, 10)})
		}
	case "grai-96":
		body := cp + ref
		serial := strconv.FormatUint(getBits(b, after, 38), 10)
		epc.URI = "urn:epc:id:grai:" + cp + "." + ref + "." + serial
		s.AIs = []AI{{"8003", "0" + body + string(gs1CheckDigit(body)) + serial}}
	case "giai-96":
		epc.URI = "urn:epc:id:giai:" + cp + "." + ref
		s.AIs = []AI{{"8004", cp + ref}}
	}
	return nil
}

// getBits reads n (<= 64) bits big-endian starting at bit offset start.
func getBits(b []byte, start, n int) uint64 {
	var v uint64
	for i := start; i < start+n; i++ {
		v = v<<1 | uint64(b[i/8]>>(7-uint(i%8))&1)
	}
	return v
}

// putBits writes the low n bits of v big-endian at bit offset start.
func putBits(b []byte, start, n int, v uint64) {
	for i := 0; i < n; i++ {
		bit := byte(v>>(uint(n-1-i))) & 1
		pos := start + i
		b[pos/8] |= bit << (7 - uint(pos%8))
	}
}

func zpad(v uint64, digits int) string {
	s := strconv.FormatUint(v, 10)
	if len(s) < digits {
		s = strings.Repeat("0", digits-len(s)) + s
	}
	return s
}

// uriEscape escapes the characters TDS Table A-1 requires to be
// percent-encoded in an EPC URI component.
func uriEscape(s string) string {
	if !strings.ContainsAny(s, "\"%&/<>?#") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte("\"%&/<>?#", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
