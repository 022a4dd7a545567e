package collector

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPrefix is the contract's topic root.
const DefaultPrefix = "dockd/v1"

// DefaultShareGroup is the $share group name with Config.Share.
const DefaultShareGroup = "dockd-collect"

// Point names a place in the collector's pipeline where Config.Hook is
// called, for crash tests.
type Point string

const (
	// PointReceived: a batch was taken off the queue; nothing of it is
	// written yet.
	PointReceived Point = "received"
	// PointCommitted: the batch's transaction committed; nothing of it is
	// acknowledged to the broker or receipted yet.
	PointCommitted Point = "committed"
)

// Config is what a collector needs. Brokers and DB are required.
type Config struct {
	// Brokers are MQTT broker URLs (tcp://host:port, ssl://host:port),
	// tried in order.
	Brokers []string
	// Username and Password authenticate to the broker (the shipped ACL
	// example's user "central"); TLS, when set, is used for ssl:// URLs.
	Username, Password string
	TLS                *tls.Config
	// DB is a PostgreSQL connection string (postgres://user@host:port/db).
	DB string
	// Name identifies this collector: in its MQTT client id (so its
	// persistent session is found again after a restart), in receipts and
	// in the rows it writes. Default: the host name.
	Name string
	// Prefix is the topic root (default DefaultPrefix).
	Prefix string
	// Share subscribes through the $share group ShareGroup instead of a
	// plain subscription; see the package documentation for when to.
	Share      bool
	ShareGroup string
	// Partition and Partitions (k of n, 0 ≤ k < n) make this collector
	// store only the doors whose site/door hashes to k; it acknowledges
	// the others' events without storing them (their own partition's
	// collector stores them). Zero Partitions means 1: everything.
	Partition, Partitions int
	// QueueSize bounds messages received but not yet written (default
	// 4096). A full queue blocks the MQTT receive path: backpressure to
	// the broker, never a drop.
	QueueSize int
	// MaxBatch bounds the messages written in one transaction (default
	// 1000).
	MaxBatch int
	// ReceiptInterval is how often receipts go out (default 250 ms): each
	// commit's receipts are merged per station (the highest upto wins) and
	// published at the next tick, so a busy station gets at most one
	// receipt per interval however many batches carried its events.
	ReceiptInterval time.Duration
	// Logger receives state changes (default slog.Default()).
	Logger *slog.Logger
	// Hook, when set, is called at each Point (tests make the process
	// exit there).
	Hook func(Point)
}

// Stats are running totals since Run started. Safe for concurrent use.
type Stats struct {
	Received    atomic.Int64 // messages taken from the broker
	Inserted    atomic.Int64 // records newly stored
	Duplicates  atomic.Int64 // records already stored (redeliveries)
	DeadLetters atomic.Int64 // messages stored in dead_letter
	Skipped     atomic.Int64 // other partitions' messages
	Batches     atomic.Int64 // committed transactions
	Receipts    atomic.Int64 // receipts published
}

// Collector moves events from the broker into PostgreSQL and receipts
// them. Make one with New; Run it once.
type Collector struct {
	cfg   Config
	log   *slog.Logger
	queue chan *item
	stats Stats

	receipts       chan []stationReceipt // committed batches' receipts, to receiptLoop
	subscribed     chan struct{}         // closed at the first SUBACK
	subscribedOnce sync.Once

	mu      sync.Mutex
	cli     mqtt.Client
	dbState string // "" unknown, "ok", or the reason it is unavailable
}

// Subscribed is closed once the collector's first subscription was
// acknowledged by the broker (migrations are done by then): from that
// moment the broker keeps events for it, even while it is away.
func (c *Collector) Subscribed() <-chan struct{} { return c.subscribed }

// New checks cfg and returns a collector that has not started.
func New(cfg Config) (*Collector, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("collector: no broker URL")
	}
	if cfg.DB == "" {
		return nil, errors.New("collector: no database URL")
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "collector"
		}
		cfg.Name = h
	}
	if strings.ContainsAny(cfg.Name, "/+#") {
		return nil, fmt.Errorf("collector: name %q must not contain / + #", cfg.Name)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.ShareGroup == "" {
		cfg.ShareGroup = DefaultShareGroup
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Partitions < 1 || cfg.Partition < 0 || cfg.Partition >= cfg.Partitions {
		return nil, fmt.Errorf("collector: partition %d/%d: want 0 ≤ k < n", cfg.Partition, cfg.Partitions)
	}
	if cfg.Share && cfg.Partitions > 1 {
		return nil, errors.New("collector: --share and --partition exclude each other")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReceiptInterval <= 0 {
		cfg.ReceiptInterval = 250 * time.Millisecond
	}
	return &Collector{receipts: make(chan []stationReceipt, 16), cfg: cfg, log: cfg.Logger.With("collector", cfg.Name), queue: make(chan *item, cfg.QueueSize), subscribed: make(chan struct{})}, nil
}

// Stats returns the collector's running totals.
func (c *Collector) Stats() *Stats { return &c.stats }

// ClientID is the MQTT client id: fixed per name and partition, so a
// restarted collector finds its persistent session (and the events the
// broker queued for it) again.
func (c *Collector) ClientID() string {
	id := "dockd-collect-" + c.cfg.Name
	if c.cfg.Partitions > 1 {
		id += fmt.Sprintf("-p%dof%d", c.cfg.Partition, c.cfg.Partitions)
	}
	return id
}

// Filter is the events subscription: PREFIX/+/+/events, through the
// $share group with Config.Share.
func (c *Collector) Filter() string { return c.filter("events") }

// ProbeFilter is the receipt-probe subscription: PREFIX/+/+/receipt-probe.
func (c *Collector) ProbeFilter() string { return c.filter("receipt-probe") }

func (c *Collector) filter(level string) string {
	f := c.cfg.Prefix + "/+/+/" + level
	if c.cfg.Share {
		f = "$share/" + c.cfg.ShareGroup + "/" + f
	}
	return f
}

// Run connects to the database (applying migrations) and the broker and
// collects until ctx ends, then returns nil. A database or broker that is
// down is waited for, never a reason to return; Run returns an error only
// when it cannot start at all (a malformed database URL).
func (c *Collector) Run(ctx context.Context) error {
	pcfg, err := pgxpool.ParseConfig(c.cfg.DB)
	if err != nil {
		return fmt.Errorf("collector: database URL: %w", err)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("collector: database pool: %w", err)
	}
	defer pool.Close()

	// Migrate before taking any message: the tables must exist.
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		err := Migrate(ctx, pool)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.setDBState(err.Error())
		if !sleepCtx(ctx, backoff) {
			return nil
		}
	}
	c.setDBState("ok")

	opts := mqtt.NewClientOptions().
		SetClientID(c.ClientID()).
		SetCleanSession(false). // the broker keeps our subscription and queues events while we are away
		SetProtocolVersion(4).
		SetOrderMatters(true). // one receive goroutine: messages reach the queue in broker order
		SetAutoAckDisabled(true).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn("collector: broker connection lost; reconnecting", "err", err)
		})
	for _, b := range c.cfg.Brokers {
		opts.AddBroker(b)
	}
	if c.cfg.Username != "" {
		opts.SetUsername(c.cfg.Username).SetPassword(c.cfg.Password)
	}
	if c.cfg.TLS != nil {
		opts.SetTLSConfig(c.cfg.TLS)
	}
	opts.SetDefaultPublishHandler(c.handler(ctx))
	cli := mqtt.NewClient(opts)
	c.mu.Lock()
	c.cli = cli
	c.mu.Unlock()
	cli.Connect() // retries in the background (ConnectRetry)
	defer cli.Disconnect(250)

	rctx, stopReceipts := context.WithCancel(context.WithoutCancel(ctx))
	receiptsDone := make(chan struct{})
	go func() {
		defer close(receiptsDone)
		c.receiptLoop(rctx)
	}()
	c.write(ctx, pool)
	stopReceipts() // publishes what is pending, then returns
	<-receiptsDone
	return nil
}

// receiptLoop owns the receipts waiting to go out: it merges what the
// writer hands it per station and publishes at every ReceiptInterval tick,
// and once more when ctx ends.
func (c *Collector) receiptLoop(ctx context.Context) {
	pending := map[string]stationReceipt{}
	merge := func(rs []stationReceipt) {
		for _, r := range rs {
			if p, ok := pending[r.Station]; !ok || r.Upto >= p.Upto {
				pending[r.Station] = r
			}
		}
	}
	flush := func() {
		if len(pending) == 0 {
			return
		}
		rs := make([]stationReceipt, 0, len(pending))
		for _, r := range pending {
			rs = append(rs, r)
		}
		clear(pending)
		c.publishReceipts(rs)
	}
	tick := time.NewTicker(c.cfg.ReceiptInterval)
	defer tick.Stop()
	for {
		select {
		case rs := <-c.receipts:
			merge(rs)
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case rs := <-c.receipts:
					merge(rs)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (c *Collector) onConnect(cli mqtt.Client) {
	r := cli.OptionsReader()
	c.log.Info("collector: connected to broker", "broker", r.Servers(), "client_id", c.ClientID())
	// Subscribe every time: after a broker restart without persistence
	// (or Mosquitto forgetting $share subscriptions) the session is new.
	// The handler is the default publish handler, so messages the broker
	// redelivers before the SUBACK are not missed.
	tok := cli.SubscribeMultiple(map[string]byte{c.Filter(): 1, c.ProbeFilter(): 1}, nil)
	go func() {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			c.log.Error("collector: subscribe failed; events wait at the broker", "filter", c.Filter(), "err", tok.Error())
			return
		}
		c.log.Info("collector: subscribed", "filter", c.Filter(), "probe_filter", c.ProbeFilter())
		c.subscribedOnce.Do(func() { close(c.subscribed) })
	}()
}

// handler turns each message into a queue item. It blocks while the queue
// is full (paho then stops reading from the broker: backpressure), and
// never acknowledges: the writer does, after the commit.
func (c *Collector) handler(ctx context.Context) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		it := &item{topic: m.Topic(), payload: m.Payload(), ack: m.Ack}
		c.stats.Received.Add(1)
		if _, _, isProbe := SplitProbeTopic(c.cfg.Prefix, m.Topic()); isProbe {
			p, err := ParseProbe(c.cfg.Prefix, m.Topic(), m.Payload())
			switch {
			case !c.mine(strings.TrimSuffix(m.Topic(), "receipt-probe") + "events"):
				it.skip = true
			case err != nil:
				c.log.Warn("collector: ignoring a bad receipt probe", "topic", m.Topic(), "err", err)
				it.skip = true
			default:
				it.probe = &p
			}
		} else if !c.mine(m.Topic()) {
			it.skip = true
		} else if rec, err := Parse(c.cfg.Prefix, m.Topic(), m.Payload()); err != nil {
			var pe *PayloadError
			if errors.As(err, &pe) {
				it.bad = pe.Reason
			} else {
				it.bad = err.Error()
			}
		} else {
			it.rec = rec
		}
		select {
		case c.queue <- it:
		case <-ctx.Done():
		}
	}
}

// mine reports whether topic belongs to this collector's partition.
// Topics that are not events topics at all belong to partition 0 (which
// dead-letters them).
func (c *Collector) mine(topic string) bool {
	if c.cfg.Partitions <= 1 {
		return true
	}
	return PartitionOf(c.cfg.Prefix, topic, c.cfg.Partitions) == c.cfg.Partition
}

// PartitionOf is the partition (0..n-1) that stores topic's events: a hash
// of its SITE/DOOR levels, so a door's events always go to one partition.
// Topics that are not PREFIX/SITE/DOOR/events belong to partition 0.
func PartitionOf(prefix, topic string, n int) int {
	site, door, ok := SplitEventsTopic(prefix, topic)
	if !ok || n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(site + "/" + door))
	return int(h.Sum32() % uint32(n))
}

// write is the one goroutine that owns the database writes: it takes what
// is queued (up to MaxBatch), commits it in one transaction (retrying while
// the database is unavailable), then acknowledges each message to the
// broker in arrival order and publishes the receipts.
func (c *Collector) write(ctx context.Context, pool *pgxpool.Pool) {
	batch := make([]*item, 0, c.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case it := <-c.queue:
			batch = append(batch, it)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < c.cfg.MaxBatch {
			select {
			case it := <-c.queue:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		c.hook(PointReceived)
		res, ok := c.commit(ctx, pool, batch)
		if !ok {
			return // ctx ended; nothing of the batch is acknowledged
		}
		c.hook(PointCommitted)
		for _, it := range batch {
			it.ack()
			if it.skip {
				c.stats.Skipped.Add(1)
			}
		}
		c.stats.Batches.Add(1)
		c.stats.Inserted.Add(int64(res.Inserted))
		c.stats.Duplicates.Add(int64(res.Duplicates))
		c.stats.DeadLetters.Add(int64(res.DeadLetters))
		if len(res.Receipts) > 0 {
			select {
			case c.receipts <- res.Receipts: // committed: may be published
			case <-ctx.Done():
				return
			}
		}
		c.answerProbes(ctx, pool, batch)
	}
}

// answerProbes publishes one receipt per receipt probe in batch (already
// acknowledged: a probe is a question, not data; an unanswered one is
// simply asked again by its sender).
func (c *Collector) answerProbes(ctx context.Context, pool *pgxpool.Pool, batch []*item) {
	var probes []*Probe
	for _, it := range batch {
		if it.probe != nil {
			probes = append(probes, it.probe)
		}
	}
	if len(probes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	rs, err := probeAnswers(ctx, pool, probes)
	if err != nil {
		c.log.Warn("collector: cannot answer receipt probes", "probes", len(probes), "err", err)
		return
	}
	c.publishReceipts(rs)
}

func (c *Collector) hook(p Point) {
	if c.cfg.Hook != nil {
		c.cfg.Hook(p)
	}
}

// commit writes batch, retrying while the database is unavailable; a
// batch the server refuses for its data is written one message at a time
// so only the message at fault is set aside. ok is false when ctx ended
// first.
func (c *Collector) commit(ctx context.Context, pool *pgxpool.Pool, batch []*item) (batchResult, bool) {
	backoff := 100 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return batchResult{}, false
		}
		res, err := c.writeOnce(ctx, pool, batch, false)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			res, err = c.oneByOne(ctx, pool, batch)
		}
		if err == nil {
			c.setDBState("ok")
			return res, true
		}
		if ctx.Err() != nil {
			return batchResult{}, false
		}
		c.setDBState(err.Error())
		if !sleepCtx(ctx, backoff) {
			return batchResult{}, false
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// writeOnce is one bounded attempt: a server that stops answering must not
// hold the batch forever.
func (c *Collector) writeOnce(ctx context.Context, pool *pgxpool.Pool, batch []*item, rawOnly bool) (batchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return writeBatch(ctx, pool, c.cfg.Name, batch, rawOnly)
}

// oneByOne writes each message in its own transaction; a record the
// server refuses is tried once more as raw bytes (jsonb refuses some valid
// JSON), and one refused even so is dead-lettered with the server's
// reason. It stops at the first ErrUnavailable.
func (c *Collector) oneByOne(ctx context.Context, pool *pgxpool.Pool, batch []*item) (batchResult, error) {
	var total batchResult
	last := map[string]stationReceipt{}
	for _, it := range batch {
		one := []*item{it}
		res, err := c.writeOnce(ctx, pool, one, false)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			res, err = c.writeOnce(ctx, pool, one, true)
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			c.log.Warn("collector: database refused a record; dead-lettering it", "topic", it.topic, "err", err)
			deadItem := &item{topic: it.topic, payload: it.payload, bad: "database refused the record: " + err.Error()}
			res, err = c.writeOnce(ctx, pool, []*item{deadItem}, false)
		}
		if err != nil {
			return batchResult{}, classify(err)
		}
		total.Inserted += res.Inserted
		total.Duplicates += res.Duplicates
		total.DeadLetters += res.DeadLetters
		for _, r := range res.Receipts {
			last[r.Station] = r
		}
	}
	for _, r := range last {
		total.Receipts = append(total.Receipts, r)
	}
	return total, nil
}

// setDBState logs once per change between "ok" and unavailable.
func (c *Collector) setDBState(s string) {
	c.mu.Lock()
	prev := c.dbState
	c.dbState = s
	c.mu.Unlock()
	switch {
	case s == "ok" && prev != "ok":
		if prev != "" {
			c.log.Info("collector: database available again; writing, acknowledging and receipting")
		}
	case s != "ok" && (prev == "ok" || prev == ""):
		c.log.Error("collector: database unavailable; holding events unacknowledged (the broker and the stations keep them) and sending no receipts until it is back", "err", s)
	}
}

// DBAvailable reports whether the last database write (or migration)
// succeeded.
func (c *Collector) DBAvailable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dbState == "ok"
}

// Receipt is the payload on PREFIX/SITE/DOOR/receipts
// (uplink/contract/receipt.schema.json).
type Receipt struct {
	Schema    string `json:"schema"`
	Station   string `json:"station"`
	Upto      uint64 `json:"upto"`
	Time      string `json:"time"`
	Collector string `json:"collector"`
}

// publishReceipts sends the given receipts: every station whose records
// were in a committed batch gets one (duplicates included: a station
// resending is telling us it lost the earlier receipt). QoS 1, not
// retained, not waited for: a lost receipt is replaced by the next one,
// and a station that hears none resends, which triggers a new one.
func (c *Collector) publishReceipts(rs []stationReceipt) {
	c.mu.Lock()
	cli := c.cli
	c.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC3339)
	for _, r := range rs {
		b, err := json.Marshal(Receipt{Schema: SchemaReceipt, Station: r.Station, Upto: r.Upto, Time: now, Collector: c.cfg.Name})
		if err != nil {
			continue // cannot happen for these field types
		}
		cli.Publish(c.cfg.Prefix+"/"+r.Site+"/"+r.Door+"/receipts", 1, false, b)
		c.stats.Receipts.Add(1)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
