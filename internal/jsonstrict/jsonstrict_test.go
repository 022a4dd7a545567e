package jsonstrict

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		in   string
		want error
	}{
		{`{"id":"c18","x":1}`, nil},
		{` [1,{"a":[{"b":2}]},"x"] `, nil},
		{`{"id":"c18","id":"c19"}`, ErrDuplicateKey},
		{`{"a":{"b":1,"b":2}}`, ErrDuplicateKey},
		{`[{"a":1},{"a":1,"a":1}]`, ErrDuplicateKey},
		{`{"a":1}{"a":2}`, ErrTrailingData},
		{`{"a":1} x`, ErrTrailingData},
		{`{"a":1}]`, ErrTrailingData},
		{``, ErrSyntax},
		{`{"a":`, ErrSyntax},
		{"{\"a\":\"\xff\"}", ErrInvalidUTF8},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), ErrTooDeep},
		{strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), nil},
	}
	for _, c := range cases {
		err := Check([]byte(c.in))
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("Check(%.40q) = %v, want %v", c.in, err, c.want)
		}
	}
}

func TestDecodeKnownOnly(t *testing.T) {
	var v struct{ A int }
	if err := Decode([]byte(`{"A":1,"B":2}`), &v, true); err == nil {
		t.Fatal("unknown member accepted with knownOnly")
	}
	if err := Decode([]byte(`{"A":1,"B":2}`), &v, false); err != nil || v.A != 1 {
		t.Fatalf("got %v %+v", err, v)
	}
	if err := Decode([]byte(`{"A":1,"A":2}`), &v, false); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("duplicate: %v", err)
	}
}

// FuzzCheck: Check never panics, and what it accepts encoding/json accepts.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"a":2}`, `[[[]]]`, `"x"`, `{"a":{"b":[1,2,{"c":null}]}}`, `1 2`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) == nil && !json.Valid(b) {
			t.Fatalf("Check accepted what encoding/json rejects: %q", b)
		}
	})
}
