package buffer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openT(t testing.TB, path string, o Options) *Queue {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	q, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func payloadFor(seq uint64) []byte { return []byte(fmt.Sprintf(`{"seq":%d}`, seq)) }

func appendT(t testing.TB, q *Queue, payload func(uint64) []byte) uint64 {
	t.Helper()
	seq, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return payload(s), nil })
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func pendingAll(t testing.TB, q *Queue) []Record {
	t.Helper()
	var all []Record
	var after uint64
	for {
		recs, err := q.Pending(after, 100)
		if err != nil {
			t.Fatalf("Pending(%d): %v", after, err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOrderAndSeqAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 50; want++ {
		if got := appendT(t, q, payloadFor); got != want {
			t.Fatalf("seq = %d, want %d", got, want)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openT(t, path, Options{})
	st := q.Stats()
	if st.Depth != 50 || st.OldestSeq != 1 || st.NewestSeq != 50 || st.Bytes != int64(totalLen(1, 50)) {
		t.Fatalf("stats after reopen = %+v", st)
	}
	if st.OldestAt.IsZero() || st.FileBytes == 0 || st.Path != path {
		t.Fatalf("stats after reopen lack time/file: %+v", st)
	}
	recs := pendingAll(t, q)
	if len(recs) != 50 {
		t.Fatalf("Pending returned %d records, want 50", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Payload, payloadFor(r.Seq)) {
			t.Fatalf("record %d = seq %d payload %q", i, r.Seq, r.Payload)
		}
		if i > 0 && r.At.Before(recs[i-1].At) {
			t.Fatalf("record %d time %v before previous %v", r.Seq, r.At, recs[i-1].At)
		}
	}
	if got := appendT(t, q, payloadFor); got != 51 {
		t.Fatalf("first seq after reopen = %d, want 51", got)
	}
	recs, err = q.Pending(48, 2)
	if err != nil || len(recs) != 2 || recs[0].Seq != 49 || recs[1].Seq != 50 {
		t.Fatalf("Pending(48,2) = %v, %v", recs, err)
	}
}

func totalLen(from, to uint64) int {
	n := 0
	for s := from; s <= to; s++ {
		n += len(payloadFor(s))
	}
	return n
}

func TestSeqNeverReusedAfterAckAllAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		appendT(t, q, payloadFor)
	}
	if err := q.Ack(10); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	st := q.Stats()
	if st.Depth != 0 || st.Bytes != 0 || st.LastAckSeq != 10 || st.NewestSeq != 10 || st.OldestSeq != 0 || st.LastAckAt.IsZero() {
		t.Fatalf("stats after ack-all and reopen = %+v", st)
	}
	if got := appendT(t, q, payloadFor); got != 11 {
		t.Fatalf("seq after ack-all and reopen = %d, want 11", got)
	}
}

func TestConcurrentAppendsExactlyOnce(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	const workers, each = 32, 100
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				seq, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return []byte(body), nil })
				if err != nil {
					errs <- err
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := pendingAll(t, q)
	if len(recs) != workers*each {
		t.Fatalf("%d records stored, want %d", len(recs), workers*each)
	}
	bySeq := map[uint64]string{}
	seen := map[string]bool{}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: want gapless 1..n", i, r.Seq)
		}
		if seen[string(r.Payload)] {
			t.Fatalf("payload %s stored twice", r.Payload)
		}
		seen[string(r.Payload)] = true
		bySeq[r.Seq] = string(r.Payload)
	}
	for w := range seqs {
		for i, s := range seqs[w] {
			if want := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i); bySeq[s] != want {
				t.Fatalf("seq %d holds %q, want %q", s, bySeq[s], want)
			}
			if i > 0 && s <= seqs[w][i-1] {
				t.Fatalf("worker %d got seq %d after %d", w, s, seqs[w][i-1])
			}
		}
	}
	if c := q.commits.Load(); c >= workers*each {
		t.Logf("note: %d commits for %d appends (no batching observed)", c, workers*each)
	}
}

// holdWriter starts an Append whose build blocks until release is closed,
// so that requests sent meanwhile queue up for the next group.
func holdWriter(t *testing.T, q *Queue) (release func(), result <-chan error) {
	t.Helper()
	gate := make(chan struct{})
	entered := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := q.Append(context.Background(), func(s uint64) ([]byte, error) {
			close(entered)
			<-gate
			return payloadFor(s), nil
		})
		res <- err
	}()
	<-entered
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }, res
}

func TestGroupCommitAndBuildFailureIsolation(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	before := q.commits.Load()
	release, firstRes := holdWriter(t, q)
	t.Cleanup(release)

	type outcome struct {
		i   int
		seq uint64
		err error
	}
	const n = 40
	outs := make(chan outcome, n)
	buildErr := errors.New("cannot encode")
	for i := 0; i < n; i++ {
		go func() {
			seq, err := q.Append(context.Background(), func(s uint64) ([]byte, error) {
				switch i {
				case 7:
					return nil, buildErr
				case 13:
					panic("boom")
				}
				return payloadFor(s), nil
			})
			outs <- outcome{i, seq, err}
		}()
	}
	waitFor(t, "appends to queue behind the held commit", func() bool { return len(q.reqs) == n })
	release()
	if err := <-firstRes; err != nil {
		t.Fatalf("held append: %v", err)
	}
	var okSeqs []uint64
	for k := 0; k < n; k++ {
		o := <-outs
		switch o.i {
		case 7:
			if !errors.Is(o.err, buildErr) {
				t.Fatalf("append with failing build: err = %v, want %v", o.err, buildErr)
			}
		case 13:
			if o.err == nil || !strings.Contains(o.err.Error(), "panicked") {
				t.Fatalf("append with panicking build: err = %v", o.err)
			}
		default:
			if o.err != nil {
				t.Fatalf("append %d: %v", o.i, o.err)
			}
			okSeqs = append(okSeqs, o.seq)
		}
	}
	if got := q.commits.Load() - before; got != 2 {
		t.Fatalf("%d commits for the held append and %d queued appends, want 2 (one group)", got, n)
	}
	recs := pendingAll(t, q)
	if len(recs) != 1+len(okSeqs) {
		t.Fatalf("%d records stored, want %d", len(recs), 1+len(okSeqs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("seqs not gapless after build failures: record %d has seq %d", i, r.Seq)
		}
		if i > 1 && !r.At.Equal(recs[1].At) {
			t.Fatalf("records of one group have different times: %v vs %v", r.At, recs[1].At)
		}
	}
}

func TestAckSemantics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q := openT(t, path, Options{})
	for i := 0; i < 10; i++ {
		appendT(t, q, payloadFor)
	}
	steps := []struct {
		ack       uint64
		wantErr   error
		depth     int
		oldest    uint64
		lastAck   uint64
		firstSeen uint64 // first seq Pending(0) returns; 0 when empty
	}{
		{ack: 3, depth: 7, oldest: 4, lastAck: 3, firstSeen: 4},
		{ack: 2, depth: 7, oldest: 4, lastAck: 3, firstSeen: 4}, // older: no-op
		{ack: 3, depth: 7, oldest: 4, lastAck: 3, firstSeen: 4}, // same again: no-op
		{ack: 11, wantErr: ErrAckAhead, depth: 7, oldest: 4, lastAck: 3, firstSeen: 4},
		{ack: 9, depth: 1, oldest: 10, lastAck: 9, firstSeen: 10},
		{ack: 10, depth: 0, oldest: 0, lastAck: 10},
	}
	for _, s := range steps {
		err := q.Ack(s.ack)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("Ack(%d) = %v, want %v", s.ack, err, s.wantErr)
		}
		st := q.Stats()
		if st.Depth != s.depth || st.OldestSeq != s.oldest || st.LastAckSeq != s.lastAck {
			t.Fatalf("after Ack(%d): depth %d oldest %d lastAck %d, want %d %d %d",
				s.ack, st.Depth, st.OldestSeq, st.LastAckSeq, s.depth, s.oldest, s.lastAck)
		}
		if st.Bytes != int64(totalLen(s.lastAck+1, 10)) {
			t.Fatalf("after Ack(%d): bytes %d, want %d", s.ack, st.Bytes, totalLen(s.lastAck+1, 10))
		}
		recs, err := q.Pending(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != s.depth || (len(recs) > 0 && recs[0].Seq != s.firstSeen) {
			t.Fatalf("after Ack(%d): Pending = %d records starting %v", s.ack, len(recs), recs)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, path, Options{})
	if st := q2.Stats(); st.LastAckSeq != 10 || st.Depth != 0 {
		t.Fatalf("ack not durable: %+v", st)
	}
}

func TestFullAlarmAndRecovery(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxBytes: 1000, AlarmFraction: 0.5})
	p100 := func(uint64) []byte { return bytes.Repeat([]byte("x"), 100) }
	checks := []struct {
		appends     int
		wantErr     error
		alarm, full bool
	}{
		{appends: 4, alarm: false},
		{appends: 1, alarm: true},             // 500 >= 0.5*1000
		{appends: 5, alarm: true, full: true}, // exactly at the budget: accepted, now full
		{appends: 1, wantErr: ErrFull, alarm: true, full: true},
	}
	for i, c := range checks {
		for k := 0; k < c.appends; k++ {
			_, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return p100(s), nil })
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("step %d append %d: err = %v, want %v", i, k, err, c.wantErr)
			}
		}
		st := q.Stats()
		if st.Alarm != c.alarm || st.Full != c.full {
			t.Fatalf("step %d: alarm %v full %v, want %v %v (%+v)", i, st.Alarm, st.Full, c.alarm, c.full, st)
		}
	}
	st := q.Stats()
	if st.Depth != 10 || st.Bytes != 1000 || st.Fill != 1 {
		t.Fatalf("at budget: %+v", st)
	}
	if err := q.Ack(5); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Full || st.Bytes != 500 {
		t.Fatalf("after ack: %+v", st)
	}
	// A record larger than what is free is refused, a smaller one fits.
	if _, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return make([]byte, 501), nil }); !errors.Is(err, ErrFull) {
		t.Fatalf("501-byte record with 500 free: err = %v, want ErrFull", err)
	}
	seq, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return make([]byte, 500), nil })
	if err != nil || seq != 11 {
		t.Fatalf("500-byte record with 500 free: seq %d err %v, want 11 <nil>", seq, err)
	}
}

func TestOverAge(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxAge: 20 * time.Millisecond})
	if q.Stats().OverAge {
		t.Fatal("empty queue over age")
	}
	appendT(t, q, payloadFor)
	waitFor(t, "OverAge", func() bool { return q.Stats().OverAge })
	if err := q.Ack(1); err != nil {
		t.Fatal(err)
	}
	if q.Stats().OverAge {
		t.Fatal("OverAge after everything was acked")
	}
}

func TestNotify(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	select {
	case <-q.Notify():
		t.Fatal("notified before any append")
	default:
	}
	for i := 0; i < 3; i++ {
		appendT(t, q, payloadFor)
	}
	select {
	case <-q.Notify():
	default:
		t.Fatal("no notification after appends")
	}
	select {
	case <-q.Notify():
		t.Fatal("notifications not coalesced")
	default:
	}
	if err := q.Ack(3); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.Notify():
		t.Fatal("notified on ack")
	default:
	}
}

func TestCloseWaitsForInflightAndRefusesAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	release, res := holdWriter(t, q)
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	waitFor(t, "Close to start", func() bool {
		q.life.RLock()
		defer q.life.RUnlock()
		return q.closed
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an append was in flight", err)
	default:
	}
	release()
	if err := <-res; err != nil {
		t.Fatalf("in-flight append: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return payloadFor(s), nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := q.Pending(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pending after Close: %v", err)
	}
	if err := q.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	q2 := openT(t, path, Options{})
	if recs := pendingAll(t, q2); len(recs) != 1 || recs[0].Seq != 1 {
		t.Fatalf("in-flight append not stored: %v", recs)
	}
}

func TestAppendCanceledContext(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	_, err := q.Append(ctx, func(uint64) ([]byte, error) { called = true; return []byte("x"), nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("Append with canceled ctx: err %v, build called %v", err, called)
	}
	if q.Stats().Depth != 0 {
		t.Fatal("record stored despite canceled context")
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	openT(t, path, Options{})
	_, err := Open(path, Options{Logger: quietLogger()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		t.Fatal("a locked file was treated as corrupt")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{{MaxBytes: -1}, {AlarmFraction: 1.5}, {AlarmFraction: -0.1}, {MaxAge: -time.Second}} {
		if _, err := Open(filepath.Join(t.TempDir(), "q.db"), o); err == nil {
			t.Fatalf("Open accepted %+v", o)
		}
	}
}

func TestExportImport(t *testing.T) {
	src := openT(t, filepath.Join(t.TempDir(), "src.db"), Options{})
	payloads := [][]byte{
		[]byte(`{"schema":"dockd.custody-event/1","seq":1,"raw":"<GS>01"}`),
		[]byte("{\"spaced\": true,\n \"x\": 1}"), // valid JSON, not compact: must survive byte for byte
		{0x00, 0xff, 0x1d, '\n'},                 // binary
		{},                                       // empty
		[]byte(`"a JSON string"`),
		[]byte(`null`),
		[]byte(`{"html":"<&>"}`),
	}
	for _, p := range payloads {
		appendT(t, src, func(uint64) []byte { return p })
	}
	if err := src.Ack(1); err != nil { // acked records are not exported
		t.Fatal(err)
	}
	var out bytes.Buffer
	var lastDone, lastTotal int
	if err := src.Export(&out, func(d, tot int) { lastDone, lastTotal = d, tot }); err != nil {
		t.Fatal(err)
	}
	if lastDone != 6 || lastTotal != 6 {
		t.Fatalf("export progress = %d/%d, want 6/6", lastDone, lastTotal)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("export has %d lines, want 6:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d not JSON: %v: %s", i, err, l)
		}
		if string(m["seq"]) != fmt.Sprint(i+2) {
			t.Fatalf("line %d seq = %s", i, m["seq"])
		}
	}
	if !strings.Contains(lines[0], `"encoding":"base64"`) {
		t.Fatalf("non-compact JSON exported raw: %s", lines[0])
	}
	if !strings.HasSuffix(lines[5], `"payload":{"html":"<&>"}}`) {
		t.Fatalf("compact JSON not exported verbatim: %s", lines[5])
	}

	dst := openT(t, filepath.Join(t.TempDir(), "dst.db"), Options{})
	appendT(t, dst, payloadFor) // dst already has a record of its own
	var prog int
	n, err := dst.Import(bytes.NewReader(out.Bytes()), func(d int) { prog = d })
	if err != nil || n != 6 || prog != 6 {
		t.Fatalf("Import = %d, %v (progress %d), want 6", n, err, prog)
	}
	recs := pendingAll(t, dst)
	if len(recs) != 7 {
		t.Fatalf("dst has %d records, want 7", len(recs))
	}
	for i, r := range recs[1:] {
		if r.Seq != uint64(i+2) {
			t.Fatalf("imported record %d got seq %d, want %d", i, r.Seq, i+2)
		}
		if !bytes.Equal(r.Payload, payloads[i+1]) {
			t.Fatalf("imported payload %d = %q, want %q", i, r.Payload, payloads[i+1])
		}
	}
}

func TestImportStopsAtBadLine(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	in := `{"seq":1,"at":"2024-01-01T00:00:00Z","payload":{"a":1}}
{"seq":2,"at":"2024-01-01T00:00:00Z","encoding":"base64","payload":"AAE="}

{"seq":3,"at":"2024-01-01T00:00:00Z","encoding":"rot13","payload":"x"}
{"seq":4,"at":"2024-01-01T00:00:00Z","payload":{"never":1}}
`
	n, err := q.Import(strings.NewReader(in), nil)
	if err == nil || !strings.Contains(err.Error(), "line 3") || n != 2 {
		t.Fatalf("Import = %d, %v; want 2 and an error naming line 3", n, err)
	}
	recs := pendingAll(t, q)
	if len(recs) != 2 || string(recs[0].Payload) != `{"a":1}` || !bytes.Equal(recs[1].Payload, []byte{0, 1}) {
		t.Fatalf("stored after bad import: %v", recs)
	}
}
