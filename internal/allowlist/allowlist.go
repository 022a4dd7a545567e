// Package allowlist keeps the door's list of lots in a bbolt file and
// answers the rules' look-ups from it.
//
// The list is versioned. An import writes a complete new version beside the
// active one and then switches the active pointer in one transaction, so a
// reader sees either the old list or the new one, never half of either; the
// old version is deleted in that same transaction. An import that fails
// (bad rows, I/O error, cancelled) leaves the active version in force.
package allowlist

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
)

var (
	bucketMeta  = []byte("meta")
	bucketLists = []byte("lists")
	keyActive   = []byte("active")
	keyUpdated  = []byte("updated")
	keyCount    = []byte("count")
	keyVersion  = []byte("version")
)

// ErrNoList is returned by look-ups when no list was ever imported.
var ErrNoList = errors.New("allowlist: no list imported yet")

// Store is the bbolt-backed allowlist. It is safe for concurrent use; look-ups
// run in read transactions and never block behind an import.
type Store struct {
	db       *bolt.DB
	path     string
	importMu sync.Mutex // one import at a time
}

// Open opens or creates the allowlist file at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening allowlist %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketMeta); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketLists)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising allowlist %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Info describes the active list.
type Info struct {
	Version string    `json:"version"`
	Lots    int       `json:"lots"`
	Updated time.Time `json:"updated"`
}

// Info returns the active version, its entry count and when it became active.
// Version is empty when no list was ever imported.
func (s *Store) Info() (Info, error) {
	var in Info
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		in.Version = string(m.Get(keyVersion))
		if b := m.Get(keyCount); b != nil {
			fmt.Sscan(string(b), &in.Lots)
		}
		if b := m.Get(keyUpdated); b != nil {
			in.Updated, _ = time.Parse(time.RFC3339Nano, string(b))
		}
		return nil
	})
	return in, err
}

func lotKey(gtin, lot string) []byte {
	k := make([]byte, 0, len(gtin)+1+len(lot))
	k = append(k, gtin...)
	k = append(k, 0)
	return append(k, lot...)
}

// active returns the active version's lots bucket, or ErrNoList.
func active(tx *bolt.Tx) (*bolt.Bucket, error) {
	v := tx.Bucket(bucketMeta).Get(keyActive)
	if v == nil {
		return nil, ErrNoList
	}
	b := tx.Bucket(bucketLists).Bucket(v)
	if b == nil {
		return nil, fmt.Errorf("allowlist: active version %q has no data", v)
	}
	return b, nil
}

// Product reports whether any lot of gtin is on the active list. It
// implements custody.List.
func (s *Store) Product(gtin string) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := active(tx)
		if err != nil {
			return err
		}
		prefix := append([]byte(gtin), 0)
		k, _ := b.Cursor().Seek(prefix)
		ok = k != nil && bytes.HasPrefix(k, prefix)
		return nil
	})
	if errors.Is(err, ErrNoList) {
		return false, nil
	}
	return ok, err
}

// Lot returns the active entry for gtin+lot. It implements custody.List.
func (s *Store) Lot(gtin, lot string) (custody.Lot, bool, error) {
	var l custody.Lot
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := active(tx)
		if err != nil {
			return err
		}
		v := b.Get(lotKey(gtin, lot))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &l)
	})
	if errors.Is(err, ErrNoList) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("looking up GTIN %s lot %q: %w", gtin, lot, err)
	}
	return l, ok, nil
}

// RowError is a bad row in an import, with its line number in the file.
type RowError struct {
	Line int
	Msg  string
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ImportError is returned when an import found bad rows; the active list was
// left as it was. Rows holds the first 100 problems, Bad counts all of them.
type ImportError struct {
	Rows []RowError
	Bad  int
}

func (e *ImportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "allowlist import: %d bad rows, list not changed", e.Bad)
	for _, r := range e.Rows {
		b.WriteString("\n  ")
		b.WriteString(r.Error())
	}
	if e.Bad > len(e.Rows) {
		fmt.Fprintf(&b, "\n  … and %d more", e.Bad-len(e.Rows))
	}
	return b.String()
}

// CSV columns. gtin, lot and status are required; the rest may be absent.
var csvColumns = []string{"gtin", "lot", "status", "expiry", "reason", "recall_id"}

// ImportCSV reads a CSV list (header row naming the columns gtin, lot, status,
// expiry, reason, recall_id in any order) and makes it the active version
// named version. It streams: rows are written in transactions of batch rows
// into the new version, which becomes visible only when every row was good.
// progress, when not nil, is called with the rows read so far.
func (s *Store) ImportCSV(ctx context.Context, r io.Reader, version string, progress func(rows int)) (Info, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return Info{}, fmt.Errorf("allowlist import: reading header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		col[h] = i
	}
	for _, need := range []string{"gtin", "lot", "status"} {
		if _, ok := col[need]; !ok {
			return Info{}, fmt.Errorf("allowlist import: header %q lacks column %q (columns: %s)", strings.Join(header, ","), need, strings.Join(csvColumns, ", "))
		}
	}
	field := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	next := func() (custody.Lot, int, error) {
		rec, err := cr.Read()
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return custody.Lot{}, pe.Line, RowError{Line: pe.Line, Msg: pe.Err.Error()}
			}
			return custody.Lot{}, line, err
		}
		l := custody.Lot{
			GTIN: field(rec, "gtin"), Lot: field(rec, "lot"), Status: custody.LotStatus(strings.ToLower(field(rec, "status"))),
			Expiry: field(rec, "expiry"), Reason: field(rec, "reason"), RecallID: field(rec, "recall_id"),
		}
		return l, line, nil
	}
	return s.importRows(ctx, version, next, progress)
}

const batchRows = 20000

func (s *Store) importRows(ctx context.Context, version string, next func() (custody.Lot, int, error), progress func(int)) (Info, error) {
	s.importMu.Lock()
	defer s.importMu.Unlock()
	if version == "" {
		version = time.Now().UTC().Format("20060102T150405.000Z")
	}
	// Each import writes into a bucket of its own; the active pointer names
	// the bucket, meta "version" the version.
	staging := []byte(fmt.Sprintf("v:%s:%d", version, time.Now().UnixNano()))
	cleanup := func() {
		s.db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketLists).Bucket(staging) != nil {
				return tx.Bucket(bucketLists).DeleteBucket(staging)
			}
			return nil
		})
	}
	s.dropStale()
	ierr := &ImportError{}
	rows, done := 0, false
	for !done {
		if err := ctx.Err(); err != nil {
			cleanup()
			return Info{}, fmt.Errorf("allowlist import cancelled after %d rows: %w", rows, err)
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.Bucket(bucketLists).CreateBucketIfNotExists(staging)
			if err != nil {
				return err
			}
			b.FillPercent = 0.9
			for n := 0; n < batchRows; n++ {
				l, line, err := next()
				if err == io.EOF {
					done = true
					return nil
				}
				var re RowError
				if errors.As(err, &re) {
					ierr.add(re)
					continue
				}
				if err != nil {
					return fmt.Errorf("reading row near line %d: %w", line, err)
				}
				rows++
				if msg := validate(&l); msg != "" {
					ierr.add(RowError{Line: line, Msg: msg})
					continue
				}
				if ierr.Bad > 0 {
					continue // keep validating, stop writing
				}
				v, _ := json.Marshal(l)
				if err := b.Put(lotKey(l.GTIN, l.Lot), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			cleanup()
			return Info{}, fmt.Errorf("allowlist import: %w", err)
		}
		if progress != nil {
			progress(rows)
		}
	}
	if ierr.Bad > 0 {
		cleanup()
		return Info{}, ierr
	}
	var info Info
	err := s.db.Update(func(tx *bolt.Tx) error {
		lists, meta := tx.Bucket(bucketLists), tx.Bucket(bucketMeta)
		st := lists.Bucket(staging)
		if st == nil {
			if st, _ = lists.CreateBucket(staging); st == nil {
				return errors.New("cannot create an empty list")
			}
		}
		old := meta.Get(keyActive)
		if old != nil && !bytes.Equal(old, staging) {
			if lists.Bucket(old) != nil {
				if err := lists.DeleteBucket(old); err != nil {
					return err
				}
			}
		}
		info = Info{Version: version, Lots: st.Stats().KeyN, Updated: time.Now().UTC()}
		for k, v := range map[string]string{string(keyActive): string(staging), string(keyVersion): version, string(keyCount): fmt.Sprint(info.Lots), string(keyUpdated): info.Updated.Format(time.RFC3339Nano)} {
			if err := meta.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		cleanup()
		return Info{}, fmt.Errorf("allowlist import: activating version %s: %w", version, err)
	}
	return info, nil
}

// dropStale deletes list buckets that are not active: what a crashed or
// killed import left behind.
func (s *Store) dropStale() {
	s.db.Update(func(tx *bolt.Tx) error {
		act := tx.Bucket(bucketMeta).Get(keyActive)
		lists := tx.Bucket(bucketLists)
		var stale [][]byte
		lists.ForEach(func(k, _ []byte) error {
			if !bytes.Equal(k, act) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range stale {
			lists.DeleteBucket(k)
		}
		return nil
	})
}

func (e *ImportError) add(r RowError) {
	e.Bad++
	if len(e.Rows) < 100 {
		e.Rows = append(e.Rows, r)
	}
}

// validate normalises and checks one row, returning what is wrong with it.
func validate(l *custody.Lot) string {
	g := l.GTIN
	switch len(g) {
	case 8, 12, 13:
		g = strings.Repeat("0", 14-len(g)) + g
	case 14:
	default:
		return fmt.Sprintf("gtin %q: want 8, 12, 13 or 14 digits", l.GTIN)
	}
	if !checkDigitOK(g) {
		return fmt.Sprintf("gtin %q: bad check digit", l.GTIN)
	}
	l.GTIN = g
	if l.Lot == "" || len(l.Lot) > 20 {
		return fmt.Sprintf("lot %q: want 1 to 20 characters (GS1 AI 10)", l.Lot)
	}
	if !l.Status.Valid() {
		return fmt.Sprintf("status %q: want released, quarantined, blocked or recalled", l.Status)
	}
	if l.Expiry != "" {
		if _, err := time.Parse("2006-01-02", l.Expiry); err != nil {
			return fmt.Sprintf("expiry %q: want YYYY-MM-DD", l.Expiry)
		}
	}
	return ""
}

// checkDigitOK verifies the GS1 mod-10 check digit of an all-digit key
// (GS1 General Specifications §7.9.1).
func checkDigitOK(s string) bool {
	sum := 0
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if (len(s)-1-i)%2 == 1 {
			d *= 3
		}
		sum += d
	}
	last := s[len(s)-1]
	return last >= '0' && last <= '9' && (10-sum%10)%10 == int(last-'0')
}

// Export writes the active list as CSV with the full header.
func (s *Store) Export(w io.Writer) (int, error) {
	cw := csv.NewWriter(w)
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := active(tx)
		if err != nil {
			return err
		}
		if err := cw.Write(csvColumns); err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			var l custody.Lot
			if err := json.Unmarshal(v, &l); err != nil {
				return err
			}
			n++
			return cw.Write([]string{l.GTIN, l.Lot, string(l.Status), l.Expiry, l.Reason, l.RecallID})
		})
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return n, err
}
