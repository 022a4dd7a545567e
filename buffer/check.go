package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt is wrapped by Check's error when the file is not a healthy
// queue: bbolt cannot open it, it is truncated, it fails bbolt's
// consistency check, or it does not hold a well-formed queue. Check never
// moves or changes the file; Open would move it aside.
var ErrCorrupt = errors.New("buffer: queue file is corrupt")

// CheckLockTimeout is how long Check waits for the file lock before it
// concludes that another process (the running station) holds the file.
const CheckLockTimeout = 500 * time.Millisecond

// Check inspects the queue file at path read-only, for health checks by a
// process other than the station: it never creates, repairs, moves or
// writes the file. It returns the queue's Stats as Open would compute them
// (Fill, Alarm and OverAge against o's MaxBytes, AlarmFraction and MaxAge;
// Full is always false, being a property of a live queue).
//
// Errors, for errors.Is: ErrLocked when another process holds the file
// open for writing (a running station: that is the healthy case, and its
// live Stats are the station's to report); ErrCorrupt when the file fails
// the same validation Open applies; fs.ErrNotExist when there is no file.
// Safe to call concurrently with anything but an Open of the same file in
// this process (bbolt's flock is per process).
func Check(path string, o Options) (Stats, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Stats{}, fmt.Errorf("buffer: checking %s: %w", path, err)
	}
	if fi.IsDir() {
		return Stats{}, fmt.Errorf("buffer: checking %s: is a directory: %w", path, fs.ErrInvalid)
	}
	if fi.Size() == 0 {
		// Created but never initialised: Open treats it as a new queue.
		return Stats{Path: path}, nil
	}
	opts := boltOptions(true)
	opts.Timeout = CheckLockTimeout
	var db *bolt.DB
	err = protect(func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o600, opts)
		return oerr
	})
	if err != nil {
		return Stats{}, checkErr(path, classifyOpenErr(err))
	}
	defer db.Close()

	var st state
	err = protect(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return corruptf("truncated: bbolt meta covers %d bytes, file has %d", tx.Size(), fi.Size())
			}
			var serr error
			if st, _, serr = scan(tx); serr != nil {
				return serr
			}
			return checkTx(tx)
		})
	})
	if err != nil {
		return Stats{}, checkErr(path, err)
	}
	s := Stats{
		Depth: st.depth, Bytes: st.bytes, OldestSeq: st.oldestSeq, NewestSeq: st.newestSeq,
		LastAckSeq: st.lastAck, OldestAt: st.oldestAt, LastAckAt: st.lastAckAt,
		Path: path, FileBytes: fi.Size(),
	}
	s.Fill = float64(s.Bytes) / float64(o.MaxBytes)
	s.Alarm = float64(s.Bytes) >= o.AlarmFraction*float64(o.MaxBytes)
	s.OverAge = o.MaxAge > 0 && s.Depth > 0 && time.Since(s.OldestAt) > o.MaxAge
	return s, nil
}

// checkErr wraps a Check failure: corruption as ErrCorrupt, the rest as is.
func checkErr(path string, err error) error {
	var c corruption
	if errors.As(err, &c) {
		return fmt.Errorf("buffer: checking %s: %w: %w", path, ErrCorrupt, c.err)
	}
	return fmt.Errorf("buffer: checking %s: %w", path, err)
}
