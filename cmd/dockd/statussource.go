package main

// The status page's view of a running daemon (internal/statuspage.Source),
// and the one call that starts the page with its metrics.

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
)

// statusSource adapts the daemon's parts to statuspage.Source. It is safe
// for concurrent use. It must be built before the daemon runs (it observes
// the station to learn each reader's last scan time).
type statusSource struct {
	d *daemon

	mu       sync.Mutex
	subs     map[chan struct{}]struct{}
	lastScan map[string]time.Time
}

func newStatusSource(d *daemon) *statusSource {
	s := &statusSource{d: d, subs: map[chan struct{}]struct{}{}, lastScan: map[string]time.Time{}}
	d.station.Observe(s.observe)
	return s
}

// observe runs on the pipeline goroutine: quick, never blocks.
func (s *statusSource) observe(ev dock.CustodyEvent) {
	s.mu.Lock()
	s.lastScan[ev.Reader] = ev.Time
	s.mu.Unlock()
	s.notify()
}

func (s *statusSource) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending: coalesced
		}
	}
}

// subscribers is how many event streams are open (for tests).
func (s *statusSource) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func (s *statusSource) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { s.mu.Lock(); delete(s.subs, ch); s.mu.Unlock() }) }
}

func (s *statusSource) Snapshot() statuspage.Snapshot {
	d := s.d
	snap := statuspage.Snapshot{
		Station: d.cfg.Station.ID, Site: d.cfg.Station.Site, Door: d.cfg.Station.Door,
		Direction: d.station.Direction(), Version: version, Time: time.Now().UTC(), Started: d.started.UTC(),
		Counts: map[string]uint64{},
	}
	ls := d.light.State()
	snap.Light = statuspage.Light{Green: ls.Green, Amber: ls.Amber, Red: ls.Red, Buzzer: ls.Buzzer,
		Showing: string(ls.Showing), Why: ls.Why, Conditions: ls.Conditions, Running: ls.Running}

	states := map[string]dock.ReaderState{}
	for _, r := range d.station.Readers() {
		states[r.Reader] = r
	}
	s.mu.Lock()
	for _, rc := range d.cfg.Readers {
		r := statuspage.Reader{ID: rc.ID, LastScan: s.lastScan[rc.ID]}
		if st, ok := states[rc.ID]; ok {
			r.Up, r.Port, r.Since = st.Up, st.Port, st.At
			if st.Err != nil && !st.Up {
				r.Error = st.Err.Error()
			}
		}
		snap.Readers = append(snap.Readers, r)
	}
	s.mu.Unlock()
	slices.SortFunc(snap.Readers, func(a, b statuspage.Reader) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})

	for _, ev := range d.station.Recent() {
		snap.Recent = append(snap.Recent, statuspage.ScanOf(ev))
	}
	for v, n := range d.station.Counts() {
		snap.Counts[string(v)] = n
	}
	st := d.queue.Stats()
	snap.Buffer = statuspage.Buffer{Depth: st.Depth, Bytes: st.Bytes, Fill: st.Fill, Alarm: st.Alarm || st.OverAge, Full: st.Full}
	if !st.OldestAt.IsZero() {
		snap.Buffer.OldestAgeS = time.Since(st.OldestAt).Seconds()
	}
	if u := d.unconfirmed(); u.Receipt {
		snap.Buffer.Unconfirmed, snap.Buffer.UnconfirmedOldestAgeS = &u.Depth, u.OldestAgeS
		snap.Buffer.Alarm = snap.Buffer.Alarm || u.Stalled
	}
	if d.up != nil {
		us := d.up.Stats()
		snap.Broker = statuspage.Broker{Configured: true, URL: firstNonEmpty(us.Broker, d.cfg.MQTT.Broker), Connected: d.up.Connected(), LastAck: us.LastAck}
	}
	if in, err := d.list.Info(); err == nil {
		snap.Allowlist = statuspage.Allowlist{Version: in.Version, Lots: in.Lots, Updated: in.Updated}
	}
	if st := readStorageStatus(); st != nil {
		snap.Storage = &statuspage.Storage{WrittenBytes: st.WrittenBytes}
	}
	return snap
}

// LightTest runs the lamp test for a and records it.
func (s *statusSource) LightTest(ctx context.Context, a statuspage.Actor) error {
	s.notify()
	defer s.notify()
	if err := s.d.light.Test(ctx); err != nil {
		return err
	}
	rec := actorRecord(a)
	rec.Action, rec.Detail = actLightTest, "lamp test through the "+a.Via
	s.d.recordOperator(ctx, rec)
	return nil
}

// SetDirection switches the door for a; the change is recorded.
func (s *statusSource) SetDirection(dir dock.Direction, a statuspage.Actor) error {
	if err := s.d.setDirection(context.Background(), dir, actorRecord(a)); err != nil {
		return err
	}
	s.d.refreshStatus()
	s.notify()
	return nil
}

// ReloadConfig re-reads the config file for a (what can change without a
// restart) and records it.
func (s *statusSource) ReloadConfig(a statuspage.Actor) error {
	if err := s.d.reloadAudited(context.Background(), actorRecord(a), s.d.configReload()); err != nil {
		return err
	}
	s.d.refreshStatus()
	s.notify()
	return nil
}

// Inject runs a simulated scan for a: recorded under reader simulate,
// marked simulated, with who asked (the station enforces all three).
func (s *statusSource) Inject(ctx context.Context, data []byte, tag bool, a statuspage.Actor) (dock.CustodyEvent, error) {
	f := dock.Frame{Reader: dock.SimulatedReader, Data: data, At: time.Now(), Injected: &dock.Injection{Actor: a.Who, Via: a.Via}}
	if tag {
		f.Tag = &dock.TagRead{}
	}
	return s.d.station.Process(ctx, f)
}

// openStatusPage builds the status page for d with its Prometheus metrics
// (plus the Go runtime and process collectors) on a fresh registry, and
// hooks the scan counters into the station. Call it after openDaemon and
// before d.Run; run the returned server with Run(ctx) next to d.Run. The
// returned Metrics take publish latencies (ObservePublishLatency) once the
// uplink reports them per acknowledgement.
func openStatusPage(d *daemon, cfg statuspage.Config) (*statuspage.Server, *statuspage.Metrics, *statusSource, error) {
	src := newStatusSource(d)
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, nil, err
	}
	m, err := statuspage.NewMetrics(reg, src)
	if err != nil {
		return nil, nil, nil, err
	}
	d.station.Observe(m.ObserveEvent)
	srv, err := statuspage.New(cfg, src, reg, d.log.With("part", "status"))
	if err != nil {
		return nil, nil, nil, err
	}
	return srv, m, src, nil
}
