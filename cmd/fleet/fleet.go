package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/buffer"
	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/outbox"
	"github.com/dockd/dockd/internal/scan"
	"github.com/dockd/dockd/internal/station"
	"github.com/dockd/dockd/uplink"
)

// Options configure one fleet run.
type Options struct {
	Stations  int           // stations simulated in this process
	Rate      float64       // scans per second per station
	Duration  time.Duration // how long scans are fed
	Broker    string        // external broker URL; empty starts a private mosquitto
	Mosquitto string        // mosquitto binary for the private broker
	Consumers int           // central consumers in the shared subscription group
	Group     string        // shared subscription group name
	// Central is how consumers subscribe: "shared" (one group,
	// $share/GROUP/dockd/v1/+/+/events, non-persistent on mosquitto 2.0)
	// or "partitioned" (consumer k holds persistent plain subscriptions
	// to the sites with index % Consumers == k; survives a clean broker
	// restart).
	Central string
	// RestartAt restarts the private broker (SIGTERM, start) this long
	// after scans begin; 0 means no restart. Needs the private broker.
	RestartAt time.Duration
	// Drain bounds the wait, after scans stop, for every event to reach a
	// consumer.
	Drain time.Duration
	// Dir holds the stations' bbolt files and the broker's files; empty
	// means a temp dir removed afterwards.
	Dir      string
	InFlight int // per-station uplink in-flight window

	// Delivery is the stations' mqtt.delivery: "broker" (default: an event
	// leaves a station's buffer on the broker's PUBACK) or "receipt" (only
	// once central's collector has committed it to PostgreSQL and sent a
	// receipt). Receipt delivery implies Collector.
	Delivery       string
	ReceiptTimeout time.Duration // stations' mqtt.receipt_timeout (default 5 s)
	// KillAt kills the private broker with SIGKILL this long after scans
	// begin and starts it again (a crash: whatever it held only in memory
	// or had not saved is gone); 0 means never. Needs the private broker.
	KillAt time.Duration
	// Collector runs central's real collector (internal/collector) into
	// PostgreSQL (DB, or a private server when DB is empty) and reports
	// what PostgreSQL holds.
	Collector bool
	DB        string
}

// Report is what a fleet run measured. Events are identified by (station,
// seq); Lost counts appended events no consumer received, Unexpected
// received events that were never appended in this run.
type Report struct {
	Stations, Consumers int
	Appended            uint64 // events durably appended by the stations
	Refused             uint64 // scans whose event could not be stored
	Delivered           uint64 // distinct appended events received by some consumer
	Duplicates          uint64 // deliveries beyond the first
	Lost                uint64
	Unexpected          uint64
	Restarts            int
	Published, Resent   uint64 // uplink publishes (station side), of them resends
	Connects            uint64 // uplink connections over all stations
	ScanTime            time.Duration
	DrainTime           time.Duration // from the end of scanning to the last event delivered
	EventsPerSec        float64       // Delivered / (ScanTime + DrainTime)
	P50, P99, Max       time.Duration // scan → consumer latency of first deliveries
	PerConsumer         []uint64      // deliveries per consumer (the shared-subscription split)

	// With the collector: appended events stored in PostgreSQL (each
	// (station, seq) at most once by construction), appended events not
	// stored, and redeliveries the collector recognised and did not store
	// again.
	Delivery                  string
	Kills                     int
	Collector                 bool
	Stored, StoreLost         uint64
	DuplicatesSuppressed      int64
	CollectorInserted, Unseen int64 // rows inserted; rows for seqs no station appended (must be 0)
	// RowP50, RowP99: scan → row written in PostgreSQL (the event's time to
	// the writing transaction's start), beside P50/P99 (scan → a plain
	// subscriber at the broker) of the same run.
	RowP50, RowP99 time.Duration
}

// OK reports whether every appended event was delivered and nothing
// unexpected arrived.
// With the collector, OK means every appended event is in PostgreSQL
// exactly once (what the consumers saw is then informational).
func (r Report) OK() bool {
	if r.Collector {
		return r.StoreLost == 0 && r.Unseen == 0 && r.Stored == r.Appended
	}
	return r.Lost == 0 && r.Unexpected == 0 && r.Delivered == r.Appended
}

func (r Report) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "stations %d, consumers %d, restarts %d\n", r.Stations, r.Consumers, r.Restarts)
	fmt.Fprintf(&b, "appended %d (refused %d), delivered %d, lost %d, unexpected %d, duplicates %d\n",
		r.Appended, r.Refused, r.Delivered, r.Lost, r.Unexpected, r.Duplicates)
	fmt.Fprintf(&b, "uplink: %d publishes (%d resent) over %d connections\n", r.Published, r.Resent, r.Connects)
	fmt.Fprintf(&b, "throughput %.1f events/s end to end (scan %v + drain %v)\n", r.EventsPerSec, r.ScanTime.Round(time.Millisecond), r.DrainTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "latency scan→consumer p50 %v p99 %v max %v\n", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	fmt.Fprintf(&b, "per consumer %v\n", r.PerConsumer)
	if r.Collector {
		fmt.Fprintf(&b, "delivery %s, broker kill -9: %d\n", r.Delivery, r.Kills)
		fmt.Fprintf(&b, "PostgreSQL: offered %d, stored %d, lost %d, duplicates suppressed %d, rows not offered %d\n",
			r.Appended, r.Stored, r.StoreLost, r.DuplicatesSuppressed, r.Unseen)
		fmt.Fprintf(&b, "latency scan→row in PostgreSQL p50 %v p99 %v (scan→consumer above: p50 %v p99 %v)\n",
			r.RowP50.Round(time.Microsecond), r.RowP99.Round(time.Microsecond), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
	return b.String()
}

// sampleScans are what the simulated scanners read: GS1-128 with AIM ids
// against the sample allowlist — accepted, recalled, unknown lot, no
// expiry — and one that does not decode.
var sampleScans = []string{
	"]C1010950600013435217270630" + "10LOT42",
	"]C1010950600013435217270630" + "10LOT42",
	"]C1010401234500001610B2026-11",
	"]C1010950600013435217270630" + "10LOT43",
	"]C10109506000134352" + "10LOT99",
	"]C1019999",
}

// stationsPerSite is how many simulated doors share a site id.
const stationsPerSite = 50

func siteName(i int) string { return fmt.Sprintf("site-%02d", i) }

// noLight is the stack light of a simulated station.
type noLight struct{}

func (noLight) ShowDecision(dock.Verdict)         {}
func (noLight) SetCondition(dock.Condition, bool) {}

// sim is one simulated station.
type sim struct {
	id       string
	queue    *buffer.Queue
	station  *station.Station
	up       *uplink.Client
	appended []uint64 // written by its scanner goroutine only
	refused  uint64
}

// collector records what the consumers receive. Safe for concurrent use.
type collector struct {
	mu          sync.Mutex
	seen        map[string]map[uint64]int
	lat         []time.Duration
	dups        uint64
	bad         uint64
	perConsumer []uint64
	lastFirst   time.Time // when the latest first delivery arrived
}

func newCollector(consumers int) *collector {
	return &collector{seen: map[string]map[uint64]int{}, perConsumer: make([]uint64, consumers)}
}

func (c *collector) record(consumer int, payload []byte, now time.Time) {
	var ev struct {
		Station string    `json:"station"`
		Seq     uint64    `json:"seq"`
		Time    time.Time `json:"time"`
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perConsumer[consumer]++
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Station == "" || ev.Seq == 0 {
		c.bad++
		return
	}
	m := c.seen[ev.Station]
	if m == nil {
		m = map[uint64]int{}
		c.seen[ev.Station] = m
	}
	m[ev.Seq]++
	if m[ev.Seq] > 1 {
		c.dups++
		return
	}
	c.lat = append(c.lat, now.Sub(ev.Time))
	c.lastFirst = now
}

// missing counts appended events not yet received.
func (c *collector) missing(sims []*sim) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for _, s := range sims {
		m := c.seen[s.id]
		for _, seq := range s.appended {
			if m[seq] == 0 {
				n++
			}
		}
	}
	return n
}

// startConsumer connects one central consumer with a persistent session
// (so a clean broker restart keeps its queue, for the subscriptions the
// broker persists) and subscribes it to filters on every connect.
func startConsumer(ctx context.Context, brokerURL string, filters []string, idx int, col *collector, log *slog.Logger) (mqtt.Client, <-chan struct{}, error) {
	subscribed := make(chan struct{})
	var once sync.Once
	handler := func(_ mqtt.Client, m mqtt.Message) { col.record(idx, m.Payload(), time.Now()) }
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("fleet-central-%d", idx)).
		SetProtocolVersion(4).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(250 * time.Millisecond).
		SetKeepAlive(10 * time.Second).SetOrderMatters(false).
		SetDefaultPublishHandler(handler). // session messages delivered before the re-subscribe
		SetOnConnectHandler(func(c mqtt.Client) {
			if len(filters) == 0 {
				once.Do(func() { close(subscribed) })
				return
			}
			subs := map[string]byte{}
			for _, f := range filters {
				subs[f] = 1
			}
			tok := c.SubscribeMultiple(subs, handler)
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				once.Do(func() { close(subscribed) })
			} else {
				log.Warn("consumer subscribe failed", "consumer", idx, "filters", filters, "err", tok.Error())
			}
		})
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		cli.Disconnect(0)
		return nil, nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, nil, fmt.Errorf("consumer %d connecting to %s: %w", idx, brokerURL, err)
	}
	return cli, subscribed, nil
}

// Run runs one fleet simulation and returns its report. It owns every
// goroutine, file and process it starts and releases them before
// returning. An error means the run could not be carried out; lost events
// are reported in the Report, not as an error.
func Run(ctx context.Context, o Options, log *slog.Logger) (rep Report, err error) {
	if o.Stations < 1 || o.Consumers < 1 || o.Rate <= 0 || o.Duration <= 0 {
		return rep, fmt.Errorf("fleet: stations, consumers, rate and duration must be positive (got %d, %d, %v, %v)", o.Stations, o.Consumers, o.Rate, o.Duration)
	}
	if o.RestartAt > 0 && o.Broker != "" {
		return rep, errors.New("fleet: -restart-at needs the private broker (leave -broker empty)")
	}
	if o.Group == "" {
		o.Group = "central"
	}
	switch o.Central {
	case "":
		o.Central = "shared"
	case "shared", "partitioned":
	default:
		return rep, fmt.Errorf("fleet: central mode %q: want shared or partitioned", o.Central)
	}
	if o.Drain <= 0 {
		o.Drain = 60 * time.Second
	}
	switch o.Delivery {
	case "":
		o.Delivery = "broker"
	case "broker":
	case "receipt":
		o.Collector = true
	default:
		return rep, fmt.Errorf("fleet: delivery %q: want broker or receipt", o.Delivery)
	}
	if o.ReceiptTimeout <= 0 {
		o.ReceiptTimeout = 5 * time.Second
	}
	if o.KillAt > 0 && o.Broker != "" {
		return rep, errors.New("fleet: -kill-at needs the private broker (leave -broker empty)")
	}
	rep.Delivery, rep.Collector = o.Delivery, o.Collector
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dockd-fleet-"); err != nil {
			return rep, fmt.Errorf("fleet: temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	rep.Stations, rep.Consumers = o.Stations, o.Consumers

	brokerURL := o.Broker
	var own *broker
	if brokerURL == "" {
		bdir := filepath.Join(dir, "broker")
		if err := os.MkdirAll(bdir, 0o750); err != nil {
			return rep, fmt.Errorf("fleet: broker dir: %w", err)
		}
		if own, err = startBroker(o.Mosquitto, bdir); err != nil {
			return rep, fmt.Errorf("fleet: %w", err)
		}
		defer own.stop()
		brokerURL = own.URL()
		log.Info("private broker started", "url", brokerURL, "dir", bdir)
	}

	// Shared pieces: the decoder and the sample allowlist.
	dec, err := scan.NewDecoder(scan.Config{})
	if err != nil {
		return rep, fmt.Errorf("fleet: decoder: %w", err)
	}
	list, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		return rep, fmt.Errorf("fleet: %w", err)
	}
	defer list.Close()
	if _, err := list.ImportCSV(ctx, bytes.NewReader(firmwareconfig.SampleAllowlist), "sample", nil); err != nil {
		return rep, fmt.Errorf("fleet: importing the sample allowlist: %w", err)
	}

	// Consumers first, so nothing is published into an empty group.
	col := newCollector(o.Consumers)
	sites := (o.Stations + stationsPerSite - 1) / stationsPerSite
	filtersOf := func(k int) []string {
		if o.Central == "shared" {
			return []string{"$share/" + o.Group + "/dockd/v1/+/+/events"}
		}
		var fs []string
		for s := k; s < sites; s += o.Consumers {
			fs = append(fs, "dockd/v1/"+siteName(s)+"/+/events")
		}
		return fs
	}
	var consumers []mqtt.Client
	defer func() {
		for _, c := range consumers {
			c.Disconnect(100)
		}
	}()
	for i := 0; i < o.Consumers; i++ {
		c, subscribed, err := startConsumer(ctx, brokerURL, filtersOf(i), i, col, log)
		if err != nil {
			return rep, fmt.Errorf("fleet: %w", err)
		}
		consumers = append(consumers, c)
		select {
		case <-subscribed:
		case <-time.After(10 * time.Second):
			return rep, fmt.Errorf("fleet: consumer %d not subscribed to %v within 10s", i, filtersOf(i))
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}

	// Central's collector into PostgreSQL, subscribed before any station
	// publishes.
	var coll *centralRun
	if o.Collector {
		if coll, err = startCentral(ctx, o.DB, brokerURL, log); err != nil {
			return rep, fmt.Errorf("fleet: %w", err)
		}
		defer coll.stop()
	}

	// Stations.
	sims := make([]*sim, 0, o.Stations)
	defer func() {
		for _, s := range sims {
			if cerr := s.queue.Close(); cerr != nil {
				log.Error("closing station buffer", "station", s.id, "err", cerr)
			}
		}
	}()
	quiet := log.With()
	for i := 0; i < o.Stations; i++ {
		site, door := siteName(i/stationsPerSite), fmt.Sprintf("door-%03d", i)
		id := site + "-" + door
		q, err := buffer.Open(filepath.Join(dir, id+".db"), buffer.Options{Logger: quiet})
		if err != nil {
			return rep, fmt.Errorf("fleet: station %s: %w", id, err)
		}
		s := &sim{id: id, queue: q}
		sims = append(sims, s)
		s.station = station.New(station.Config{Site: site, Door: door, StationID: id, Direction: dock.Receiving,
			Policy: custody.Policy{Warn: map[dock.Reason]bool{}}},
			dec, list, outbox.Outbox{Q: q}, noLight{}, quiet.With("station", id))
		base := "dockd/v1/" + site + "/" + door
		will, _ := json.Marshal(map[string]string{"station": id, "state": "offline"})
		ucfg := uplink.Config{
			Broker: brokerURL, ClientID: "dockd-" + id, EventsTopic: base + "/events", StatusTopic: base + "/status",
			Will: will, InFlight: o.InFlight, KeepAlive: 5 * time.Second, AckTimeout: 5 * time.Second,
			ConnectTimeout: 5 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		}
		if o.Delivery == "receipt" {
			ucfg.Delivery, ucfg.ReceiptsTopic, ucfg.StationID = uplink.DeliveryReceipt, base+"/receipts", id
			ucfg.ReceiptTimeout = o.ReceiptTimeout
			ucfg.HighestIssued = func() uint64 { return q.Stats().NewestSeq }
		}
		s.up, err = uplink.New(ucfg, outbox.Outbox{Q: q}, quiet)
		if err != nil {
			return rep, fmt.Errorf("fleet: station %s uplink: %w", id, err)
		}
		online, _ := json.Marshal(map[string]string{"station": id, "state": "online"})
		s.up.SetStatus(online)
	}

	upCtx, stopUp := context.WithCancel(context.WithoutCancel(ctx))
	var upWG sync.WaitGroup
	defer func() {
		stopUp()
		upWG.Wait()
	}()
	for _, s := range sims {
		upWG.Add(1)
		go func() {
			defer upWG.Done()
			if err := s.up.Run(upCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("uplink stopped", "station", s.id, "err", err)
			}
		}()
	}

	// Scanning, with the broker restart in the middle.
	scanCtx, stopScan := context.WithTimeout(ctx, o.Duration)
	defer stopScan()
	began := time.Now()
	var scanWG sync.WaitGroup
	interval := time.Duration(float64(time.Second) / o.Rate)
	for _, s := range sims {
		scanWG.Add(1)
		go func() {
			defer scanWG.Done()
			s.scan(scanCtx, interval)
		}()
	}
	restartErr := make(chan error, 1)
	killErr := make(chan error, 1)
	if o.KillAt > 0 {
		go func() {
			t := time.NewTimer(o.KillAt)
			defer t.Stop()
			select {
			case <-scanCtx.Done():
				killErr <- nil
				return
			case <-t.C:
			}
			log.Info("killing the broker (SIGKILL)")
			killErr <- own.killAndStart()
		}()
	} else {
		killErr <- nil
	}
	if o.RestartAt > 0 {
		go func() {
			t := time.NewTimer(o.RestartAt)
			defer t.Stop()
			select {
			case <-scanCtx.Done():
				restartErr <- nil
				return
			case <-t.C:
			}
			log.Info("restarting the broker")
			restartErr <- own.restart()
		}()
	} else {
		restartErr <- nil
	}
	scanWG.Wait()
	rep.ScanTime = time.Since(began)
	if err := <-restartErr; err != nil {
		return rep, fmt.Errorf("fleet: restarting the broker: %w", err)
	} else if o.RestartAt > 0 && o.RestartAt < o.Duration {
		rep.Restarts = 1
	}
	if err := <-killErr; err != nil {
		return rep, fmt.Errorf("fleet: killing and restarting the broker: %w", err)
	} else if o.KillAt > 0 && o.KillAt < o.Duration {
		rep.Kills = 1
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	// Drain: wait until every appended event reached a consumer.
	scanEnd := time.Now()
	deadline := scanEnd.Add(o.Drain)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	pending := func() bool {
		if coll != nil {
			return coll.missing(ctx, sims) > 0
		}
		return col.missing(sims) > 0
	}
	for pending() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
	}
	if coll != nil {
		if err := coll.report(ctx, sims, &rep); err != nil {
			return rep, fmt.Errorf("fleet: reading PostgreSQL: %w", err)
		}
	}
	// A short grace to catch late duplicates.
	time.Sleep(200 * time.Millisecond)

	col.mu.Lock()
	defer col.mu.Unlock()
	for _, s := range sims {
		rep.Appended += uint64(len(s.appended))
		rep.Refused += s.refused
		m := col.seen[s.id]
		want := make(map[uint64]bool, len(s.appended))
		for _, seq := range s.appended {
			want[seq] = true
			if m[seq] == 0 {
				rep.Lost++
			} else {
				rep.Delivered++
			}
		}
		for seq := range m {
			if !want[seq] {
				rep.Unexpected++
			}
		}
		st := s.up.Stats()
		rep.Published += st.Published
		rep.Resent += st.Resent
		rep.Connects += st.Connects
	}
	for id, m := range col.seen {
		if !slices.ContainsFunc(sims, func(s *sim) bool { return s.id == id }) {
			rep.Unexpected += uint64(len(m))
		}
	}
	rep.Unexpected += col.bad
	rep.Duplicates = col.dups
	rep.PerConsumer = slices.Clone(col.perConsumer)
	if last := col.lastFirst; last.After(scanEnd) {
		rep.DrainTime = last.Sub(scanEnd)
	}
	if total := rep.ScanTime + rep.DrainTime; total > 0 {
		rep.EventsPerSec = float64(rep.Delivered) / total.Seconds()
	}
	if n := len(col.lat); n > 0 {
		lat := slices.Clone(col.lat)
		slices.Sort(lat)
		rep.P50 = lat[n/2]
		rep.P99 = lat[min(n-1, n*99/100)]
		rep.Max = lat[n-1]
	}
	return rep, nil
}

// scan feeds simulated frames at one per interval (first one after a
// random offset, so stations do not scan in lockstep) until ctx ends.
func (s *sim) scan(ctx context.Context, interval time.Duration) {
	first := time.NewTimer(rand.N(interval) + time.Millisecond)
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		code := sampleScans[rand.N(len(sampleScans))]
		ev, err := s.station.Process(context.WithoutCancel(ctx), dock.Frame{Reader: "sim-1", Data: []byte(code), At: time.Now()})
		if err != nil {
			s.refused++
		} else {
			s.appended = append(s.appended, ev.Seq)
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}
