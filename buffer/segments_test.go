package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sizedPayload is a payload of n bytes that names its sequence number.
func sizedPayload(seq uint64, n int) []byte {
	p := fmt.Appendf(nil, "R%d.", seq)
	if n <= len(p) {
		return p
	}
	return append(p, bytes.Repeat([]byte{'.'}, n-len(p))...)
}

// fileRecords walks the file's records front to back with first/next,
// the cursor path Pending's seek does not take.
func fileRecords(t *testing.T, q *Queue) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := q.db.View(func(tx *bolt.Tx) error {
		c := newRecordCursor(tx)
		for k, _ := c.first(); k != nil; k, _ = c.next() {
			seqs = append(seqs, binary.BigEndian.Uint64(k))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// checkSeeks compares Pending(after) for every after around the file's
// records with what a front-to-back walk of the file says it must return.
func checkSeeks(t *testing.T, q *Queue, want map[uint64][]byte) {
	t.Helper()
	in := fileRecords(t, q)
	for i := 1; i < len(in); i++ {
		if in[i] <= in[i-1] {
			t.Fatalf("file walk out of order: %d after %d", in[i], in[i-1])
		}
	}
	newest := q.Stats().NewestSeq
	for after := uint64(0); after <= newest+1; after++ {
		recs, err := q.Pending(after, 3)
		if err != nil {
			t.Fatalf("Pending(%d): %v", after, err)
		}
		var exp []uint64
		for _, s := range in {
			if s > after && len(exp) < 3 {
				exp = append(exp, s)
			}
		}
		if len(recs) != len(exp) {
			t.Fatalf("Pending(%d) returned %d records, the file walk says %v", after, len(recs), exp)
		}
		for i, r := range recs {
			if r.Seq != exp[i] {
				t.Fatalf("Pending(%d)[%d] = %d, want %d", after, i, r.Seq, exp[i])
			}
			if w, ok := want[r.Seq]; ok && !bytes.Equal(r.Payload, w) {
				t.Fatalf("record %d: payload %q, want %q", r.Seq, r.Payload, w)
			}
		}
	}
}

// Records of every size (a few bytes to several pages), acked durably and
// lazily, held back by Retain, across reopens: Pending finds every record
// above any point, in order, with its bytes; nothing delivered and deleted
// comes back; the segments never hold a deleted record.
func TestSegmentsRandomWorkload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	var retain atomic.Uint64
	opts := Options{Retain: retain.Load, AckBatch: 7}
	q := openT(t, path, opts)
	rng := rand.New(rand.NewPCG(13, 7))
	want := map[uint64][]byte{}
	var lastAck uint64
	for step := 0; step < 400; step++ {
		switch op := rng.IntN(10); {
		case op < 6: // a group of appends
			n := 1 + rng.IntN(12)
			builds := make([]func(uint64) ([]byte, error), n)
			sizes := make([]int, n)
			for i := range builds {
				size := []int{3, 40, 430, 1500, 5000, 9000}[rng.IntN(6)]
				sizes[i] = size
				builds[i] = func(s uint64) ([]byte, error) { return sizedPayload(s, size), nil }
			}
			seqs, errs := q.AppendBatch(context.Background(), builds)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("step %d: append: %v", step, err)
				}
				want[seqs[i]] = sizedPayload(seqs[i], sizes[i])
			}
		case op < 8: // an ack, lazy or durable, somewhere up to the newest
			newest := q.Stats().NewestSeq
			if newest <= lastAck {
				continue
			}
			to := lastAck + 1 + uint64(rng.IntN(int(newest-lastAck)))
			var err error
			if rng.IntN(2) == 0 {
				err = q.Ack(to)
			} else {
				err = q.AckDeferred(to)
			}
			if err != nil {
				t.Fatalf("step %d: ack %d: %v", step, to, err)
			}
			lastAck = to
		case op < 9:
			retain.Store(lastAck - uint64(rng.IntN(int(lastAck)+1)))
		default:
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q = openT(t, path, opts)
			if got := q.Stats().LastAckSeq; got > lastAck {
				t.Fatalf("step %d: reopened with delivered mark %d above the last ack %d", step, got, lastAck)
			}
		}
		if step%20 == 0 {
			checkSeeks(t, q, want)
		}
		// Nothing at or below what the file says it deleted is still there.
		q.mu.Lock()
		fileAck := q.st.fileAck
		q.mu.Unlock()
		if in := fileRecords(t, q); len(in) > 0 && in[0] <= fileAck {
			t.Fatalf("step %d: record %d still in the file, deleted up to %d", step, in[0], fileAck)
		}
	}
	// Every record above the last ack is there, whole and in order.
	recs, err := q.Pending(lastAck, 0)
	if err != nil {
		t.Fatal(err)
	}
	next := lastAck + 1
	for _, r := range recs {
		if r.Seq != next {
			t.Fatalf("record %d missing (next is %d)", next, r.Seq)
		}
		if !bytes.HasPrefix(r.Payload, fmt.Appendf(nil, "R%d.", r.Seq)) {
			t.Fatalf("record %d carries %q", r.Seq, r.Payload[:min(20, len(r.Payload))])
		}
		next++
	}
	if next != q.Stats().NewestSeq+1 {
		t.Fatalf("records end at %d, newest is %d", next-1, q.Stats().NewestSeq)
	}
	checkSeeks(t, q, want)
}

// A file written before segments (all records in one "records" bucket)
// opens with its records, takes new ones in segments after them, and loses
// the old bucket once everything in it was delivered.
func TestLegacyRecordsBucketRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rawBolt(t, path, func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		r, err := tx.CreateBucket(legacyRecords)
		if err != nil {
			return err
		}
		for seq := uint64(11); seq <= 60; seq++ { // 1..10 were acked
			if err := r.Put(seqKey(seq), encodeValue(time.Unix(int64(seq), 0), sizedPayload(seq, 430))); err != nil {
				return err
			}
		}
		for k, v := range map[string]uint64{string(keyNextSeq): 61, string(keyLastAck): 10, string(keyDelivered): 10} {
			if err := m.Put([]byte(k), u64(v)); err != nil {
				return err
			}
		}
		return nil
	})
	q := openT(t, path, Options{})
	if st := q.Stats(); st.Depth != 50 || st.OldestSeq != 11 || st.NewestSeq != 60 {
		t.Fatalf("old file opened as depth %d, oldest %d, newest %d; want 50, 11, 60", st.Depth, st.OldestSeq, st.NewestSeq)
	}
	for i := 0; i < 20; i++ {
		if seq := appendT(t, q, func(s uint64) []byte { return sizedPayload(s, 430) }); seq != uint64(61+i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
	}
	checkSeeks(t, q, nil)
	if got := pendingAll(t, q); len(got) != 70 || got[0].Seq != 11 || got[69].Seq != 80 {
		t.Fatalf("Pending: %d records", len(got))
	}
	if err := q.Ack(40); err != nil { // inside the old bucket
		t.Fatal(err)
	}
	checkSeeks(t, q, nil)
	if err := q.Ack(65); err != nil { // past it
		t.Fatal(err)
	}
	checkSeeks(t, q, nil)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	rawView(t, path, func(tx *bolt.Tx) {
		if tx.Bucket(legacyRecords) != nil {
			t.Error("the old records bucket is still there after everything in it was acked")
		}
	})
	q = openT(t, path, Options{})
	if got := pendingAll(t, q); len(got) != 15 || got[0].Seq != 66 {
		t.Fatalf("after reopen: %d records from %d, want 15 from 66", len(got), got[0].Seq)
	}
}

// Lone appends at the station's size, with hundreds of delivered records
// kept for the custody checkpoint, write at most two pages each besides
// bbolt's meta page: the root page and the record's one-page segment (the
// first record of a segment lives inline in the root). One bucket for all
// records wrote three: the root, a branch and a leaf.
func TestLoneAppendPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q := openT(t, path, Options{Retain: func() uint64 { return 0 }})
	station := func(s uint64) []byte { return sizedPayload(s, 430) }
	for i := 0; i < 300; i++ {
		seq := appendT(t, q, station)
		if err := q.AckDeferred(seq); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	before := q.db.Stats().TxStats
	for i := 0; i < n; i++ {
		seq := appendT(t, q, station)
		if err := q.AckDeferred(seq); err != nil {
			t.Fatal(err)
		}
	}
	after := q.db.Stats().TxStats
	pages := float64(after.GetPageAlloc()-before.GetPageAlloc()) / float64(q.pageSize) / n
	writes := float64(after.GetWrite()-before.GetWrite()) / n
	t.Logf("per lone append: %.2f pages allocated, %.2f page writes (meta included)", pages, writes)
	if pages > 2 {
		t.Errorf("a lone append wrote %.2f pages besides the meta page, want at most 2", pages)
	}
	if got := len(fileRecords(t, q)); got != 400 {
		t.Fatalf("%d records in the file, want all 400 (Retain holds them)", got)
	}
}

func rawView(t *testing.T, path string, fn func(tx *bolt.Tx)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error { fn(tx); return nil })
}
