package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

const receiptSchemaFile = "receipt.schema.json"

// validateReceiptSchema checks a receipt against the contract's schema
// file once it is in uplink/contract (the station side adds it); until then
// checkReceipt's field check is the whole test.
func validateReceiptSchema(t testing.TB, payload []byte) {
	t.Helper()
	if _, err := contract.Schema(receiptSchemaFile); err != nil {
		return
	}
	contracttest.Require(t, receiptSchemaFile, payload)
}

// TestCollectExactlyOnce: several stations publish every event twice, some
// out of order; each (station, seq) lands exactly once, the copies are
// counted as duplicates, and every station's receipt reaches its last seq.
func TestCollectExactlyOnce(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	c, _ := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	stations := []fakeStation{newFake("hamburg", "door-1"), newFake("hamburg", "door-2"), newFake("bremen", "d9"), newFake("kiel", "7")}
	const n, replay = 120, 10
	sent := map[string][][]byte{}
	for seq := uint64(1); seq <= n; seq++ {
		for _, f := range stations {
			b := f.event(seq)
			sent[f.station] = append(sent[f.station], b)
			pub.publish(f.topic(), b)
			if seq%3 == 0 {
				pub.publish(f.topic(), b) // a redelivery, right behind
			}
		}
	}
	for _, f := range stations {
		rc.waitUpto(t, f, n, 30*time.Second)
	}
	// A late replay of the first ten (a station resending after a lost
	// receipt): stored already, and receipted again.
	before := rc.sub.Messages()
	for _, f := range stations {
		for _, b := range sent[f.station][:replay] {
			pub.publish(f.topic(), b)
		}
	}
	rc.sub.WaitCount(t, len(before)+len(stations), 20*time.Second)
	assertExactlyOnce(t, pg, stations, n)
	wantDup := int64(len(stations) * (n/3 + replay))
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Duplicates.Load() != wantDup && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := c.Stats().Duplicates.Load(); d != wantDup {
		t.Errorf("duplicates counted %d, want %d", d, wantDup)
	}
	if got := pg.QueryInt(`SELECT count(*) FROM dead_letter`); got != 0 {
		t.Errorf("%d dead letters", got)
	}
	// Stored as the station sent it, with the columns filled.
	if got := pg.QueryInt(`SELECT count(*) FROM events WHERE doc->>'schema' = 'dockd.custody-event/1' AND lot = doc->>'lot'
		AND verdict = 'accept' AND direction = 'receiving' AND kind = 'custody'`); got != int64(len(stations)*n) {
		t.Errorf("%d rows with doc and columns agreeing, want %d", got, len(stations)*n)
	}
	if got := pg.QueryInt(`SELECT count(*) FROM stations s WHERE upto = $1 AND max_seq = $1
		AND NOT EXISTS (SELECT 1 FROM station_holes h WHERE h.station = s.station)`, n); got != int64(len(stations)) {
		t.Errorf("%d stations at upto %d without holes, want %d", got, n, len(stations))
	}
}

// TestCollectHolesAndGaps: a receipt never covers a missing seq; a
// declared gap (dockd.seq-gap/1) fills its range; holes survive a
// collector restart, so the new one receipts correctly when the missing
// event finally comes.
func TestCollectHolesAndGaps(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	_, stop := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "first"})
	pub := newPublisher(t, mq.URL())
	a, b := newFake("s1", "a"), newFake("s1", "b")
	for _, seq := range []uint64{1, 2, 4, 5} {
		pub.publish(a.topic(), a.event(seq))
	}
	for _, seq := range []uint64{1, 3, 4, 8} {
		pub.publish(b.topic(), b.event(seq))
	}
	waitRows(t, pg, 8, 20*time.Second, `SELECT count(*) FROM events`)
	rc.waitUpto(t, a, 2, 10*time.Second)
	rc.waitUpto(t, b, 1, 10*time.Second)
	if got := rc.last(t, a); got != 2 {
		t.Fatalf("a: upto %d with seq 3 missing, want 2", got)
	}
	// a's buffer skipped 3 (a failed commit) and says so with its next record, seq 6.
	pub.publish(a.topic(), a.gap(6, 3, 3))
	rc.waitUpto(t, a, 6, 10*time.Second)

	stop() // the holes of b (2, 5..7) are in PostgreSQL, not in the collector
	if got := pg.QueryInt(`SELECT count(*) FROM station_holes WHERE station = $1`, b.station); got != 2 {
		t.Fatalf("b: %d holes stored, want 2 (2 and 5..7)", got)
	}
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "second"})
	pub.publish(b.topic(), b.event(2))
	rc.waitUpto(t, b, 4, 20*time.Second)
	pub.publish(b.topic(), b.gap(9, 5, 7))
	rc.waitUpto(t, b, 9, 20*time.Second)
	if got := rc.last(t, b); got != 9 {
		t.Fatalf("b: upto %d, want 9", got)
	}
	if got := pg.QueryInt(`SELECT count(*) FROM events WHERE kind = 'gap' AND gap_from IS NOT NULL`); got != 2 {
		t.Fatalf("%d gap records stored, want 2", got)
	}
	if got := pg.QueryInt(`SELECT count(*) FROM station_holes`); got != 0 {
		t.Fatalf("%d holes left", got)
	}
}

// TestCollectDeadLetters: every kind of bad or foreign payload is kept in
// dead_letter with its reason and exact bytes, acknowledged, and never
// stops the good events around it; a payload jsonb cannot hold (U+0000 in
// a scan) is stored as raw bytes, not lost.
func TestCollectDeadLetters(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	f := newFake("site", "door")
	other := newFake("site", "other")
	pub.publish(f.topic(), f.event(1))
	rc.waitUpto(t, f, 1, 20*time.Second)
	id2 := uuid()
	bad := []struct {
		topic   string
		payload []byte
		reason  string
	}{
		{f.topic(), []byte("not json"), "not a JSON object"},
		{f.topic(), []byte(`[1,2,3]`), "not a JSON object"},
		{f.topic(), []byte{0xff, 0xfe, '{', '}'}, "not valid UTF-8"},
		{f.topic(), []byte(`{"schema":"acme.thing/9"}`), "unknown schema"},
		{f.topic(), []byte(`{}`), `no "schema"`},
		{f.topic(), f.eventWith(2, "NOT-A-UUID", nil), "is not a lower-case UUID"},
		{f.topic(), f.eventWith(2, uuid(), map[string]any{"seq": 0}), "seq missing"},
		{f.topic(), f.eventWith(2, uuid(), map[string]any{"time": "yesterday"}), "not RFC 3339"},
		{f.topic(), f.eventWith(2, uuid(), map[string]any{"decision": "maybe"}), "decision"},
		{other.topic(), f.eventWith(2, uuid(), nil), "does not match topic"},
		{f.topic(), f.eventWith(1, uuid(), nil), "seq 1 is already stored with id"},
		// Station f, but from another door's topic (payload agrees with the topic).
		{other.topic(), fakeStation{"site", "other", f.station}.eventWith(3, uuid(), nil), "is registered at site/door"},
		{f.topic(), []byte(strings.Repeat(" ", MaxPayload+1)), "over the"},
	}
	for _, b := range bad {
		pub.publish(b.topic, b.payload)
	}
	// Good events after the bad ones still flow, including one jsonb refuses.
	pub.publish(f.topic(), f.eventWith(2, id2, map[string]any{"raw": "lot\x00nul"}))
	pub.publish(f.topic(), f.event(3))
	rc.waitUpto(t, f, 3, 20*time.Second)
	waitRows(t, pg, int64(len(bad)), 20*time.Second, `SELECT count(*) FROM dead_letter`)
	for _, b := range bad {
		if got := pg.QueryInt(`SELECT count(*) FROM dead_letter WHERE topic = $1 AND payload = $2 AND strpos(reason, $3) > 0`,
			b.topic, b.payload, b.reason); got != 1 {
			t.Errorf("dead letter %q with reason %q: %d rows", truncate(string(b.payload), 60), b.reason, got)
		}
	}
	if got := pg.QueryInt(`SELECT count(*) FROM events WHERE id = $1 AND doc IS NULL AND position(convert_to('\u0000', 'UTF8') in raw) > 0`, id2); got != 1 {
		t.Errorf("event with U+0000 stored raw: %d rows", got)
	}
	if t.Failed() {
		dumpDeadLetters(t, pg)
	}
}

func dumpDeadLetters(t *testing.T, pg *testkit.Postgres) {
	n := pg.QueryInt(`SELECT count(*) FROM dead_letter`)
	t.Logf("%d dead letters", n)
}

// TestCollectDatabaseDown: PostgreSQL stopped mid-run: the collector sends
// no receipt for what it could not store, keeps the events
// unacknowledged, and once the server is back stores everything exactly
// once and receipts it — by itself.
func TestCollectDatabaseDown(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	logs := &lockedBuffer{}
	c, _ := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	pub := newPublisher(t, mq.URL())
	f := newFake("s", "d")
	for seq := uint64(1); seq <= 50; seq++ {
		pub.publish(f.topic(), f.event(seq))
	}
	rc.waitUpto(t, f, 50, 20*time.Second)
	pg.Kill() // kill -9, every server process
	for seq := uint64(51); seq <= 150; seq++ {
		pub.publish(f.topic(), f.event(seq))
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.DBAvailable() {
		if time.Now().After(deadline) {
			t.Fatal("collector still reports the database available")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // give a wrong receipt time to appear
	if got := rc.last(t, f); got != 50 {
		t.Fatalf("receipt upto %d while the database was down, want 50", got)
	}
	pg.Start()
	rc.waitUpto(t, f, 150, 30*time.Second)
	assertExactlyOnce(t, pg, []fakeStation{f}, 150)
	// Many retries, one log line each way.
	if down, up := strings.Count(logs.String(), `msg="collector: database unavailable`), strings.Count(logs.String(), `msg="collector: database available again`); down != 1 || up != 1 {
		t.Fatalf("logged unavailable %d times and available again %d times, want once each:\n%s", down, up, logs.String())
	}
}

type lockedBuffer = testkit.LogBuffer

// TestMigrateConcurrently: collectors starting together apply each
// migration once; a second run is a no-op.
func TestMigrateConcurrently(t *testing.T) {
	pg := testkit.StartPostgres(t)
	pool := poolFor(t, pg)
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { errs <- Migrate(context.Background(), pool) }()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if got := pg.QueryInt(`SELECT count(*) FROM schema_migrations`); got != int64(SchemaVersion()) {
		t.Fatalf("%d migrations recorded, want %d", got, SchemaVersion())
	}
}

// TestCollectPartitions: two collectors, partitions 0/2 and 1/2, each on
// its own persistent subscription: every door's events are stored once,
// by the partition its SITE/DOOR hashes to, and both partitions work.
func TestCollectPartitions(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "p0", Partition: 0, Partitions: 2})
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "p1", Partition: 1, Partitions: 2})
	pub := newPublisher(t, mq.URL())
	var stations []fakeStation
	for i := 0; i < 8; i++ {
		stations = append(stations, newFake("part", fmt.Sprintf("door-%d", i)))
	}
	const n = 10
	for seq := uint64(1); seq <= n; seq++ {
		for _, f := range stations {
			pub.publish(f.topic(), f.event(seq))
		}
	}
	for _, f := range stations {
		rc.waitUpto(t, f, n, 30*time.Second)
	}
	assertExactlyOnce(t, pg, stations, n)
	for _, f := range stations {
		want := fmt.Sprintf("p%d", PartitionOf(DefaultPrefix, f.topic(), 2))
		if got := pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1 AND collector = $2`, f.station, want); got != n {
			t.Fatalf("%s: %d rows written by %s, want all %d", f.station, got, want, n)
		}
	}
	if p0 := pg.QueryInt(`SELECT count(*) FROM events WHERE collector = 'p0'`); p0 == 0 || p0 == int64(len(stations)*n) {
		t.Fatalf("partition 0 wrote %d of %d rows: the hash does not split these doors", p0, len(stations)*n)
	}
}

// TestCollectReadOnlyDatabase: a read-only PostgreSQL
// (default_transaction_read_only) is "unavailable" like a stopped one.
func TestCollectReadOnlyDatabase(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	c, _ := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	f := newFake("s", "ro")
	pub.publish(f.topic(), f.event(1))
	rc.waitUpto(t, f, 1, 20*time.Second)
	pg.SetReadOnly(true)
	for seq := uint64(2); seq <= 40; seq++ {
		pub.publish(f.topic(), f.event(seq))
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.DBAvailable() {
		if time.Now().After(deadline) {
			t.Fatal("collector still reports the database available")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if got := pg.QueryInt(`SELECT count(*) FROM events`); got != 1 {
		t.Fatalf("%d rows on a read-only server", got)
	}
	if got := rc.last(t, f); got != 1 {
		t.Fatalf("receipt upto %d while read-only, want 1", got)
	}
	pg.SetReadOnly(false)
	rc.waitUpto(t, f, 40, 30*time.Second)
	assertExactlyOnce(t, pg, []fakeStation{f}, 40)
	if got := pg.QueryInt(`SELECT count(*) FROM dead_letter`); got != 0 {
		t.Fatalf("%d dead letters: a read-only database must not turn events into dead letters", got)
	}
}

// TestCollectCrashPoints: the collector process exits (as a crash would)
// after receiving a batch but before its commit, and after the commit but
// before acknowledging and receipting; the next collector process on the
// same session stores everything exactly once and receipts it all.
func TestCollectCrashPoints(t *testing.T) {
	for _, point := range []string{"received:3", "committed:3"} {
		t.Run(strings.Split(point, ":")[0], func(t *testing.T) {
			mq := testkit.StartMosquitto(t)
			pg := testkit.StartPostgres(t)
			rc := watchReceipts(t, mq.URL())
			pub := newPublisher(t, mq.URL())
			stations := []fakeStation{newFake("c", "1"), newFake("c", "2"), newFake("c", "3")}
			// The first collector makes the session and subscription, then is killed.
			first := collectorChild(t, mq.URL(), pg.DSN(), "")
			waitSession(t, pg, pub)
			const n = 60
			for seq := uint64(1); seq <= n/2; seq++ {
				for _, f := range stations {
					pub.publish(f.topic(), f.event(seq))
				}
			}
			_ = first.Process.Kill() // kill -9 mid-stream
			_ = first.Wait()
			crasher := collectorChild(t, mq.URL(), pg.DSN(), point)
			for seq := uint64(n/2 + 1); seq <= n; seq++ {
				for _, f := range stations {
					pub.publish(f.topic(), f.event(seq))
				}
			}
			done := make(chan error, 1)
			go func() { done <- crasher.Wait() }()
			select {
			case err := <-done:
				if crasher.ProcessState.ExitCode() != 86 {
					t.Fatalf("collector did not exit at %s: %v", point, err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("collector never reached %s", point)
			}
			collectorChild(t, mq.URL(), pg.DSN(), "")
			for _, f := range stations {
				rc.waitUpto(t, f, n, 60*time.Second)
			}
			assertExactlyOnce(t, pg, stations, n)
		})
	}
}

// waitSession waits until the collector's subscription is live (a probe
// event comes through) so events published next are queued for it.
func waitSession(t *testing.T, pg *testkit.Postgres, pub *publisher) {
	t.Helper()
	probe := newFake("probe", "probe")
	deadline := time.Now().Add(60 * time.Second)
	for seq := uint64(1); ; seq++ {
		pub.publish(probe.topic(), probe.event(seq))
		if n, err := queryInt(pg, `SELECT count(*) FROM events WHERE station = $1`, probe.station); err == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector never stored a probe event")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func poolFor(t testing.TB, pg *testkit.Postgres) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestTraceAcrossDoors: one lot crosses several doors both ways; Trace and
// the HTTP handler return every crossing in time order with the decision.
func TestTraceAcrossDoors(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	in, out := newFake("hh", "in-3"), newFake("hh", "out-9")
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	pub.publish(in.topic(), in.eventWith(1, uuid(), map[string]any{"lot": "LOT-X", "time": t0.Format(time.RFC3339), "qty": 12}))
	pub.publish(in.topic(), in.eventWith(2, uuid(), map[string]any{"lot": "OTHER", "time": t0.Add(time.Minute).Format(time.RFC3339)}))
	pub.publish(out.topic(), out.eventWith(1, uuid(), map[string]any{"lot": "LOT-X", "direction": "shipping",
		"decision": "reject", "reason": "lot_recalled", "time": t0.Add(time.Hour).Format(time.RFC3339)}))
	waitRows(t, pg, 3, 20*time.Second, `SELECT count(*) FROM events`)

	srv := httptest.NewServer(TraceHandler(poolFor(t, pg)))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/trace?lot=LOT-X")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var tr TraceResponse
	if err := json.Unmarshal(body, &tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /trace: %d %s: %v", res.StatusCode, body, err)
	}
	if len(tr.Crossings) != 2 {
		t.Fatalf("trace LOT-X: %d crossings, want 2: %s", len(tr.Crossings), body)
	}
	got := fmt.Sprintf("%s %s %s %s %d | %s %s %s %s", tr.Crossings[0].Door, tr.Crossings[0].Direction, tr.Crossings[0].Decision,
		tr.Crossings[0].Time.Format(time.RFC3339), tr.Crossings[0].Qty,
		tr.Crossings[1].Door, tr.Crossings[1].Direction, tr.Crossings[1].Decision, tr.Crossings[1].Reason)
	want := "in-3 receiving accept 2026-03-01T08:00:00Z 12 | out-9 shipping reject lot_recalled"
	if got != want {
		t.Fatalf("trace:\n got %s\nwant %s", got, want)
	}
	res, err = http.Get(srv.URL + "/trace")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /trace without a key: %d, want 400", res.StatusCode)
	}
}

// TestCollectBrokerKillWithPersistence: events queued at a Mosquitto with
// persistence for the offline collector's session survive a kill -9 of
// the broker and are stored exactly once when the collector comes back.
// Mosquitto persistence is a snapshot, not a log: what arrived since the
// last save is lost on a kill -9. Here it saves after every change
// (autosave_on_changes with interval 1); in production the window is the
// autosave interval, and a station in receipt mode resends what the
// collector never receipted.
func TestCollectBrokerKillWithPersistence(t *testing.T) {
	mq := testkit.StartMosquitto(t, testkit.WithMosqConfig(
		"persistence true",
		"persistence_location "+t.TempDir()+"/",
		"autosave_on_changes true",
		"autosave_interval 1",
	))
	pg := testkit.StartPostgres(t)
	_, stop := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "persist"})
	stop() // offline; its session and subscription stay at the broker
	pub := newPublisher(t, mq.URL())
	stations := []fakeStation{newFake("p", "1"), newFake("p", "2"), newFake("p", "3")}
	const n = 50
	for seq := uint64(1); seq <= n; seq++ {
		for _, f := range stations {
			pub.publish(f.topic(), f.event(seq))
		}
	}
	// Two more changes so the autosave after the last event happens.
	pub.publish("flush/a", []byte("x"))
	pub.publish("flush/b", []byte("y"))
	time.Sleep(200 * time.Millisecond)
	mq.Kill()
	mq.Start()
	rc := watchReceipts(t, mq.URL())
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "persist"})
	for _, f := range stations {
		rc.waitUpto(t, f, n, 60*time.Second)
	}
	assertExactlyOnce(t, pg, stations, n)
}

// TestCollectAnswersReceiptProbe: a dockd.receipt-probe/1 (dockd doctor's
// round-trip check) gets one ordinary receipt with what central can
// confirm now — 0 for a station it never stored anything of, or asked
// from another door's topic — and nothing is stored for it.
func TestCollectAnswersReceiptProbe(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN()})
	pub := newPublisher(t, mq.URL())
	f := newFake("pr", "d1")
	sub := testkit.NewSubscriber(t, mq.URL(), "dockd/v1/+/+/receipts")
	probe := func(site, door string) []byte {
		b := []byte(fmt.Sprintf(`{"schema":"dockd.receipt-probe/1","station":%q,"id":"p-%s","time":"2026-01-01T00:00:00Z"}`, f.station, uuid()[:8]))
		pub.publish("dockd/v1/"+site+"/"+door+"/receipt-probe", b)
		return b
	}
	answer := func(n int, topic string) uint64 {
		t.Helper()
		msgs := sub.WaitCount(t, n, 10*time.Second)
		m := msgs[n-1]
		checkReceipt(t, m.Payload)
		var rc Receipt
		_ = json.Unmarshal(m.Payload, &rc)
		if m.Topic != topic || rc.Station != f.station {
			t.Fatalf("probe answer %s on %s", m.Payload, m.Topic)
		}
		return rc.Upto
	}
	probe(f.site, f.door)
	if u := answer(1, "dockd/v1/pr/d1/receipts"); u != 0 {
		t.Fatalf("probe for an unknown station: upto %d, want 0", u)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		pub.publish(f.topic(), f.event(seq))
	}
	sub.WaitFor(t, func(ms []testkit.Message) bool { return strings.Contains(string(ms[len(ms)-1].Payload), `"upto":3`) }, 10*time.Second)
	n := len(sub.Messages())
	probe(f.site, f.door)
	if u := answer(n+1, "dockd/v1/pr/d1/receipts"); u != 3 {
		t.Fatalf("probe after 3 events: upto %d, want 3", u)
	}
	probe(f.site, "elsewhere")
	if u := answer(n+2, "dockd/v1/pr/elsewhere/receipts"); u != 0 {
		t.Fatalf("probe from another door's topic: upto %d, want 0", u)
	}
	if got := pg.QueryInt(`SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM dead_letter)`); got != 3 {
		t.Fatalf("%d rows stored, want the 3 events only", got)
	}
}

// TestCollectNATSClusterMemberKill: a 3-member NATS cluster, stations
// publishing through different members, the collector connected to member
// 0 with the others as failover: kill -9 member 0 and the collector
// reconnects to another member, finds its session (replicated JetStream),
// and every event — those published while it was away included — is
// stored exactly once and receipted.
func TestCollectNATSClusterMemberKill(t *testing.T) {
	nc := testkit.StartNATSCluster(t, 3)
	pg := testkit.StartPostgres(t)
	urls := nc.URLs()
	c, _ := runCollector(t, Config{Brokers: urls, DB: pg.DSN(), Name: "nats"})
	stations := []fakeStation{newFake("n", "1"), newFake("n", "2")}
	pubs := []*publisher{newPublisher(t, urls[1]), newPublisher(t, urls[2])}
	rc := watchReceipts(t, urls[2])
	const n = 40
	for seq := uint64(1); seq <= n/2; seq++ {
		for i, f := range stations {
			pubs[i].publish(f.topic(), f.event(seq))
		}
	}
	for _, f := range stations {
		rc.waitUpto(t, f, n/2, 60*time.Second)
	}
	nc.Nodes[0].Kill() // the collector's member
	for seq := uint64(n/2 + 1); seq <= n; seq++ {
		for i, f := range stations {
			pubs[i].publish(f.topic(), f.event(seq))
		}
	}
	for _, f := range stations {
		rc.waitUpto(t, f, n, 90*time.Second)
	}
	assertExactlyOnce(t, pg, stations, n)
	t.Logf("collector stats: received %d, inserted %d, duplicates %d", c.Stats().Received.Load(), c.Stats().Inserted.Load(), c.Stats().Duplicates.Load())
}

// TestCollectBackpressureNeverDrops: a tiny queue (2) and batch (3), a
// broker that pushes without an in-flight limit, and the database
// read-only while 300 events arrive: the queue fills, the MQTT receive
// path blocks (paho may even lose the connection over it and get the
// unacknowledged messages again), and once the database is writable every
// event is stored exactly once.
func TestCollectBackpressureNeverDrops(t *testing.T) {
	mq := testkit.StartMosquitto(t, testkit.WithMosqConfig("max_inflight_messages 0"))
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	c, _ := runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), QueueSize: 2, MaxBatch: 3})
	pg.SetReadOnly(true)
	stations := []fakeStation{newFake("bp", "1"), newFake("bp", "2"), newFake("bp", "3")}
	pub := newPublisher(t, mq.URL())
	const n = 100
	for seq := uint64(1); seq <= n; seq++ {
		for _, f := range stations {
			pub.publish(f.topic(), f.event(seq))
		}
	}
	waitUntilTrue(t, 20*time.Second, "the queue full", func() bool { return len(c.queue) == cap(c.queue) })
	time.Sleep(500 * time.Millisecond)
	if got := pg.QueryInt(`SELECT count(*) FROM events`); got != 0 {
		t.Fatalf("%d rows on a read-only database", got)
	}
	pg.SetReadOnly(false)
	for _, f := range stations {
		rc.waitUpto(t, f, n, 60*time.Second)
	}
	assertExactlyOnce(t, pg, stations, n)
	if got := pg.QueryInt(`SELECT count(*) FROM dead_letter`); got != 0 {
		t.Fatalf("%d dead letters", got)
	}
}

func waitUntilTrue(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCollectBaseline: a station whose first events never reached the
// database (it ran with delivery: broker before) gets no receipt past the
// hole until an operator's baseline releases it; the baseline is recorded,
// refuses to run ahead of what is stored or for an unknown station, and the
// next resend from the station brings the receipt.
func TestCollectBaseline(t *testing.T) {
	mq := testkit.StartMosquitto(t)
	pg := testkit.StartPostgres(t)
	rc := watchReceipts(t, mq.URL())
	runCollector(t, Config{Brokers: []string{mq.URL()}, DB: pg.DSN(), Name: "first"})
	pub := newPublisher(t, mq.URL())
	f := newFake("s1", "late")
	var last []byte
	for seq := uint64(41); seq <= 45; seq++ {
		last = f.event(seq)
		pub.publish(f.topic(), last)
	}
	waitRows(t, pg, 5, 20*time.Second, `SELECT count(*) FROM events`)
	if got := rc.last(t, f); got != 0 {
		t.Fatalf("upto %d with seqs 1..40 never stored, want no receipt past 0", got)
	}
	db := poolFor(t, pg)
	ctx := context.Background()
	if _, err := Baseline(ctx, db, "nobody", 5, "test", "x"); !errors.Is(err, ErrUnknownStation) {
		t.Fatalf("unknown station: %v", err)
	}
	if _, err := Baseline(ctx, db, f.station, 46, "test", "x"); !errors.Is(err, ErrBaselineAhead) {
		t.Fatalf("baseline above the stored max: %v", err)
	}
	got, err := Baseline(ctx, db, f.station, 40, "local:test", "ran with delivery: broker")
	if err != nil || got != 45 {
		t.Fatalf("baseline: confirmed %d, %v; want 45", got, err)
	}
	if again, err := Baseline(ctx, db, f.station, 30, "local:test", "repeat"); err != nil || again != 45 {
		t.Fatalf("a lower baseline: confirmed %d, %v; want 45 unchanged", again, err)
	}
	if n := pg.QueryInt(`SELECT count(*) FROM station_baselines WHERE station = $1`, f.station); n != 2 {
		t.Fatalf("%d baselines recorded, want 2", n)
	}
	if n := pg.QueryInt(`SELECT count(*) FROM station_holes WHERE station = $1`, f.station); n != 0 {
		t.Fatalf("%d holes left after the baseline", n)
	}
	pub.publish(f.topic(), last) // the station's resend: the same bytes
	rc.waitUpto(t, f, 45, 20*time.Second)
	if n := pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, f.station); n != 5 {
		t.Fatalf("%d events stored, want 5 (the resend is a duplicate)", n)
	}
}
