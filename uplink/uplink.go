// Package uplink publishes the station's custody events to the central MQTT
// broker with store-and-forward, and carries the station's status and the
// downlink subscriptions (allowlist updates, commands).
//
// # Delivery semantics
//
// Events are delivered at least once, in order per station. The durable
// queue is the Outbox, never paho's stores (paho's file store does not fsync
// and its memory store reorders on reconnect). The Client publishes at QoS 1,
// oldest first, keeping up to Config.InFlight publishes unacknowledged. It
// acknowledges the Outbox only up to the contiguous prefix of records whose
// PUBACK it received on the connection they were sent on, so a record leaves
// the Outbox only after a real acknowledgement and never past a gap.
//
// Each connection is a generation with its own paho client (clean session,
// no auto-reconnect). When a connection is lost, times out an
// acknowledgement, or stalls, everything in flight on it is forgotten and,
// after reconnecting with backoff, the Client re-reads the Outbox from after
// the last acknowledged record, resending unacknowledged records with the
// same payload. After a process restart it resumes from the Outbox as well.
// Central drops the resulting duplicates by the event id inside the payload.
// Within one connection no record is published twice, except by a receipt
// resend (below).
//
// With Config.Delivery DeliveryReceipt the PUBACK is not enough: the Outbox
// is acknowledged only up to the highest receipt from central (Receipt,
// validated by onReceipt), so a broker that loses what it acknowledged
// loses nothing. Events published but not covered by a receipt within
// ReceiptTimeout are published again, oldest first, with the same bytes
// (a rewind to the confirmed seq once the in-flight window drained), and
// every new connection starts from the confirmed seq.
//
// Config.Brokers lists failover brokers: each connection generation uses
// the next URL after the previous one failed or ended.
package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Record is one queued event: its per-station sequence number and the bytes
// to publish (the JSON custody event, published verbatim).
type Record struct {
	Seq     uint64
	Payload []byte
}

// Outbox is the durable queue the Client drains (buffer.Queue, adapted in
// cmd). The Client calls it from a single goroutine.
type Outbox interface {
	// Pending returns up to max records with Seq > after, oldest first, in
	// strictly increasing Seq order. It must not block on network I/O.
	Pending(after uint64, max int) ([]Record, error)
	// Ack durably removes every record with Seq <= seq.
	Ack(seq uint64) error
	// Notify delivers a coalesced wake-up after appends. The signal for an
	// append must be sent after the record is visible to Pending, and must
	// not be lost when nobody is receiving (a channel with a buffer of one
	// and a non-blocking send does this).
	Notify() <-chan struct{}
}

// Config configures a Client. Zero durations and InFlight take defaults.
type Config struct {
	// Broker is the broker URL: tcp:// or mqtt:// for plain TCP, ssl://,
	// tls:// or mqtts:// for TLS (with TLS, or a default tls.Config).
	Broker string
	// Brokers, when not empty, replaces Broker with a list tried in order:
	// after a connection attempt fails or a connection ends, the next URL
	// is tried (after the last, the first again). Backoff grows only once
	// every URL failed in a row.
	Brokers  []string
	ClientID string // fixed per station; the broker's session key
	Username string
	Password string
	TLS      *tls.Config // optional; ServerName defaults to the broker host

	// EventsTopic is where events are published (QoS 1, not retained),
	// e.g. dockd/v1/{site}/{door}/events.
	EventsTopic string
	// StatusTopic carries the retained station status: SetStatus payloads
	// while connected, Will when the station vanishes (published by the
	// broker) or shuts down cleanly (published by the Client). Empty
	// disables status and will.
	StatusTopic string
	// Will is the offline status, e.g. {"state":"offline"}.
	Will []byte
	// Extra, when set, derives further messages from a record (e.g. its
	// EPCIS rendering). They are published after the record on every
	// (re)send, at QoS 1 and not retained, and the record is acknowledged
	// only when the event and all of them were. Extra must be a pure
	// function of the record, so a resend is byte-identical; it is called
	// from the publishing goroutine and must not block.
	Extra func(Record) []Message

	// Delivery is DeliveryBroker (the default) or DeliveryReceipt. In
	// receipt mode the Client subscribes to ReceiptsTopic, accepts receipts
	// for StationID up to HighestIssued(), acknowledges the Outbox only up
	// to the highest accepted receipt, and publishes again (same bytes) the
	// events the broker acknowledged that no receipt covered within
	// ReceiptTimeout, as it does after every reconnect.
	Delivery       Delivery
	ReceiptsTopic  string
	StationID      string
	ReceiptTimeout time.Duration // default 30 s
	// HighestIssued returns the highest seq the station ever issued (the
	// buffer's newest); receipts above it are refused. Required in receipt
	// mode; called from paho's receive goroutine.
	HighestIssued func() uint64

	InFlight       int           // max unacknowledged event publishes (default 32, max 65535)
	AckTimeout     time.Duration // PUBACK/SUBACK/PINGRESP deadline; a stalled broker is dropped after it (default 10 s)
	ConnectTimeout time.Duration // TCP + TLS + CONNACK deadline (default 10 s)
	KeepAlive      time.Duration // MQTT keepalive, whole seconds, at least 1 s (default 30 s)
	MinBackoff     time.Duration // first reconnect delay (default 500 ms)
	MaxBackoff     time.Duration // reconnect delay cap (default 30 s); delays are jittered
	// ShutdownTimeout bounds the offline-status publish and DISCONNECT when
	// Run's context ends (default 2 s).
	ShutdownTimeout time.Duration
}

// Defaults applied by New to zero fields.
const (
	DefaultInFlight        = 32
	DefaultAckTimeout      = 10 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultKeepAlive       = 30 * time.Second
	DefaultMinBackoff      = 500 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultShutdownTimeout = 2 * time.Second
)

// idlePoll is how often an idle connection re-reads the Outbox even without
// a Notify, and how soon a failed Pending is retried.
const idlePoll = 5 * time.Second

// ErrInvalidConfig is wrapped by New's errors for an unusable Config.
var ErrInvalidConfig = errors.New("uplink: invalid config")

// Stats is a snapshot of the Client's counters since New.
type Stats struct {
	Published uint64    // event PUBLISH packets sent, resends included
	Acked     uint64    // events acknowledged by the broker (each counted once)
	Resent    uint64    // publishes of records already sent on an earlier connection
	InFlight  int       // event publishes awaiting PUBACK now
	LastAck   time.Time // when the last event PUBACK was taken
	Connected bool
	Connects  uint64 // connections established (subscribed and status published)
	// AckedSeq is the highest Seq acknowledged by the broker; OutboxSeq the
	// highest Seq the Outbox has durably acknowledged (lower after an Ack
	// error, until a later Ack succeeds).
	AckedSeq, OutboxSeq uint64
	// Receipt mode: ConfirmedSeq is the highest accepted receipt's upto;
	// Unconfirmed counts the events published (by this process, at least
	// once) that no receipt covers yet, UnconfirmedSince is when the oldest
	// of them was first published (zero when none); Receipts and
	// ReceiptsRefused count receipts applied and refused (malformed,
	// another station, ahead; a repeat is neither); ReceiptResends counts
	// the times unconfirmed events were published again after
	// ReceiptTimeout; LastReceipt is when the last receipt was applied.
	ConfirmedSeq              uint64
	Unconfirmed               int
	UnconfirmedSince          time.Time
	Receipts, ReceiptsRefused uint64
	ReceiptResends            uint64
	LastReceipt               time.Time
	// ReleasedSeq is the seq up to which the Outbox may delete: AckedSeq
	// in broker mode, ConfirmedSeq in receipt mode.
	ReleasedSeq uint64
	// Broker is the URL of the current (or last tried) broker, redacted.
	Broker string
	// PublishLatency is publish-to-PUBACK time: the most recent sample and
	// an exponentially weighted moving average (weight 1/8).
	PublishLatency, PublishLatencyAvg time.Duration
}

// Handler receives a downlink message. It is called from the connection's
// receive goroutine, one message at a time in arrival order, and must
// return quickly (hand work to another goroutine); it may call SetStatus.
type Handler func(topic string, payload []byte)

// Inbound is one downlink message with the MQTT flags a handler may need.
// paho has read the whole packet into memory before a handler sees it, so
// the size of Payload is bounded only by the broker (message_size_limit,
// see SCALING.md); handlers bound what they copy or parse.
type Inbound struct {
	Topic   string
	Payload []byte
	// Retained is set when the broker delivered a stored retained message
	// (at subscribe time), not a live publish.
	Retained bool
}

type subscription struct {
	filter string
	qos    byte
	fn     func(Inbound)
}

// Client is the MQTT uplink. Create it with New, configure it with
// OnConnectionChange and Handle, then call Run once. Connected, SetStatus and
// Stats are safe for concurrent use at any time.
type Client struct {
	cfg     Config
	brokers []*url.URL
	cur     int // index into brokers of the next session; Run's goroutine
	out     Outbox
	log     *slog.Logger

	// Set before Run.
	onChange func(up bool)
	onAck    func(latency time.Duration)
	subs     []subscription
	started  atomic.Bool

	connected  atomic.Bool
	live       atomic.Pointer[liveConn] // the connection while it is fully up
	statusMu   sync.Mutex
	status     []byte
	statusKick chan struct{} // cap 1

	// ackedSeq is the broker-acknowledged prefix; only Run's goroutine
	// writes it.
	ackedSeq   uint64
	outboxSeq  uint64 // highest Seq the Outbox Ack succeeded for
	maxSentSeq uint64 // highest Seq ever published by this process
	generation uint64

	// Receipt mode: confirmed is raised by onReceipt (paho's goroutine);
	// unconf is Run's.
	confirmed   atomic.Uint64
	receiptKick chan struct{} // cap 1
	unconf      unconfirmed

	statsMu sync.Mutex
	stats   Stats
}

// New validates cfg, applies defaults and returns an idle Client. log may
// be nil (slog.Default is used).
func New(cfg Config, out Outbox, log *slog.Logger) (*Client, error) {
	if out == nil {
		return nil, fmt.Errorf("%w: nil Outbox", ErrInvalidConfig)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("%w: empty ClientID", ErrInvalidConfig)
	}
	if cfg.EventsTopic == "" {
		return nil, fmt.Errorf("%w: empty EventsTopic", ErrInvalidConfig)
	}
	urls := cfg.Brokers
	if len(urls) == 0 {
		urls = []string{cfg.Broker}
	}
	var brokers []*url.URL
	for _, b := range urls {
		u, err := parseBroker(b)
		if err != nil {
			return nil, err
		}
		brokers = append(brokers, u)
	}
	switch cfg.Delivery {
	case "":
		cfg.Delivery = DeliveryBroker
	case DeliveryBroker:
	case DeliveryReceipt:
		if cfg.ReceiptsTopic == "" || cfg.StationID == "" || cfg.HighestIssued == nil {
			return nil, fmt.Errorf("%w: receipt delivery needs ReceiptsTopic, StationID and HighestIssued", ErrInvalidConfig)
		}
		if cfg.ReceiptTimeout == 0 {
			cfg.ReceiptTimeout = DefaultReceiptTimeout
		}
		if cfg.ReceiptTimeout < 0 {
			return nil, fmt.Errorf("%w: negative ReceiptTimeout", ErrInvalidConfig)
		}
	default:
		return nil, fmt.Errorf("%w: delivery %q (want broker or receipt)", ErrInvalidConfig, cfg.Delivery)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.InFlight == 0 {
		cfg.InFlight = DefaultInFlight
	}
	def(&cfg.AckTimeout, DefaultAckTimeout)
	def(&cfg.ConnectTimeout, DefaultConnectTimeout)
	def(&cfg.KeepAlive, DefaultKeepAlive)
	def(&cfg.MinBackoff, DefaultMinBackoff)
	def(&cfg.MaxBackoff, DefaultMaxBackoff)
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	switch {
	case cfg.InFlight < 1 || cfg.InFlight > 65535:
		return nil, fmt.Errorf("%w: InFlight %d not in 1..65535", ErrInvalidConfig, cfg.InFlight)
	case cfg.KeepAlive < time.Second:
		return nil, fmt.Errorf("%w: KeepAlive %v below 1s (MQTT counts whole seconds)", ErrInvalidConfig, cfg.KeepAlive)
	case cfg.AckTimeout < 0 || cfg.ConnectTimeout < 0 || cfg.MinBackoff < 0 || cfg.ShutdownTimeout < 0:
		return nil, fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	case cfg.MaxBackoff < cfg.MinBackoff:
		return nil, fmt.Errorf("%w: MaxBackoff %v below MinBackoff %v", ErrInvalidConfig, cfg.MaxBackoff, cfg.MinBackoff)
	}
	if log == nil {
		log = slog.Default()
	}
	c := &Client{
		cfg:         cfg,
		brokers:     brokers,
		out:         out,
		log:         log.With("component", "uplink", "client_id", cfg.ClientID),
		statusKick:  make(chan struct{}, 1),
		receiptKick: make(chan struct{}, 1),
	}
	if c.receiptMode() {
		c.subs = append(c.subs, subscription{filter: cfg.ReceiptsTopic, qos: 1, fn: func(m Inbound) { c.onReceipt(m.Topic, m.Payload) }})
	}
	return c, nil
}

// parseBroker checks one broker URL and adds the default port.
func parseBroker(b string) (*url.URL, error) {
	u, err := url.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: broker %q: %v", ErrInvalidConfig, b, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return nil, fmt.Errorf("%w: broker %q: scheme %q not supported (tcp, mqtt, ssl, tls, mqtts)", ErrInvalidConfig, b, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: broker %q: no host", ErrInvalidConfig, b)
	}
	if u.Port() == "" {
		port := "1883"
		if isTLSScheme(u.Scheme) {
			port = "8883"
		}
		u.Host = u.Host + ":" + port
	}
	return u, nil
}

// OnConnectionChange registers fn, called from Run's goroutine with true once
// a connection is fully up (subscribed, status published) and with false
// when it ends. Calls alternate, starting with true. fn must not block for
// long. Call before Run; it panics afterwards.
func (c *Client) OnConnectionChange(fn func(up bool)) {
	if c.started.Load() {
		panic("uplink: OnConnectionChange after Run")
	}
	c.onChange = fn
}

// Handle subscribes fn to filter at qos on every connection (the broker
// session is clean, so messages published while the station is offline are
// not queued; central should retain state such as allowlist versions). A
// filter the broker refuses is logged, not retried. See Handler for how fn
// is called. Call before Run; it panics afterwards.
func (c *Client) Handle(filter string, qos byte, fn func(topic string, payload []byte)) {
	if c.started.Load() {
		panic("uplink: Handle after Run")
	}
	c.subs = append(c.subs, subscription{filter: filter, qos: qos, fn: func(m Inbound) { fn(m.Topic, m.Payload) }})
}

// HandleMessage is Handle for a handler that needs the message's flags
// (Inbound.Retained). Same rules as Handle; call before Run.
func (c *Client) HandleMessage(filter string, qos byte, fn func(Inbound)) {
	if c.started.Load() {
		panic("uplink: HandleMessage after Run")
	}
	c.subs = append(c.subs, subscription{filter: filter, qos: qos, fn: fn})
}

// Connected reports whether a connection is fully up. Safe for concurrent
// use.
func (c *Client) Connected() bool { return c.connected.Load() }

// SetStatus sets the retained status payload (e.g. {"state":"online",...}).
// It is published now if connected and again after every (re)connect. It
// never blocks; only the latest payload is published. Until the first call
// no online status is published. Safe for concurrent use.
func (c *Client) SetStatus(payload []byte) {
	p := append([]byte(nil), payload...)
	c.statusMu.Lock()
	c.status = p
	c.statusMu.Unlock()
	select {
	case c.statusKick <- struct{}{}:
	default:
	}
}

func (c *Client) currentStatus() []byte {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	return c.status
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (c *Client) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s := c.stats
	s.Connected = c.connected.Load()
	return s
}

func (c *Client) updateStats(fn func(*Stats)) {
	c.statsMu.Lock()
	fn(&c.stats)
	c.statsMu.Unlock()
}

// OnAck registers fn, called from Run's goroutine with the publish-to-PUBACK
// time of every acknowledged event (for a latency histogram). Call before
// Run; fn must be quick.
func (c *Client) OnAck(fn func(latency time.Duration)) {
	if c.started.Load() {
		panic("uplink: OnAck after Run")
	}
	c.onAck = fn
}

// liveConn is the current connection, for publishes outside the event flow.
type liveConn struct {
	cli  mqtt.Client
	lost *lostSignal
}

// ErrOffline is returned by Publish when no connection is up.
var ErrOffline = errors.New("uplink: not connected to the broker")

// Publish sends one message (QoS 1, not retained) outside the event stream
// (e.g. a command reply) and returns after its PUBACK. It is not durable:
// when the broker is not connected it returns ErrOffline at once, and when
// the connection drops first it returns an error; the caller decides
// whether to retry. Safe for concurrent use while Run runs.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	lc := c.live.Load()
	if lc == nil {
		return ErrOffline
	}
	tok := lc.cli.Publish(topic, 1, false, payload)
	t := time.NewTimer(c.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("uplink: publish to %s: %w", topic, err)
		}
		if lc.lost.fired() {
			return fmt.Errorf("uplink: publish to %s: %w", topic, lc.lost.reason())
		}
		return nil
	case <-lc.lost.ch:
		return fmt.Errorf("uplink: publish to %s: %w", topic, lc.lost.reason())
	case <-t.C:
		return fmt.Errorf("uplink: publish to %s: %w", topic, errAckTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) setConnected(up bool) {
	if c.connected.Swap(up) == up {
		return
	}
	if c.onChange != nil {
		c.onChange(up)
	}
}

// Run connects, drains the Outbox and keeps reconnecting with jittered
// exponential backoff (reset after each connection that came fully up) until
// ctx ends. It then publishes the offline status (Will) if connected, waits
// for its PUBACK at most ShutdownTimeout (taking the acknowledgements of
// events sent before it), disconnects and returns ctx.Err(). A connect
// attempt in progress is aborted at once; a publish blocked on a full socket
// may delay the return by up to AckTimeout. Run may be called only once per
// Client; it owns every goroutine it starts (paho's included) and stops
// them before returning, apart from paho's brief disconnect teardown.
func (c *Client) Run(ctx context.Context) error {
	if c.started.Swap(true) {
		return errors.New("uplink: Run called twice")
	}
	backoff := c.cfg.MinBackoff
	for {
		c.generation++
		wasUp, err := c.session(ctx, c.generation)
		c.setConnected(false)
		c.updateStats(func(s *Stats) { s.InFlight = 0 })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("connection ended", "gen", c.generation, "broker", c.brokers[c.cur].Redacted(), "err", err, "acked_seq", c.ackedSeq)
		// A connection that came fully up resets the backoff.
		if wasUp {
			backoff = c.cfg.MinBackoff
		}
		// Fail over to the next broker; back off fully only once every
		// broker of the list failed in a row.
		c.cur = (c.cur + 1) % len(c.brokers)
		delay := jitter(c.cfg.MinBackoff)
		if c.cur == 0 || wasUp {
			delay = jitter(backoff)
			backoff = min(backoff*2, c.cfg.MaxBackoff)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
