// Package epcistest checks EPCIS documents and events against GS1's EPCIS
// 2.0 JSON Schema and the CBV 2.0 vocabularies kept in
// internal/epcis/testdata, for tests. It is imported by tests only, so the
// JSON Schema library never reaches the station binary; it reads the files
// from the source tree.
package epcistest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Dir is the directory holding the GS1 files (internal/epcis/testdata).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// SchemaURL is the $id of GS1's EPCIS 2.0 JSON Schema.
const SchemaURL = "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"

var (
	once   sync.Once
	schema *jsonschema.Schema
	vocab  map[string]map[string]bool
	errLd  error
)

// Vocabulary file of each CBV 2.0 vocabulary the station uses.
var vocabFiles = map[string]string{
	"bizStep":        "cbv-context-bizstep.jsonld",
	"disposition":    "cbv-context-disposition.jsonld",
	"bizTransaction": "cbv-context-biztransaction-type.jsonld",
	"sourceDest":     "cbv-context-sourcedest-type.jsonld",
}

func load() {
	b, err := os.ReadFile(filepath.Join(Dir(), "EPCIS-JSON-Schema.json"))
	if err != nil {
		errLd = err
		return
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		errLd = fmt.Errorf("parsing the EPCIS schema: %w", err)
		return
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseRegexpEngine(compileRegexp)
	if err := c.AddResource(SchemaURL, doc); err != nil {
		errLd = err
		return
	}
	if schema, err = c.Compile(SchemaURL); err != nil {
		errLd = fmt.Errorf("compiling the EPCIS schema: %w", err)
		return
	}
	vocab = map[string]map[string]bool{}
	for name, file := range vocabFiles {
		terms, err := Terms(file)
		if err != nil {
			errLd = err
			return
		}
		vocab[name] = map[string]bool{}
		for _, t := range terms {
			vocab[name][t] = true
		}
	}
}

// compileRegexp compiles a schema pattern. JSON Schema patterns are
// ECMA-262 regular expressions; Go's RE2 lacks lookahead, which the EPCIS
// schema uses in exactly one form: a whole pattern "^(?!(X))", meaning "does
// not start with X". That form is evaluated as the negation of ^(?:X);
// every other pattern goes to RE2 (and fails to compile if RE2 cannot take it).
func compileRegexp(pat string) (jsonschema.Regexp, error) {
	if inner, ok := strings.CutPrefix(pat, "^(?!"); ok && strings.HasSuffix(inner, ")") {
		inner = strings.TrimSuffix(inner, ")")
		re, err := regexp.Compile("^(?:" + inner + ")")
		if err != nil {
			return nil, err
		}
		return notStart{pat: pat, re: re}, nil
	}
	return regexp.Compile(pat)
}

// notStart matches strings that do not start with a match of re.
type notStart struct {
	pat string
	re  *regexp.Regexp
}

func (n notStart) String() string            { return n.pat }
func (n notStart) MatchString(s string) bool { return !n.re.MatchString(s) }

// Terms returns the bare terms a CBV JSON-LD context file defines
// (e.g. "receiving"), sorted.
func Terms(file string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(Dir(), file))
	if err != nil {
		return nil, err
	}
	var ctx struct {
		Context map[string]any `json:"@context"`
	}
	if err := json.Unmarshal(b, &ctx); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", file, err)
	}
	var out []string
	for k, v := range ctx.Context {
		if s, ok := v.(string); ok && !strings.HasPrefix(k, "@") && strings.HasPrefix(s, "cbv:") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Validate reports whether b is JSON valid against the EPCIS 2.0 schema
// (a document, a query document or a single event with @context) and
// whether every bizStep, disposition, bizTransaction type and
// source/destination type in it that is a bare name is a CBV 2.0 term.
func Validate(b []byte) error {
	once.Do(load)
	if errLd != nil {
		return errLd
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := schema.Validate(v); err != nil {
		return fmt.Errorf("EPCIS 2.0 schema: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	var events []any
	switch m["type"] {
	case "EPCISDocument":
		events, _ = dig(m, "epcisBody", "eventList").([]any)
	case "EPCISQueryDocument":
		events, _ = dig(m, "epcisBody", "queryResults", "resultsBody", "eventList").([]any)
	default:
		events = []any{m}
	}
	for i, e := range events {
		ev, _ := e.(map[string]any)
		if err := cbv(ev); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	return nil
}

func cbv(ev map[string]any) error {
	check := func(vocabName, field string, v any) error {
		s, _ := v.(string)
		if v == nil || strings.Contains(s, ":") { // absent, or a URI the schema checked
			return nil
		}
		if !vocab[vocabName][s] {
			return fmt.Errorf("%s %q is not a CBV 2.0 term (%s)", field, s, vocabFiles[vocabName])
		}
		return nil
	}
	if err := check("bizStep", "bizStep", ev["bizStep"]); err != nil {
		return err
	}
	if err := check("disposition", "disposition", ev["disposition"]); err != nil {
		return err
	}
	for _, l := range []struct{ list, vocab string }{{"bizTransactionList", "bizTransaction"}, {"sourceList", "sourceDest"}, {"destinationList", "sourceDest"}} {
		items, _ := ev[l.list].([]any)
		for _, it := range items {
			o, _ := it.(map[string]any)
			if err := check(l.vocab, l.list+" type", o["type"]); err != nil {
				return err
			}
		}
	}
	return nil
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}

// Require fails t when b does not pass Validate.
func Require(t testing.TB, b []byte) {
	t.Helper()
	if err := Validate(b); err != nil {
		t.Errorf("EPCIS payload invalid: %v\npayload: %s", err, b)
	}
}
