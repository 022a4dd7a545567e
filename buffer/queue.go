// Package buffer is the station's durable store-and-forward queue.
//
// The station appends each custody event here before it shows the light;
// Append returns only after the record is fsync'd to a bbolt file, so an
// event the operator saw survives kill -9, power loss and a broker that is
// down for a day. The uplink reads records oldest-first with Pending and
// deletes them with Ack once the broker has confirmed them.
//
// All writes (appends and acks) go through one writer goroutine that
// batches whatever is queued into one bbolt transaction and one fsync
// (group commit). Reads (Pending, Export) use their own short read
// transactions and never wait for the writer.
//
// File layout: records are kept in segments, top-level buckets named "s"
// plus the big-endian uint64 sequence number of their first record, each
// one page of consecutive records (see segments.go for why). A record maps
// its big-endian uint64 sequence number to a value of one format byte (1),
// the append time as big-endian int64 Unix nanoseconds, and the payload.
// Bucket "meta" holds the next sequence number, the delivered mark, the
// last deleted sequence number and the time of that ack. Files from before
// segments hold older records in one bucket "records", read first.
package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultMaxBytes      int64   = 256 << 20
	DefaultAlarmFraction float64 = 0.8
	// DefaultPendingMax is the number of records Pending returns when it
	// is called with max <= 0.
	DefaultPendingMax = 1000
	// DefaultAckDelay and DefaultAckBatch bound how long (after the last
	// append) and how many delivered records wait for the commit that
	// writes their mark (AckDeferred). Scans closer together than
	// DefaultAckDelay (one every 30 s and more often) carry the marks in
	// their own commits for free; a commit of its own (two pages) follows
	// only the last scan of a run.
	DefaultAckDelay = 30 * time.Second
	DefaultAckBatch = 4096
)

// maxGroup caps how many queued requests one commit takes.
const maxGroup = 1000

// Error kinds callers branch on.
var (
	// ErrFull means the undelivered payload bytes would exceed
	// Options.MaxBytes; nothing was stored. It clears when Ack frees space.
	ErrFull = errors.New("buffer: queue full")
	// ErrClosed means the Queue was closed before the call.
	ErrClosed = errors.New("buffer: queue closed")
	// ErrCommit marks an error from writing or fsyncing a group commit
	// (disk full, I/O error). Nothing of the failed group is stored. The
	// error also wraps the underlying cause.
	ErrCommit = errors.New("buffer: commit failed")
	// ErrAckAhead means Ack was given a sequence number that was never
	// appended. Nothing was deleted.
	ErrAckAhead = errors.New("buffer: ack beyond newest appended record")
	// ErrLocked means another process holds the queue file open.
	ErrLocked = errors.New("buffer: queue file locked by another process")
)

// Options configure a Queue. The zero value is usable.
type Options struct {
	// MaxBytes is the budget for undelivered payload bytes (default
	// 256 MiB). An Append that would exceed it returns ErrFull.
	MaxBytes int64
	// MaxAge raises Stats().OverAge when the oldest undelivered record is
	// older than this. Records are never dropped for age. 0 disables.
	MaxAge time.Duration
	// AlarmFraction raises Stats().Alarm when Bytes >=
	// AlarmFraction*MaxBytes (default 0.8).
	AlarmFraction float64
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Retain, when set, bounds which delivered records AckDeferred may
	// delete from the file: records above Retain() stay on disk (though
	// counted as delivered) until Retain catches up. The station keeps
	// events above its custody checkpoint this way, so that state can be
	// rebuilt from them after a crash. Called from the writer goroutine;
	// it must be quick. Ack (the durable form) ignores it.
	Retain func() uint64
	// AckDelay is how long after the last append the delivered mark of
	// AckDeferred (and the deletion of delivered records) may wait for a
	// commit (default 30s). They ride free on append commits; only when no
	// append comes within AckDelay (or AckBatch records are waiting) does
	// the writer commit them on their own.
	AckDelay time.Duration
	// AckBatch is how many delivered records make the writer delete them
	// without waiting for AckDelay (default 4096).
	AckBatch int
	// GapRecord, when set, makes sequence gaps visible. A failed commit
	// skips the sequence numbers it handed out (they are never reused);
	// the next successful commit then also stores one record whose payload
	// GapRecord builds for the skipped range from..to (inclusive) and the
	// failure reason, under its own sequence number seq, in the same
	// transaction as the rest of that group. Consecutive failed commits
	// widen one range. It is called from the writer goroutine inside the
	// transaction and must not call the Queue. The gap record is not held
	// to MaxBytes (at most one per run of failures). If it returns an error
	// the gap stays pending for the next commit. If the process ends before
	// a successful commit, nothing is owed: the skipped numbers were never
	// written to the file, and the reopened queue hands them out again.
	GapRecord func(seq, from, to uint64, reason string) ([]byte, error)
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("buffer: options: MaxBytes %d is negative", o.MaxBytes)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.AlarmFraction < 0 || o.AlarmFraction > 1 {
		return o, fmt.Errorf("buffer: options: AlarmFraction %v is outside [0,1]", o.AlarmFraction)
	}
	if o.AlarmFraction == 0 {
		o.AlarmFraction = DefaultAlarmFraction
	}
	if o.MaxAge < 0 {
		return o, fmt.Errorf("buffer: options: MaxAge %v is negative", o.MaxAge)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.AckDelay < 0 || o.AckBatch < 0 {
		return o, fmt.Errorf("buffer: options: AckDelay %v / AckBatch %d is negative", o.AckDelay, o.AckBatch)
	}
	if o.AckDelay == 0 {
		o.AckDelay = DefaultAckDelay
	}
	if o.AckBatch == 0 {
		o.AckBatch = DefaultAckBatch
	}
	return o, nil
}

// Record is one stored event. Payload is a copy owned by the caller.
type Record struct {
	Seq     uint64
	At      time.Time // when the record was appended (wall clock, UTC)
	Payload []byte
}

// Stats is a snapshot of the queue's state.
type Stats struct {
	Depth      int       // undelivered records
	Bytes      int64     // undelivered payload bytes (what MaxBytes limits)
	OldestSeq  uint64    // oldest undelivered record; 0 when empty
	NewestSeq  uint64    // newest record ever appended to this file; 0 if none
	LastAckSeq uint64    // highest acknowledged sequence number; 0 if none
	OldestAt   time.Time // append time of OldestSeq; zero when empty
	LastAckAt  time.Time // when LastAckSeq was acknowledged; zero if never
	Fill       float64   // Bytes / MaxBytes
	Alarm      bool      // Bytes >= AlarmFraction*MaxBytes
	Full       bool      // the last Append was refused with ErrFull and no space was freed since
	OverAge    bool      // MaxAge > 0 and OldestAt is older than MaxAge
	Path       string    // the queue file
	FileBytes  int64     // size of the queue file on disk after the last commit
}

// state is the in-memory mirror of the committed file state. Only the
// writer goroutine (and Open, before it starts) changes it, under Queue.mu.
type state struct {
	depth     int
	bytes     int64
	oldestSeq uint64
	oldestAt  time.Time
	newestSeq uint64
	lastAck   uint64 // delivered (Ack or AckDeferred); what Stats reports
	lastAckAt time.Time
	fileAck   uint64 // records <= fileAck are deleted from the file (durable)
	full      bool
	fileBytes int64
	segFirst  uint64 // newest segment, where appends go; 0: start a new one
	segBytes  int    // bytes its records take in its page (elemOverhead each)
}

// Queue is a durable FIFO of records on one bbolt file. All methods are
// safe for concurrent use.
type Queue struct {
	path     string
	opts     Options
	log      *slog.Logger
	db       *bolt.DB
	pageSize int // the file's bbolt page size: a segment fills one page

	reqs   chan *request
	notify chan struct{}
	stop   chan struct{}
	done   chan struct{}

	life     sync.RWMutex // guards closed; held for reading while registering in inflight
	closed   bool
	inflight sync.WaitGroup

	mu sync.Mutex // guards st
	st state

	nextSeq uint64 // next sequence number to hand out; writer goroutine only

	pendingAck uint64 // AckDeferred's mark not yet written; set by the writer, under mu
	// delivered is st as it will be once pendingAck is durable (what Stats
	// reports while delivered.lastAck > st.lastAck). Writer sets, under mu.
	delivered state

	// gap is the run of sequence numbers skipped by failed commits and not
	// yet declared by a gap record (gap.from == 0: none). Writer goroutine
	// only.
	gap struct {
		from, to uint64
		reason   string
	}

	commits atomic.Uint64 // group transactions attempted (for tests and benchmarks)
}

type request struct {
	build  func(seq uint64) ([]byte, error) // nil for an ack
	ackSeq uint64
	lazy   bool        // AckDeferred: mark delivered, delete later
	res    chan result // buffered, capacity 1
}

type result struct {
	seq uint64
	err error
}

var (
	bucketMeta   = []byte("meta")
	keyNextSeq   = []byte("next_seq")
	keyLastAck   = []byte("last_ack_seq")
	keyLastAckAt = []byte("last_ack_at")
	// keyDelivered is the delivered mark (AckDeferred) as of the last
	// commit: records up to it may still be in the file (Options.Retain,
	// deletion pending) but are not sent again after a restart. Written
	// with every commit; the meta bucket is small enough to live inline in
	// the root page that every commit rewrites anyway, so it costs no page.
	keyDelivered = []byte("delivered_seq")
)

const (
	recordFormat = 1
	headerLen    = 9 // format byte + int64 nanoseconds
)

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func u64(v uint64) []byte { return seqKey(v) }

func encodeValue(at time.Time, payload []byte) []byte {
	v := make([]byte, headerLen+len(payload))
	v[0] = recordFormat
	binary.BigEndian.PutUint64(v[1:9], uint64(at.UnixNano()))
	copy(v[headerLen:], payload)
	return v
}

// decodeValue validates a stored value and returns its time and payload
// (aliasing v).
func decodeValue(k, v []byte) (uint64, time.Time, []byte, error) {
	if len(k) != 8 {
		return 0, time.Time{}, nil, fmt.Errorf("record key %x: length %d, want 8", k, len(k))
	}
	seq := binary.BigEndian.Uint64(k)
	if v == nil {
		return seq, time.Time{}, nil, fmt.Errorf("record %d: is a nested bucket", seq)
	}
	if len(v) < headerLen || v[0] != recordFormat {
		return seq, time.Time{}, nil, fmt.Errorf("record %d: bad header (length %d)", seq, len(v))
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	return seq, at, v[headerLen:], nil
}

// enter registers a call that Close must wait for.
func (q *Queue) enter() error {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.inflight.Add(1)
	return nil
}

func (q *Queue) leave() { q.inflight.Done() }

// Append durably stores one record and returns its sequence number.
//
// build is called exactly once, from the queue's writer goroutine inside the
// commit transaction, with the record's sequence number, and returns the
// payload; the queue copies it. Sequence numbers are strictly increasing per
// queue file and never reused, even after every record was acked and the
// file reopened. Append returns only after the record is fsync'd.
//
// Concurrent Appends share one transaction and one fsync: a lone Append
// commits at once; Appends arriving while a commit is running join the next
// one. If build fails (or panics) only that record fails, with build's error
// wrapped. ErrFull when the byte budget would be exceeded (nothing stored).
// If the commit fails, every Append of the group returns an error wrapping
// ErrCommit and the cause, and nothing of the group is stored.
//
// ctx bounds only the wait to hand the record to the writer; once handed
// over, Append waits for the definite outcome so that a nil error always
// means stored and an error always means not stored.
func (q *Queue) Append(ctx context.Context, build func(seq uint64) ([]byte, error)) (uint64, error) {
	if build == nil {
		return 0, errors.New("buffer: append: nil build function")
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("buffer: append: %w", err)
	}
	wait, err := q.submit(ctx, &request{build: build, res: make(chan result, 1)})
	if err != nil {
		return 0, err
	}
	r := wait()
	return r.seq, r.err
}

// AppendBatch stores records like one Append each, handed to the writer in
// order so their sequence numbers follow the order of builds, and waits for
// all of them: records queued together share one commit (up to the group
// limit). seqs[i] and errs[i] are builds[i]'s outcome, with Append's
// meaning; a record handed over is never abandoned by ctx.
func (q *Queue) AppendBatch(ctx context.Context, builds []func(seq uint64) ([]byte, error)) (seqs []uint64, errs []error) {
	seqs, errs = make([]uint64, len(builds)), make([]error, len(builds))
	waits := make([]func() result, len(builds))
	for i, build := range builds {
		if build == nil {
			errs[i] = errors.New("buffer: append: nil build function")
			continue
		}
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("buffer: append: %w", err)
			continue
		}
		waits[i], errs[i] = q.submit(ctx, &request{build: build, res: make(chan result, 1)})
	}
	for i, wait := range waits {
		if wait != nil {
			r := wait()
			seqs[i], errs[i] = r.seq, r.err
		}
	}
	return seqs, errs
}

// submit hands r to the writer and returns a function that waits for its
// result. The call is registered with Close until the result is received.
func (q *Queue) submit(ctx context.Context, r *request) (func() result, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		q.leave()
		return nil, fmt.Errorf("buffer: append: %w", ctx.Err())
	}
	return func() result {
		defer q.leave()
		return <-r.res
	}, nil
}

// Ack durably deletes every record with Seq <= seq. Acking a sequence
// number at or below Stats().LastAckSeq is a no-op; acking one that was
// never appended returns ErrAckAhead. Acks share group commits with
// Appends. Options.Retain does not apply: Ack deletes at once.
func (q *Queue) Ack(seq uint64) error {
	return q.ack(seq, false)
}

// AckDeferred marks every record with Seq <= seq delivered, without a
// commit of its own: the delivered mark is written with the next append's
// commit (it costs no extra page there), or on its own commit once no
// append came for Options.AckDelay or Options.AckBatch records wait, and at
// Close. Stats counts the records delivered as soon as the writer has
// taken the mark (before AckDeferred returns), and the next append's
// budget check counts them too; once the mark is durable they are not sent
// again, also after a crash. The records themselves leave the file with a
// later commit, not above Options.Retain(). A crash before the mark is
// durable means resending them: a duplicate, never a loss. Errors as for
// Ack.
func (q *Queue) AckDeferred(seq uint64) error {
	return q.ack(seq, true)
}

func (q *Queue) ack(seq uint64, lazy bool) error {
	q.mu.Lock()
	last := q.st.lastAck
	q.mu.Unlock()
	if seq <= last && lazy {
		if err := q.enter(); err != nil {
			return err
		}
		q.leave()
		return nil
	}
	wait, err := q.submit(context.Background(), &request{ackSeq: seq, lazy: lazy, res: make(chan result, 1)})
	if err != nil {
		return err
	}
	return wait().err
}

// Pending returns up to max records with Seq > after, oldest first
// (max <= 0 means DefaultPendingMax). It reads committed records only and
// does not wait for in-progress commits.
func (q *Queue) Pending(after uint64, max int) ([]Record, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	if max <= 0 {
		max = DefaultPendingMax
	}
	if after == ^uint64(0) {
		return nil, nil
	}
	var out []Record
	err := protect(func() error {
		return q.db.View(func(tx *bolt.Tx) error {
			c := newRecordCursor(tx)
			for k, v := c.seek(after + 1); k != nil && len(out) < max; k, v = c.next() {
				seq, at, p, err := decodeValue(k, v)
				if err != nil {
					return err
				}
				out = append(out, Record{Seq: seq, At: at, Payload: append([]byte(nil), p...)})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: reading records after %d from %s: %w", after, q.path, err)
	}
	return out, nil
}

// Notify returns a channel that receives a value after each successful
// commit that stored at least one record; the value is sent before the
// Appends of that commit return. Sends are coalesced and never block the
// writer, so one receive may stand for many appends; the channel is never
// closed.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

// Stats returns a snapshot of the queue's state from memory (recomputed
// from the file at Open). Cheap and safe for concurrent use, also after
// Close.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	st := q.st
	if d := q.delivered; d.lastAck > st.lastAck {
		// Acknowledged, the mark not yet written: count it delivered.
		st.depth, st.bytes, st.oldestSeq, st.oldestAt, st.lastAck, st.lastAckAt = d.depth, d.bytes, d.oldestSeq, d.oldestAt, d.lastAck, d.lastAckAt
	}
	q.mu.Unlock()
	s := Stats{
		Depth:      st.depth,
		Bytes:      st.bytes,
		OldestSeq:  st.oldestSeq,
		NewestSeq:  st.newestSeq,
		LastAckSeq: st.lastAck,
		OldestAt:   st.oldestAt,
		LastAckAt:  st.lastAckAt,
		Full:       st.full || st.bytes >= q.opts.MaxBytes,
		Path:       q.path,
		FileBytes:  st.fileBytes,
	}
	s.Fill = float64(st.bytes) / float64(q.opts.MaxBytes)
	s.Alarm = float64(st.bytes) >= q.opts.AlarmFraction*float64(q.opts.MaxBytes)
	s.OverAge = q.opts.MaxAge > 0 && st.depth > 0 && time.Since(st.oldestAt) > q.opts.MaxAge
	return s
}

// Close waits for in-flight Append, Ack and Pending calls (so every Append
// that was handed to the writer gets its definite outcome), stops the
// writer and closes the file. Calls after Close return ErrClosed; an Export
// or Import in progress fails with ErrClosed at its next chunk or record. A
// second Close returns nil.
func (q *Queue) Close() error {
	q.life.Lock()
	if q.closed {
		q.life.Unlock()
		return nil
	}
	q.closed = true
	q.life.Unlock()
	q.inflight.Wait()
	close(q.stop)
	<-q.done
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("buffer: closing %s: %w", q.path, err)
	}
	q.log.Info("buffer closed", "path", q.path, "depth", q.Stats().Depth)
	return nil
}

// writer owns the write side: it takes the first queued request, drains
// whatever else is already queued (up to maxGroup) and commits them together.
// Records marked delivered by AckDeferred are deleted with the next commit,
// or on a commit of their own after AckDelay (or AckBatch records).
func (q *Queue) writer() {
	defer close(q.done)
	// A failing disk can make a read through bbolt's mmap fault (SIGBUS).
	// Turn that into a panic that commit recovers as a failed group
	// instead of a crash of the whole station.
	debug.SetPanicOnFault(true)
	batch := make([]*request, 0, maxGroup)
	results := make([]result, maxGroup)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		if !armed && q.lazyWork() {
			timer.Reset(q.opts.AckDelay)
			armed = true
		}
		select {
		case r := <-q.reqs:
			batch = append(batch[:0], r)
		case <-timer.C:
			armed = false
			q.commit(nil, nil, true)
			continue
		case <-q.stop:
			if q.lazyWork() {
				q.commit(nil, nil, true)
			}
			return
		}
	drain:
		for len(batch) < maxGroup {
			select {
			case r := <-q.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if q.commit(batch, results[:len(batch)], false) > 0 && armed {
			// Appends are flowing: the lazy work rides with them; the
			// timer only catches the end of the flow.
			timer.Reset(q.opts.AckDelay)
		}
		clear(batch)
		// Let the appenders just answered run and queue their next record
		// before the next group is drained (bigger groups under load). A
		// scheduling yield, not a wait: results were already delivered, and
		// with nothing else runnable it returns at once.
		runtime.Gosched()
	}
}

// lazyWork reports whether a delivered mark waits to be written or
// delivered records still sit in the file. Writer goroutine only.
func (q *Queue) lazyWork() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pendingAck > q.st.lastAck || q.st.lastAck > q.st.fileAck
}

// deleteTarget is how far the file may be trimmed: the delivered mark,
// held back to Options.Retain.
func (q *Queue) deleteTarget(ns *state) uint64 {
	t := ns.lastAck
	if q.opts.Retain != nil {
		t = min(t, q.opts.Retain())
	}
	return t
}

// errNoChange rolls back a group transaction that stored nothing.
var errNoChange = errors.New("no change")

// commit runs one group transaction and delivers every request's result.
// force (the AckDelay timer, Close) commits the waiting delivered mark and
// deletions even when the group appends nothing. It returns how many
// records it stored.
func (q *Queue) commit(batch []*request, results []result, force bool) int {
	clear(results)
	q.mu.Lock()
	base := q.st
	q.mu.Unlock()

	ns := base
	next := q.nextSeq
	appended, deleted, marked := 0, false, false
	q.mu.Lock()
	pendingAck := q.pendingAck
	delivered := q.delivered
	q.mu.Unlock()
	now := time.Now()

	q.commits.Add(1)
	gapStored := false
	err := q.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		durableAck := uint64(0)
		var err error
		gapStored, err = q.storeGap(tx, &ns, &next, now)
		if err != nil {
			return err
		}
		if gapStored {
			appended++
		}
		// A mark waiting to be written goes first when this commit appends,
		// so the records it delivers free their budget for the appends.
		if pendingAck > ns.lastAck && slices.ContainsFunc(batch, func(r *request) bool { return r.build != nil }) {
			if err := q.markDelivered(tx, &ns, pendingAck, now); err != nil {
				return err
			}
			marked = true
		}
		for i, r := range batch {
			if r.build == nil {
				if r.ackSeq >= next {
					results[i].err = fmt.Errorf("%w: ack %d, newest is %d", ErrAckAhead, r.ackSeq, next-1)
					continue
				}
				if r.lazy {
					pendingAck = max(pendingAck, r.ackSeq)
					continue
				}
				if err := q.markDelivered(tx, &ns, r.ackSeq, now); err != nil {
					return err
				}
				durableAck = max(durableAck, r.ackSeq)
				continue
			}
			if ns.bytes >= q.opts.MaxBytes {
				results[i].err = fmt.Errorf("%w: %d of %d payload bytes used", ErrFull, ns.bytes, q.opts.MaxBytes)
				ns.full = true
				continue
			}
			payload, err := callBuild(r.build, next)
			if err != nil {
				results[i].err = fmt.Errorf("buffer: building record %d: %w", next, err)
				continue
			}
			if ns.bytes+int64(len(payload)) > q.opts.MaxBytes || len(payload)+headerLen > bolt.MaxValueSize {
				results[i].err = fmt.Errorf("%w: record of %d bytes does not fit (%d of %d payload bytes used)",
					ErrFull, len(payload), ns.bytes, q.opts.MaxBytes)
				ns.full = true
				continue
			}
			if err := q.putRecord(tx, &ns, next, encodeValue(now, payload)); err != nil {
				return fmt.Errorf("storing record %d: %w", next, err)
			}
			results[i].seq = next
			if ns.depth == 0 {
				ns.oldestSeq, ns.oldestAt = next, now.UTC()
			}
			ns.depth++
			ns.bytes += int64(len(payload))
			ns.newestSeq = next
			ns.full = false
			next++
			appended++
		}
		// The delivered mark of AckDeferred: with this commit when it
		// writes anyway, when enough wait, or when forced (AckDelay, Close).
		if pendingAck > ns.lastAck && (appended > 0 || durableAck > 0 || force || pendingAck-ns.lastAck >= uint64(q.opts.AckBatch)) {
			if err := q.markDelivered(tx, &ns, pendingAck, now); err != nil {
				return err
			}
			marked = true
		}
		// Delete what was delivered: a durable Ack's records now; others
		// when this commit writes anyway, when enough wait, or when forced.
		target := max(durableAck, q.deleteTarget(&ns))
		if target > ns.fileAck && (durableAck > 0 || appended > 0 || force || target-ns.fileAck >= uint64(q.opts.AckBatch)) {
			if err := q.deleteUpTo(tx, &ns, target); err != nil {
				return err
			}
			deleted = true
		}
		// A mark still not written (so nothing was appended: an append
		// writes it): what Stats counts meanwhile, carried on from the last
		// such figure while no commit has written a mark since.
		if pendingAck > ns.lastAck {
			if delivered.lastAck <= ns.lastAck || delivered.lastAck > pendingAck {
				delivered = ns
			}
			if err := q.markDelivered(tx, &delivered, pendingAck, now); err != nil {
				return err
			}
		}
		if appended == 0 && !deleted && !marked {
			return errNoChange
		}
		if err := meta.Put(keyNextSeq, u64(next)); err != nil {
			return fmt.Errorf("storing next sequence number %d: %w", next, err)
		}
		if err := meta.Put(keyDelivered, u64(ns.lastAck)); err != nil {
			return fmt.Errorf("storing the delivered mark %d: %w", ns.lastAck, err)
		}
		if deleted {
			if err := meta.Put(keyLastAck, u64(ns.fileAck)); err != nil {
				return fmt.Errorf("storing last ack %d: %w", ns.fileAck, err)
			}
			if err := meta.Put(keyLastAckAt, u64(uint64(ns.lastAckAt.UnixNano()))); err != nil {
				return fmt.Errorf("storing last ack time: %w", err)
			}
		}
		return nil
	})

	switch {
	case err == nil || errors.Is(err, errNoChange):
		if err == nil {
			if fi, serr := os.Stat(q.path); serr == nil {
				ns.fileBytes = fi.Size()
			}
		}
		q.nextSeq = next
		q.mu.Lock()
		q.pendingAck = pendingAck
		q.delivered = delivered
		q.mu.Unlock()
		if err == nil && gapStored {
			// storeGap put the record for the pending run in this commit.
			q.log.Warn("sequence gap declared", "path", q.path, "from", q.gap.from, "to", q.gap.to, "reason", q.gap.reason)
			q.gap.from, q.gap.to, q.gap.reason = 0, 0, ""
		}
		if ns.full && !base.full {
			q.log.Warn("buffer full: refusing appends", "path", q.path, "bytes", ns.bytes, "max_bytes", q.opts.MaxBytes, "depth", ns.depth)
		}
		q.mu.Lock()
		q.st = ns
		q.mu.Unlock()
	default:
		// Nothing of the group is stored. Sequence numbers handed to build
		// in this group are skipped, never reused: if the fsync lied and
		// the data did reach the disk, reuse would create duplicates. The
		// skipped run is declared by the next successful commit (GapRecord).
		if next > q.nextSeq && q.opts.GapRecord != nil {
			if q.gap.from == 0 {
				q.gap.from = q.nextSeq
			}
			q.gap.to = next - 1
			q.gap.reason = fmt.Sprintf("buffer commit failed: %v", err)
		}
		q.nextSeq = next
		q.mu.Lock()
		q.pendingAck = pendingAck // acknowledgements stay true; the mark is written later
		q.mu.Unlock()
		cerr := fmt.Errorf("%w: %d requests to %s: %w", ErrCommit, len(batch), q.path, err)
		q.log.Error("buffer commit failed", "path", q.path, "requests", len(batch), "err", err)
		for i := range results {
			if results[i].err == nil {
				results[i] = result{err: cerr}
			}
		}
		appended = 0
	}
	// Notify before answering, so that once an Append has returned its
	// notification is already pending.
	if appended > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	for i, r := range batch {
		r.res <- results[i]
	}
	return appended
}

// storeGap puts the gap record for the pending run of skipped sequence
// numbers (if any) under seq *next inside the commit transaction. A build
// error leaves the gap pending; only a failed Put fails the transaction.
func (q *Queue) storeGap(tx *bolt.Tx, ns *state, next *uint64, now time.Time) (bool, error) {
	if q.gap.from == 0 || q.opts.GapRecord == nil {
		return false, nil
	}
	g := q.gap
	payload, err := callBuild(func(seq uint64) ([]byte, error) { return q.opts.GapRecord(seq, g.from, g.to, g.reason) }, *next)
	if err != nil {
		q.log.Error("building the sequence gap record; retried at the next commit", "from", g.from, "to", g.to, "err", err)
		return false, nil
	}
	if err := q.putRecord(tx, ns, *next, encodeValue(now, payload)); err != nil {
		return false, fmt.Errorf("storing gap record %d: %w", *next, err)
	}
	if ns.depth == 0 {
		ns.oldestSeq, ns.oldestAt = *next, now.UTC()
	}
	ns.depth++
	ns.bytes += int64(len(payload))
	ns.newestSeq = *next
	*next++
	return true, nil
}

// update runs a bbolt write transaction, turning a panic inside bbolt
// (a fault reading a bad page, a failed internal assertion) into an error;
// bbolt rolls the transaction back while the panic unwinds.
func (q *Queue) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	return q.db.Update(fn)
}

// callBuild runs build, turning a panic into an error for that record only.
func callBuild(build func(uint64) ([]byte, error), seq uint64) (p []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("build panicked: %v", r)
		}
	}()
	return build(seq)
}

// markDelivered counts records <= seq as delivered in ns (depth, bytes,
// oldest, budget) without deleting them. A seq at or below the delivered
// mark changes nothing.
func (q *Queue) markDelivered(tx *bolt.Tx, ns *state, seq uint64, now time.Time) error {
	if seq <= ns.lastAck {
		return nil
	}
	n, freed := 0, int64(0)
	c := newRecordCursor(tx)
	k, v := c.seek(ns.lastAck + 1)
	for ; k != nil && binary.BigEndian.Uint64(k) <= seq; k, v = c.next() {
		n++
		freed += int64(len(v) - headerLen)
	}
	ns.depth -= n
	ns.bytes -= freed
	ns.lastAck = seq
	ns.lastAckAt = now.UTC()
	if n > 0 {
		ns.full = false
	}
	ns.oldestSeq, ns.oldestAt = 0, time.Time{}
	if k != nil {
		s, at, _, err := decodeValue(k, v)
		if err != nil {
			return err
		}
		ns.oldestSeq, ns.oldestAt = s, at
	}
	return nil
}
