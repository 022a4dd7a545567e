// Package station is the per-door pipeline: frame → decode → rules →
// durable record → light. It owns no hardware and no network; it consumes
// the small interfaces declared here, which cmd/dockd fills with the real
// readers, decoder, allowlist, bbolt buffer and stack light.
//
// The one promise it keeps: the light shows a decision only after the
// custody event for it is durable in the Outbox. A scan whose event cannot
// be stored is refused (reject, buffer_full or storage_fault) and the light
// says so.
package station

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/scan"
)

// Decoder turns reader bytes into a typed scan.
type Decoder interface {
	Decode(raw []byte) (*scan.Scan, error)
	DecodeEPC(hex string) (*scan.Scan, error)
}

// Outbox is the durable queue of custody events.
type Outbox interface {
	// Append stores the payload build returns for the record's sequence
	// number and returns once it is durable. Errors wrapping
	// dock.ErrBufferFull mean the budget is spent.
	Append(ctx context.Context, build func(seq uint64) ([]byte, error)) (uint64, error)
}

// List is the allowlist with the door's custody state (allowlist.Store).
type List interface {
	// View runs fn with one consistent snapshot of the list and the
	// custody state.
	View(fn func(custody.List) error) error
	// Record applies the custody change of an event that is durable in the
	// Outbox, in memory at once, so the next scan's decision sees it. It
	// must return at once (no disk write).
	Record(ev dock.CustodyEvent)
}

// Light shows decisions and standing conditions to the operator. Both
// methods must return at once.
type Light interface {
	ShowDecision(dock.Verdict)
	SetCondition(dock.Condition, bool)
}

// Config is what the pipeline needs to know about its door.
type Config struct {
	Site, Door, StationID string
	Direction             dock.Direction
	Policy                custody.Policy
	// Now is the wall clock (default time.Now); Location the site's time
	// zone for expiry dates (default time.Local).
	Now      func() time.Time
	Location *time.Location
	// ClockSynced reports whether wall time is trustworthy (nil: assume yes).
	ClockSynced func() bool
}

// Station runs the pipeline for one door. Its methods are safe for
// concurrent use; Run processes frames one at a time, in arrival order.
type Station struct {
	cfg   Config
	dec   Decoder
	list  List
	out   Outbox
	light Light
	log   *slog.Logger
	pings chan struct{} // Ping: taken by Run's loop

	mu        sync.Mutex
	policy    custody.Policy
	direction dock.Direction
	readers   map[string]dock.ReaderState
	recent    []dock.CustodyEvent // ring of the last RecentSize events
	next      int
	counts    map[dock.Verdict]uint64
	observers []func(dock.CustodyEvent)
	refused   bool // the last append failed; cleared by the next success
}

// RecentSize is how many events Recent keeps.
const RecentSize = 50

// New builds a station. Nothing runs until Run.
func New(cfg Config, dec Decoder, list List, out Outbox, light Light, log *slog.Logger) *Station {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if log == nil {
		log = slog.Default()
	}
	return &Station{
		cfg: cfg, dec: dec, list: list, out: out, light: light, log: log,
		direction: cfg.Direction, policy: cfg.Policy, readers: map[string]dock.ReaderState{},
		counts: map[dock.Verdict]uint64{}, pings: make(chan struct{}),
	}
}

// Run consumes frames and reader states until ctx ends or frames is closed.
// After frames is closed it returns nil once every frame already received
// is recorded: closing the channel is the orderly way to drain.
//
// Frames that are already waiting when Run takes one (an RFID burst, a
// tunnel scanner) are processed together: decided in order, appended so
// that they share one commit, each lit after that commit (processBatch).
func (s *Station) Run(ctx context.Context, frames <-chan dock.Frame, states <-chan dock.ReaderState) error {
	var b burstLog
	defer b.flush(s.log)
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	batch := make([]dock.Frame, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-states:
			s.readerState(st)
		case <-s.pings:
		case <-quiet.C:
			b.flush(s.log)
		case f, ok := <-frames:
			if !ok {
				return nil
			}
			batch = append(batch[:0], f)
			closed := false
		more:
			for len(batch) < maxBatch {
				select {
				case f, ok := <-frames:
					if !ok {
						closed = true
						break more
					}
					batch = append(batch, f)
				default:
					break more
				}
			}
			// The frames were read: record them even if shutdown is under way.
			s.processBatch(context.WithoutCancel(ctx), batch, &b)
			clear(batch)
			if b.n > 0 {
				quiet.Reset(burstQuiet)
			}
			if closed {
				return nil
			}
		}
	}
}

// Ping returns once Run's loop took it: proof that the pipeline is not
// stuck in decode, rules, a storage write or the light. It returns
// ctx.Err() if the loop does not answer in time (the systemd watchdog then
// stops its keep-alives).
func (s *Station) Ping(ctx context.Context) error {
	select {
	case s.pings <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Process runs one frame through decode, rules, durable append and light,
// and returns the event (Seq 0 when it could not be stored) and the append
// error, if any.
func (s *Station) Process(ctx context.Context, f dock.Frame) (dock.CustodyEvent, error) {
	ev, _ := s.decide(f)
	seq, err := s.out.Append(ctx, eventBuild(ev))
	return s.finish(f, ev, seq, err, true)
}

// eventBuild returns the buffer's build function for ev: ev with its
// sequence number, as JSON.
func eventBuild(ev dock.CustodyEvent) func(uint64) ([]byte, error) {
	return func(seq uint64) ([]byte, error) {
		e := ev
		e.Seq = seq
		return json.Marshal(&e)
	}
}

// finish acts on an append's outcome: a durable event is recorded in the
// custody state and shown; a refused one is shown as refused. logEach logs
// the decision at info level (a lone scan); otherwise at debug level, the
// burst summary counts it.
func (s *Station) finish(f dock.Frame, ev dock.CustodyEvent, seq uint64, err error, logEach bool) (dock.CustodyEvent, error) {
	if err != nil {
		reason, cond := dock.ReasonStorageFault, dock.ConditionStorageFault
		if errors.Is(err, dock.ErrBufferFull) {
			reason, cond = dock.ReasonBufferFull, dock.ConditionBufferFull
		}
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: reason, Detail: "scan refused, not recorded: " + err.Error()}
		s.mu.Lock()
		s.refused = true
		s.mu.Unlock()
		s.light.SetCondition(cond, true)
		s.light.ShowDecision(dock.Reject)
		s.log.Error("scan refused: custody event could not be stored", "reader", f.Reader, "raw", ev.Raw, "reason", reason, "err", err)
		s.remember(ev)
		return ev, err
	}
	ev.Seq = seq
	s.mu.Lock()
	wasRefused := s.refused
	s.refused = false
	s.mu.Unlock()
	if wasRefused {
		s.light.SetCondition(dock.ConditionBufferFull, false)
		s.light.SetCondition(dock.ConditionStorageFault, false)
	}
	// The event is durable: light first (the operator waits for it), then
	// its custody change, which counts from the next scan on (Run takes the
	// next frame only after this returns).
	s.light.ShowDecision(ev.Verdict)
	s.list.Record(ev)
	lvl := slog.LevelInfo
	if !logEach {
		lvl = slog.LevelDebug
	}
	if s.log.Enabled(context.Background(), lvl) {
		s.log.Log(context.Background(), lvl, "decision", "seq", ev.Seq, "reader", ev.Reader, "decision", ev.Verdict, "reason", ev.Reason,
			"gtin", ev.GTIN, "lot", ev.Lot, "serial", ev.Serial, "sscc", ev.SSCC, "detail", ev.Detail)
	}
	s.remember(ev)
	return ev, nil
}

// decide builds the custody event for f with its decision (no Seq yet).
// Everything taken from the allowlist (the version stamped on the event,
// the rules' look-ups, the lot of a batch code) comes from one snapshot.
// shipments reports whether expected shipments are open at the door (then
// any accepted scan changes what later scans are counted against).
func (s *Station) decide(f dock.Frame) (ev dock.CustodyEvent, shipments bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	dir, pol := s.direction, s.policy
	s.mu.Unlock()
	ev = dock.CustodyEvent{
		Schema: dock.EventSchema, ID: dock.NewEventID(), Site: s.cfg.Site, Station: s.cfg.StationID, Door: s.cfg.Door,
		Direction: dir, Time: now.UTC(), ClockSynced: s.cfg.ClockSynced == nil || s.cfg.ClockSynced(),
		Reader: f.Reader, Raw: string(f.Data), Tag: f.Tag,
	}
	if f.Injected != nil {
		// Whatever the frame says, an injected scan is marked as one.
		ev.Reader, ev.Simulated = dock.SimulatedReader, true
		ev.Actor, ev.Via = f.Injected.Actor, f.Injected.Via
	}
	if !utf8.Valid(f.Data) {
		ev.RawHex = hex.EncodeToString(f.Data)
	}
	sc := s.read(f, &ev) // nil: a bad scan, ev.Decision says why
	var item custody.Item
	if sc != nil {
		item = custody.Item{GTIN: ev.GTIN, Lot: ev.Lot, Serial: ev.Serial, SSCC: ev.SSCC, Expiry: ev.Expiry}
		item.Qty, _ = sc.Count()
		ev.Qty = item.Qty
	}
	at := custody.At{Door: s.cfg.Door, Direction: dir, Today: now.In(s.cfg.Location).Format("2006-01-02")}
	err := s.list.View(func(l custody.List) error {
		ev.AllowlistVersion = l.Version()
		if sc == nil {
			return nil
		}
		if ships, err := l.Shipments(s.cfg.Door, dir); err != nil || len(ships) > 0 {
			shipments = true
		}
		ev.Decision = custody.Decide(item, l, pol, at)
		ev.Shipment = ev.ExpectedShipment
		// A scanned AI 10 that is one of a lot's batch codes: the event
		// names the lot (for recall traces) and keeps the batch.
		if ev.GTIN != "" && ev.Lot != "" {
			if lt, ok, _ := l.Lot(ev.GTIN, ev.Lot); ok && lt.Lot != ev.Lot {
				ev.Batch, ev.Lot = ev.Lot, lt.Lot
			}
		}
		return nil
	})
	if err != nil && sc != nil {
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonStorageFault, Detail: "reading the allowlist: " + err.Error()}
	}
	return ev, shipments
}

// read decodes f into ev. It returns the scan, or nil when f is a bad scan
// (a read error, line noise, a decode error), with ev's bad_scan decision
// and error kind set.
func (s *Station) read(f dock.Frame, ev *dock.CustodyEvent) *scan.Scan {
	bad := func(kind, msg string) *scan.Scan {
		ev.ErrorKind = kind
		ev.Decision = custody.BadScan(kind, msg)
		return nil
	}
	if f.Err != nil {
		if errors.Is(f.Err, dock.ErrFrameTooLong) {
			return bad("too_long", f.Err.Error())
		}
		return bad("read_error", f.Err.Error())
	}
	if msg := unreadable(f.Data); msg != "" {
		return bad(string(scan.KindBadCharset), msg)
	}
	var sc *scan.Scan
	var err error
	if f.Tag != nil {
		sc, err = s.dec.DecodeEPC(string(f.Data))
	} else {
		sc, err = s.dec.Decode(f.Data)
	}
	if err != nil {
		kind := "decode"
		var se *scan.Error
		if errors.As(err, &se) {
			kind = string(se.Kind)
		}
		if sc != nil {
			fillScan(ev, sc)
		}
		return bad(kind, err.Error())
	}
	fillScan(ev, sc)
	return sc
}

// unreadable says what makes data line noise rather than a code: bytes
// that are not UTF-8, or control characters other than GS (FNC1) and the
// EOT/RS of ISO/IEC 15434 envelopes. Empty when data is readable.
func unreadable(data []byte) string {
	if !utf8.Valid(data) {
		return "not valid UTF-8: line noise or a wrong baud rate/parity"
	}
	for i, c := range data {
		if c < 0x20 && c != 0x1d && c != 0x1e && c != 0x04 || c == 0x7f {
			return fmt.Sprintf("control byte 0x%02x at offset %d: line noise or a wrong baud rate/parity", c, i)
		}
	}
	return ""
}

func fillScan(ev *dock.CustodyEvent, sc *scan.Scan) {
	ev.Symbology = sc.Symbology
	ev.Form = string(sc.Form)
	for _, ai := range sc.AIs {
		ev.AIs = append(ev.AIs, dock.AIValue{AI: ai.AI, Value: ai.Value})
	}
	ev.GTIN, ev.Lot, ev.Serial, ev.SSCC = sc.GTIN(), sc.Lot(), sc.Serial(), sc.SSCC()
	if y, m, d, ok := sc.Expiry(); ok {
		ev.Expiry = fmt.Sprintf("%04d-%02d-%02d", y, m, d)
	}
	if sc.EPC != nil {
		ev.EPC = sc.EPC.URI
	}
}

func (s *Station) remember(ev dock.CustodyEvent) {
	s.mu.Lock()
	if len(s.recent) < RecentSize {
		s.recent = append(s.recent, ev)
	} else {
		s.recent[s.next] = ev
	}
	s.next = (s.next + 1) % RecentSize
	s.counts[ev.Verdict]++
	obs := s.observers
	s.mu.Unlock()
	for _, fn := range obs {
		fn(ev)
	}
}

// Observe registers fn to be called (on the pipeline goroutine, so it must
// be quick) with every event after its decision was shown.
func (s *Station) Observe(fn func(dock.CustodyEvent)) {
	s.mu.Lock()
	s.observers = append(s.observers, fn)
	s.mu.Unlock()
}

// Recent returns up to RecentSize of the latest events, newest first.
func (s *Station) Recent() []dock.CustodyEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]dock.CustodyEvent, 0, len(s.recent))
	for i := 1; i <= len(s.recent); i++ {
		out = append(out, s.recent[(s.next-i+len(s.recent))%len(s.recent)])
	}
	return out
}

func (s *Station) readerState(st dock.ReaderState) {
	s.mu.Lock()
	s.readers[st.Reader] = st
	anyDown := false
	for _, r := range s.readers {
		anyDown = anyDown || !r.Up
	}
	s.mu.Unlock()
	if st.Up {
		s.log.Info("reader up", "reader", st.Reader, "port", st.Port)
	} else {
		s.log.Warn("reader down", "reader", st.Reader, "err", st.Err)
	}
	s.light.SetCondition(dock.ConditionReaderDown, anyDown)
}

// Readers returns the last known state of each reader.
func (s *Station) Readers() []dock.ReaderState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]dock.ReaderState, 0, len(s.readers))
	for _, r := range s.readers {
		out = append(out, r)
	}
	return out
}

// Direction returns which way the door runs now.
func (s *Station) Direction() dock.Direction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.direction
}

// SetDirection switches the door between receiving and shipping; scans
// decided afterwards carry the new direction.
func (s *Station) SetDirection(d dock.Direction) error {
	if !d.Valid() {
		return fmt.Errorf("set direction %q: want receiving or shipping", d)
	}
	s.mu.Lock()
	old := s.direction
	s.direction = d
	s.mu.Unlock()
	s.log.Info("direction switched", "from", old, "to", d)
	return nil
}

// Policy returns the rules' policy in force.
func (s *Station) Policy() custody.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// SetPolicy replaces the rules' policy; scans decided afterwards use it.
// The caller must not modify p's maps afterwards.
func (s *Station) SetPolicy(p custody.Policy) {
	s.mu.Lock()
	s.policy = p
	s.mu.Unlock()
	s.log.Info("policy changed", "expires_soon_days", p.ExpiresSoonDays)
}

// Counts returns how many scans got each verdict since start.
func (s *Station) Counts() map[dock.Verdict]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[dock.Verdict]uint64, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}
