package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Central is a tiny stand-in for central in receipt-delivery tests: it
// subscribes to one station's events topic on one or more brokers (a
// Subscriber each) and publishes receipts (dockd.receipt/1) on the
// station's receipts topic by hand, on every broker it can reach. It stores
// nothing durably; "stored" means "seen by a subscriber", so tests decide
// when to receipt. The real collector is internal/collector.
//
// What it guarantees: Seen and Prefix reflect every message any of its
// subscribers received so far; Receipt returns once at least one broker
// acknowledged the receipt (or fails t). Safe for concurrent use.
type Central struct {
	Subs          []*Subscriber
	pubs          []mqtt.Client
	station       string
	receiptsTopic string
}

// NewCentral subscribes to eventsTopic on every broker URL and connects a
// publisher to each. It disconnects at t.Cleanup.
func NewCentral(t testing.TB, brokerURLs []string, eventsTopic, receiptsTopic, station string) *Central {
	t.Helper()
	c := &Central{station: station, receiptsTopic: receiptsTopic}
	for _, u := range brokerURLs {
		c.Subs = append(c.Subs, NewSubscriber(t, u, eventsTopic))
		var idb [6]byte
		_, _ = rand.Read(idb[:])
		p := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(u).
			SetClientID("testkit-central-" + hex.EncodeToString(idb[:])).
			SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
			SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(50 * time.Millisecond).
			SetConnectTimeout(2 * time.Second))
		tok := p.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("central: publisher connect to %s: %v", u, tok.Error())
		}
		t.Cleanup(func() { p.Disconnect(100) })
		c.pubs = append(c.pubs, p)
	}
	return c
}

// Record is one event-topic message as central decoded it: seq and id of
// an event, or the range of a gap record (Kind "gap").
type Record struct {
	Seq      uint64 `json:"seq"`
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	From, To uint64
	Payload  []byte `json:"-"`
}

// Records returns every message received so far on any broker, decoded,
// in arrival order per broker (brokers one after another).
func (c *Central) Records(t testing.TB) []Record {
	t.Helper()
	var out []Record
	for _, s := range c.Subs {
		for _, m := range s.Messages() {
			var r Record
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatalf("central: payload %.80q: %v", m.Payload, err)
			}
			r.Payload = m.Payload
			out = append(out, r)
		}
	}
	return out
}

// Prefix is the highest seq n such that every seq 1..n was seen as an
// event or inside a gap record's from..to (or as the gap record itself).
func (c *Central) Prefix(t testing.TB) uint64 {
	t.Helper()
	c.Records(t) // fails t on a payload central cannot decode
	return c.prefixQuiet()
}

// Count returns how many times each seq arrived.
func (c *Central) Count(t testing.TB) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	for _, r := range c.Records(t) {
		out[r.Seq]++
	}
	return out
}

// ReceiptPayload is a well-formed receipt for station up to upto.
func ReceiptPayload(station string, upto uint64) []byte {
	return fmt.Appendf(nil, `{"schema":"dockd.receipt/1","station":%q,"upto":%d,"time":%q,"collector":"testkit-central"}`,
		station, upto, time.Now().UTC().Format(time.RFC3339Nano))
}

// Receipt publishes a receipt for the station up to upto.
func (c *Central) Receipt(t testing.TB, upto uint64) {
	t.Helper()
	c.Publish(t, ReceiptPayload(c.station, upto))
}

// Publish sends payload on the receipts topic (QoS 1) to every broker and
// returns once one acknowledged it; it fails t if none did within 5 s.
func (c *Central) Publish(t testing.TB, payload []byte) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok int
	var errs []error
	for _, p := range c.pubs {
		if !p.IsConnectionOpen() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := p.Publish(c.receiptsTopic, 1, false, payload)
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				mu.Lock()
				ok++
				mu.Unlock()
				return
			}
			mu.Lock()
			errs = append(errs, tok.Error())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ok == 0 {
		t.Fatalf("central: receipt not acknowledged by any broker: %v", errs)
	}
}

// AutoReceipt receipts the seen prefix every period until the test ends
// (only when it grew). t must outlive it; errors are not fatal (a broker
// of several may be down).
func (c *Central) AutoReceipt(t testing.TB, period time.Duration) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		tk := time.NewTicker(period)
		defer tk.Stop()
		var last uint64
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			n := c.prefixQuiet()
			if n <= last {
				continue
			}
			p := ReceiptPayload(c.station, n)
			var toks []mqtt.Token
			for _, pc := range c.pubs {
				if pc.IsConnectionOpen() { // a killed broker must not stall the others
					toks = append(toks, pc.Publish(c.receiptsTopic, 1, false, p))
				}
			}
			for _, tok := range toks {
				tok.WaitTimeout(2 * time.Second)
			}
			last = n
		}
	}()
}

// prefixQuiet is Prefix without a testing.TB (for AutoReceipt's
// goroutine); undecodable payloads count as not seen.
func (c *Central) prefixQuiet() uint64 {
	seen := map[uint64]bool{}
	for _, s := range c.Subs {
		for _, m := range s.Messages() {
			var r Record
			if json.Unmarshal(m.Payload, &r) != nil {
				continue
			}
			seen[r.Seq] = true
			if r.Kind == "gap" {
				for x := r.From; x <= r.To && x != 0; x++ {
					seen[x] = true
				}
			}
		}
	}
	n := uint64(0)
	for seen[n+1] {
		n++
	}
	return n
}
