package allowlist

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/dockd/dockd/internal/jsonstrict"
)

// Default limits on what central may send (CONTRACT.md), for zero Limits
// fields.
const (
	DefaultMaxChunkBytes    = 256 << 10
	DefaultMaxDeltaBytes    = 1 << 20
	DefaultMaxSnapshotBytes = 64 << 20
	DefaultStagingTTL       = time.Hour
	// MaxManifestBytes bounds a manifest message (a few hundred bytes in
	// practice).
	MaxManifestBytes = 16 << 10
)

// Limits bound what central's updates may make the station hold in memory
// and on disk. The zero value means the defaults and no disk check.
type Limits struct {
	MaxChunkBytes    int64 // one snapshot chunk message
	MaxDeltaBytes    int64 // one delta message (at most MaxDeltaBytes the constant)
	MaxSnapshotBytes int64 // a manifest's bytes, and all staged for one snapshot
	// StagingTTL: a snapshot still incomplete this long after its first
	// part was staged is dropped (ExpireStaged).
	StagingTTL time.Duration
	// Reserve returns the free bytes under the allowlist file's directory
	// that staging must leave (the event buffer's room); nil: none.
	Reserve func() int64
	// Free returns the free bytes there; nil: statfs of the directory.
	Free func() (int64, error)
	// Now is the clock for staging ages; nil: time.Now.
	Now func() time.Time
}

// WithLimits bounds central's updates (see Limits).
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// WithRequireSignature refuses every manifest and delta (bad_signature)
// while no public key is configured: a station whose config neither names
// central's key nor allows unsigned lists accepts no list from central.
func WithRequireSignature() Option { return func(o *options) { o.requireSig = true } }

func (l *Limits) defaults(path string) {
	if l.MaxChunkBytes <= 0 {
		l.MaxChunkBytes = DefaultMaxChunkBytes
	}
	if l.MaxDeltaBytes <= 0 {
		l.MaxDeltaBytes = DefaultMaxDeltaBytes
	}
	l.MaxDeltaBytes = min(l.MaxDeltaBytes, MaxDeltaBytes)
	if l.MaxSnapshotBytes <= 0 {
		l.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if l.StagingTTL <= 0 {
		l.StagingTTL = DefaultStagingTTL
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	if l.Free == nil {
		dir := filepath.Dir(path)
		l.Free = func() (int64, error) { return FreeBytes(dir) }
	}
	if l.Reserve == nil {
		l.Reserve = func() int64 { return 0 }
	}
}

// FreeBytes is the space an unprivileged process may still write under
// dir (statfs f_bavail × f_bsize).
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// UpdateKind is what an allowlist topic carries.
type UpdateKind string

// Update kinds (the ack's "kind").
const (
	KindManifest UpdateKind = "manifest"
	KindChunk    UpdateKind = "chunk"
	KindDelta    UpdateKind = "delta"
)

// UpdateTopic is a parsed allowlist update topic.
type UpdateTopic struct {
	Kind  UpdateKind
	Seq   uint64
	Chunk int // KindChunk only
}

// ParseUpdateTopic reads …/allowlist/snapshot/SEQ/manifest,
// …/allowlist/snapshot/SEQ/chunk/N or …/allowlist/delta/SEQ. It never
// panics; a topic that is none of these is a malformed *UpdateError.
func ParseUpdateTopic(topic string) (UpdateTopic, error) {
	i := strings.Index(topic, "/allowlist/")
	if i < 0 {
		return UpdateTopic{}, reject(ReasonMalformed, "topic %q has no /allowlist/ segment", topic)
	}
	parts := strings.Split(topic[i+len("/allowlist/"):], "/")
	if len(parts) < 2 {
		return UpdateTopic{}, reject(ReasonMalformed, "topic %q: want snapshot/SEQ/manifest, snapshot/SEQ/chunk/N or delta/SEQ", topic)
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || seq == 0 {
		return UpdateTopic{}, reject(ReasonMalformed, "topic %q: %q is not a sequence number ≥ 1", topic, parts[1])
	}
	switch {
	case parts[0] == "snapshot" && len(parts) == 3 && parts[2] == "manifest":
		return UpdateTopic{Kind: KindManifest, Seq: seq}, nil
	case parts[0] == "snapshot" && len(parts) == 4 && parts[2] == "chunk":
		n, err := strconv.Atoi(parts[3])
		if err != nil || n < 0 || n >= MaxChunks || strconv.Itoa(n) != parts[3] {
			return UpdateTopic{Kind: KindChunk, Seq: seq}, reject(ReasonMalformed, "topic %q: chunk number %q: want 0 to %d", topic, parts[3], MaxChunks-1)
		}
		return UpdateTopic{Kind: KindChunk, Seq: seq, Chunk: n}, nil
	case parts[0] == "delta" && len(parts) == 2:
		return UpdateTopic{Kind: KindDelta, Seq: seq}, nil
	}
	return UpdateTopic{}, reject(ReasonMalformed, "topic %q: want snapshot/SEQ/manifest, snapshot/SEQ/chunk/N or delta/SEQ", topic)
}

// MaxPayload is the largest payload accepted on topic under l: the chunk,
// delta or manifest limit by the topic's kind (the manifest limit for a
// topic that is none of them).
func (l Limits) MaxPayload(topic string) int64 {
	l.defaults("")
	ut, _ := ParseUpdateTopic(topic)
	switch ut.Kind {
	case KindChunk:
		return l.MaxChunkBytes
	case KindDelta:
		return l.MaxDeltaBytes
	}
	return MaxManifestBytes
}

// ParseManifest reads and checks a snapshot manifest for topic seq: strict
// JSON (no unknown or repeated members, nothing after the object), the
// schema, seq, version, chunk count, format and checksum form. It never
// panics; errors are malformed *UpdateErrors.
func ParseManifest(seq uint64, payload []byte) (Manifest, error) {
	var m Manifest
	if err := jsonstrict.Decode(payload, &m, true); err != nil {
		return m, reject(ReasonMalformed, "manifest is not JSON of the contract: %v", err)
	}
	var present struct {
		Bytes *int64 `json:"bytes"`
	}
	json.Unmarshal(payload, &present) // the same bytes decoded strictly above
	switch {
	case present.Bytes == nil:
		return m, reject(ReasonMalformed, "manifest has no bytes")
	case m.Schema != SnapshotSchema:
		return m, reject(ReasonMalformed, "manifest schema %q, want %q", m.Schema, SnapshotSchema)
	case m.Seq != seq:
		return m, reject(ReasonMalformed, "manifest seq %d differs from the topic's %d", m.Seq, seq)
	case m.Version == "" || len(m.Version) > 128:
		return m, reject(ReasonMalformed, "manifest version %q: want 1 to 128 characters", m.Version)
	case m.Chunks < 1 || m.Chunks > MaxChunks:
		return m, reject(ReasonMalformed, "manifest chunks %d: want 1 to %d", m.Chunks, MaxChunks)
	case m.Format != CSV && m.Format != JSONL:
		return m, reject(ReasonMalformed, "manifest format %q: want csv or jsonl", m.Format)
	case !lowerHex64(m.SHA256):
		return m, reject(ReasonMalformed, "manifest sha256 %q: want 64 lowercase hex digits", m.SHA256)
	case m.Bytes < 0:
		return m, reject(ReasonMalformed, "manifest bytes %d is negative", m.Bytes)
	}
	return m, nil
}

// ParseDelta splits a delta payload into its checked header line and its
// body (every byte after the header's newline). Strict JSON as
// ParseManifest. It never panics; errors are malformed *UpdateErrors.
func ParseDelta(seq uint64, payload []byte) (DeltaHeader, []byte, error) {
	head, body, _ := strings.Cut(string(payload), "\n")
	var h DeltaHeader
	if err := jsonstrict.Decode([]byte(head), &h, true); err != nil {
		return h, nil, reject(ReasonMalformed, "delta header line is not JSON of the contract: %v", err)
	}
	switch {
	case h.Schema != DeltaSchema:
		return h, nil, reject(ReasonMalformed, "delta schema %q, want %q", h.Schema, DeltaSchema)
	case h.Seq != seq:
		return h, nil, reject(ReasonMalformed, "delta seq %d differs from the topic's %d", h.Seq, seq)
	case h.Version == "" || len(h.Version) > 128:
		return h, nil, reject(ReasonMalformed, "delta version %q: want 1 to 128 characters", h.Version)
	case !lowerHex64(h.SHA256):
		return h, nil, reject(ReasonMalformed, "delta sha256 %q: want 64 lowercase hex digits", h.SHA256)
	}
	return h, []byte(body), nil
}

// lowerHex64 reports whether s is 64 lowercase hex digits (a SHA-256 as
// the contract writes it).
func lowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Keys in a staged snapshot's bucket beside the manifest and the chunks.
var (
	keyStagedBytes = []byte("b") // uint64: bytes of every staged part
	keyStagedSince = []byte("t") // int64 unix nanoseconds: when its first part was staged
)

// stageBounded stores one part of snapshot seq like stage, within the
// limits: the staged total stays within MaxSnapshotBytes and the free space
// under the file stays above Reserve. Over either, the whole staged
// snapshot is dropped (its pages are freed for the next one) and the
// refusal is returned.
func (s *Store) stageBounded(seq uint64, key, val []byte) error {
	l := s.opts.limits
	free, err := l.Free()
	if err != nil {
		return fmt.Errorf("checking free space before staging: %w", err)
	}
	// bbolt copies on write and grows its file ahead (up to doubling while
	// small, 16 MiB steps later): count that too.
	need := 2*int64(len(val)) + min(s.fileSize(), 16<<20) + 64<<10
	if reserve := l.Reserve(); free-need < reserve {
		s.dropStaged(seq)
		return reject(ReasonNoSpace, "staging %d more bytes of snapshot %d needs up to %s (bbolt copies on write and grows its file ahead), %s is free under %s and %s is kept for events; the staged snapshot was dropped",
			len(val), seq, human(need), human(free), filepath.Dir(s.path), human(reserve))
	}
	var over int64
	err = s.update(func(tx *bolt.Tx) error {
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
		total := int64(getU64(b.Get(keyStagedBytes))) - int64(len(b.Get(key))) + int64(len(val))
		if total > l.MaxSnapshotBytes {
			over = total
			return st.DeleteBucket(putU64(seq))
		}
		if b.Get(keyStagedSince) == nil {
			if err := b.Put(keyStagedSince, binary.BigEndian.AppendUint64(nil, uint64(l.Now().UnixNano()))); err != nil {
				return err
			}
		}
		if err := b.Put(keyStagedBytes, putU64(uint64(total))); err != nil {
			return err
		}
		return b.Put(key, val)
	})
	if err != nil {
		return err
	}
	if over > 0 {
		return reject(ReasonTooLarge, "snapshot %d would stage %d bytes, over allowlist.max_snapshot_bytes %d; the staged snapshot was dropped", seq, over, l.MaxSnapshotBytes)
	}
	return nil
}

func (s *Store) fileSize() int64 {
	var n int64
	s.view(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// ExpireStaged drops every staged snapshot whose first part was staged
// longer than StagingTTL ago, and returns an ack (rejected, expired) for
// each. The updater calls it periodically.
func (s *Store) ExpireStaged() ([]Ack, error) {
	s.updMu.Lock()
	defer s.updMu.Unlock()
	now := s.opts.limits.Now()
	var acks []Ack
	err := s.update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketStaging)
		var gone [][]byte
		st.ForEach(func(k, v []byte) error {
			b := st.Bucket(k)
			if v != nil || b == nil {
				return nil
			}
			since := time.Unix(0, int64(getU64(b.Get(keyStagedSince))))
			if age := now.Sub(since); age > s.opts.limits.StagingTTL {
				gone = append(gone, append([]byte(nil), k...))
				acks = append(acks, Ack{Schema: AckSchema, Kind: string(KindManifest), Seq: getU64(k), Status: StatusRejected, Reason: ReasonExpired,
					Detail: fmt.Sprintf("snapshot %d still incomplete %s after its first part (allowlist.staging_ttl %s): dropped with %s staged; resend it whole",
						getU64(k), age.Round(time.Second), s.opts.limits.StagingTTL, human(int64(getU64(b.Get(keyStagedBytes)))))})
			}
			return nil
		})
		for _, k := range gone {
			if err := st.DeleteBucket(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expiring staged snapshots: %w", err)
	}
	if info, ierr := s.Info(); ierr == nil {
		for i := range acks {
			acks[i].ActiveVer, acks[i].ActiveSeq = info.Version, info.Seq
		}
	}
	return acks, nil
}

// human writes a byte count for a log line.
func human(n int64) string {
	switch {
	case n >= 1<<30 || n <= -1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 || n <= -1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
