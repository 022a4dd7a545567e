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

// Member names must match a field exactly: encoding/json alone takes
// "sChemA" for "schema", and {"id":"a","ID":"b"} would be two ids.
func TestDecodeMemberCase(t *testing.T) {
	type inner struct {
		Lot string `json:"lot"`
	}
	type env struct {
		ID    string          `json:"id"`
		Lines []inner         `json:"lines"`
		Args  json.RawMessage `json:"args"`
		M     map[string]int  `json:"m"`
		Any   any             `json:"any"`
	}
	var v env
	ok := `{"id":"a","lines":[{"lot":"L"}],"args":{"Whatever":1},"m":{"X":1},"any":{"Q":2}}`
	if err := Decode([]byte(ok), &v, true); err != nil || v.ID != "a" || v.Lines[0].Lot != "L" {
		t.Fatalf("exact names: %v %+v", err, v)
	}
	for _, bad := range []string{`{"ID":"a"}`, `{"id":"a","ID":"b"}`, `{"lines":[{"LOT":"L"}]}`} {
		if err := Decode([]byte(bad), &v, false); !errors.Is(err, ErrMemberCase) {
			t.Errorf("Decode(%s) = %v, want ErrMemberCase", bad, err)
		}
	}
	if err := Decode([]byte(`{"lines":[{"qty":1}]}`), &v, true); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("unknown nested member: %v", err)
	}
	if err := Decode([]byte(`{"extra":1}`), &v, false); err != nil {
		t.Errorf("unknown member without knownOnly: %v", err)
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
