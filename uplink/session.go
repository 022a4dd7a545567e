package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Why a connection ended; wrapped in the error Run logs.
var (
	errConnLost   = errors.New("connection lost")
	errAckTimeout = errors.New("no acknowledgement within AckTimeout")
)

// pub is one event publish awaiting its PUBACK on the current connection.
type pub struct {
	seq  uint64
	tok  mqtt.Token
	sent time.Time
}

// lostSignal is closed by paho's connection-lost handler. paho completes
// every outstanding token with an error before it calls that handler (with
// clean session and no auto-reconnect), so a token that completed without
// error while the signal is still open was completed by a real PUBACK.
type lostSignal struct {
	once sync.Once
	ch   chan struct{}
	err  error
}

func (l *lostSignal) fire(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.ch)
	})
}

func (l *lostSignal) fired() bool {
	select {
	case <-l.ch:
		return true
	default:
		return false
	}
}

func (l *lostSignal) reason() error {
	if !l.fired() {
		return errConnLost
	}
	return fmt.Errorf("%w: %v", errConnLost, l.err)
}

// session runs one connection generation: connect, subscribe, publish the
// status, then drain the Outbox until the connection ends or ctx does.
// Everything in flight belongs to this generation and is forgotten when it
// returns; the next generation re-reads the Outbox after c.ackedSeq.
// wasUp reports whether the connection came fully up.
func (c *Client) session(ctx context.Context, gen uint64) (wasUp bool, err error) {
	broker := c.brokers[c.cur]
	log := c.log.With("gen", gen, "broker", broker.Redacted())
	c.updateStats(func(s *Stats) { s.Broker = broker.Redacted() })
	lost := &lostSignal{ch: make(chan struct{})}
	guard := &connGuard{}
	defer guard.release()

	opts := mqtt.NewClientOptions().
		AddBroker(broker.String()).
		SetClientID(c.cfg.ClientID).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetKeepAlive(c.cfg.KeepAlive).
		SetPingTimeout(c.cfg.AckTimeout).
		SetWriteTimeout(c.cfg.AckTimeout).
		SetOrderMatters(true).
		SetResumeSubs(false).
		SetCustomOpenConnectionFn(c.openConn(ctx, guard)).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost.fire(err) })
	if c.cfg.StatusTopic != "" && c.cfg.Will != nil {
		opts.SetBinaryWill(c.cfg.StatusTopic, c.cfg.Will, 1, true)
	}
	cli := mqtt.NewClient(opts)

	// Connecting is bounded by ConnectTimeout; if ctx ends meanwhile the
	// guard closes the socket so the handshake fails at once.
	ctok := cli.Connect()
	<-ctok.Done()
	guard.release() // from here on, ctx's end is handled by shutdown
	if err := ctok.Error(); err != nil {
		return false, fmt.Errorf("connect to %s as %q: %w", broker.Redacted(), c.cfg.ClientID, err)
	}
	if ctx.Err() != nil {
		c.shutdown(cli, nil, lost, log)
		return false, ctx.Err()
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			cli.Disconnect(0) // abandon this generation; no-op if paho already dropped it
		}
	}()

	for _, s := range c.subs {
		fn := s.fn
		stok := cli.Subscribe(s.filter, s.qos, func(_ mqtt.Client, m mqtt.Message) {
			fn(Inbound{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained()})
		})
		if err := c.await(ctx, stok, lost); err != nil {
			if ctx.Err() != nil {
				c.shutdown(cli, nil, lost, log)
				return false, ctx.Err()
			}
			return false, fmt.Errorf("subscribe %q: %w", s.filter, err)
		}
		if st, ok := stok.(*mqtt.SubscribeToken); ok && st.Result()[s.filter] >= 0x80 {
			log.Error("broker refused subscription", "filter", s.filter, "qos", s.qos)
		}
	}

	select { // the status published below is the latest anyway
	case <-c.statusKick:
	default:
	}
	statusTok := c.publishStatus(cli)
	c.updateStats(func(s *Stats) { s.Connects++ })
	c.live.Store(&liveConn{cli: cli, lost: lost})
	defer c.live.Store(nil)
	c.setConnected(true)
	var (
		q           []pub
		lastSent    = c.ackedSeq // re-read from the Outbox, never from memory
		caughtUp    bool         // the last Pending returned fewer than asked
		pendingFail bool         // the last Pending failed; retry on the poll timer
		rewind      bool         // receipt mode: resend what is unconfirmed once q drains
	)
	if c.receiptMode() {
		// Every reconnect sends again whatever no receipt covers yet.
		c.applyReceipts()
		lastSent = c.confirmed.Load()
		c.unconf.lastRewind = time.Now()
	}
	log.Info("connected", "resume_after_seq", lastSent, "in_flight_max", c.cfg.InFlight, "delivery", c.cfg.Delivery)
	ackTimer := time.NewTimer(time.Hour)
	defer ackTimer.Stop()
	pollTimer := time.NewTimer(time.Hour)
	defer pollTimer.Stop()
	resendTimer := time.NewTimer(time.Hour)
	defer resendTimer.Stop()

	for {
		if rewind && len(q) == 0 {
			rewind = false
			c.applyReceipts()
			n, _ := c.unconf.count()
			conf := c.confirmed.Load()
			log.Warn("no receipt within receipt_timeout: publishing unconfirmed events again",
				"after_seq", conf, "upto_seq", c.unconf.tail(), "unconfirmed", n, "receipt_timeout", c.cfg.ReceiptTimeout)
			lastSent, caughtUp = conf, false
			c.unconf.lastRewind = time.Now()
			c.updateStats(func(s *Stats) { s.ReceiptResends++ })
		}
		if c.receiptMode() {
			// Never publish what a receipt already covers.
			lastSent = max(lastSent, c.confirmed.Load())
		}
		if !caughtUp && !pendingFail && !rewind && len(q) < c.cfg.InFlight {
			want := c.cfg.InFlight - len(q)
			recs, perr := c.out.Pending(lastSent, want)
			if perr != nil {
				log.Error("read outbox", "after_seq", lastSent, "max", want, "err", perr)
				pendingFail = true
			} else {
				if len(recs) > want {
					recs = recs[:want] // never exceed the in-flight window
				}
				caughtUp = len(recs) < want
				for _, r := range recs {
					if r.Seq <= lastSent {
						log.Error("outbox returned a record out of order; skipped", "seq", r.Seq, "after_seq", lastSent)
						continue
					}
					tok := c.publishRecord(cli, r)
					q = append(q, pub{seq: r.Seq, tok: tok, sent: time.Now()})
					if c.receiptMode() {
						c.unconf.sent([]uint64{r.Seq}, c.confirmed.Load(), q[len(q)-1].sent)
					}
					lastSent = r.Seq
					resent := r.Seq <= c.maxSentSeq
					c.maxSentSeq = max(c.maxSentSeq, r.Seq)
					c.updateStats(func(s *Stats) {
						s.Published++
						if resent {
							s.Resent++
						}
						s.InFlight = len(q)
					})
				}
				c.applyReceipts() // the unconfirmed figures include what was just sent
			}
		}

		var headDone, notifyC, statusC <-chan struct{}
		var ackTimerC, pollTimerC, resendTimerC <-chan time.Time
		if due := c.unconf.resendDue(c.cfg.ReceiptTimeout); c.receiptMode() && !rewind && !due.IsZero() {
			resendTimer.Reset(time.Until(due))
			resendTimerC = resendTimer.C
		}
		if len(q) > 0 {
			headDone = q[0].tok.Done()
			ackTimer.Reset(time.Until(q[0].sent.Add(c.cfg.AckTimeout)))
			ackTimerC = ackTimer.C
		}
		room := len(q) < c.cfg.InFlight
		if caughtUp && room {
			notifyC = c.out.Notify()
		}
		if (caughtUp && room) || pendingFail || c.outboxSeq < c.releasable() {
			pollTimer.Reset(idlePoll)
			pollTimerC = pollTimer.C
		}
		if statusTok != nil {
			statusC = statusTok.Done()
		}

		select {
		case <-ctx.Done():
			c.shutdown(cli, q, lost, log)
			return true, ctx.Err()
		case <-lost.ch:
			return true, lost.reason()
		case <-headDone:
			var aerr error
			q, aerr = c.takeAcks(cli, q, lost)
			c.updateStats(func(s *Stats) { s.InFlight = len(q) })
			if aerr != nil {
				return true, aerr
			}
			c.ackOutbox(log)
		case <-ackTimerC:
			return true, fmt.Errorf("%w: event seq %d sent %v ago, %d in flight", errAckTimeout, q[0].seq, time.Since(q[0].sent).Round(time.Millisecond), len(q))
		case <-notifyC:
			caughtUp = false
		case <-pollTimerC:
			caughtUp, pendingFail = false, false
			c.ackOutbox(log)
		case <-c.receiptKick:
			c.applyReceipts()
			c.ackOutbox(log)
		case <-resendTimerC:
			rewind = true
		case <-c.statusKick:
			statusTok = c.publishStatus(cli)
		case <-statusC:
			if err := statusTok.Error(); err != nil {
				log.Warn("publish status", "topic", c.cfg.StatusTopic, "err", err)
			}
			statusTok = nil
		}
	}
}

// takeAcks removes the acknowledged prefix of q. A token counts as
// acknowledged only if it completed without error while this generation's
// connection is still up; the sweep stops at the first incomplete token, so
// the prefix never skips a gap.
func (c *Client) takeAcks(cli mqtt.Client, q []pub, lost *lostSignal) ([]pub, error) {
	now := time.Now()
	n := 0
	var err error
sweep:
	for ; n < len(q); n++ {
		select {
		case <-q[n].tok.Done():
		default:
			break sweep
		}
		if terr := q[n].tok.Error(); terr != nil {
			err = fmt.Errorf("publish event seq %d: %w", q[n].seq, terr)
			break
		}
		if lost.fired() || !cli.IsConnectionOpen() {
			err = fmt.Errorf("publish event seq %d: %w", q[n].seq, lost.reason())
			break
		}
	}
	if n == 0 {
		return q, err
	}
	c.ackedSeq = max(c.ackedSeq, q[n-1].seq) // a receipt-mode resend acks lower seqs again
	c.updateStats(func(s *Stats) {
		for _, p := range q[:n] {
			l := now.Sub(p.sent)
			s.PublishLatency = l
			if s.PublishLatencyAvg == 0 {
				s.PublishLatencyAvg = l
			} else {
				s.PublishLatencyAvg += (l - s.PublishLatencyAvg) / 8
			}
		}
		s.Acked += uint64(n)
		s.LastAck = now
		s.AckedSeq = c.ackedSeq
	})
	if c.onAck != nil {
		for _, p := range q[:n] {
			c.onAck(now.Sub(p.sent))
		}
	}
	return q[n:], err
}

// ackOutbox durably acknowledges the broker-acknowledged prefix. A failure
// is logged and retried later; the records stay queued and would be resent
// after a process restart (duplicates, never losses).
func (c *Client) ackOutbox(log *slog.Logger) {
	seq := c.releasable()
	c.updateStats(func(s *Stats) { s.ReleasedSeq = seq })
	if c.outboxSeq >= seq {
		return
	}
	if err := c.out.Ack(seq); err != nil {
		log.Error("acknowledge outbox", "seq", seq, "err", err)
		return
	}
	c.outboxSeq = seq
	c.updateStats(func(s *Stats) { s.OutboxSeq = seq })
}

// await waits for a control token (SUBACK) with AckTimeout.
func (c *Client) await(ctx context.Context, tok mqtt.Token, lost *lostSignal) error {
	t := time.NewTimer(c.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-lost.ch:
		return lost.reason()
	case <-t.C:
		return errAckTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) publishStatus(cli mqtt.Client) mqtt.Token {
	p := c.currentStatus()
	if c.cfg.StatusTopic == "" || p == nil {
		return nil
	}
	return cli.Publish(c.cfg.StatusTopic, 1, true, p)
}

// shutdown ends a connection cleanly: the retained offline status (Will) is
// published and awaited within ShutdownTimeout — the broker handles packets
// in order, so its PUBACK also flushes the acknowledgements of events sent
// before it — then the Outbox is acknowledged and DISCONNECT sent.
func (c *Client) shutdown(cli mqtt.Client, q []pub, lost *lostSignal, log *slog.Logger) {
	if c.cfg.StatusTopic != "" && c.cfg.Will != nil && !lost.fired() {
		tok := cli.Publish(c.cfg.StatusTopic, 1, true, c.cfg.Will)
		if !tok.WaitTimeout(c.cfg.ShutdownTimeout) {
			log.Warn("offline status not acknowledged before shutdown", "timeout", c.cfg.ShutdownTimeout)
		} else if err := tok.Error(); err != nil {
			log.Warn("publish offline status", "err", err)
		}
	}
	if len(q) > 0 {
		if rest, err := c.takeAcks(cli, q, lost); err == nil {
			q = rest
		}
	}
	c.ackOutbox(log)
	cli.Disconnect(uint(min(c.cfg.ShutdownTimeout, 250*time.Millisecond) / time.Millisecond))
	log.Info("disconnected", "acked_seq", c.ackedSeq, "unacked_in_flight", len(q))
}

// connGuard closes the sockets opened while connecting if ctx ends before
// the handshake completes; release disarms it.
type connGuard struct {
	mu       sync.Mutex
	released bool
	stops    []func() bool
}

func (g *connGuard) add(ctx context.Context, conn net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	g.stops = append(g.stops, context.AfterFunc(ctx, func() { _ = conn.Close() }))
}

func (g *connGuard) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.released = true
	for _, stop := range g.stops {
		stop()
	}
	g.stops = nil
}

// openConn dials the broker (TCP, then TLS for TLS schemes) honouring ctx
// and ConnectTimeout; paho then runs the MQTT handshake on the socket.
func (c *Client) openConn(ctx context.Context, guard *connGuard) mqtt.OpenConnectionFunc {
	return func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		defer cancel()
		var d net.Dialer
		conn, err := d.DialContext(dctx, "tcp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", u.Host, err)
		}
		if isTLSScheme(u.Scheme) {
			cfg := &tls.Config{}
			if c.cfg.TLS != nil {
				cfg = c.cfg.TLS.Clone()
			}
			if cfg.ServerName == "" {
				cfg.ServerName = u.Hostname()
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(dctx); err != nil {
				_ = conn.Close()
				return nil, fmt.Errorf("tls handshake with %s: %w", u.Host, err)
			}
			conn = tc
		}
		guard.add(ctx, conn)
		return conn, nil
	}
}

func isTLSScheme(s string) bool { return s == "ssl" || s == "tls" || s == "mqtts" }

// jitter returns a delay in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
