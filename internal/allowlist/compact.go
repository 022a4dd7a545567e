package allowlist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Replacing a list writes the new version beside the old one and then frees
// the old one's pages. bbolt reuses free pages but never gives them back to
// the filesystem, so after a large replacement allowlist.db stays about
// twice its live size. Compaction copies the live data into a new file and
// puts it in place of the old one, while the station goes on deciding
// scans: look-ups read the old file during the copy and wait only for the
// swap (a rename and a pointer, no I/O). Writers wait for the copy: the
// custody flush simply runs late (the events stay in the event buffer), and
// a foreground write (an allowlist update, a shipment command) makes the
// copy give way; it is tried again later.

// DefaultCompactFree is how many free bytes allowlist.db must hold (and at
// least a third of the file) before CompactIfWorth rewrites it.
const DefaultCompactFree int64 = 8 << 20

// compactTxBytes bounds one commit of the copy: the memory a compaction
// holds in dirty pages.
const compactTxBytes = 16 << 20

// compactCheckKeys is how often (in keys) the copy checks for a reason to
// stop.
const compactCheckKeys = 4096

// ErrCompactYielded means a compaction stopped because a foreground write
// wanted the file (or its context ended); nothing changed, try later.
var ErrCompactYielded = errors.New("allowlist: compaction gave way to a write")

// WithCompactFree sets CompactIfWorth's threshold of free bytes (default
// DefaultCompactFree; negative: never compact on its own).
func WithCompactFree(n int64) Option { return func(o *options) { o.compactFree = n } }

// view runs a read transaction on the current file. It never waits for a
// compaction: a read that finds the old file closed by the swap (before
// fn ran) runs again on the new one.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	for {
		db := s.db.Load()
		err := db.View(fn)
		if errors.Is(err, berrors.ErrDatabaseNotOpen) && s.db.Load() != db {
			continue
		}
		return err
	}
}

// update runs a write transaction for a caller that should not wait behind
// a compaction's copy: a copy in progress gives way to it.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	s.waiters.Add(1)
	s.writeMu.Lock()
	s.waiters.Add(-1)
	defer s.writeMu.Unlock()
	return s.db.Load().Update(fn)
}

// updateBackground runs a write transaction that may wait for a
// compaction's copy to finish (the custody flush, trace pruning).
func (s *Store) updateBackground(fn func(*bolt.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Load().Update(fn)
}

// FileUse is how allowlist.db's bytes are used.
type FileUse struct {
	FileBytes int64 // the file's size
	FreeBytes int64 // not holding data: free pages bbolt keeps for reuse, and the file's tail past its last page
}

// Use reports the file's size and how much of it holds no data. Safe for
// concurrent use.
func (s *Store) Use() FileUse {
	var u FileUse
	if fi, err := os.Stat(s.path); err == nil {
		u.FileBytes = fi.Size()
	}
	u.FreeBytes = int64(s.db.Load().Stats().FreeAlloc) + max(u.FileBytes-s.fileSize(), 0)
	return u
}

// CompactIfWorth compacts the file when it holds at least the Store's
// compact threshold of free bytes and those are at least a third of the
// file (after a replacement of a large list). It reports whether it
// compacted, and the sizes before and after. It gives way to foreground
// writes and to ctx (ErrCompactYielded); it refuses with an error, changing
// nothing, when the file system has no room for the copy. Safe for
// concurrent use with everything but Close.
func (s *Store) CompactIfWorth(ctx context.Context) (done bool, before, after int64, err error) {
	u := s.Use()
	if s.opts.compactFree < 0 || u.FreeBytes < s.opts.compactFree || u.FreeBytes*3 < u.FileBytes {
		return false, u.FileBytes, u.FileBytes, nil
	}
	before, after, err = s.compact(ctx, true)
	return err == nil, before, after, err
}

// Compact rewrites allowlist.db to its live size and returns the file size
// before and after. Safe for concurrent use with everything but Close:
// look-ups go on during the copy, writers wait for it. On error the old
// file is kept and the Store stays usable.
func (s *Store) Compact() (before, after int64, err error) {
	return s.compact(context.Background(), false)
}

func (s *Store) compact(ctx context.Context, yield bool) (before, after int64, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	u := s.Use()
	before = u.FileBytes
	live := u.FileBytes - u.FreeBytes
	// The copy must leave the room kept for events, as staging does (bbolt
	// grows the copy ahead of its data by up to 16 MiB).
	l := s.opts.limits
	free, err := l.Free()
	if err != nil {
		return before, before, fmt.Errorf("compacting %s: checking free space: %w", s.path, err)
	}
	if need, reserve := live+live/8+16<<20, l.Reserve(); free-need < reserve {
		return before, before, fmt.Errorf("compacting %s: the copy needs up to %s, %s is free under %s and %s is kept for events",
			s.path, human(need), human(free), filepath.Dir(s.path), human(reserve))
	}
	tmp := s.path + ".compact"
	os.Remove(tmp)
	dst, err := openFile(tmp)
	if err != nil {
		return before, before, fmt.Errorf("compacting %s: creating %s: %w", s.path, tmp, err)
	}
	fail := func(err error) (int64, int64, error) {
		dst.Close()
		os.Remove(tmp)
		return before, before, err
	}
	stop := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrCompactYielded, err)
		}
		if s.onCompactCheck != nil {
			s.onCompactCheck()
		}
		if yield && s.waiters.Load() > 0 {
			return ErrCompactYielded
		}
		return nil
	}
	if err := copyDB(dst, s.db.Load(), stop); err != nil {
		return fail(fmt.Errorf("compacting %s: %w", s.path, err))
	}
	// copyDB's commits were fsync'd. The copy stays open and becomes the Store's file: no reopen that could
	// fail after the old file is gone. Look-ups go on reading the old file
	// (same data: no writer runs) until the pointer moves; Close waits for
	// those still reading it.
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(fmt.Errorf("compacting %s: %w", s.path, err))
	}
	syncDir(s.path)
	old := s.db.Swap(dst)
	if err := old.Close(); err != nil {
		// Its data is all in the new file; only the old handle is in doubt.
		return before, s.Use().FileBytes, fmt.Errorf("compacting %s: closing the old file: %w", s.path, err)
	}
	return before, s.Use().FileBytes, nil
}

// copyDB copies every bucket (with its sequence), key and value of src into
// the empty dst, in key order, committing dst every compactTxBytes. It calls
// stop every compactCheckKeys keys and returns its error, if any.
func copyDB(dst, src *bolt.DB, stop func() error) error {
	c := &copier{dst: dst, stop: stop}
	var err error
	if c.tx, err = dst.Begin(true); err != nil {
		return err
	}
	defer func() {
		if c.tx != nil {
			c.tx.Rollback()
		}
	}()
	// The destination's pages point into the source's map until they are
	// written: commit inside the read transaction.
	return src.View(func(stx *bolt.Tx) error {
		err := stx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return c.bucket([][]byte{name}, b)
		})
		if err != nil {
			return err
		}
		err = c.tx.Commit()
		c.tx = nil
		return err
	})
}

type copier struct {
	dst   *bolt.DB
	tx    *bolt.Tx
	stop  func() error
	bytes int
	keys  int
}

// open returns the bucket at path in the current destination transaction,
// creating it (and its parents) as needed.
func (c *copier) open(path [][]byte) (*bolt.Bucket, error) {
	b, err := c.tx.CreateBucketIfNotExists(path[0])
	for _, name := range path[1:] {
		if err != nil {
			break
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating bucket %q: %w", path, err)
	}
	// Keys arrive in order: fill pages (but leave room for the updates
	// the custody and list buckets take later).
	b.FillPercent = 0.9
	return b, nil
}

// bucket copies src, at path, and everything under it.
func (c *copier) bucket(path [][]byte, src *bolt.Bucket) error {
	dst, err := c.open(path)
	if err != nil {
		return err
	}
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	cur := src.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v == nil {
			sub := append(append([][]byte(nil), path...), k)
			if err := c.bucket(sub, src.Bucket(k)); err != nil {
				return err
			}
			// The nested copy may have committed: find this bucket again.
			if dst, err = c.open(path); err != nil {
				return err
			}
			continue
		}
		if err := dst.Put(k, v); err != nil {
			return fmt.Errorf("copying key %q of bucket %q: %w", k, path, err)
		}
		c.bytes += len(k) + len(v)
		if c.keys++; c.keys%compactCheckKeys == 0 {
			if err := c.stop(); err != nil {
				return err
			}
		}
		if c.bytes >= compactTxBytes {
			if err := c.tx.Commit(); err != nil {
				c.tx = nil
				return err
			}
			if c.tx, err = c.dst.Begin(true); err != nil {
				return err
			}
			c.bytes = 0
			if dst, err = c.open(path); err != nil {
				return err
			}
		}
	}
	return nil
}
