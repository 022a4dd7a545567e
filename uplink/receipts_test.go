package uplink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

const (
	receiptsTopic = "dockd/v1/s1/d1/receipts"
	stationID     = "s1-d1"
)

// logRecorder is a slog.Handler that keeps every record (and also writes
// it to the test log in -v runs).
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
	next slog.Handler
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return h.next.Handle(ctx, r)
}
func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{h: h, attrs: as}
}
func (h *logRecorder) WithGroup(string) slog.Handler { return h }

type attrHandler struct {
	h     *logRecorder
	attrs []slog.Attr
}

func (a *attrHandler) Enabled(context.Context, slog.Level) bool { return true }
func (a *attrHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(a.attrs...)
	return a.h.Handle(ctx, r)
}
func (a *attrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{h: a.h, attrs: append(append([]slog.Attr(nil), a.attrs...), as...)}
}
func (a *attrHandler) WithGroup(string) slog.Handler { return a }

// matching returns the "msg reason=…" of every record whose message
// starts with prefix.
func (h *logRecorder) matching(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if !strings.HasPrefix(r.Message, prefix) {
			continue
		}
		reason := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" {
				reason = a.Value.String()
			}
			return true
		})
		out = append(out, r.Message+" reason="+reason)
	}
	return out
}

func receiptConfig(t testing.TB, broker string, out *memOutbox) Config {
	cfg := testConfig(t, broker)
	cfg.Delivery = DeliveryReceipt
	cfg.ReceiptsTopic = receiptsTopic
	cfg.StationID = stationID
	cfg.ReceiptTimeout = time.Hour // tests that want resends lower it
	cfg.HighestIssued = func() uint64 {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.next
	}
	return cfg
}

func newReceiptClient(t *testing.T, cfg Config, out *memOutbox) (*Client, *logRecorder) {
	t.Helper()
	rec := &logRecorder{next: testLogger(t).Handler()}
	c, err := New(cfg, out, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// TestReceiptModeKeepsEventsUntilReceipt: events the broker acknowledged
// stay in the outbox until a receipt covers them, then exactly up to it.
func TestReceiptModeKeepsEventsUntilReceipt(t *testing.T) {
	m := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{m.URL()}, eventsTopic, receiptsTopic, stationID)
	out := newMemOutbox()
	out.Append(20)
	c, _ := newReceiptClient(t, receiptConfig(t, m.URL(), out), out)
	w := newConnWatch(c)
	startClient(t, c)
	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
	central.Subs[0].WaitCount(t, 20, 10*time.Second)
	eventually(t, 5*time.Second, "20 PUBACKs", func() bool { return c.Stats().AckedSeq == 20 })
	if acked, pending, _ := out.state(); acked != 0 || pending != 20 {
		t.Fatalf("outbox acked %d, %d pending after PUBACKs without a receipt; want 0 and 20", acked, pending)
	}
	if st := c.Stats(); st.Unconfirmed != 20 || st.UnconfirmedSince.IsZero() || st.ConfirmedSeq != 0 {
		t.Fatalf("stats %+v, want 20 unconfirmed", st)
	}

	central.Receipt(t, 12)
	eventually(t, 5*time.Second, "outbox acked to 12", func() bool { a, _, _ := out.state(); return a == 12 })
	if st := c.Stats(); st.Unconfirmed != 8 || st.ConfirmedSeq != 12 || st.Receipts != 1 {
		t.Fatalf("stats %+v after receipt 12, want 8 unconfirmed", st)
	}
	central.Receipt(t, 20)
	checkOutboxDrained(t, out, 20)
	eventually(t, 5*time.Second, "nothing unconfirmed", func() bool {
		st := c.Stats()
		return st.Unconfirmed == 0 && st.UnconfirmedSince.IsZero()
	})
	if n := len(central.Subs[0].Messages()); n != 20 {
		t.Errorf("%d events published, want 20 (no resend before receipt_timeout)", n)
	}
}

// TestReceiptTimeoutResendsSameBytes: without a receipt, acknowledged
// events are published again after ReceiptTimeout with identical bytes;
// after the receipt they are not.
func TestReceiptTimeoutResendsSameBytes(t *testing.T) {
	m := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{m.URL()}, eventsTopic, receiptsTopic, stationID)
	out := newMemOutbox()
	out.Append(5)
	cfg := receiptConfig(t, m.URL(), out)
	cfg.ReceiptTimeout = 300 * time.Millisecond
	c, rec := newReceiptClient(t, cfg, out)
	startClient(t, c)
	sub := central.Subs[0]
	sub.WaitCount(t, 15, 10*time.Second) // each of 5 sent three times
	msgs := sub.Messages()
	first := map[uint64][]byte{}
	for i, s := range seqsOf(t, msgs) {
		if p, ok := first[s]; ok && !bytes.Equal(p, msgs[i].Payload) {
			t.Fatalf("seq %d resent with different bytes:\n%s\n%s", s, p, msgs[i].Payload)
		}
		first[s] = msgs[i].Payload
	}
	checkDelivery(t, seqsOf(t, msgs), 5, len(msgs))
	if st := c.Stats(); st.ReceiptResends < 2 || st.Connects != 1 {
		t.Fatalf("stats %+v: want >= 2 receipt resends on one connection", st)
	}
	if len(rec.matching("no receipt within receipt_timeout")) < 2 {
		t.Fatalf("resends not logged: %v", rec.matching("no receipt"))
	}
	if acked, _, _ := out.state(); acked != 0 {
		t.Fatalf("outbox acked %d without a receipt", acked)
	}
	central.Receipt(t, 5)
	checkOutboxDrained(t, out, 5)
	time.Sleep(200 * time.Millisecond) // a resend published before the receipt may still be on its way
	n := len(sub.Messages())
	time.Sleep(4 * cfg.ReceiptTimeout)
	if n2 := len(sub.Messages()); n2 != n {
		t.Fatalf("%d more publishes after the receipt covered everything", n2-n)
	}
}

// TestReceiptsRefusedAreLoggedAndChangeNothing: malformed, foreign,
// ahead, backwards and repeated receipts each give exactly one log line
// and release nothing; a good receipt afterwards still works.
func TestReceiptsRefusedAreLoggedAndChangeNothing(t *testing.T) {
	m := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{m.URL()}, eventsTopic, receiptsTopic, stationID)
	out := newMemOutbox()
	out.Append(10)
	c, rec := newReceiptClient(t, receiptConfig(t, m.URL(), out), out)
	startClient(t, c)
	central.Subs[0].WaitCount(t, 10, 10*time.Second)
	eventually(t, 5*time.Second, "10 PUBACKs", func() bool { return c.Stats().AckedSeq == 10 })
	central.Receipt(t, 5)
	eventually(t, 5*time.Second, "outbox acked to 5", func() bool { a, _, _ := out.state(); return a == 5 })

	now := time.Now().UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, payload, reason string
	}{
		{"not json", `{"schema":`, refuseMalformed},
		{"wrong schema", fmt.Sprintf(`{"schema":"dockd.receipt/2","station":%q,"upto":9,"time":%q,"collector":"c"}`, stationID, now), refuseMalformed},
		{"negative upto", fmt.Sprintf(`{"schema":"dockd.receipt/1","station":%q,"upto":-9,"time":%q,"collector":"c"}`, stationID, now), refuseMalformed},
		{"string upto", fmt.Sprintf(`{"schema":"dockd.receipt/1","station":%q,"upto":"9","time":%q,"collector":"c"}`, stationID, now), refuseMalformed},
		{"bad time", fmt.Sprintf(`{"schema":"dockd.receipt/1","station":%q,"upto":9,"time":"yesterday","collector":"c"}`, stationID), refuseMalformed},
		{"foreign station", string(testkit.ReceiptPayload("s1-d2", 9)), refuseForeign},
		{"ahead", string(testkit.ReceiptPayload(stationID, 1000)), refuseAhead},
		{"backwards", string(testkit.ReceiptPayload(stationID, 3)), refuseNotAhead},
		{"repeated", string(testkit.ReceiptPayload(stationID, 5)), refuseNotAhead},
	} {
		before := len(rec.matching("receipt "))
		central.Publish(t, []byte(tc.payload))
		eventually(t, 5*time.Second, tc.name+": a log line", func() bool { return len(rec.matching("receipt ")) > before })
		time.Sleep(50 * time.Millisecond) // a second line would show up now
		lines := rec.matching("receipt ")[before:]
		if len(lines) != 1 || !strings.HasSuffix(lines[0], "reason="+tc.reason) {
			t.Errorf("%s: log lines %q, want one with reason=%s", tc.name, lines, tc.reason)
		}
		if a, p, _ := out.state(); a != 5 || p != 5 {
			t.Errorf("%s: outbox acked %d with %d pending, want 5 and 5", tc.name, a, p)
		}
	}
	if st := c.Stats(); st.ReceiptsRefused != 7 || st.Receipts != 1 || st.ConfirmedSeq != 5 || st.Unconfirmed != 5 {
		t.Errorf("stats %+v, want 7 refused, 1 applied, confirmed 5, 5 unconfirmed", st)
	}
	central.Receipt(t, 10)
	checkOutboxDrained(t, out, 10)
}

// TestReceiptModeResendsAfterRestart: a new Client on the same outbox (a
// process restart) publishes again everything no receipt covered.
func TestReceiptModeResendsAfterRestart(t *testing.T) {
	m := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{m.URL()}, eventsTopic, receiptsTopic, stationID)
	out := newMemOutbox()
	out.Append(8)
	c1, _ := newReceiptClient(t, receiptConfig(t, m.URL(), out), out)
	stop := startClient(t, c1)
	central.Subs[0].WaitCount(t, 8, 10*time.Second)
	central.Receipt(t, 3)
	eventually(t, 5*time.Second, "outbox acked to 3", func() bool { a, _, _ := out.state(); return a == 3 })
	stop()

	c2, _ := newReceiptClient(t, receiptConfig(t, m.URL(), out), out)
	startClient(t, c2)
	msgs := central.Subs[0].WaitCount(t, 13, 10*time.Second)
	seqs := seqsOf(t, msgs)
	if got := fmt.Sprint(seqs[8:]); got != "[4 5 6 7 8]" {
		t.Fatalf("after restart resent %s, want [4 5 6 7 8]", got)
	}
	central.Receipt(t, 8)
	checkOutboxDrained(t, out, 8)
}

// TestBrokersFailoverKill9: two real brokers; the one in use is killed
// with SIGKILL while events flow; the Client fails over to the other and,
// with receipts from a central subscribed to both, nothing is lost.
func TestBrokersFailoverKill9(t *testing.T) {
	a := testkit.StartMosquitto(t)
	b := testkit.StartMosquitto(t)
	central := testkit.NewCentral(t, []string{a.URL(), b.URL()}, eventsTopic, receiptsTopic, stationID)
	central.AutoReceipt(t, 50*time.Millisecond)
	out := newMemOutbox()
	cfg := receiptConfig(t, "", out)
	cfg.Brokers = []string{a.URL(), b.URL()}
	cfg.ReceiptTimeout = time.Second
	c, rec := newReceiptClient(t, cfg, out)
	w := newConnWatch(c)
	startClient(t, c)
	w.wait(t, "connected", 10*time.Second, func(u, _ int) bool { return u >= 1 })
	if st := c.Stats(); st.Broker != a.URL() {
		t.Fatalf("first connection to %q, want the first broker %s", st.Broker, a.URL())
	}
	stopAppend := appender(out, 5, 10*time.Millisecond)
	eventually(t, 10*time.Second, "events through broker A", func() bool { return central.Prefix(t) >= 100 })
	a.Kill()
	w.wait(t, "reconnected", 15*time.Second, func(u, _ int) bool { return u >= 2 })
	if st := c.Stats(); st.Broker != b.URL() {
		t.Fatalf("after the kill connected to %q, want %s", st.Broker, b.URL())
	}
	before := central.Prefix(t)
	eventually(t, 10*time.Second, "events through broker B", func() bool { return central.Prefix(t) >= before+100 })
	last := stopAppend()
	eventually(t, 20*time.Second, fmt.Sprintf("central has all of 1..%d", last), func() bool { return central.Prefix(t) >= last })
	checkOutboxDrained(t, out, last)
	if len(rec.matching("connection ended")) == 0 {
		t.Error("failover not logged")
	}
	t.Logf("%d events, %d publishes, %d resent; central prefix %d", last, c.Stats().Published, c.Stats().Resent, central.Prefix(t))
}

func TestParseReceipt(t *testing.T) {
	r, err := ParseReceipt([]byte(`{"schema":"dockd.receipt/1","station":"s","upto":18446744073709551615,"time":"2026-01-15T09:30:13Z","collector":"c","extra":1}`))
	if err != nil || r.Upto != 1<<64-1 || r.Station != "s" || r.Collector != "c" || r.Time.IsZero() {
		t.Fatalf("%+v %v", r, err)
	}
	for _, p := range []string{
		``, `[]`, `{}`, `{"schema":"dockd.receipt/1","station":"s","upto":1.5,"time":"2026-01-15T09:30:13Z","collector":"c"}`,
		`{"schema":"dockd.receipt/1","station":"s","upto":1e3,"time":"2026-01-15T09:30:13Z","collector":"c"}`,
		`{"schema":"dockd.receipt/1","station":"s","upto":18446744073709551616,"time":"2026-01-15T09:30:13Z","collector":"c"}`,
		`{"schema":"dockd.receipt/1","station":"","upto":1,"time":"2026-01-15T09:30:13Z","collector":"c"}`,
		`{"schema":"dockd.receipt/1","station":"s","upto":1,"time":"2026-01-15T09:30:13Z"}`,
		// Strict JSON (internal/jsonstrict): a repeated member, trailing data, oversized.
		`{"schema":"dockd.receipt/1","station":"s","upto":1,"upto":999,"time":"2026-01-15T09:30:13Z","collector":"c"}`,
		`{"schema":"dockd.receipt/1","station":"s","upto":1,"time":"2026-01-15T09:30:13Z","collector":"c"} {}`,
		`{"schema":"dockd.receipt/1","station":"s","upto":1,"time":"2026-01-15T09:30:13Z","collector":"c","pad":"` + strings.Repeat("x", MaxReceiptBytes) + `"}`,
	} {
		if _, err := ParseReceipt([]byte(p)); err == nil {
			t.Errorf("ParseReceipt(%q) accepted", p)
		}
	}
}

func FuzzParseReceipt(f *testing.F) {
	f.Add([]byte(`{"schema":"dockd.receipt/1","station":"s","upto":7,"time":"2026-01-15T09:30:13Z","collector":"c"}`))
	f.Add([]byte(`{"schema":"dockd.receipt/1","station":"s","upto":-1,"time":"x","collector":"c"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseReceipt(p)
		if err != nil {
			return
		}
		if r.Schema != ReceiptSchema || r.Station == "" || r.Collector == "" {
			t.Fatalf("accepted %q as %+v", p, r)
		}
		again, err := ParseReceipt(fmt.Appendf(nil, `{"schema":%q,"station":%q,"upto":%d,"time":%q,"collector":%q}`,
			r.Schema, r.Station, r.Upto, r.Time.Format(time.RFC3339Nano), r.Collector))
		if err != nil || again.Upto != r.Upto || again.Station != r.Station {
			t.Fatalf("round trip of %+v: %+v %v", r, again, err)
		}
	})
}

func TestUnconfirmedBookkeeping(t *testing.T) {
	var u unconfirmed
	t0 := time.Unix(1000, 0)
	u.sent([]uint64{1, 2, 3}, 0, t0)
	u.sent([]uint64{2, 3, 4, 5}, 0, t0.Add(time.Second)) // resend of 2,3 keeps their time
	if n, old := u.count(); n != 5 || !old.Equal(t0) {
		t.Fatalf("count %d oldest %v", n, old)
	}
	u.confirm(2)
	if n, old := u.count(); n != 3 || !old.Equal(t0) {
		t.Fatalf("after confirm 2: count %d oldest %v", n, old)
	}
	u.confirm(3)
	if n, old := u.count(); n != 2 || !old.Equal(t0.Add(time.Second)) {
		t.Fatalf("after confirm 3: count %d oldest %v", n, old)
	}
	if due := u.resendDue(time.Minute); !due.Equal(t0.Add(61 * time.Second)) {
		t.Fatalf("resend due %v", due)
	}
	for i := uint64(6); i < 6+3*maxUnconfRuns; i++ {
		u.sent([]uint64{i}, 3, t0.Add(time.Duration(i)*time.Second))
	}
	if n, old := u.count(); n != 2+3*maxUnconfRuns || len(u.runs) > maxUnconfRuns || !old.Equal(t0.Add(time.Second)) {
		t.Fatalf("after many: count %d runs %d oldest %v", n, len(u.runs), old)
	}
}
