// Package scan turns the bytes a barcode or RFID reader delivers into a typed
// Scan, or into a precise *Error saying what is wrong and where.
//
// It is pure: no I/O, no goroutines, no global mutable state. A *Decoder is
// immutable after NewDecoder and safe for concurrent use.
//
// # Inputs understood by Decoder.Decode
//
//   - An optional AIM symbology identifier ("]C1", "]d2", "]Q3", "]e0", "]E0",
//     ...). It is stripped from Data and recorded in Scan.AIM and
//     Scan.Symbology. An identifier whose code or modifier is unknown is a
//     KindBadSymbology error.
//   - GS1 element strings (FNC1 transmitted as GS, 0x1D), validated against
//     the whole Application Identifier table generated from the GS1 Barcode
//     Syntax Dictionary (ai_table_gen.go): component lengths, character sets
//     (N, CSET 82, CSET 39, CSET 64), the dictionary's content linters (check
//     digits, dates, country and currency codes, ...), and the message rules
//     (required partner AIs, forbidden pairs, an AI repeated with a different
//     value, and the AI 8030 digital-signature rule). A variable-length AI
//     that is not last must be followed by GS; a predefined-length AI may be
//     followed by a superfluous GS. A caret is illegal, and so is a GS right
//     after a GS1 symbology identifier (which already stands for FNC1).
//   - The human-readable form "(01)09506000134352(10)LOT42", validated the same
//     way (Form "human_readable").
//   - GS1 Digital Link URIs (any domain, any path prefix): primary key, key
//     qualifiers in the order the dictionary allows, data attributes in the
//     query string; non-numeric query parameters are ignored. Config.DigitalLink
//     chooses strict (the default: exactly as the GS1 Barcode Syntax Engine
//     judges them, so a URI starting http://, https://, HTTP:// or HTTPS://
//     that is not a valid Digital Link is an error) or lenient (four
//     documented relaxations, see Config.DigitalLink).
//   - EAN-13, EAN-8, UPC-A and ITF-14 (by AIM identifier, or as bare digit
//     strings, see below) yield a 14-digit GTIN after check digit
//     verification.
//   - Anything else is a plain scan; Config.PlainPatterns may pull a lot,
//     serial or GTIN out of legacy labels.
//
// Decoder.DecodeEPC takes an RFID EPC as hex and decodes SGTIN-96, SGTIN-198,
// SSCC-96, SGLN-96, GRAI-96 and GIAI-96 per the GS1 EPC Tag Data Standard.
//
// # Scans without an AIM identifier
//
// Config.NoAIM chooses how data without a symbology identifier is read. The
// default, "gs1", treats it as a GS1 element string when it starts with a
// known AI and parses and validates cleanly; otherwise (and always for a bare
// 8, 12 or 13 digit string with a valid check digit that is not a valid
// element string) it is read as EAN/UPC, human-readable, Digital Link or
// plain. When such data starts with a known AI but fails validation as an
// element string it is returned as a plain scan with a warning saying why,
// not as an error. (Human-readable text and Digital Link URIs are
// unambiguous, so their validation failures are errors in every mode.) With
// "plain", only the human-readable form and Digital Link are recognised and
// everything else is plain. Note that by this rule a bare 13-digit EAN whose
// digits also form a valid element string (e.g. one starting 400, "order
// number") is read as that element string; send AIM identifiers (]E0) to
// avoid the ambiguity.
//
// # Errors and warnings
//
// Every error returned is an *Error with a Kind callers can branch on.
// Config.Warn lists the content and message kinds (KindCheckDigit,
// KindBadDate, KindBadValue, KindBadCharset, KindBadPairing) that should be
// reported as warnings instead: the scan is then returned with Warnings set.
// Structural kinds (unknown AI, length, separator, symbology, URI, EPC) are
// always errors.
package scan

//go:generate go run ./internal/aigen/cmd/aigen -out ai_table_gen.go -codes-out codes_gen.go
