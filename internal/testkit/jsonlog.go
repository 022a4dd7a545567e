package testkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// ErrDuplicateKey is wrapped by CheckJSONLine's error when one JSON object
// holds the same key twice (encoding/json would silently keep the last one;
// journald exporters, jq and most log stores disagree on which one wins).
var ErrDuplicateKey = errors.New("duplicate key in one JSON object")

// CheckJSONLine reports whether line is exactly one JSON object in which no
// object, at any depth, holds the same key twice. The error names the key by
// its path (e.g. "reader" or "err.detail").
func CheckJSONLine(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a JSON object: starts with %v", tok)
	}
	if err := checkObject(dec, ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("more than one JSON value on the line")
	}
	return nil
}

// checkObject reads the members of an object whose '{' was just read, up to
// and including its '}'.
func checkObject(dec *json.Decoder, path string) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading a key in %q: %w", path, err)
		}
		key := tok.(string) // inside an object the decoder yields only string keys here
		full := key
		if path != "" {
			full = path + "." + key
		}
		if seen[key] {
			return fmt.Errorf("%w: %q", ErrDuplicateKey, full)
		}
		seen[key] = true
		if err := checkValue(dec, full); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

// checkValue reads one value, descending into objects and arrays.
func checkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("reading the value of %q: %w", path, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return checkObject(dec, path)
	case '[':
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return fmt.Errorf("unexpected %v in %q", d, path)
}

// StrictJSONLog is an io.Writer for a slog.JSONHandler (or a child process's
// JSON log) that checks every complete line with CheckJSONLine and fails t
// with the offending line when one is not a single object with distinct
// keys. Lines that do not start with '{' (a Go panic, a race report) are let
// through: they fail their test in their own way. Safe for concurrent
// writers.
type StrictJSONLog struct {
	t       testing.TB
	mu      sync.Mutex
	partial []byte
	lines   int
}

// NewStrictJSONLog returns a StrictJSONLog that reports to t. At cleanup it
// also fails t when a last line was left without its newline.
func NewStrictJSONLog(t testing.TB) *StrictJSONLog {
	l := &StrictJSONLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.partial) > 0 {
			l.check(l.partial)
		}
	})
	return l
}

// Write checks each line completed by p.
func (l *StrictJSONLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.check(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// Lines returns how many JSON lines were checked.
func (l *StrictJSONLog) Lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines
}

func (l *StrictJSONLog) check(line []byte) {
	if !strings.HasPrefix(string(bytes.TrimSpace(line)), "{") {
		return
	}
	l.lines++
	if err := CheckJSONLine(line); err != nil {
		l.t.Errorf("log line breaks the one-object, distinct-keys rule: %v\n%s", err, line)
	}
}
