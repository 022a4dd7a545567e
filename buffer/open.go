package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// lockTimeout bounds how long Open waits for another process's file lock.
const lockTimeout = 2 * time.Second

// CorruptError reports a queue file that bbolt could not open or that
// failed a consistency check. The file was moved aside to MovedTo (its bytes
// unchanged) and nothing was created at Path; calling Open again starts a
// fresh, empty queue. MovedTo is empty if moving the file failed, in which
// case it is still at Path and Err says why it could not be moved.
type CorruptError struct {
	Path    string
	MovedTo string
	Err     error
}

func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("buffer: queue file %s is corrupt (left in place): %v", e.Path, e.Err)
	}
	return fmt.Sprintf("buffer: queue file %s is corrupt, moved to %s: %v", e.Path, e.MovedTo, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// corruption marks an error that means the file's bytes are bad, as opposed
// to an environmental failure (permissions, lock, memory) that must not
// cause the file to be moved aside.
type corruption struct{ err error }

func (c corruption) Error() string { return c.err.Error() }
func (c corruption) Unwrap() error { return c.err }

func corruptf(format string, a ...any) error { return corruption{fmt.Errorf(format, a...)} }

// protect runs f, turning panics and memory faults (bbolt reading a
// garbage page through its mmap) into a corruption error.
func protect(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = corruptf("reading the file panicked: %v", r)
		}
	}()
	return f()
}

// classifyOpenErr marks the bbolt open errors that mean bad bytes.
func classifyOpenErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %w", ErrLocked, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch),
		strings.Contains(err.Error(), "file size too small"):
		return corruption{err}
	}
	return err
}

func boltOptions(readOnly bool) *bolt.Options {
	return &bolt.Options{
		Timeout:  lockTimeout,
		ReadOnly: readOnly,
		// The freelist is rebuilt from the tree at open instead of being
		// written on every commit: one page less per fsync, and it can
		// never disagree with the tree after a crash. The map freelist
		// stays fast when many pages are freed by acks.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

// Open opens or creates the queue file at path and recomputes Stats from
// it. A file that bbolt cannot open, that is truncated, that fails bbolt's
// consistency check (tx.Check) or that does not hold a well-formed queue is
// moved aside to PATH.corrupt-<UTC time> and Open returns a *CorruptError
// naming both paths; it never replaces or repairs the file. Other failures
// (permissions, ErrLocked) leave the file untouched.
func Open(path string, o Options) (*Queue, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("component", "buffer")

	fi, err := os.Stat(path)
	existed := err == nil && fi.Size() > 0
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("buffer: opening %s: %w", path, err)
	}
	if existed {
		// Validate read-only first, in this goroutine with fault
		// protection: bbolt's read-write open walks the tree in a goroutine
		// of its own, where a garbage page would crash the process.
		if err := precheck(path); err != nil {
			return nil, failOpen(path, err, log)
		}
	}

	var db *bolt.DB
	err = protect(func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o600, boltOptions(false))
		return oerr
	})
	if err != nil {
		return nil, failOpen(path, classifyOpenErr(err), log)
	}
	if !existed {
		if err := syncDir(filepath.Dir(path)); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("buffer: syncing directory of new queue file %s: %w", path, err)
		}
	}

	if err := db.Update(func(tx *bolt.Tx) error {
		empty := true
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil }); err != nil {
			return err
		}
		if !empty {
			return nil
		}
		if _, err := tx.CreateBucket(bucketMeta); err != nil {
			return fmt.Errorf("creating bucket %s: %w", bucketMeta, err)
		}
		return nil
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("buffer: initialising %s: %w", path, err)
	}

	var st state
	var next uint64
	err = protect(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var serr error
			st, next, serr = scan(tx)
			if serr != nil {
				return serr
			}
			return checkTx(tx)
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, failOpen(path, err, log)
	}
	if fi, err := os.Stat(path); err == nil {
		st.fileBytes = fi.Size()
	}

	q := &Queue{
		path:     path,
		opts:     o,
		log:      log,
		db:       db,
		pageSize: db.Info().PageSize,
		reqs:     make(chan *request, maxGroup),
		notify:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		st:       st,
		nextSeq:  next,
	}
	go q.writer()
	log.Info("buffer opened", "path", path, "depth", st.depth, "bytes", st.bytes,
		"oldest_seq", st.oldestSeq, "next_seq", next, "last_ack_seq", st.lastAck, "file_bytes", st.fileBytes)
	return q, nil
}

// failOpen moves a corrupt file aside, or wraps any other error.
func failOpen(path string, err error, log *slog.Logger) error {
	var c corruption
	if !errors.As(err, &c) {
		return fmt.Errorf("buffer: opening %s: %w", path, err)
	}
	return quarantine(path, c.err, log)
}

// precheck opens the file read-only and validates it under fault protection.
func precheck(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var db *bolt.DB
	err = protect(func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o600, boltOptions(true))
		return oerr
	})
	if err != nil {
		return classifyOpenErr(err)
	}
	defer db.Close()
	return protect(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return corruptf("truncated: bbolt meta covers %d bytes, file has %d", tx.Size(), fi.Size())
			}
			_, _, err := scan(tx)
			return err
		})
	})
}

// checkTx runs bbolt's own consistency check, draining all its errors.
func checkTx(tx *bolt.Tx) error {
	var errs []error
	n := 0
	for err := range tx.Check() {
		n++
		if len(errs) < 5 {
			errs = append(errs, err)
		}
	}
	if n > 0 {
		return corruption{fmt.Errorf("bbolt consistency check found %d problems: %w", n, errors.Join(errs...))}
	}
	return nil
}

// scan validates the queue's buckets and recomputes its state. A file with
// no buckets at all (created but not yet initialised) is a valid empty queue.
func scan(tx *bolt.Tx) (state, uint64, error) {
	var st state
	next := uint64(1)
	var names []string
	hasMeta := false
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		switch {
		case bytes.Equal(name, bucketMeta):
			hasMeta = true
		case isRecordBucket(name):
		default:
			names = append(names, string(name))
		}
		return nil
	}); err != nil {
		return st, 0, corruption{err}
	}
	rbs := recordBuckets(tx, func(recordBucket) bool { return true })
	switch {
	case len(names) > 0:
		return st, 0, corruptf("not a queue file: buckets %q besides %q and records", names, bucketMeta)
	case !hasMeta && len(rbs) > 0:
		return st, 0, corruptf("not a queue file: records but no %q bucket", bucketMeta)
	case !hasMeta:
		return st, next, nil // created, not yet initialised
	}
	meta := tx.Bucket(bucketMeta)

	readU64 := func(key []byte) (uint64, bool, error) {
		v := meta.Get(key)
		if v == nil {
			return 0, false, nil
		}
		if len(v) != 8 {
			return 0, false, corruptf("meta %s: length %d, want 8", key, len(v))
		}
		return binary.BigEndian.Uint64(v), true, nil
	}
	storedNext, haveNext, err := readU64(keyNextSeq)
	if err != nil {
		return st, 0, err
	}
	if st.lastAck, _, err = readU64(keyLastAck); err != nil {
		return st, 0, err
	}
	st.fileAck = st.lastAck
	delivered, _, err := readU64(keyDelivered)
	if err != nil {
		return st, 0, err
	}
	ackAt, haveAckAt, err := readU64(keyLastAckAt)
	if err != nil {
		return st, 0, err
	}
	if haveAckAt {
		st.lastAckAt = time.Unix(0, int64(ackAt)).UTC()
	}

	var prev []byte
	var firstSeq uint64
	// Seeking relies on every segment's keys lying between its name and
	// the next segment's name.
	var prevLast []byte
	for _, rb := range rbs {
		first, _ := rb.b.Cursor().First()
		if rb.first != 0 && prevLast != nil && binary.BigEndian.Uint64(prevLast) >= rb.first {
			return st, 0, corruptf("record %d lies beyond the start of segment %d", binary.BigEndian.Uint64(prevLast), rb.first)
		}
		if last, _ := rb.b.Cursor().Last(); last != nil {
			prevLast = append(prevLast[:0], last...)
		}
		if rb.first == 0 {
			continue
		}
		if first != nil && binary.BigEndian.Uint64(first) < rb.first {
			return st, 0, corruptf("segment %d holds the older record %d", rb.first, binary.BigEndian.Uint64(first))
		}
		st.segFirst = rb.first // appends go on in the newest segment
	}
	c := newRecordCursor(tx)
	for k, v := c.first(); k != nil; k, v = c.next() {
		seq, at, p, err := decodeValue(k, v)
		if err != nil {
			return st, 0, corruption{err}
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return st, 0, corruptf("record keys out of order: %x after %x", k, prev)
		}
		if prev == nil {
			firstSeq = seq
		}
		prev = append(prev[:0], k...)
		if st.segFirst != 0 && seq >= st.segFirst {
			st.segBytes += elemOverhead + len(v)
		}
		if seq <= delivered {
			continue // delivered, kept in the file (Options.Retain)
		}
		if st.depth == 0 {
			st.oldestSeq, st.oldestAt = seq, at
		}
		st.depth++
		st.bytes += int64(len(p))
	}
	if prev != nil {
		newest := binary.BigEndian.Uint64(prev)
		if !haveNext || storedNext <= newest {
			return st, 0, corruptf("next sequence number %d is not above newest record %d", storedNext, newest)
		}
		if firstSeq <= st.fileAck {
			return st, 0, corruptf("record %d is at or below the last ack %d", firstSeq, st.fileAck)
		}
	}
	if haveNext {
		next = storedNext
	}
	if next <= st.lastAck || next <= delivered {
		return st, 0, corruptf("next sequence number %d is not above the last ack %d / delivered mark %d", next, st.lastAck, delivered)
	}
	st.lastAck = max(st.lastAck, delivered)
	st.newestSeq = next - 1
	return st, next, nil
}

// quarantine renames a corrupt file aside and returns the *CorruptError.
func quarantine(path string, cause error, log *slog.Logger) error {
	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	dst := path + ".corrupt-" + stamp
	for i := 2; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.corrupt-%s-%d", path, stamp, i)
	}
	if err := os.Rename(path, dst); err != nil {
		log.Error("buffer file corrupt and could not be moved aside", "path", path, "err", cause, "move_err", err)
		return &CorruptError{Path: path, Err: errors.Join(cause, fmt.Errorf("moving it aside to %s: %w", dst, err))}
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		log.Warn("buffer: syncing directory after moving corrupt file", "dir", filepath.Dir(path), "err", err)
	}
	log.Error("buffer file corrupt, moved aside", "path", path, "moved_to", dst, "err", cause)
	return &CorruptError{Path: path, MovedTo: dst, Err: cause}
}

// syncDir fsyncs a directory so a created or renamed entry is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
