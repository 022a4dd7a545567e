// Package contracttest validates payloads against the contract's JSON
// Schemas, for tests. It is imported by tests only, so the JSON Schema
// library never reaches the station binary.
package contracttest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/dockd/dockd/uplink/contract"
)

var (
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Compile compiles a schema file of package contract with format
// assertions on (date-time, date, uri are checked, not just annotated).
// Results are cached; safe for concurrent use.
func Compile(file string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := compiled[file]; ok {
		return s, nil
	}
	base, frag, _ := strings.Cut(file, "#")
	b, err := contract.Schema(base)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing schema %s: %w", file, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := contract.SchemaURL(base)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("adding schema %s: %w", file, err)
	}
	if frag != "" {
		url += "#" + frag
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("compiling schema %s: %w", file, err)
	}
	compiled[file] = s
	return s, nil
}

// Validate reports whether payload is JSON that satisfies the schema file
// (or, with a fragment such as "command.schema.json#/$defs/args-set-direction",
// that sub-schema).
func Validate(file string, payload []byte) error {
	s, err := Compile(file)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("payload is not JSON: %w", err)
	}
	return s.Validate(v)
}

// Require fails t when payload does not satisfy the schema file.
func Require(t testing.TB, file string, payload []byte) {
	t.Helper()
	if err := Validate(file, payload); err != nil {
		t.Errorf("payload does not satisfy %s: %v\npayload: %s", file, err, payload)
	}
}
