// Package jsonstrict decodes JSON from untrusted senders strictly: one
// value, no trailing data, no object with the same member name twice (at
// any depth), bounded nesting, and optionally no member the target does not
// know. encoding/json alone accepts {"id":"a","id":"b"} (the last one
// wins), which lets two readers of one message disagree about what it
// says; every inbound MQTT parser of the station (commands, receipts,
// allowlist manifests, delta headers and rows) decodes through here.
//
// The package is pure: no I/O.
package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays accepted.
const MaxDepth = 32

// Sentinel errors, wrapped by the errors Check and Decode return.
var (
	ErrDuplicateKey = errors.New("duplicate member name")
	ErrTrailingData = errors.New("data after the JSON value")
	ErrTooDeep      = errors.New("JSON nested too deeply")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrSyntax       = errors.New("not valid JSON")
)

// Check reports whether data is exactly one JSON value (surrounding white
// space allowed) with no duplicate member names in any object and at most
// MaxDepth levels of nesting. The error names the first offending member
// and its byte offset. It never panics, whatever data holds.
func Check(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("jsonstrict: %w", ErrInvalidUTF8)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walk(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("jsonstrict: at byte %d: %w", dec.InputOffset(), ErrTrailingData)
	}
	return nil
}

// walk reads one value from dec, checking objects for repeated names.
func walk(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("jsonstrict: empty input: %w", ErrSyntax)
		}
		return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if depth >= MaxDepth {
		return fmt.Errorf("jsonstrict: at byte %d: %w (more than %d levels)", dec.InputOffset(), ErrTooDeep, MaxDepth)
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
			}
			k, _ := kt.(string)
			if seen[k] {
				return fmt.Errorf("jsonstrict: member %q at byte %d: %w", k, dec.InputOffset(), ErrDuplicateKey)
			}
			seen[k] = true
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
	}
	return nil
}

// Decode checks data with Check and then unmarshals it into v. With
// knownOnly, a member v has no field for is an error too (as
// json.Decoder.DisallowUnknownFields). Errors from Check wrap the
// sentinels above; errors from unmarshalling are encoding/json's.
func Decode(data []byte, v any, knownOnly bool) error {
	if err := Check(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if knownOnly {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(v)
}
