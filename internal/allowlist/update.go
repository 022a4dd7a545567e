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
	"strconv"
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
	i := strings.Index(topic, "/allowlist/")
	if i < 0 {
		return reject(ReasonMalformed, "topic %q has no /allowlist/ segment", topic)
	}
	parts := strings.Split(topic[i+len("/allowlist/"):], "/")
	if len(parts) < 2 {
		return reject(ReasonMalformed, "topic %q: want snapshot/SEQ/manifest, snapshot/SEQ/chunk/N or delta/SEQ", topic)
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || seq == 0 {
		return reject(ReasonMalformed, "topic %q: %q is not a sequence number ≥ 1", topic, parts[1])
	}
	ack.Seq = seq
	switch {
	case parts[0] == "snapshot" && len(parts) == 3 && parts[2] == "manifest":
		ack.Kind = "manifest"
		return s.manifest(seq, payload, ack)
	case parts[0] == "snapshot" && len(parts) == 4 && parts[2] == "chunk":
		ack.Kind = "chunk"
		n, err := strconv.Atoi(parts[3])
		if err != nil || n < 0 || n >= MaxChunks {
			return reject(ReasonMalformed, "topic %q: chunk number %q", topic, parts[3])
		}
		return s.chunk(seq, n, payload, ack)
	case parts[0] == "delta" && len(parts) == 2:
		ack.Kind = "delta"
		return s.delta(seq, payload, ack)
	}
	return reject(ReasonMalformed, "topic %q: want snapshot/SEQ/manifest, snapshot/SEQ/chunk/N or delta/SEQ", topic)
}

// order says whether seq is older than or equal to the active version or
// a staged newer snapshot; it fills ack when so and returns false.
func (s *Store) order(seq uint64, ack *Ack) (bool, error) {
	var active, stagedMax uint64
	err := s.db.View(func(tx *bolt.Tx) error {
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

// stage stores one part of snapshot seq and drops older staged snapshots.
func (s *Store) stage(seq uint64, key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketStaging)
		var old [][]byte
		st.ForEach(func(k, _ []byte) error {
			if getU64(k) < seq {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err := st.DeleteBucket(k); err != nil {
				return err
			}
		}
		b, err := st.CreateBucketIfNotExists(putU64(seq))
		if err != nil {
			return err
		}
		return b.Put(key, val)
	})
}

func (s *Store) dropStaged(seq uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStaging).Bucket(putU64(seq)) == nil {
			return nil
		}
		return tx.Bucket(bucketStaging).DeleteBucket(putU64(seq))
	})
}

var keyManifest = []byte("m")

func chunkKey(n int) []byte { return binary.BigEndian.AppendUint32([]byte("c"), uint32(n)) }

func (s *Store) manifest(seq uint64, payload []byte, ack *Ack) error {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return reject(ReasonMalformed, "manifest is not JSON of the contract: %v", err)
	}
	ack.Version = m.Version
	switch {
	case m.Schema != SnapshotSchema:
		return reject(ReasonMalformed, "manifest schema %q, want %q", m.Schema, SnapshotSchema)
	case m.Seq != seq:
		return reject(ReasonMalformed, "manifest seq %d differs from the topic's %d", m.Seq, seq)
	case m.Version == "" || len(m.Version) > 128:
		return reject(ReasonMalformed, "manifest version %q: want 1 to 128 characters", m.Version)
	case m.Chunks < 1 || m.Chunks > MaxChunks:
		return reject(ReasonMalformed, "manifest chunks %d: want 1 to %d", m.Chunks, MaxChunks)
	case m.Format != CSV && m.Format != JSONL:
		return reject(ReasonMalformed, "manifest format %q: want csv or jsonl", m.Format)
	case len(m.SHA256) != 64:
		return reject(ReasonMalformed, "manifest sha256 %q: want 64 hex digits", m.SHA256)
	}
	if ok, err := s.order(seq, ack); !ok || err != nil {
		return err
	}
	if err := s.verify(m.Sig, m.SigningBytes()); err != nil {
		return err
	}
	if err := s.stage(seq, keyManifest, payload); err != nil {
		return fmt.Errorf("staging manifest of snapshot %d: %w", seq, err)
	}
	return s.tryComplete(seq, ack)
}

func (s *Store) chunk(seq uint64, n int, payload []byte, ack *Ack) error {
	if ok, err := s.order(seq, ack); !ok || err != nil {
		return err
	}
	if err := s.stage(seq, chunkKey(n), payload); err != nil {
		return fmt.Errorf("staging chunk %d of snapshot %d: %w", n, seq, err)
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
		err := c.s.db.View(func(tx *bolt.Tx) error {
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
	if len(payload) > MaxDeltaBytes {
		return reject(ReasonMalformed, "delta of %d bytes exceeds %d; send a snapshot", len(payload), MaxDeltaBytes)
	}
	head, body, _ := bytes.Cut(payload, []byte("\n"))
	var h DeltaHeader
	dec := json.NewDecoder(bytes.NewReader(head))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return reject(ReasonMalformed, "delta header line is not JSON of the contract: %v", err)
	}
	ack.Version = h.Version
	switch {
	case h.Schema != DeltaSchema:
		return reject(ReasonMalformed, "delta schema %q, want %q", h.Schema, DeltaSchema)
	case h.Seq != seq:
		return reject(ReasonMalformed, "delta seq %d differs from the topic's %d", h.Seq, seq)
	case h.Version == "" || len(h.Version) > 128:
		return reject(ReasonMalformed, "delta version %q: want 1 to 128 characters", h.Version)
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
	err := s.db.Update(func(tx *bolt.Tx) error {
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
// goroutine: Handle queues a message and returns, Run applies queued
// messages in arrival order and reports each Ack to the callback.
type Updater struct {
	s     *Store
	onAck func(Ack)
	log   *slog.Logger
	in    chan update
	done  chan struct{}
}

type update struct {
	topic   string
	payload []byte
}

// NewUpdater returns an Updater for s; onAck (may be nil) receives every
// Ack, e.g. to publish it on the station's ack topic.
func NewUpdater(s *Store, onAck func(Ack), log *slog.Logger) *Updater {
	if log == nil {
		log = slog.Default()
	}
	return &Updater{s: s, onAck: onAck, log: log, in: make(chan update, 64), done: make(chan struct{})}
}

// Handle queues one update message; it copies payload. It blocks only
// while 64 messages are already queued, and drops the message once Run has
// returned (central resends: nothing was acknowledged). Its signature fits
// uplink.Client.Handle.
func (u *Updater) Handle(topic string, payload []byte) {
	m := update{topic: topic, payload: append([]byte(nil), payload...)}
	select {
	case u.in <- m:
	case <-u.done:
		u.log.Warn("allowlist update dropped: updater stopped", "topic", topic)
	}
}

// Run applies queued updates until ctx ends, then returns nil.
func (u *Updater) Run(ctx context.Context) error {
	defer close(u.done)
	for {
		select {
		case <-ctx.Done():
			return nil
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
			if u.onAck != nil {
				u.onAck(ack)
			}
		}
	}
}

// ensure snapshot implements the rules' view.
var _ custody.List = (*snapshot)(nil)
