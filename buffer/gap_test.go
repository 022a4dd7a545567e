package buffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dockd/dockd/internal/testkit"
)

// gapPayload is the gap record the tests' GapRecord builds.
func gapPayload(seq, from, to uint64, reason string) ([]byte, error) {
	return json.Marshal(map[string]any{"kind": "gap", "seq": seq, "from": from, "to": to, "reason": reason})
}

// gapChild appends 5 records, limits the file size (RLIMIT_FSIZE) so that
// commits fail, appends until 3 appends have failed, and then (recover)
// lifts the limit and appends 5 more, or (!recover) exits while still
// limited. It prints "A seq" per stored record and "B seq" for each
// sequence number handed to the build of a failed append.
func gapChild(path string, recover bool) {
	signal.Ignore(syscall.SIGXFSZ)
	q, err := Open(path, Options{Logger: quietLogger(), GapRecord: gapPayload})
	if err != nil {
		die("open: %v", err)
	}
	appendOne := func() error {
		var handed uint64
		seq, err := q.Append(context.Background(), func(s uint64) ([]byte, error) {
			handed = s
			return []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, s, strings.Repeat("g", 3000))), nil
		})
		if err != nil {
			if !errors.Is(err, ErrCommit) {
				die("append failed without ErrCommit: %v", err)
			}
			say("B %d", handed)
			return err
		}
		say("A %d", seq)
		return nil
	}
	for i := 0; i < 5; i++ {
		if err := appendOne(); err != nil {
			die("append before limit: %v", err)
		}
	}
	limit, restore := capFileSize(path)
	failures := 0
	for i := 0; i < 2000 && failures < 3; i++ {
		if appendOne() != nil {
			failures++
		}
	}
	if failures < 3 {
		die("only %d appends failed with the file limited to %d bytes", failures, limit)
	}
	if !recover {
		os.Exit(0) // no Close: the process ends before any successful commit
	}
	restore()
	for i := 0; i < 5; i++ {
		if err := appendOne(); err != nil {
			die("append after raising the limit: %v", err)
		}
	}
	if err := q.Close(); err != nil {
		die("close: %v", err)
	}
}

func runGapChild(t *testing.T, mode, path string) (stored, failed []uint64) {
	t.Helper()
	cmd := testkit.SelfCommand("-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envPath+"="+path)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s child failed: %v\n%s", mode, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if len(f) != 2 || err != nil {
			t.Fatalf("bad child line %q", line)
		}
		switch f[0] {
		case "A":
			stored = append(stored, n)
		case "B":
			failed = append(failed, n)
		}
	}
	return stored, failed
}

// TestSeqGapDeclaredAfterFailedCommit: commits that really fail (file size
// limit) skip sequence numbers; the next successful commit stores one gap
// record naming exactly the skipped run, so every number up to the newest
// is either a stored record or inside a declared gap, and survives a
// reopen.
func TestSeqGapDeclaredAfterFailedCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	stored, failed := runGapChild(t, "gap", path)
	if len(failed) < 3 {
		t.Fatalf("child reported %d failed appends, want >= 3", len(failed))
	}
	q := openT(t, path, Options{})
	recs := pendingAll(t, q)
	covered := map[uint64]string{}
	gaps := 0
	for _, r := range recs {
		covered[r.Seq] = "record"
		var g struct {
			Kind     string
			Seq      uint64
			From, To uint64
			Reason   string
		}
		if json.Unmarshal(r.Payload, &g) == nil && g.Kind == "gap" {
			gaps++
			if g.Seq != r.Seq || g.From == 0 || g.To < g.From || g.To >= r.Seq || !strings.Contains(g.Reason, "commit failed") {
				t.Fatalf("gap record %d: %s", r.Seq, r.Payload)
			}
			for s := g.From; s <= g.To; s++ {
				if covered[s] != "" {
					t.Fatalf("seq %d both %s and inside gap %s", s, covered[s], r.Payload)
				}
				covered[s] = "gap"
			}
			// Exactly the numbers the failed appends were handed.
			if g.From != failed[0] || g.To != failed[len(failed)-1] {
				t.Fatalf("gap %d..%d, failed appends were handed %v", g.From, g.To, failed)
			}
		}
	}
	if gaps != 1 {
		t.Fatalf("%d gap records, want 1 (consecutive failures widen one run)", gaps)
	}
	newest := q.Stats().NewestSeq
	for s := uint64(1); s <= newest; s++ {
		if covered[s] == "" {
			t.Fatalf("seq %d is neither stored nor declared skipped (newest %d)", s, newest)
		}
	}
	for _, s := range stored {
		if covered[s] != "record" {
			t.Fatalf("append %d reported stored but is %q", s, covered[s])
		}
	}
	t.Logf("%d stored, skipped %v declared by one gap record", len(stored), failed)
}

// TestSeqGapNothingOwedAfterDeathBeforeSuccess: a process that dies before
// any successful commit never wrote the skipped numbers, so the reopened
// queue hands them out again and no gap exists.
func TestSeqGapNothingOwedAfterDeathBeforeSuccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	stored, failed := runGapChild(t, "gap-die", path)
	q := openT(t, path, Options{GapRecord: gapPayload})
	if st := q.Stats(); st.NewestSeq != stored[len(stored)-1] || st.Depth != len(stored) {
		t.Fatalf("after reopen: %+v, stored %v", st, stored)
	}
	seq, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return []byte(`{"x":1}`), nil })
	if err != nil {
		t.Fatal(err)
	}
	if seq != failed[0] {
		t.Fatalf("first append after reopen got seq %d, want the never-stored %d", seq, failed[0])
	}
	for _, r := range pendingAll(t, q) {
		if strings.Contains(string(r.Payload), `"gap"`) {
			t.Fatalf("gap record %s after a restart that owed none", r.Payload)
		}
	}
}
