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
	"reflect"
	"strings"
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

// ErrMemberCase is wrapped when a member name matches a field only when
// case is ignored (encoding/json would accept "Schema" or "sChemA" for
// "schema", and {"id":…,"ID":…} would then be two ids, the last winning).
var ErrMemberCase = errors.New("member name differs from the field's only in case")

// ErrUnknownMember is wrapped by Decode with knownOnly for a member the
// target has no field for.
var ErrUnknownMember = errors.New("unknown member")

// Decode checks data with Check and then unmarshals it into v. Member
// names of objects decoded into structs must match a field's JSON name
// exactly (ErrMemberCase otherwise); with knownOnly a member v has no field
// for is an error too (ErrUnknownMember). Errors from the checks wrap the
// sentinels above; errors from unmarshalling are encoding/json's.
func Decode(data []byte, v any, knownOnly bool) error {
	if err := Check(data); err != nil {
		return err
	}
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := walkTyped(dec, t.Elem(), knownOnly, ""); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if knownOnly {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(v)
}

// rawMessage is the type whose contents are decoded later by its owner.
var rawMessage = reflect.TypeOf(json.RawMessage(nil))

// fieldNames maps the JSON names of struct t's fields to their types
// (embedded structs' fields included).
func fieldNames(t reflect.Type, out map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fieldNames(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}

// walkTyped reads one value from dec as type t and checks member names of
// objects that become structs. Syntax was checked before.
func walkTyped(dec *json.Decoder, t reflect.Type, knownOnly bool, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	// Types whose contents this walk does not follow: skip the value.
	skip := t == nil || t == rawMessage || t.Kind() == reflect.Interface ||
		(d == '{' && t.Kind() != reflect.Struct && t.Kind() != reflect.Map) ||
		(d == '[' && t.Kind() != reflect.Slice && t.Kind() != reflect.Array)
	if t != nil && (reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)) {
		skip = true
	}
	switch {
	case skip:
		for depth := 1; depth > 0; {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
			}
			if dl, ok := tok.(json.Delim); ok {
				if dl == '{' || dl == '[' {
					depth++
				} else {
					depth--
				}
			}
		}
		return nil
	case d == '[':
		for dec.More() {
			if err := walkTyped(dec, t.Elem(), knownOnly, path+"[]"); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
			}
			if err := walkTyped(dec, t.Elem(), knownOnly, path+".*"); err != nil {
				return err
			}
		}
	default: // a struct
		fields := map[string]reflect.Type{}
		fieldNames(t, fields)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
			}
			k, _ := kt.(string)
			ft, exact := fields[k]
			if !exact {
				for name := range fields {
					if strings.EqualFold(name, k) {
						return fmt.Errorf("jsonstrict: member %q%s: %w (want %q)", k, at(path), ErrMemberCase, name)
					}
				}
				if knownOnly {
					return fmt.Errorf("jsonstrict: member %q%s: %w", k, at(path), ErrUnknownMember)
				}
			}
			if err := walkTyped(dec, ft, knownOnly, path+"."+k); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("jsonstrict: %w: %v", ErrSyntax, err)
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(path, ".")
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
