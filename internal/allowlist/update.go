package allowlist

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
)

// Schemas of the update contract (CONTRACT.md).
const (
	SnapshotSchema = "dockd.allowlist-snapshot/1"
	DeltaSchema    = "dockd.allowlist-delta/1"
	AckSchema      = "dockd.allowlist-ack/1"
)

// Limits on what central may send.
const (
	MaxChunks     = 100_000
	MaxDeltaBytes = 16 << 20
)

// AckStatus says what the station did with an update message.
type AckStatus string

// Ack statuses.
const (
	StatusStaged   AckStatus = "staged"   // a snapshot chunk or manifest was stored; not active yet
	StatusApplied  AckStatus = "applied"  // the version is now active
	StatusIgnored  AckStatus = "ignored"  // older than or equal to the active version (or a staged newer one)
	StatusRejected AckStatus = "rejected" // refused; the previous list stays in force
)

// Reasons for ignored and rejected updates.
const (
	ReasonStale        = "stale"         // older than the active (or a newer staged) version
	ReasonDuplicate    = "duplicate"     // the active version
	ReasonMalformed    = "malformed"     // topic or payload does not follow the contract
	ReasonChecksum     = "checksum"      // sha256 or byte count does not match
	ReasonBadSignature = "bad_signature" // missing or invalid Ed25519 signature
	ReasonBaseMismatch = "base_mismatch" // a delta on a version that is not active here
	ReasonBadRows      = "bad_rows"      // rows that do not validate
	ReasonStorage      = "storage"       // the station could not write its file
	ReasonTooLarge     = "too_large"     // a message or a snapshot over the station's limits (allowlist.max_*)
	ReasonNoSpace      = "no_space"      // staging would eat into the free space kept for events
	ReasonExpired      = "expired"       // a snapshot not completed within allowlist.staging_ttl; dropped
)

// Ack is the station's answer to one update message, for central (the
// daemon publishes it on the station's ack topic).
type Ack struct {
	Schema    string    `json:"schema"`
	Topic     string    `json:"topic"`
	Kind      string    `json:"kind"` // manifest | chunk | delta
	Version   string    `json:"version,omitempty"`
	Seq       uint64    `json:"seq"`
	Status    AckStatus `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	ActiveVer string    `json:"active_version"`
	ActiveSeq uint64    `json:"active_seq"`
	Chunks    int       `json:"chunks,omitempty"` // staged chunks so far
	Total     int       `json:"total,omitempty"`
}

// UpdateError is the error of a rejected update; Reason is one of the
// Reason constants.
type UpdateError struct {
	Reason string
	Err    error
}

func (e *UpdateError) Error() string {
	return "allowlist update rejected (" + e.Reason + "): " + e.Err.Error()
}
func (e *UpdateError) Unwrap() error { return e.Err }

func reject(reason string, format string, a ...any) *UpdateError {
	return &UpdateError{Reason: reason, Err: fmt.Errorf(format, a...)}
}

// Manifest announces a snapshot: its version, ordering number, and the
// chunks that make it up.
type Manifest struct {
	Schema  string `json:"schema"`
	Version string `json:"version"`
	Seq     uint64 `json:"seq"`
	Format  Format `json:"format"`
	Chunks  int    `json:"chunks"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"` // of the concatenated chunks
	Sig     string `json:"sig,omitempty"`
}

// SigningBytes is what central signs with Ed25519 for a manifest.
func (m *Manifest) SigningBytes() []byte {
	return fmt.Appendf(nil, "%s\nversion=%s\nseq=%d\nformat=%s\nchunks=%d\nbytes=%d\nsha256=%s\n",
		SnapshotSchema, m.Version, m.Seq, m.Format, m.Chunks, m.Bytes, m.SHA256)
}

// DeltaHeader is the first line of a delta payload.
type DeltaHeader struct {
	Schema  string `json:"schema"`
	Version string `json:"version"`
	Seq     uint64 `json:"seq"`
	BaseSeq uint64 `json:"base_seq"`
	SHA256  string `json:"sha256"` // of the body: every byte after the header's newline
	Sig     string `json:"sig,omitempty"`
}

// SigningBytes is what central signs with Ed25519 for a delta.
func (h *DeltaHeader) SigningBytes() []byte {
	return fmt.Appendf(nil, "%s\nversion=%s\nseq=%d\nbase_seq=%d\nsha256=%s\n", DeltaSchema, h.Version, h.Seq, h.BaseSeq, h.SHA256)
}

// WithPublicKey makes ApplyUpdate require an Ed25519 signature by key on
// every manifest and delta.
func WithPublicKey(key ed25519.PublicKey) Option { return func(o *options) { o.publicKey = key } }

func (s *Store) verify(sig string, msg []byte) *UpdateError {
	if s.opts.publicKey == nil {
		if s.opts.requireSig {
			return reject(ReasonBadSignature, "no key to check it with: set allowlist.public_key (or, knowingly, allowlist.allow_unsigned: true)")
		}
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return reject(ReasonBadSignature, "signature missing or not base64 of %d bytes", ed25519.SignatureSize)
	}
	if !ed25519.Verify(s.opts.publicKey, msg, raw) {
		return reject(ReasonBadSignature, "signature does not verify with the configured key")
	}
	return nil
}

// ApplyUpdate handles one message from central on
// …/allowlist/snapshot/{seq}/manifest, …/allowlist/snapshot/{seq}/chunk/{n}
// or …/allowlist/delta/{seq} (CONTRACT.md). Snapshot parts are staged in
// the file (they survive a restart) and the snapshot becomes active, in one
// transaction, when the last part arrived and checked out. A rejected
// message returns an *UpdateError and leaves the active list in force. It
// may take seconds for a large snapshot; call it from a goroutine of its
// own (Updater does). Safe for concurrent use (updates are serialised).
func (s *Store) ApplyUpdate(topic string, payload []byte) (Ack, error) {
	s.updMu.Lock()
	defer s.updMu.Unlock()
	ack := Ack{Schema: AckSchema, Topic: topic}
	err := s.applyUpdate(topic, payload, &ack)
	if info, ierr := s.Info(); ierr == nil {
		ack.ActiveVer, ack.ActiveSeq = info.Version, info.Seq
	}
	var ue *UpdateError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		ack.Status, ack.Reason, ack.Detail = StatusRejected, ue.Reason, ue.Err.Error()
	default:
		ack.Status, ack.Reason, ack.Detail = StatusRejected, ReasonStorage, err.Error()
		err = &UpdateError{Reason: ReasonStorage, Err: err}
	}
	return ack, err
}

func (s *Store) applyUpdate(topic string, payload []byte, ack *Ack) error {
	ut, err := ParseUpdateTopic(topic)
	ack.Seq, ack.Kind = ut.Seq, string(ut.Kind)
	if err != nil {
		return err
	}
	if limit := s.opts.limits.MaxPayload(topic); int64(len(payload)) > limit {
		return reject(ReasonTooLarge, "%s of %d bytes exceeds this station's limit of %d", ut.Kind, len(payload), limit)
	}
	switch ut.Kind {
	case KindManifest:
		return s.manifest(ut.Seq, payload, ack)
	case KindChunk:
		return s.chunk(ut.Seq, ut.Chunk, payload, ack)
	default:
		return s.delta(ut.Seq, payload, ack)
	}
}

// order says whether seq is older than or equal to the active version or
// a staged newer snapshot; it fills ack when so and returns false.
func (s *Store) order(seq uint64, ack *Ack) (bool, error) {
	var active, stagedMax uint64
	err := s.view(func(tx *bolt.Tx) error {
		active = getU64(tx.Bucket(bucketMeta).Get(keySeq))
		if k, _ := tx.Bucket(bucketStaging).Cursor().Last(); k != nil {
			stagedMax = getU64(k)
		}
		return nil
	})
	switch {
	case err != nil:
		return false, err
	case seq == active:
		ack.Status, ack.Reason, ack.Detail = StatusIgnored, ReasonDuplicate, "this version is active"
		return false, nil
	case seq < active:
		ack.Status, ack.Reason, ack.Detail = StatusIgnored, ReasonStale, fmt.Sprintf("older than the active seq %d", active)
		return false, nil
	case ack.Kind != "delta" && seq < stagedMax:
		ack.Status, ack.Reason, ack.Detail = StatusIgnored, ReasonStale, fmt.Sprintf("a newer snapshot (seq %d) is being staged", stagedMax)
		return false, nil
	}
	return true, nil
}

func (s *Store) dropStaged(seq uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStaging).Bucket(putU64(seq)) == nil {
			return nil
		}
		return tx.Bucket(bucketStaging).DeleteBucket(putU64(seq))
	})
}

var keyManifest = []byte("m")

func chunkKey(n int) []byte { return binary.BigEndian.AppendUint32([]byte("c"), uint32(n)) }

func (s *Store) manifest(seq uint64, payload []byte, ack *Ack) error {
	m, err := ParseManifest(seq, payload)
	ack.Version = m.Version
	if err != nil {
		return err
	}
	if ok, err := s.order(seq, ack); !ok || err != nil {
		return err
	}
	if err := s.verify(m.Sig, m.SigningBytes()); err != nil {
		return err
	}
	l := s.opts.limits
	if m.Bytes > l.MaxSnapshotBytes {
		s.dropStaged(seq)
		return reject(ReasonTooLarge, "snapshot %d of %d bytes exceeds allowlist.max_snapshot_bytes %d", seq, m.Bytes, l.MaxSnapshotBytes)
	}
	// Room for the rest of the staging and the import after it.
	free, err := l.Free()
	if err != nil {
		return fmt.Errorf("checking free space for snapshot %d: %w", seq, err)
	}
	if need, reserve := 2*max(m.Bytes-s.stagedBytes(seq), 0)+m.Bytes, l.Reserve(); free-need < reserve {
		s.dropStaged(seq)
		return reject(ReasonNoSpace, "snapshot %d needs about %s to stage and import, %s is free under %s and %s is kept for events",
			seq, human(need), human(free), filepath.Dir(s.path), human(reserve))
	}
	if err := s.stageBounded(seq, keyManifest, payload); err != nil {
		return err
	}
	return s.tryComplete(seq, ack)
}

// stagedBytes is how much of snapshot seq is staged.
func (s *Store) stagedBytes(seq uint64) int64 {
	var n int64
	s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketStaging).Bucket(putU64(seq)); b != nil {
			n = int64(getU64(b.Get(keyStagedBytes)))
		}
		return nil
	})
	return n
}

func (s *Store) chunk(seq uint64, n int, payload []byte, ack *Ack) error {
	if ok, err := s.order(seq, ack); !ok || err != nil {
		return err
	}
	var total int
	s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketStaging).Bucket(putU64(seq)); b != nil {
			var m Manifest
			if v := b.Get(keyManifest); v != nil && json.Unmarshal(v, &m) == nil {
				total = m.Chunks
			}
		}
		return nil
	})
	if total > 0 && n >= total {
		return reject(ReasonMalformed, "chunk %d of snapshot %d: its manifest says %d chunks (0 to %d)", n, seq, total, total-1)
	}
	if err := s.stageBounded(seq, chunkKey(n), payload); err != nil {
		return err
	}
	return s.tryComplete(seq, ack)
}

// staged describes the newest staged snapshot, if any.
func staged(tx *bolt.Tx) *Staged {
	k, _ := tx.Bucket(bucketStaging).Cursor().Last()
	if k == nil {
		return nil
	}
	b := tx.Bucket(bucketStaging).Bucket(k)
	st := &Staged{Seq: getU64(k)}
	b.ForEach(func(k, v []byte) error {
		if k[0] == 'c' {
			st.Chunks++
		} else if bytes.Equal(k, keyManifest) {
			var m Manifest
			if json.Unmarshal(v, &m) == nil {
				st.Total = m.Chunks
			}
		}
		return nil
	})
	return st
}

// tryComplete activates snapshot seq when its manifest and every chunk
// are staged and check out.
func (s *Store) tryComplete(seq uint64, ack *Ack) error {
	var m Manifest
	var have bool
	var st *Staged
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStaging).Bucket(putU64(seq))
		if b == nil {
			return nil
		}
		st = staged(tx)
		if v := b.Get(keyManifest); v != nil {
			have = true
			return json.Unmarshal(v, &m)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading staged snapshot %d: %w", seq, err)
	}
	ack.Status = StatusStaged
	if st != nil {
		ack.Chunks, ack.Total = st.Chunks, st.Total
	}
	if !have || st == nil || st.Chunks < m.Chunks {
		return nil
	}
	ack.Version = m.Version
	if st.Chunks > m.Chunks {
		s.dropStaged(seq)
		return reject(ReasonMalformed, "snapshot %d has %d chunks, the manifest says %d", seq, st.Chunks, m.Chunks)
	}
	// Check the whole before importing any of it.
	h := sha256.New()
	nbytes, err := io.Copy(h, s.chunkReader(seq, m.Chunks))
	if err != nil {
		return fmt.Errorf("reading staged snapshot %d: %w", seq, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); nbytes != m.Bytes || sum != strings.ToLower(m.SHA256) {
		s.dropStaged(seq)
		return reject(ReasonChecksum, "snapshot %d: %d bytes with sha256 %s, the manifest says %d bytes with %s", seq, nbytes, sum, m.Bytes, m.SHA256)
	}
	_, err = s.Import(context.Background(), s.chunkReader(seq, m.Chunks), ImportOptions{Format: m.Format, Version: m.Version, Seq: seq})
	var ie *ImportError
	switch {
	case errors.As(err, &ie):
		s.dropStaged(seq)
		return &UpdateError{Reason: ReasonBadRows, Err: err}
	case errors.Is(err, errStale):
		s.dropStaged(seq)
		ack.Status, ack.Reason, ack.Detail = StatusIgnored, ReasonStale, err.Error()
		return nil
	case err != nil:
		return err
	}
	if err := s.dropStaged(seq); err != nil {
		return fmt.Errorf("dropping the staged copy of applied snapshot %d: %w", seq, err)
	}
	ack.Status = StatusApplied
	return nil
}

// chunkReader streams the staged chunks of seq in order, one read
// transaction per chunk (an import must not run inside a read transaction).
func (s *Store) chunkReader(seq uint64, n int) io.Reader {
	return &chunks{s: s, seq: seq, n: n}
}

type chunks struct {
	s    *Store
	seq  uint64
	i, n int
	cur  []byte
}

func (c *chunks) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.i == c.n {
			return 0, io.EOF
		}
		err := c.s.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketStaging).Bucket(putU64(c.seq))
			if b == nil {
				return fmt.Errorf("snapshot %d is no longer staged", c.seq)
			}
			v := b.Get(chunkKey(c.i))
			if v == nil {
				return fmt.Errorf("snapshot %d lacks chunk %d", c.seq, c.i)
			}
			c.cur = append([]byte(nil), v...)
			return nil
		})
		if err != nil {
			return 0, err
		}
		c.i++
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// errStale is returned when a version would replace a newer one.
var errStale = errors.New("a newer version is active")

func (s *Store) delta(seq uint64, payload []byte, ack *Ack) error {
	if int64(len(payload)) > s.opts.limits.MaxDeltaBytes {
		return reject(ReasonTooLarge, "delta of %d bytes exceeds allowlist.max_delta_bytes %d; send a snapshot", len(payload), s.opts.limits.MaxDeltaBytes)
	}
	h, body, err := ParseDelta(seq, payload)
	ack.Version = h.Version
	if err != nil {
		return err
	}
	if ok, err := s.order(seq, ack); !ok || err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != strings.ToLower(h.SHA256) {
		return reject(ReasonChecksum, "delta body sha256 %x, the header says %s", sum, h.SHA256)
	}
	if err := s.verify(h.Sig, h.SigningBytes()); err != nil {
		return err
	}
	// Validate every row before touching the list.
	src := jsonlSource(bufio.NewReaderSize(bytes.NewReader(body), 1<<20))
	ierr := &ImportError{}
	var ops []entry
	for {
		row, line, err := src()
		if err == io.EOF {
			break
		}
		var re RowError
		if errors.As(err, &re) {
			re.Line++ // the header is line 1
			ierr.add(re)
			continue
		}
		if err != nil {
			return reject(ReasonMalformed, "delta body near line %d: %v", line+1, err)
		}
		es, msg := validate(&row)
		if msg != "" {
			ierr.add(RowError{Line: line + 1, Msg: msg})
			continue
		}
		ops = append(ops, es...)
	}
	if ierr.Bad > 0 {
		return &UpdateError{Reason: ReasonBadRows, Err: ierr}
	}
	err = s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur := getU64(meta.Get(keySeq))
		if cur != h.BaseSeq {
			return reject(ReasonBaseMismatch, "delta %d applies to seq %d, the active version is seq %d (%q); send a snapshot or the missing deltas", seq, h.BaseSeq, cur, meta.Get(keyVersion))
		}
		b := activeBucket(tx)
		if b == nil {
			return reject(ReasonBaseMismatch, "delta %d needs a list to apply to; none is active", seq)
		}
		var c Counts
		if v := meta.Get(keyCounts); v != nil {
			json.Unmarshal(v, &c)
		}
		if err := applyOps(b, ops, &c); err != nil {
			return err
		}
		info := Info{Version: h.Version, Seq: seq, Counts: c, Updated: time.Now().UTC()}
		return writeMeta(meta, meta.Get(keyActive), info)
	})
	if err != nil {
		return err
	}
	ack.Status = StatusApplied
	return nil
}

// applyOps applies validated delta entries to the active version,
// keeping the batch index and the counts right.
func applyOps(b *bolt.Bucket, ops []entry, c *Counts) error {
	sub := func(name []byte) (*bolt.Bucket, error) { return b.CreateBucketIfNotExists(name) }
	batches, err := sub(subBatches)
	if err != nil {
		return err
	}
	ships, err := sub(subShipments)
	if err != nil {
		return err
	}
	counter := map[string]*int{string(subProducts): &c.Products, string(subSerials): &c.Serials, string(subSSCCs): &c.SSCCs, string(subLots): &c.Lots}
	replaced := map[string]bool{} // shipments whose old lines are gone
	lines := map[string]int{}
	for _, e := range ops {
		switch {
		case e.kind == "shipment":
			if !replaced[e.shipID] {
				replaced[e.shipID] = true
				n, err := deletePrefix(ships, append([]byte(e.shipID), 0))
				if err != nil {
					return err
				}
				c.Shipments -= n
				if err := ships.Delete([]byte(e.shipID)); err != nil {
					return err
				}
			}
			if e.del {
				continue
			}
			hv, _ := json.Marshal(e.ship)
			if err := ships.Put([]byte(e.shipID), hv); err != nil {
				return err
			}
			n := lines[e.shipID]
			lines[e.shipID] = n + 1
			if err := ships.Put(shipLineKey(e.shipID, n), e.val); err != nil {
				return err
			}
			c.Shipments++
		case e.kind == "batch":
			if err := batches.Put(e.key, e.val); err != nil {
				return err
			}
			c.Batches++
		default:
			bk, err := sub(e.sub)
			if err != nil {
				return err
			}
			old := bk.Get(e.key)
			if e.kind == "lot" && old != nil { // its batch codes go with it
				i := bytes.IndexByte(e.key, 0)
				l, err := decodeLot(string(e.key[:i]), string(e.key[i+1:]), old)
				if err != nil {
					return err
				}
				for _, x := range l.Batches {
					if err := batches.Delete(key2(l.GTIN, x)); err != nil {
						return err
					}
					c.Batches--
				}
			}
			if e.del {
				if old != nil {
					*counter[string(e.sub)]--
					if err := bk.Delete(e.key); err != nil {
						return err
					}
				}
				continue
			}
			if old == nil {
				*counter[string(e.sub)]++
			}
			if err := bk.Put(e.key, e.val); err != nil {
				return err
			}
		}
	}
	return nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) (int, error) {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Updater runs allowlist updates from MQTT off the uplink's receive
// goroutine: Handle checks a message's size and queues it, Run applies
// queued messages in arrival order, expires unfinished snapshots, and
// reports each Ack to the callback.
type Updater struct {
	s       *Store
	onAck   func(Ack)
	log     *slog.Logger
	in      chan update
	refused chan Ack
	done    chan struct{}

	compactAfter time.Time // no compaction attempt before this (after a failure)
}

type update struct {
	topic   string
	payload []byte
}

// updaterQueue is how many update messages may wait for Run. With the
// default limits that is at most 16 MiB of deltas.
const updaterQueue = 16

// NewUpdater returns an Updater for s; onAck (may be nil) receives every
// Ack, e.g. to publish it on the station's ack topic.
func NewUpdater(s *Store, onAck func(Ack), log *slog.Logger) *Updater {
	if log == nil {
		log = slog.Default()
	}
	return &Updater{s: s, onAck: onAck, log: log, in: make(chan update, updaterQueue), refused: make(chan Ack, 64), done: make(chan struct{})}
}

// Handle queues one update message; it copies payload, but only after
// checking its size against the store's limits for the topic's kind (chunk,
// delta, manifest): a larger message is refused in one log line, never
// copied or parsed, and answered with a rejected ack (too_large) by Run.
// It blocks while the queue is full, and drops the message once Run has
// returned (central resends: nothing was acknowledged). Its signature fits
// uplink.Client.Handle.
func (u *Updater) Handle(topic string, payload []byte) {
	if limit := u.s.opts.limits.MaxPayload(topic); int64(len(payload)) > limit {
		ut, _ := ParseUpdateTopic(topic)
		u.log.Warn("allowlist update refused unread: too large", "topic", topic, "bytes", len(payload), "limit", limit)
		a := Ack{Schema: AckSchema, Topic: topic, Kind: string(ut.Kind), Seq: ut.Seq, Status: StatusRejected, Reason: ReasonTooLarge,
			Detail: fmt.Sprintf("%d bytes exceeds this station's limit of %d for this topic (allowlist.max_chunk_bytes / max_delta_bytes)", len(payload), limit)}
		if a.Kind == "" {
			a.Kind = string(KindManifest)
		}
		select {
		case u.refused <- a:
		default:
			u.log.Warn("allowlist refusal not acknowledged: too many refusals queued", "topic", topic)
		}
		return
	}
	m := update{topic: topic, payload: append([]byte(nil), payload...)}
	select {
	case u.in <- m:
	case <-u.done:
		u.log.Warn("allowlist update dropped: updater stopped", "topic", topic)
	}
}

// Run applies queued updates until ctx ends, then returns nil. It drops
// staged snapshots older than the store's StagingTTL at start and then
// every minute (or a quarter of the TTL when shorter).
func (u *Updater) Run(ctx context.Context) error {
	defer close(u.done)
	every := min(time.Minute, u.s.opts.limits.StagingTTL/4)
	tick := time.NewTicker(max(every, 10*time.Millisecond))
	defer tick.Stop()
	u.expire(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			u.expire(ctx)
			u.compact(ctx)
		case a := <-u.refused:
			if info, err := u.s.Info(); err == nil {
				a.ActiveVer, a.ActiveSeq = info.Version, info.Seq
			}
			u.report(a)
		case m := <-u.in:
			ack, err := u.s.ApplyUpdate(m.topic, m.payload)
			lvl := slog.LevelInfo
			if err != nil {
				lvl = slog.LevelWarn
			} else if ack.Status == StatusStaged {
				lvl = slog.LevelDebug
			}
			u.log.Log(ctx, lvl, "allowlist update", "topic", m.topic, "status", ack.Status, "reason", ack.Reason,
				"version", ack.Version, "seq", ack.Seq, "active_version", ack.ActiveVer, "detail", ack.Detail)
			u.report(ack)
			if ack.Status == StatusApplied {
				u.compactAfter = time.Time{}
				u.compact(ctx)
			}
		}
	}
}

// compact rewrites allowlist.db when a replacement left much of it free
// (Store.CompactIfWorth), after the update's ack went out. A compaction
// that gave way to a write is tried again at the next tick; one that failed
// waits an hour (or the next applied update).
func (u *Updater) compact(ctx context.Context) {
	if time.Now().Before(u.compactAfter) {
		return
	}
	start := time.Now()
	done, before, after, err := u.s.CompactIfWorth(ctx)
	switch {
	case errors.Is(err, ErrCompactYielded):
		u.log.Info("allowlist compaction gave way to a write; trying again later", "file_bytes", before, "took", time.Since(start))
	case err != nil:
		u.compactAfter = time.Now().Add(time.Hour)
		u.log.Warn("allowlist compaction failed; the file stays larger than it needs to be", "err", err)
	case done:
		u.log.Info("allowlist.db compacted", "before_bytes", before, "after_bytes", after, "took", time.Since(start))
	}
}

func (u *Updater) expire(ctx context.Context) {
	acks, err := u.s.ExpireStaged()
	if err != nil {
		u.log.Error("expiring staged allowlist snapshots", "err", err)
		return
	}
	for _, a := range acks {
		u.log.Log(ctx, slog.LevelWarn, "allowlist snapshot expired", "seq", a.Seq, "reason", a.Reason, "detail", a.Detail)
		u.report(a)
	}
}

func (u *Updater) report(a Ack) {
	if u.onAck != nil {
		u.onAck(a)
	}
}

// ensure snapshot implements the rules' view.
var _ custody.List = (*snapshot)(nil)
