package uplink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Error kinds of Probe, one per stage, for errors.Is. Each error also wraps
// its cause.
var (
	// ErrProbeConfig: the ProbeConfig is unusable (bad broker URL, no topic).
	ErrProbeConfig = errors.New("probe: bad configuration")
	// ErrProbeDial: no TCP connection to the broker (refused, unreachable,
	// name not resolved, timed out).
	ErrProbeDial = errors.New("probe: broker not reachable")
	// ErrProbeTLS: the TLS handshake failed (unknown CA, name mismatch,
	// expired certificate, client certificate refused).
	ErrProbeTLS = errors.New("probe: TLS handshake failed")
	// ErrProbeAuth: the broker refused the MQTT connection for the
	// credentials (bad user name or password, or not authorised).
	ErrProbeAuth = errors.New("probe: broker refused the credentials")
	// ErrProbeConnect: the MQTT connection failed otherwise (no CONNACK,
	// client id rejected, server unavailable).
	ErrProbeConnect = errors.New("probe: MQTT connection failed")
	// ErrProbeRoundTrip: connected, but the probe message was not
	// acknowledged or did not come back on the subscription in time (for
	// instance an ACL that denies the topic).
	ErrProbeRoundTrip = errors.New("probe: round trip failed")
	// ErrProbeReceipt: the broker round trip worked, but central did not
	// answer the receipt probe with a receipt for the station in time.
	ErrProbeReceipt = errors.New("probe: no receipt from central")
)

// ProbeConfig says which broker to probe and as whom.
type ProbeConfig struct {
	// Broker, Username, Password and TLS as in Config. TLS is used for
	// ssl://, tls:// and mqtts:// URLs (a default tls.Config when nil).
	Broker   string
	Username string
	Password string
	TLS      *tls.Config
	// ClientID must differ from the running station's, or the broker would
	// disconnect the station to let the probe in (the doctor uses
	// STATION-ID-doctor).
	ClientID string
	// Topic is where the probe publishes one QoS 1 message after
	// subscribing to it; it must be a topic the credentials may publish and
	// subscribe to, and one nobody consumes as data.
	Topic string
	// StatusTopic, when set, is also subscribed, to return its retained
	// message (the running station's status) in ProbeResult.Status.
	StatusTopic string
	// Timeout bounds the whole probe (default 5 s).
	Timeout time.Duration
	// Receipt round trip (optional, for receipt delivery): when
	// ReceiptsTopic is set, the probe also subscribes to it, publishes a
	// dockd.receipt-probe/1 for StationID on ReceiptProbeTopic after the
	// broker round trip, and waits up to ReceiptTimeout (default 5 s, on
	// top of Timeout) for any well-formed receipt for StationID.
	ReceiptsTopic, ReceiptProbeTopic, StationID string
	ReceiptTimeout                              time.Duration
}

// ProbeResult is what a probe found. Fields are filled as far as the probe
// got before an error.
type ProbeResult struct {
	Reachable bool // TCP connection established
	// TLS is set for TLS URLs once the handshake succeeded; TLSVersion is
	// e.g. "TLS 1.3", ServerCert the leaf's subject and ServerCertExpiry
	// its NotAfter.
	TLS              bool
	TLSVersion       string
	ServerCert       string
	ServerCertExpiry time.Time
	Connected        bool          // CONNACK accepted
	ConnectTime      time.Duration // dial to CONNACK
	Acked            bool          // the probe's PUBACK arrived
	Echoed           bool          // the probe message came back on the subscription
	RoundTrip        time.Duration // publish to echo
	// Status is the retained message on StatusTopic, if there was one
	// when the probe subscribed.
	Status []byte
	// Receipt is the first receipt for StationID that arrived after the
	// receipt probe was published (nil if none or not asked);
	// ReceiptRoundTrip is probe publish to receipt arrival.
	Receipt          *Receipt
	ReceiptRoundTrip time.Duration
}

// Probe checks a broker end to end the way the uplink uses it: TCP, TLS,
// MQTT CONNECT with the credentials, then subscribe to Topic, publish one
// QoS 1 message there and wait for its PUBACK and for it to come back. It
// uses its own short-lived clean-session connection, never the station's,
// and leaves no goroutines behind. The error wraps exactly one of the
// ErrProbe* kinds, naming the broker and the cause; the password never
// appears in it.
func Probe(ctx context.Context, pc ProbeConfig) (ProbeResult, error) {
	var res ProbeResult
	if pc.Timeout <= 0 {
		pc.Timeout = 5 * time.Second
	}
	total := pc.Timeout
	if pc.ReceiptsTopic != "" {
		if pc.ReceiptProbeTopic == "" || pc.StationID == "" {
			return res, fmt.Errorf("%w: a receipt probe needs ReceiptProbeTopic and StationID", ErrProbeConfig)
		}
		if pc.ReceiptTimeout <= 0 {
			pc.ReceiptTimeout = 5 * time.Second
		}
		total += pc.ReceiptTimeout
	}
	u, err := url.Parse(pc.Broker)
	if err != nil || u.Host == "" {
		return res, fmt.Errorf("%w: broker %q is not a URL like tcp://host:port", ErrProbeConfig, pc.Broker)
	}
	if pc.Topic == "" || pc.ClientID == "" {
		return res, fmt.Errorf("%w: topic and client id are required", ErrProbeConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var (
		mu       sync.Mutex
		stageErr error // set by the dialler: ErrProbeDial or ErrProbeTLS
	)
	start := time.Now()
	open := func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			mu.Lock()
			stageErr = fmt.Errorf("%w: %s: %w", ErrProbeDial, u.Host, err)
			mu.Unlock()
			return nil, err
		}
		mu.Lock()
		res.Reachable = true
		mu.Unlock()
		if !isTLSScheme(u.Scheme) {
			return conn, nil
		}
		cfg := &tls.Config{}
		if pc.TLS != nil {
			cfg = pc.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			mu.Lock()
			stageErr = fmt.Errorf("%w with %s: %w", ErrProbeTLS, u.Host, err)
			mu.Unlock()
			return nil, err
		}
		cs := tc.ConnectionState()
		mu.Lock()
		res.TLS, res.TLSVersion = true, tls.VersionName(cs.Version)
		if len(cs.PeerCertificates) > 0 {
			res.ServerCert = cs.PeerCertificates[0].Subject.String()
			res.ServerCertExpiry = cs.PeerCertificates[0].NotAfter
		}
		mu.Unlock()
		return tc, nil
	}

	nonce := make([]byte, 8)
	rand.Read(nonce)
	payload := []byte("dockd-probe " + hex.EncodeToString(nonce))
	echo := make(chan time.Time, 1)
	receipts := make(chan receiptAt, 16)
	var status []byte
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		if pc.ReceiptsTopic != "" && m.Topic() == pc.ReceiptsTopic {
			if r, err := ParseReceipt(m.Payload()); err == nil && r.Station == pc.StationID {
				select {
				case receipts <- receiptAt{r, time.Now()}:
				default:
				}
			}
			return
		}
		if m.Topic() == pc.Topic && string(m.Payload()) == string(payload) {
			select {
			case echo <- time.Now():
			default:
			}
			return
		}
		if pc.StatusTopic != "" && m.Topic() == pc.StatusTopic && m.Retained() {
			mu.Lock()
			status = append([]byte(nil), m.Payload()...)
			mu.Unlock()
		}
	}

	opts := mqtt.NewClientOptions().AddBroker(pc.Broker).SetClientID(pc.ClientID).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(time.Until(deadline)).SetWriteTimeout(time.Until(deadline)).
		SetKeepAlive(30 * time.Second).SetOrderMatters(true).
		SetCustomOpenConnectionFn(open).SetDefaultPublishHandler(onMessage)
	if pc.Username != "" {
		opts.SetUsername(pc.Username)
	}
	if pc.Password != "" {
		opts.SetPassword(pc.Password)
	}
	cli := mqtt.NewClient(opts)
	snapshot := func() ProbeResult {
		mu.Lock()
		defer mu.Unlock()
		r := res
		r.Status = status
		return r
	}

	tok := cli.Connect()
	if err := wait(ctx, tok); err != nil {
		mu.Lock()
		se := stageErr
		mu.Unlock()
		if se != nil {
			return snapshot(), se
		}
		ct, _ := tok.(*mqtt.ConnectToken)
		if ct != nil {
			switch ct.ReturnCode() {
			case packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised:
				return snapshot(), fmt.Errorf("%w: %s as user %q: %w", ErrProbeAuth, u.Host, pc.Username, err)
			}
		}
		return snapshot(), fmt.Errorf("%w: %s: %w", ErrProbeConnect, u.Host, err)
	}
	defer cli.Disconnect(100)
	mu.Lock()
	res.Connected, res.ConnectTime = true, time.Since(start)
	mu.Unlock()

	filters := map[string]byte{pc.Topic: 1}
	if pc.StatusTopic != "" {
		filters[pc.StatusTopic] = 1
	}
	if pc.ReceiptsTopic != "" {
		filters[pc.ReceiptsTopic] = 1
	}
	stok := cli.SubscribeMultiple(filters, nil)
	if err := wait(ctx, stok); err != nil {
		return snapshot(), fmt.Errorf("%w: subscribing to %s on %s: %w", ErrProbeRoundTrip, pc.Topic, u.Host, err)
	}
	if st, ok := stok.(*mqtt.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code == 0x80 {
				return snapshot(), fmt.Errorf("%w: the broker refused the subscription to %s (ACL?)", ErrProbeRoundTrip, f)
			}
		}
	}

	sent := time.Now()
	ptok := cli.Publish(pc.Topic, 1, false, payload)
	if err := wait(ctx, ptok); err != nil {
		return snapshot(), fmt.Errorf("%w: publishing to %s on %s: %w", ErrProbeRoundTrip, pc.Topic, u.Host, err)
	}
	mu.Lock()
	res.Acked = true
	mu.Unlock()
	select {
	case at := <-echo:
		mu.Lock()
		res.Echoed, res.RoundTrip = true, at.Sub(sent)
		mu.Unlock()
	case <-ctx.Done():
		return snapshot(), fmt.Errorf("%w: published to %s on %s and got the PUBACK, but the message did not come back within %v (an ACL that silently drops it?)",
			ErrProbeRoundTrip, pc.Topic, u.Host, pc.Timeout)
	}
	if pc.ReceiptsTopic == "" {
		return snapshot(), nil
	}

	probe, _ := json.Marshal(map[string]string{"schema": ReceiptProbeSchema, "station": pc.StationID,
		"id": hex.EncodeToString(nonce), "time": time.Now().UTC().Format(time.RFC3339Nano)})
	rctx, rcancel := context.WithTimeout(ctx, pc.ReceiptTimeout)
	defer rcancel()
	sent = time.Now()
	if err := wait(rctx, cli.Publish(pc.ReceiptProbeTopic, 1, false, probe)); err != nil {
		return snapshot(), fmt.Errorf("%w: publishing the receipt probe to %s on %s: %w", ErrProbeReceipt, pc.ReceiptProbeTopic, u.Host, err)
	}
	for {
		select {
		case ra := <-receipts:
			if ra.at.Before(sent) {
				continue // an answer to something earlier
			}
			mu.Lock()
			res.Receipt, res.ReceiptRoundTrip = &ra.r, ra.at.Sub(sent)
			mu.Unlock()
			return snapshot(), nil
		case <-rctx.Done():
			return snapshot(), fmt.Errorf("%w: published a receipt probe on %s and no receipt for %s came on %s within %v (is central's collector running and subscribed to receipt probes?)",
				ErrProbeReceipt, pc.ReceiptProbeTopic, pc.StationID, pc.ReceiptsTopic, pc.ReceiptTimeout)
		}
	}
}

type receiptAt struct {
	r  Receipt
	at time.Time
}

// wait waits for a paho token or ctx, returning the token's error.
func wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
}
