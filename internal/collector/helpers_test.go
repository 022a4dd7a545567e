package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"

	"github.com/dockd/dockd/internal/testkit"
)

// fakeStation makes valid events of the contract for one (site, door).
type fakeStation struct {
	site, door, station string
}

func newFake(site, door string) fakeStation {
	return fakeStation{site: site, door: door, station: site + "-" + door}
}

func (f fakeStation) topic() string { return "dockd/v1/" + f.site + "/" + f.door + "/events" }

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// event is a dockd.custody-event/1 for seq, with a fresh id and lot
// "L<seq%7>".
func (f fakeStation) event(seq uint64) []byte {
	return f.eventWith(seq, uuid(), nil)
}

func (f fakeStation) eventWith(seq uint64, id string, extra map[string]any) []byte {
	m := map[string]any{
		"schema": SchemaCustodyEvent, "id": id, "seq": seq, "site": f.site, "station": f.station, "door": f.door,
		"direction": "receiving", "time": time.Now().UTC().Format(time.RFC3339Nano), "clock_synced": true,
		"reader": "scanner-1", "raw": "]C1010950600013435210" + fmt.Sprint(seq%7), "decision": "accept", "reason": "ok",
		"gtin": "09506000134352", "lot": fmt.Sprintf("L%d", seq%7),
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}

// gap is a dockd.seq-gap/1 record at seq declaring from..to skipped.
func (f fakeStation) gap(seq, from, to uint64) []byte {
	b, _ := json.Marshal(map[string]any{
		"schema": SchemaSeqGap, "kind": "gap", "id": uuid(), "seq": seq, "site": f.site, "station": f.station,
		"door": f.door, "time": time.Now().UTC().Format(time.RFC3339), "from": from, "to": to, "reason": "commit failed",
	})
	return b
}

// publisher is a plain paho client publishing at QoS 1 and waiting for
// each PUBACK, reconnecting (a new client) when the broker went away.
type publisher struct {
	t   testing.TB
	url string
	cli mqtt.Client
}

func newPublisher(t testing.TB, url string) *publisher {
	p := &publisher{t: t, url: url}
	p.connect()
	t.Cleanup(func() { p.cli.Disconnect(100) })
	return p
}

func (p *publisher) connect() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.cli = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(p.url).SetClientID("pub-" + uuid()[:8]).
			SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := p.cli.Connect()
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("publisher: connect %s: %v", p.url, tok.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *publisher) publish(topic string, payload []byte) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tok := p.cli.Publish(topic, 1, false, payload)
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("publish on %s: %v", topic, tok.Error())
		}
		p.cli.Disconnect(0)
		p.connect()
	}
}

// receipts records every receipt on dockd/v1/+/+/receipts.
type receipts struct{ sub *testkit.Subscriber }

func watchReceipts(t testing.TB, url string) receipts {
	return receipts{testkit.NewSubscriber(t, url, "dockd/v1/+/+/receipts")}
}

// last is the highest upto received for station, checking every receipt
// for the fixed payload shape and the topic of station's door.
func (r receipts) last(t testing.TB, f fakeStation) uint64 {
	t.Helper()
	var max uint64
	for _, m := range r.sub.Messages() {
		var rc map[string]any
		if err := json.Unmarshal(m.Payload, &rc); err != nil {
			t.Fatalf("receipt %q: %v", m.Payload, err)
		}
		if rc["station"] != f.station {
			continue
		}
		if m.Topic != "dockd/v1/"+f.site+"/"+f.door+"/receipts" || m.Retained {
			t.Fatalf("receipt for %s on %s retained=%v", f.station, m.Topic, m.Retained)
		}
		checkReceipt(t, m.Payload)
		if u := uint64(rc["upto"].(float64)); u > max {
			max = u
		}
	}
	return max
}

func checkReceipt(t testing.TB, payload []byte) {
	t.Helper()
	var rc struct {
		Schema    string  `json:"schema"`
		Station   string  `json:"station"`
		Upto      *uint64 `json:"upto"`
		Time      string  `json:"time"`
		Collector string  `json:"collector"`
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		t.Fatalf("receipt %s: %v", payload, err)
	}
	if _, err := time.Parse(time.RFC3339, rc.Time); err != nil || rc.Schema != SchemaReceipt || rc.Station == "" || rc.Upto == nil || rc.Collector == "" {
		t.Fatalf("receipt %s does not have the fixed shape", payload)
	}
	validateReceiptSchema(t, payload)
}

// waitUpto waits until station has a receipt with upto ≥ want.
func (r receipts) waitUpto(t testing.TB, f fakeStation, want uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.last(t, f) < want {
		if time.Now().After(deadline) {
			t.Fatalf("receipt for %s: upto %d after %v, want %d", f.station, r.last(t, f), timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCollector runs a collector in this process until the test ends (or
// stop is called).
func runCollector(t testing.TB, cfg Config) (c *Collector, stop func()) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("collector Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("collector did not stop within 30 s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-c.Subscribed():
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not subscribe within 60 s")
	}
	return c, stop
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitRows waits until query (returning one integer) returns want; query
// errors (the tables not made yet) count as not yet.
func waitRows(t testing.TB, pg *testkit.Postgres, want int64, timeout time.Duration, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got int64
	var err error
	for {
		got, err = queryInt(pg, query, args...)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d (err %v) after %v, want %d", query, got, err, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func queryInt(pg *testkit.Postgres, query string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var n int64
	err = c.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// assertExactlyOnce checks that every station stored seqs 1..n once each.
func assertExactlyOnce(t testing.TB, pg *testkit.Postgres, stations []fakeStation, n int) {
	t.Helper()
	for _, f := range stations {
		rows := pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, f.station)
		distinct := pg.QueryInt(`SELECT count(DISTINCT seq) FROM events WHERE station = $1 AND seq BETWEEN 1 AND $2`, f.station, n)
		if rows != int64(n) || distinct != int64(n) {
			t.Fatalf("%s: %d rows, %d distinct seqs in 1..%d; want %d each", f.station, rows, distinct, n, n)
		}
	}
}

// collectorChild runs this test binary as a separate collector process
// (TestMain sees DOCKD_COLLECTOR_CHILD), so a test can have it exit at a
// pipeline point (exitAt "received:N" / "committed:N") or kill -9 it.
func collectorChild(t testing.TB, broker, db, exitAt string) *exec.Cmd {
	t.Helper()
	cmd := testkit.SelfCommand("-test.run=^$") // through qemu under make test-arm
	cmd.Env = append(os.Environ(), "DOCKD_COLLECTOR_CHILD=1", "DOCKD_CHILD_BROKER="+broker, "DOCKD_CHILD_DB="+db,
		"DOCKD_COLLECT_EXIT_AT="+exitAt)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start collector child: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("collector child output:\n%s", out.String())
		}
	})
	return cmd
}

func TestMain(m *testing.M) {
	if os.Getenv("DOCKD_COLLECTOR_CHILD") == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain is a collector process for crash tests: it exits with 86 at
// DOCKD_COLLECT_EXIT_AT=point:N (as `dockd collect run` does), else runs
// until killed.
func childMain() int {
	var hook func(Point)
	if spec := os.Getenv("DOCKD_COLLECT_EXIT_AT"); spec != "" {
		point, nth, _ := strings.Cut(spec, ":")
		n := 1
		fmt.Sscan(nth, &n)
		seen := 0
		hook = func(p Point) {
			if string(p) == point {
				if seen++; seen == n {
					fmt.Fprintf(os.Stderr, "child: exiting at %s (%d)\n", p, n)
					os.Exit(86)
				}
			}
		}
	}
	c, err := New(Config{Brokers: []string{os.Getenv("DOCKD_CHILD_BROKER")}, DB: os.Getenv("DOCKD_CHILD_DB"),
		Name: "child", Hook: hook, MaxBatch: 10, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
