package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Records live in segments: top-level buckets named "s" + the big-endian
// sequence number of the first record stored in them, each holding as many
// consecutive records as fit one bbolt page. Every key in a segment is at
// or above the segment's name and below the next segment's first key, so
// walking the segments in name order walks the records in sequence order.
//
// Why not one "records" bucket: the station keeps delivered records in the
// file until its custody checkpoint (Options.Retain), so a single bucket
// grows to a two-level tree and every lone append rewrites four pages
// (meta, root, branch, leaf). An append to a one-page segment rewrites
// three (meta, root, segment), and the first record of a new segment is
// small enough to live inline in the root page: two. Deleting delivered
// records drops whole segments, which writes only the root page.
//
// Files written before segments keep their records in the bucket
// "records"; they are read first (the name sorts before every segment and
// its keys are all older) and the bucket is dropped once they are all
// deleted. Nothing new is ever written to it.
const segPrefix = 's'

// legacyRecords is the single records bucket of the earlier file layout.
var legacyRecords = []byte("records")

// elemOverhead is what one key/value costs in a bbolt leaf page besides the
// value: the leaf element header (16 bytes) and the 8-byte key.
const elemOverhead = 16 + 8

// pageHeader is the size of bbolt's page header; a node stays on one page
// while its size, header included, is below the page size.
const pageHeader = 16

func segName(first uint64) []byte {
	var n [9]byte
	n[0] = segPrefix
	binary.BigEndian.PutUint64(n[1:], first)
	return n[:]
}

// segFirst returns the sequence number a segment's name carries and
// whether name is a segment name at all.
func segFirst(name []byte) (uint64, bool) {
	if len(name) != 9 || name[0] != segPrefix {
		return 0, false
	}
	return binary.BigEndian.Uint64(name[1:]), true
}

// isRecordBucket reports whether a top-level bucket name holds records.
func isRecordBucket(name []byte) bool {
	_, ok := segFirst(name)
	return ok || bytes.Equal(name, legacyRecords)
}

// recordCursor walks every record of a transaction in sequence order,
// across the legacy bucket and the segments. Keys and values are valid for
// the life of the transaction, as with a bolt.Cursor.
type recordCursor struct {
	tx   *bolt.Tx
	root *bolt.Cursor // over top-level bucket names
	name []byte       // current record bucket; nil when exhausted
	c    *bolt.Cursor // over the current record bucket
}

func newRecordCursor(tx *bolt.Tx) *recordCursor {
	return &recordCursor{tx: tx, root: tx.Cursor()}
}

// enter positions the cursor on the record bucket at root key name (or the
// first record bucket after it) and returns that bucket's first record,
// moving on past empty buckets.
func (rc *recordCursor) enter(name []byte) (k, v []byte) {
	for ; name != nil; name, _ = rc.root.Next() {
		if !isRecordBucket(name) {
			continue
		}
		b := rc.tx.Bucket(name)
		if b == nil {
			continue
		}
		rc.name, rc.c = name, b.Cursor()
		if k, v = rc.c.First(); k != nil {
			return k, v
		}
	}
	rc.name, rc.c = nil, nil
	return nil, nil
}

// first returns the oldest record in the file (nil key when there is none).
func (rc *recordCursor) first() (k, v []byte) {
	name, _ := rc.root.First()
	return rc.enter(name)
}

// seek returns the first record with sequence number >= seq.
func (rc *recordCursor) seek(seq uint64) (k, v []byte) {
	// Start in the last record bucket named at or below seq: every later
	// segment's keys are above seq. Before every segment that is the
	// legacy bucket (or, with none, whatever comes first).
	want := segName(seq)
	name, _ := rc.root.Seek(want)
	if !bytes.Equal(name, want) {
		if name == nil {
			name, _ = rc.root.Last()
		} else {
			name, _ = rc.root.Prev()
		}
		if name == nil || !isRecordBucket(name) {
			name, _ = rc.root.First()
		}
	}
	if k, v = rc.enter(name); k == nil {
		return nil, nil
	}
	key := seqKey(seq)
	if bytes.Compare(k, key) >= 0 {
		return k, v
	}
	if k, v = rc.c.Seek(key); k != nil {
		return k, v
	}
	return rc.nextBucket()
}

// next returns the record after the current one.
func (rc *recordCursor) next() (k, v []byte) {
	if rc.c == nil {
		return nil, nil
	}
	if k, v = rc.c.Next(); k != nil {
		return k, v
	}
	return rc.nextBucket()
}

func (rc *recordCursor) nextBucket() (k, v []byte) {
	// The root cursor still sits on the current bucket's name.
	name, _ := rc.root.Next()
	return rc.enter(name)
}

// recordBucket is one top-level bucket that holds records.
type recordBucket struct {
	name  []byte
	first uint64 // segment's name; 0 for the legacy bucket
	b     *bolt.Bucket
}

// recordBuckets lists the record buckets in walk order (the legacy bucket
// first, then segments by name); it stops early when keep returns false.
func recordBuckets(tx *bolt.Tx, keep func(recordBucket) bool) []recordBucket {
	var out []recordBucket
	c := tx.Cursor()
	for name, _ := c.First(); name != nil; name, _ = c.Next() {
		if !isRecordBucket(name) {
			continue
		}
		first, _ := segFirst(name)
		rb := recordBucket{name: append([]byte(nil), name...), first: first, b: tx.Bucket(name)}
		if rb.b == nil {
			continue
		}
		if !keep(rb) {
			break
		}
		out = append(out, rb)
	}
	return out
}

// putRecord stores one record, always in the newest segment (ns.segFirst),
// starting a new segment when the record would not fit its page.
func (q *Queue) putRecord(tx *bolt.Tx, ns *state, seq uint64, value []byte) error {
	cost := elemOverhead + len(value)
	var b *bolt.Bucket
	if ns.segFirst != 0 && pageHeader+ns.segBytes+cost < q.pageSize {
		b = tx.Bucket(segName(ns.segFirst))
	}
	if b == nil {
		var err error
		if b, err = tx.CreateBucket(segName(seq)); err != nil {
			return fmt.Errorf("starting segment %d: %w", seq, err)
		}
		ns.segFirst, ns.segBytes = seq, 0
	}
	if err := b.Put(seqKey(seq), value); err != nil {
		return err
	}
	ns.segBytes += cost
	return nil
}

// deleteUpTo deletes records <= target (all already marked delivered) from
// the file and advances ns.fileAck. Segments that hold only such records
// are dropped whole; in the one that straddles target the old keys go.
func (q *Queue) deleteUpTo(tx *bolt.Tx, ns *state, target uint64) error {
	var straddle *recordBucket
	whole := recordBuckets(tx, func(rb recordBucket) bool {
		last, _ := rb.b.Cursor().Last()
		if last == nil || binary.BigEndian.Uint64(last) <= target {
			return true
		}
		straddle = &rb
		return false
	})
	for _, rb := range whole {
		if err := tx.DeleteBucket(rb.name); err != nil {
			return fmt.Errorf("dropping delivered records bucket %q: %w", rb.name, err)
		}
		if rb.first != 0 && rb.first == ns.segFirst {
			ns.segFirst, ns.segBytes = 0, 0
		}
	}
	if straddle != nil {
		var keys [][]byte
		c := straddle.b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= target; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := straddle.b.Delete(k); err != nil {
				return fmt.Errorf("deleting record %d: %w", binary.BigEndian.Uint64(k), err)
			}
		}
	}
	ns.fileAck = target
	return nil
}
