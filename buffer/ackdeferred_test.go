package buffer

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// durableMark is the delivered mark as the file has it.
func durableMark(q *Queue) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st.lastAck
}

// firstInFile is the oldest record still in the file (delivered or not).
func firstInFile(t *testing.T, q *Queue) uint64 {
	t.Helper()
	recs, err := q.Pending(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		return 0
	}
	return recs[0].Seq
}

// AckDeferred writes no commit of its own: the delivered mark rides with
// the next append's commit (then Stats counts the records delivered), or is
// written AckDelay after the last append; the records leave the file with
// a later commit, never above Retain, and at Close.
func TestAckDeferred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	var retain atomic.Uint64
	o := Options{AckDelay: 300 * time.Millisecond, Retain: retain.Load}
	q := openT(t, path, o)
	for i := 0; i < 5; i++ {
		appendT(t, q, payloadFor)
	}
	if err := q.AckDeferred(3); err != nil {
		t.Fatal(err)
	}
	// Counted delivered at once, though the mark is not written yet.
	if st := q.Stats(); st.LastAckSeq != 3 || st.Depth != 2 || st.OldestSeq != 4 || st.Bytes != int64(totalLen(4, 5)) {
		t.Fatalf("stats after AckDeferred(3): %+v", st)
	}
	if d := durableMark(q); d != 0 {
		t.Fatalf("AckDeferred(3) wrote its mark (%d) without an append or AckDelay", d)
	}
	appendT(t, q, payloadFor) // seq 6: its commit carries the mark
	if st := q.Stats(); st.Depth != 3 || st.LastAckSeq != 3 || st.OldestSeq != 4 || st.Bytes != int64(totalLen(4, 6)) {
		t.Fatalf("stats after the append that carried the mark: %+v", st)
	}
	if d := durableMark(q); d != 3 {
		t.Fatalf("after the append the durable mark is %d, want 3", d)
	}
	// Retain 0: nothing leaves the file, not with appends, not by the timer.
	time.Sleep(2 * o.AckDelay)
	if f := firstInFile(t, q); f != 1 {
		t.Fatalf("deleted above Retain (file starts at %d)", f)
	}
	// Retain catches up: the next append's commit deletes them.
	retain.Store(3)
	appendT(t, q, payloadFor) // seq 7
	if f := firstInFile(t, q); f != 4 {
		t.Fatalf("after an append with Retain 3 the file starts at %d, want 4", f)
	}
	// No append follows: the AckDelay timer writes the mark and deletes.
	retain.Store(100)
	if err := q.AckDeferred(5); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the AckDelay commit", func() bool { return firstInFile(t, q) == 6 && q.Stats().LastAckSeq == 5 })
	if err := q.AckDeferred(99); !errors.Is(err, ErrAckAhead) {
		t.Fatalf("AckDeferred beyond the newest: %v", err)
	}
	// Close writes what is still waiting; a reopen sees it durable.
	if err := q.AckDeferred(7); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, path, Options{})
	if st := q2.Stats(); st.LastAckSeq != 7 || st.Depth != 0 || st.NewestSeq != 7 {
		t.Fatalf("after Close and reopen: %+v", st)
	}
}

// AckBatch waiting records are deleted at once, without waiting for
// AckDelay or an append; a durable Ack after AckDeferred deletes at once.
func TestAckDeferredBatchAndDurableAck(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "q.db"), Options{AckDelay: time.Hour, AckBatch: 3})
	for i := 0; i < 10; i++ {
		appendT(t, q, payloadFor)
	}
	if err := q.AckDeferred(2); err != nil {
		t.Fatal(err)
	}
	if f, st := firstInFile(t, q), q.Stats(); f != 1 || durableMark(q) != 0 || st.LastAckSeq != 2 || st.Depth != 8 {
		t.Fatalf("2 records (< AckBatch) written at once: file starts at %d, durable mark %d, %+v", f, durableMark(q), st)
	}
	if err := q.AckDeferred(4); err != nil {
		t.Fatal(err)
	}
	if f, st := firstInFile(t, q), q.Stats(); f != 5 || st.LastAckSeq != 4 {
		t.Fatalf("4 waiting records (>= AckBatch 3): file starts at %d, want 5; %+v", f, st)
	}
	if err := q.AckDeferred(6); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(6); err != nil { // already delivered: now made durable
		t.Fatal(err)
	}
	if f := firstInFile(t, q); f != 7 {
		t.Fatalf("after a durable Ack(6) the file starts at %d, want 7", f)
	}
}

// The delivered mark rides with every commit: after a reopen, records
// marked delivered but kept for Retain are still in the file (Pending from
// 0 returns them, for the custody replay) while Stats counts them
// delivered, so the uplink does not send them again.
func TestDeliveredMarkSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q := openT(t, path, Options{Retain: func() uint64 { return 0 }})
	for i := 0; i < 5; i++ {
		appendT(t, q, payloadFor)
	}
	if err := q.AckDeferred(3); err != nil {
		t.Fatal(err)
	}
	appendT(t, q, payloadFor) // its commit carries the mark
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, path, Options{Retain: func() uint64 { return 0 }})
	st := q2.Stats()
	if st.LastAckSeq != 3 || st.Depth != 3 || st.OldestSeq != 4 || st.NewestSeq != 6 || st.Bytes != int64(totalLen(4, 6)) {
		t.Fatalf("after reopen: %+v", st)
	}
	if f := firstInFile(t, q2); f != 1 {
		t.Fatalf("retained records gone: file starts at %d", f)
	}
	if err := q2.Ack(6); err != nil {
		t.Fatal(err)
	}
	if f := firstInFile(t, q2); f != 0 {
		t.Fatalf("durable Ack(6) left records from %d", f)
	}
}

// Acknowledged records count as delivered at once, one AckDeferred after
// another, with no commit between: Stats follows every mark, a full budget
// frees for the next append (whose commit writes the mark first), and Close
// makes the last mark durable.
func TestAckDeferredCountsAtOnceAndFreesBudget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	size := int64(len(payloadFor(1)))
	q := openT(t, path, Options{AckDelay: time.Hour, MaxBytes: 8 * size})
	for i := 0; i < 8; i++ {
		appendT(t, q, payloadFor)
	}
	if _, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return payloadFor(s), nil }); !errors.Is(err, ErrFull) {
		t.Fatalf("append to a full queue: %v", err)
	}
	for _, seq := range []uint64{2, 4, 7} {
		if err := q.AckDeferred(seq); err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.LastAckSeq != seq || st.Depth != int(8-seq) || st.OldestSeq != seq+1 || st.Bytes != int64(totalLen(seq+1, 8)) {
			t.Fatalf("after AckDeferred(%d): %+v", seq, st)
		}
	}
	if d := durableMark(q); d != 0 {
		t.Fatalf("marks written without an append: %d", d)
	}
	seq := appendT(t, q, payloadFor) // fits: the mark went first
	if seq != 9 || durableMark(q) != 7 {
		t.Fatalf("append after the acks: seq %d, durable mark %d", seq, durableMark(q))
	}
	if err := q.AckDeferred(9); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, path, Options{})
	if st := q2.Stats(); st.LastAckSeq != 9 || st.Depth != 0 {
		t.Fatalf("after Close and reopen: %+v", st)
	}
}
