package scan

import (
	"fmt"
	"strconv"
	"time"
)

// Form is how the data in a scan was written.
type Form string

// The forms a Scan can have.
const (
	FormElementString Form = "element_string" // GS1 element string (FNC1/GS separated)
	FormDigitalLink   Form = "digital_link"   // GS1 Digital Link URI
	FormHumanReadable Form = "human_readable" // "(01)...(10)..." text
	FormEPC           Form = "epc"            // RFID EPC binary
	FormPlain         Form = "plain"          // anything else, incl. EAN/UPC
)

// AI is one GS1 Application Identifier and its value.
type AI struct {
	AI, Value string
}

// EPC is the decoded identity of an RFID tag.
type EPC struct {
	Scheme    string // "sgtin-96", "sgtin-198", "sscc-96", "sgln-96", "grai-96", "giai-96"
	Filter    int    // filter value, 0..7
	Partition int    // partition value, 0..6
	URI       string // pure-identity URI, e.g. "urn:epc:id:sgtin:0614141.812345.6789"
	Hex       string // the EPC hex as given, trimmed of surrounding space and upper-cased
}

// Scan is one decoded read. Its string fields share memory with nothing the
// caller owns; a Scan is safe to read from several goroutines once returned.
type Scan struct {
	Input     string // exactly the bytes given
	AIM       string // the AIM symbology identifier, e.g. "]C1", or ""
	Symbology string // e.g. "GS1-128", "GS1 DataMatrix", "EAN-13", "QR", or "" when unknown
	Form      Form
	Data      string // payload after the symbology identifier
	AIs       []AI   // in scan order (Digital Link: path, then query)
	EPC       *EPC
	Warnings  []string

	gtin, lot, serial string // from EAN/UPC/ITF-14 or a plain pattern
	refYear           int    // year used to resolve two-digit years
}

// Get returns the value of the first occurrence of ai.
func (s *Scan) Get(ai string) (string, bool) {
	for _, a := range s.AIs {
		if a.AI == ai {
			return a.Value, true
		}
	}
	return "", false
}

// GTIN returns the 14-digit GTIN: AI 01, an SGTIN tag, an EAN/UPC/ITF-14
// symbol or a plain pattern's gtin group; "" when there is none.
func (s *Scan) GTIN() string {
	if v, ok := s.Get("01"); ok {
		return v
	}
	return s.gtin
}

// Lot returns AI 10 or a plain pattern's lot group; "" when there is none.
func (s *Scan) Lot() string {
	if v, ok := s.Get("10"); ok {
		return v
	}
	return s.lot
}

// Serial returns AI 21 (also set from SGTIN tags) or a plain pattern's
// serial group; "" when there is none.
func (s *Scan) Serial() string {
	if v, ok := s.Get("21"); ok {
		return v
	}
	return s.serial
}

// SSCC returns the 18-digit SSCC from AI 00 or an SSCC tag; "" when none.
func (s *Scan) SSCC() string {
	v, _ := s.Get("00")
	return v
}

// Expiry returns AI 17 (use by / expiry). A day of 00 means the last day of
// the month and is resolved to it. The century follows GS1 General
// Specifications 7.12 relative to the year of decoding.
func (s *Scan) Expiry() (y int, m time.Month, d int, ok bool) { return s.date("17") }

// BestBefore returns AI 15 like Expiry.
func (s *Scan) BestBefore() (y int, m time.Month, d int, ok bool) { return s.date("15") }

// ProductionDate returns AI 11 like Expiry.
func (s *Scan) ProductionDate() (y int, m time.Month, d int, ok bool) { return s.date("11") }

func (s *Scan) date(ai string) (int, time.Month, int, bool) {
	v, ok := s.Get(ai)
	if !ok || len(v) < 6 {
		return 0, 0, 0, false
	}
	yy, ok1 := atoi2(v[0:2])
	mm, ok2 := atoi2(v[2:4])
	dd, ok3 := atoi2(v[4:6])
	if !ok1 || !ok2 || !ok3 || mm < 1 || mm > 12 {
		return 0, 0, 0, false
	}
	ref := s.refYear
	if ref == 0 {
		ref = time.Now().Year()
	}
	y := fullYear(yy, ref)
	if dd == 0 {
		dd = daysIn(y, time.Month(mm))
	}
	if dd > daysIn(y, time.Month(mm)) {
		return 0, 0, 0, false
	}
	return y, time.Month(mm), dd, true
}

// fullYear resolves a two-digit year per GS1 General Specifications 7.12:
// from 49 years before to 50 years after the reference year.
func fullYear(yy, ref int) int {
	century := ref / 100 * 100
	diff := yy - ref%100
	switch {
	case diff >= 51:
		return century - 100 + yy
	case diff <= -50:
		return century + 100 + yy
	default:
		return century + yy
	}
}

// Count returns AI 30 (variable count) or else AI 37 (count of trade items).
func (s *Scan) Count() (int, bool) {
	for _, ai := range []string{"30", "37"} {
		if v, ok := s.Get(ai); ok {
			n, err := strconv.Atoi(v)
			return n, err == nil
		}
	}
	return 0, false
}

// Measure returns the value of the first AI whose first three digits are
// prefix (e.g. "310" net weight in kg) with the implied decimal point (the
// fourth digit) applied, and the full AI it came from.
func (s *Scan) Measure(prefix string) (value float64, ai string, ok bool) {
	if len(prefix) != 3 {
		return 0, "", false
	}
	for _, a := range s.AIs {
		if len(a.AI) == 4 && a.AI[:3] == prefix && len(a.Value) == 6 {
			n, err := strconv.Atoi(a.Value)
			if err != nil {
				return 0, "", false
			}
			f := float64(n)
			for i := byte('0'); i < a.AI[3]; i++ {
				f /= 10
			}
			return f, a.AI, true
		}
	}
	return 0, "", false
}

// NetWeightKg returns AI 310n (net weight, kilograms).
func (s *Scan) NetWeightKg() (float64, bool) { v, _, ok := s.Measure("310"); return v, ok }

// NetWeightLb returns AI 320n (net weight, pounds).
func (s *Scan) NetWeightLb() (float64, bool) { v, _, ok := s.Measure("320"); return v, ok }

// GrossWeightKg returns AI 330n (logistic gross weight, kilograms).
func (s *Scan) GrossWeightKg() (float64, bool) { v, _, ok := s.Measure("330"); return v, ok }

// Kind classifies a decode error; callers branch on it.
type Kind string

// The error kinds.
const (
	KindCheckDigit       Kind = "check_digit"       // a GS1 mod-10 check digit or alphanumeric check pair is wrong
	KindUnknownAI        Kind = "unknown_ai"        // no such Application Identifier
	KindBadDate          Kind = "bad_date"          // a date or time field is not a real date/time
	KindBadLength        Kind = "bad_length"        // a value is too short or too long
	KindBadCharset       Kind = "bad_charset"       // a character outside the AI's character set (incl. '^')
	KindMissingSeparator Kind = "missing_separator" // a variable-length AI not at the end lacks its GS
	KindBadPairing       Kind = "bad_pairing"       // req= / ex= violated, or an AI repeated with another value
	KindBadValue         Kind = "bad_value"         // a content rule other than the above (country code, currency, ...)
	KindBadSymbology     Kind = "bad_symbology"     // unknown AIM identifier, or data impossible for the symbology
	KindBadURI           Kind = "bad_uri"           // a malformed Digital Link URI
	KindBadEPC           Kind = "bad_epc"           // malformed EPC hex, unprogrammed tag, value out of range
	KindBadEPCHeader     Kind = "bad_epc_header"    // unknown or unsupported EPC header
	KindBadPartition     Kind = "bad_partition"     // invalid EPC partition value
)

// Error is the only error type Decode and DecodeEPC return.
type Error struct {
	Kind   Kind
	AI     string // the AI concerned, when there is one
	Offset int    // byte offset into Scan.Input (EPC: hex digit offset)
	Msg    string
}

// Error implements error.
func (e *Error) Error() string {
	if e.AI != "" {
		return fmt.Sprintf("scan: %s at offset %d (AI %s): %s", e.Kind, e.Offset, e.AI, e.Msg)
	}
	return fmt.Sprintf("scan: %s at offset %d: %s", e.Kind, e.Offset, e.Msg)
}

func atoi2(s string) (int, bool) {
	if len(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

func daysIn(y int, m time.Month) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
