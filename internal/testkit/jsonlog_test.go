package testkit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestCheckJSONLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		dup  string // the key path named, "" when the line is fine
		bad  bool   // refused for another reason
	}{
		{line: `{"time":"2026-12-02T21:00:00Z","level":"INFO","msg":"reader up","reader":"r1","port":"/dev/x"}`},
		{line: `{"a":{"b":1,"c":[{"d":1},{"d":2}]},"e":[1,2,[3]]}`},
		{line: `{"msg":"reader up","reader":"r1","reader":"r1"}`, dup: `"reader"`},
		{line: `{"a":{"b":1,"b":2}}`, dup: `"a.b"`},
		{line: `{"a":[{"x":1},{"y":1,"y":2}]}`, dup: `"a[1].y"`},
		{line: `{"a":1,"A":2}`},
		{line: `[1,2]`, bad: true},
		{line: `{"a":1}{"b":2}`, bad: true},
		{line: `{"a":1`, bad: true},
		{line: `time=x level=INFO msg=hello`, bad: true},
	} {
		err := CheckJSONLine([]byte(tc.line))
		switch {
		case tc.dup != "":
			if !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), tc.dup) {
				t.Errorf("%s: got %v, want ErrDuplicateKey naming %s", tc.line, err, tc.dup)
			}
		case tc.bad:
			if err == nil || errors.Is(err, ErrDuplicateKey) {
				t.Errorf("%s: got %v, want a non-duplicate error", tc.line, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.line, err)
		}
	}
}

// errorTB records Errorf calls.
type errorTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (e *errorTB) Errorf(format string, args ...any) {
	e.mu.Lock()
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// The sink fails its test on a slog line with a key given twice (the way
// a .With chain repeats one), lets good lines and non-JSON lines through,
// and reassembles lines split across writes.
func TestStrictJSONLogCatchesWithChainDuplicates(t *testing.T) {
	tb := &errorTB{TB: t}
	sink := NewStrictJSONLog(tb)
	log := slog.New(slog.NewJSONHandler(sink, nil))
	log.With("part", "reader").Info("reader up", "reader", "r1")
	log.With("reader", "r1").Info("reader up", "reader", "r1")
	sink.Write([]byte("panic: not JSON\n{\"a\":"))
	sink.Write([]byte("1}\n"))
	if sink.Lines() != 3 {
		t.Errorf("checked %d JSON lines, want 3", sink.Lines())
	}
	if len(tb.errs) != 1 || !strings.Contains(tb.errs[0], `"reader"`) {
		t.Fatalf("errors %q, want exactly one naming \"reader\"", tb.errs)
	}
}
