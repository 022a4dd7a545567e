// Package allowlist keeps the door's list — products, lots with their
// batches, serials, pallets (SSCC) and expected shipments — in a bbolt
// file, answers the rules' look-ups from it, and keeps the station's own
// custody state and a trace of what crossed the door.
//
// # Versions
//
// The list is versioned. An import (file or MQTT snapshot) writes a
// complete new version beside the active one and then switches the active
// pointer in one transaction, so a reader sees either the old list or the
// new one, never half of either; the old version is deleted in that same
// transaction. A delta is applied to the active version in one transaction.
// An import or delta that fails (bad rows, bad signature, I/O error,
// cancelled) leaves the active version in force.
//
// # Custody state
//
// Record applies the custody change of a durable event to an in-memory
// overlay at once (no disk write on the light path), so a serial received
// twice is caught on the next scan even offline. Run persists the overlay
// to bbolt in batches, with a checkpoint (the highest event seq persisted);
// see Checkpoint for the crash story.
package allowlist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

var (
	bucketMeta     = []byte("meta")
	bucketLists    = []byte("lists")
	bucketCustody  = []byte("custody")
	bucketTrace    = []byte("trace")
	bucketTraceIdx = []byte("trace_idx")
	bucketStaging  = []byte("staging")

	keyActive     = []byte("active")
	keyUpdated    = []byte("updated")
	keyCounts     = []byte("counts")
	keyVersion    = []byte("version")
	keySeq        = []byte("seq")
	keyCheckpoint = []byte("custody_seq")

	// Sub-buckets of one list version.
	subLots      = []byte("l") // gtin \0 lot → encoded lot
	subBatches   = []byte("b") // gtin \0 batch → lot
	subSerials   = []byte("s") // gtin \0 serial → encoded serial
	subSSCCs     = []byte("x") // sscc → encoded serial
	subShipments = []byte("h") // id \0 be32(line) → encoded line; id → header
	subProducts  = []byte("p") // gtin → name
)

// ErrNoList is returned by look-ups that need a list when none was ever
// imported.
var ErrNoList = errors.New("allowlist: no list imported yet")

// Store is the bbolt-backed allowlist and custody state. It is safe for
// concurrent use; look-ups run in read transactions and never block
// behind an import or update (one import or update runs at a time).
type Store struct {
	// db is the open file; a compaction swaps it (view retries a read
	// that found the old one closed).
	db      atomic.Pointer[bolt.DB]
	writeMu sync.Mutex   // held by each write transaction, and by a compaction
	waiters atomic.Int32 // foreground writers waiting: a running compaction gives way

	onCompactCheck func() // tests: called at each of the copy's checks
	path           string
	importMu       sync.Mutex // one import at a time
	updMu          sync.Mutex // one MQTT update at a time
	opts           options

	ships atomic.Pointer[shipCache]
	ov    overlay
}

// Option adjusts Open.
type Option func(*options)

type options struct {
	traceRetention time.Duration
	flushEvery     time.Duration
	flushRecords   int
	flushMin       int           // events that make a tick flush
	flushMax       time.Duration // a tick flushes whatever waits once this passed since the last flush
	publicKey      []byte        // ed25519.PublicKey; nil: updates are not signed
	maxFile        int64         // imports refuse to grow the file past this (0: no limit)
	requireSig     bool          // refuse updates while publicKey is nil
	limits         Limits
	compactFree    int64 // CompactIfWorth's threshold of free bytes (negative: never)
}

// WithTraceRetention keeps trace records for d (default 90 days).
func WithTraceRetention(d time.Duration) Option { return func(o *options) { o.traceRetention = d } }

// Each custody flush is one commit touching several buckets (custody records,
// shipment counts, trace and its index, the checkpoint): on flash it is
// the station's largest write, so it is batched. Nothing is lost by
// waiting: the events above the checkpoint stay in the event buffer, which
// is the write-ahead log replayed after a crash.
//
// A flush of a handful of events costs about as much as one of hundreds
// (the same few leaf, branch, root and meta pages), so at a quiet door Run
// waits for DefaultFlushMin events, but never longer than DefaultFlushMax.
const (
	DefaultFlushEvery   = time.Minute
	DefaultFlushRecords = 4096
	DefaultFlushMin     = 64
	DefaultFlushMax     = 10 * time.Minute
)

// WithFlush makes Run persist the custody overlay at a fixed interval,
// every (instead of every DefaultFlushEvery once DefaultFlushMin events
// wait, or DefaultFlushMax), and early after records recorded events
// (default DefaultFlushRecords).
func WithFlush(every time.Duration, records int) Option {
	return func(o *options) { o.flushEvery, o.flushRecords, o.flushMin, o.flushMax = every, records, 1, every }
}

// openTimeout is how long Open waits for another process's lock.
const openTimeout = 2 * time.Second

// openFile opens or creates a bbolt file the way the Store keeps
// allowlist.db (also a compaction's copy, which becomes it).
func openFile(path string) (*bolt.DB, error) {
	return bolt.Open(path, 0o640, &bolt.Options{Timeout: openTimeout, FreelistType: bolt.FreelistMapType})
}

// Open opens or creates the allowlist file at path. The file is locked
// while open: one process at a time.
func Open(path string, opt ...Option) (*Store, error) {
	o := options{traceRetention: 90 * 24 * time.Hour, flushEvery: DefaultFlushEvery, flushRecords: DefaultFlushRecords, flushMin: DefaultFlushMin, flushMax: DefaultFlushMax, maxFile: defaultMaxFile(), compactFree: DefaultCompactFree}
	for _, f := range opt {
		f(&o)
	}
	o.limits.defaults(path)
	db, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("opening allowlist %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLists, bucketCustody, bucketTrace, bucketTraceIdx, bucketStaging} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising allowlist %s: %w", path, err)
	}
	s := &Store{path: path, opts: o}
	s.db.Store(db)
	os.Remove(path + ".compact") // a compaction's copy cut short by a crash; the lock is ours
	s.ov.init()
	s.dropStale()
	return s, nil
}

// Close persists the custody overlay (one fsync) and closes the file.
func (s *Store) Close() error {
	ferr := s.Flush()
	s.writeMu.Lock() // after a compaction in progress
	defer s.writeMu.Unlock()
	if err := s.db.Load().Close(); err != nil {
		return fmt.Errorf("closing allowlist %s: %w", s.path, err)
	}
	return ferr
}

// Counts are the entries of a list version by kind.
type Counts struct {
	Products  int `json:"products"`
	Lots      int `json:"lots"`
	Batches   int `json:"batches"`
	Serials   int `json:"serials"`
	SSCCs     int `json:"ssccs"`
	Shipments int `json:"shipment_lines"`
}

// Info describes the active list.
type Info struct {
	Version string    `json:"version"`
	Seq     uint64    `json:"seq"` // central's ordering number of the active version (0: local import only)
	Lots    int       `json:"lots"`
	Counts  Counts    `json:"counts"`
	Updated time.Time `json:"updated"`
	// Staged names a snapshot being received over MQTT, not yet active.
	Staged *Staged `json:"staged,omitempty"`
	// CustodySeq is the custody checkpoint: the highest event seq whose
	// custody change is durable in this file.
	CustodySeq uint64 `json:"custody_seq"`
}

// Staged is a snapshot whose chunks are still arriving.
type Staged struct {
	Seq    uint64 `json:"seq"`
	Chunks int    `json:"chunks"` // received
	Total  int    `json:"total"`  // 0 until the manifest arrived
}

// Info returns the active version, its entry counts and when it became
// active. Version is empty when no list was ever imported.
func (s *Store) Info() (Info, error) {
	var in Info
	err := s.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		in.Version = string(m.Get(keyVersion))
		in.Seq = getU64(m.Get(keySeq))
		in.CustodySeq = getU64(m.Get(keyCheckpoint))
		if b := m.Get(keyCounts); b != nil {
			if err := json.Unmarshal(b, &in.Counts); err != nil {
				return fmt.Errorf("reading list counts: %w", err)
			}
		}
		in.Lots = in.Counts.Lots
		if b := m.Get(keyUpdated); b != nil {
			in.Updated, _ = time.Parse(time.RFC3339Nano, string(b))
		}
		in.Staged = staged(tx)
		return nil
	})
	return in, err
}

// Version returns the active version name ("" when none), cheaply.
func (s *Store) Version() string {
	var v string
	s.view(func(tx *bolt.Tx) error { v = string(tx.Bucket(bucketMeta).Get(keyVersion)); return nil })
	return v
}

func key2(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

func putU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// activeBucket returns the active version's bucket, or nil.
func activeBucket(tx *bolt.Tx) *bolt.Bucket {
	v := tx.Bucket(bucketMeta).Get(keyActive)
	if v == nil {
		return nil
	}
	return tx.Bucket(bucketLists).Bucket(v)
}

// View runs fn with one consistent snapshot of the active list and the
// station's custody state; fn must not keep the List after it returns.
// Without a list every look-up finds nothing.
func (s *Store) View(fn func(custody.List) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return fn(s.snapshot(tx))
	})
}

func (s *Store) snapshot(tx *bolt.Tx) *snapshot {
	sn := &snapshot{s: s, tx: tx, cust: tx.Bucket(bucketCustody)}
	if b := activeBucket(tx); b != nil {
		sn.lots, sn.batches, sn.serials = b.Bucket(subLots), b.Bucket(subBatches), b.Bucket(subSerials)
		sn.ssccs, sn.ships, sn.products = b.Bucket(subSSCCs), b.Bucket(subShipments), b.Bucket(subProducts)
		sn.version = string(tx.Bucket(bucketMeta).Get(keyVersion))
	}
	return sn
}

// snapshot implements custody.List over one read transaction.
type snapshot struct {
	s                                                    *Store
	tx                                                   *bolt.Tx
	lots, batches, serials, ssccs, ships, products, cust *bolt.Bucket
	version                                              string
}

func hasPrefix(b *bolt.Bucket, prefix []byte) bool {
	if b == nil {
		return false
	}
	k, _ := b.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

func (sn *snapshot) Product(gtin string) (bool, error) {
	if sn.products != nil && sn.products.Get([]byte(gtin)) != nil {
		return true, nil
	}
	p := append([]byte(gtin), 0)
	return hasPrefix(sn.lots, p) || hasPrefix(sn.serials, p), nil
}

func (sn *snapshot) Lot(gtin, lot string) (custody.Lot, bool, error) {
	if sn.lots == nil {
		return custody.Lot{}, false, nil
	}
	v := sn.lots.Get(key2(gtin, lot))
	if v == nil && sn.batches != nil {
		if parent := sn.batches.Get(key2(gtin, lot)); parent != nil {
			lot = string(parent)
			v = sn.lots.Get(key2(gtin, lot))
		}
	}
	if v == nil {
		return custody.Lot{}, false, nil
	}
	l, err := decodeLot(gtin, lot, v)
	if err != nil {
		return l, false, fmt.Errorf("reading GTIN %s lot %q: %w", gtin, lot, err)
	}
	return l, true, nil
}

func (sn *snapshot) Serialised(gtin string) (bool, error) {
	return hasPrefix(sn.serials, append([]byte(gtin), 0)), nil
}

func (sn *snapshot) Serial(gtin, serial string) (custody.Serial, bool, error) {
	return sn.item(serialKey(gtin, serial), sn.serials, key2(gtin, serial), func(r *custody.Serial) { r.GTIN, r.Serial = gtin, serial })
}

func (sn *snapshot) TracksSSCC() (bool, error) {
	if sn.ssccs == nil {
		return false, nil
	}
	k, _ := sn.ssccs.Cursor().First()
	return k != nil, nil
}

func (sn *snapshot) SSCC(sscc string) (custody.Serial, bool, error) {
	return sn.item(ssccKey(sscc), sn.ssccs, []byte(sscc), func(r *custody.Serial) { r.SSCC = sscc })
}

// item merges the list's entry with the station's own custody record: the
// later change wins (the station's on a tie).
func (sn *snapshot) item(ckey string, list *bolt.Bucket, lkey []byte, ids func(*custody.Serial)) (custody.Serial, bool, error) {
	var out custody.Serial
	found := false
	if list != nil {
		if v := list.Get(lkey); v != nil {
			var err error
			if out, err = decodeSerial(v); err != nil {
				return out, false, fmt.Errorf("reading %q: %w", lkey, err)
			}
			found = true
		}
	}
	loc, ok, err := sn.s.local(sn.cust, ckey)
	if err != nil {
		return out, false, err
	}
	if ok && (!found || !loc.At.Before(out.At)) {
		out.State, out.Door, out.At = loc.State, loc.Door, loc.At
		if out.Lot == "" {
			out.Lot = loc.Lot
		}
		if out.GTIN == "" {
			out.GTIN = loc.GTIN
		}
		found = true
	}
	ids(&out)
	return out, found, nil
}

func (sn *snapshot) Shipments(door string, dir dock.Direction) ([]custody.Shipment, error) {
	var list []custody.Shipment
	if sn.ships != nil {
		c := sn.s.ships.Load()
		if c == nil || c.version != sn.version {
			var err error
			if c, err = loadShipments(sn.ships, sn.version); err != nil {
				return nil, err
			}
			sn.s.ships.Store(c)
		}
		list = c.by[string(dir)+"\x00"+door]
	}
	return localShipments(sn.tx, door, dir, list)
}

func (sn *snapshot) Version() string { return sn.version }

func (sn *snapshot) Counted(id string, line int) (int, error) {
	return sn.s.counted(sn.cust, countKey(id, line))
}

// shipCache holds the active version's shipments, grouped by direction
// and door. Shipments are few (open ASNs/orders), so they live in memory.
type shipCache struct {
	version string
	by      map[string][]custody.Shipment
}

type shipHeader struct {
	Door      string         `json:"door"`
	Direction dock.Direction `json:"direction"`
}

func loadShipments(b *bolt.Bucket, version string) (*shipCache, error) {
	c := &shipCache{version: version, by: map[string][]custody.Shipment{}}
	var cur *custody.Shipment
	flush := func() {
		if cur != nil {
			k := string(cur.Direction) + "\x00" + cur.Door
			c.by[k] = append(c.by[k], *cur)
		}
	}
	err := b.ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 { // header: keys sort before their lines
			flush()
			var h shipHeader
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("shipment %q: %w", k, err)
			}
			cur = &custody.Shipment{ID: string(k), Door: h.Door, Direction: h.Direction}
			return nil
		}
		if cur == nil || cur.ID != string(k[:i]) {
			return fmt.Errorf("shipment line %q without header", k)
		}
		var l custody.Line
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("shipment line %q: %w", k, err)
		}
		cur.Lines = append(cur.Lines, l)
		return nil
	})
	flush()
	return c, err
}

func shipLineKey(id string, line int) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(id), 0), uint32(line))
}

// ---- look-ups for tools and tests ----

// Product reports whether gtin is on the active list.
func (s *Store) Product(gtin string) (ok bool, err error) {
	err = s.View(func(l custody.List) error { ok, err = l.Product(gtin); return err })
	return ok, err
}

// Lot returns the active entry for gtin+lot (or batch code).
func (s *Store) Lot(gtin, lot string) (l custody.Lot, ok bool, err error) {
	err = s.View(func(li custody.List) error { l, ok, err = li.Lot(gtin, lot); return err })
	return l, ok, err
}

// Serial returns gtin+serial with its effective custody state.
func (s *Store) Serial(gtin, serial string) (r custody.Serial, ok bool, err error) {
	err = s.View(func(li custody.List) error { r, ok, err = li.Serial(gtin, serial); return err })
	return r, ok, err
}

// SSCC returns a pallet with its effective custody state.
func (s *Store) SSCC(sscc string) (r custody.Serial, ok bool, err error) {
	err = s.View(func(li custody.List) error { r, ok, err = li.SSCC(sscc); return err })
	return r, ok, err
}

// ---- compact value encoding: uvarint-length-prefixed strings ----

var statusCodes = []custody.LotStatus{custody.Released, custody.Quarantined, custody.Blocked, custody.Recalled}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) str() string {
	if r.err != nil {
		return ""
	}
	n, w := binary.Uvarint(r.b)
	if w <= 0 || uint64(len(r.b)-w) < n {
		r.err = errors.New("corrupt entry")
		return ""
	}
	s := string(r.b[w : w+int(n)])
	r.b = r.b[w+int(n):]
	return s
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, w := binary.Varint(r.b)
	if w <= 0 {
		r.err = errors.New("corrupt entry")
		return 0
	}
	r.b = r.b[w:]
	return v
}

func encodeLot(l *custody.Lot) []byte {
	b := make([]byte, 1, 16+len(l.Expiry)+len(l.Reason)+len(l.RecallID))
	for i, st := range statusCodes {
		if st == l.Status {
			b[0] = byte(i)
		}
	}
	b = appendStr(b, l.Expiry)
	b = appendStr(b, l.Reason)
	b = appendStr(b, l.RecallID)
	b = binary.AppendUvarint(b, uint64(len(l.Batches)))
	for _, x := range l.Batches {
		b = appendStr(b, x)
	}
	return b
}

func decodeLot(gtin, lot string, v []byte) (custody.Lot, error) {
	l := custody.Lot{GTIN: gtin, Lot: lot}
	if len(v) == 0 || int(v[0]) >= len(statusCodes) {
		return l, errors.New("corrupt lot entry")
	}
	l.Status = statusCodes[v[0]]
	r := &reader{b: v[1:]}
	l.Expiry, l.Reason, l.RecallID = r.str(), r.str(), r.str()
	n, w := binary.Uvarint(r.b)
	if w <= 0 {
		return l, errors.New("corrupt lot entry")
	}
	r.b = r.b[w:]
	for i := uint64(0); i < n && r.err == nil; i++ {
		l.Batches = append(l.Batches, r.str())
	}
	return l, r.err
}

// encodeSerial stores what the list says about a serial or pallet (the
// keys are in the bucket key).
func encodeSerial(x *custody.Serial) []byte {
	b := appendStr(nil, x.Lot)
	b = appendStr(b, x.GTIN)
	b = appendStr(b, string(x.State))
	b = appendStr(b, x.Door)
	var at int64
	if !x.At.IsZero() {
		at = x.At.UnixNano()
	}
	return binary.AppendVarint(b, at)
}

func decodeSerial(v []byte) (custody.Serial, error) {
	r := &reader{b: v}
	x := custody.Serial{Lot: r.str(), GTIN: r.str(), State: custody.State(r.str()), Door: r.str()}
	if at := r.varint(); at != 0 {
		x.At = time.Unix(0, at).UTC()
	}
	return x, r.err
}
