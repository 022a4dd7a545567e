package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dockd/dockd/internal/fsma204"
	"github.com/dockd/dockd/internal/testkit"
)

// benchEvents is the size of the synthetic events table of
// BenchmarkFSMA204Export: $DOCKD_BENCH_FSMA_EVENTS, default one million.
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("DOCKD_BENCH_FSMA_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// BenchmarkFSMA204Export: a private PostgreSQL holding n synthetic custody
// events (COPY; 200 stations, 20,000 lots of ~50 events each, 100 days,
// 90% accept, 5% warn, 5% reject, with shipment ids and AIs in the jsonb
// doc) answers a recall request: the export of one lot, and of one day
// (~10,000 events), as CSV and XLSX, and of all 100 days as CSV. The baseline is PostgreSQL's own
// COPY (SELECT …) TO STDOUT CSV of the same rows and columns, in the same
// run. Metrics: seconds and rows/s per export, and the peak heap in use
// while exporting (flat: rows stream from the database to the writer).
func BenchmarkFSMA204Export(b *testing.B) {
	n := benchEvents()
	pg := testkit.StartPostgres(b)
	ctx := context.Background()
	pool := poolFor(b, pg)
	if err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	span := 100 * 24 * time.Hour
	start := time.Now()
	loadSynthetic(b, pg, n, t0, span)
	b.ReportMetric(time.Since(start).Seconds(), "load-s")
	b.Logf("loaded %d events in %v", n, time.Since(start).Round(time.Millisecond))

	lot := "L00777"
	dayFrom := t0.Add(50 * 24 * time.Hour)
	cases := []struct {
		name string
		q    ExportQuery
	}{
		{"lot", ExportQuery{Lot: lot}},
		{"day", ExportQuery{From: dayFrom, To: dayFrom.Add(24 * time.Hour)}},
		{"all", ExportQuery{From: t0, To: t0.Add(span)}}, // every CTE: ~950,000 rows
	}
	for _, c := range cases {
		for _, format := range []string{fsma204.FormatCSV, fsma204.FormatXLSX, "baseline"} {
			if c.name == "all" && format == fsma204.FormatXLSX {
				continue // over one worksheet's rows at 1M events
			}
			b.Run(c.name+"/"+format, func(b *testing.B) {
				var rows int
				var total time.Duration
				peak := watchHeap()
				for i := 0; i < b.N; i++ {
					s := time.Now()
					if format == "baseline" {
						rows = baselineCopy(b, pool, c.q)
					} else {
						w, _ := fsma204.NewWriter(format, io.Discard)
						var err error
						rows, err = ExportFSMA204(ctx, pool, c.q, w)
						if err == nil {
							err = w.Close()
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					total += time.Since(s)
				}
				b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
				per := total.Seconds() / float64(b.N)
				b.ReportMetric(per, "s/export")
				b.ReportMetric(float64(rows), "rows")
				b.ReportMetric(float64(rows)/per, "rows/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// watchHeap samples the heap in use every 5 ms until the returned
// function is called, which returns the highest sample: an export that
// streams stays flat however many rows it writes.
func watchHeap() func() uint64 {
	runtime.GC()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		var m runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak {
				peak = m.HeapInuse
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(stop); return <-done }
}

// baselineCopy is PostgreSQL's own CSV of the same selection, columns and
// order as the export (COPY … TO STDOUT, discarded); it returns the rows.
func baselineCopy(b *testing.B, pool *pgxpool.Pool, q ExportQuery) int {
	where := cteSQL
	if q.Lot != "" {
		where += " AND lot = '" + q.Lot + "'"
	}
	if !q.From.IsZero() {
		where += " AND time >= '" + q.From.Format(time.RFC3339Nano) + "'"
	}
	if !q.To.IsZero() {
		where += " AND time < '" + q.To.Format(time.RFC3339Nano) + "'"
	}
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	tag, err := conn.Conn().PgConn().CopyTo(context.Background(), io.Discard, `COPY (SELECT id, station, seq, site, door, kind, direction,
  verdict, reason, time, gtin, lot, serial, sscc, qty, doc->>'shipment', doc->>'batch', doc->>'simulated', doc->'ais', raw
FROM events WHERE `+where+` ORDER BY time, station, seq) TO STDOUT (FORMAT csv, HEADER)`)
	if err != nil {
		b.Fatal(err)
	}
	return int(tag.RowsAffected())
}

// loadSynthetic COPYs n custody events into events, then ANALYZEs it.
func loadSynthetic(b *testing.B, pg *testkit.Postgres, n int, t0 time.Time, span time.Duration) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	const stations, lots = 200, 20000
	step := span / time.Duration(n)
	i := 0
	seq := make([]int64, stations)
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		st := i % stations
		seq[st]++
		var id [16]byte
		for k := 0; k < 8; k++ {
			id[k] = byte(uint64(i) >> (8 * k))
		}
		id[8], id[9] = byte(st), 0x80
		id[6] = id[6]&0x0f | 0x40
		lot := fmt.Sprintf("L%05d", (i*7919)%lots)
		verdict, dir := "accept", "receiving"
		switch i % 20 {
		case 0:
			verdict = "reject"
		case 1:
			verdict = "warn"
		}
		if st%2 == 1 {
			dir = "shipping"
		}
		station := fmt.Sprintf("site%d-door%d", st%10, st)
		tm := t0.Add(time.Duration(i) * step)
		doc, _ := json.Marshal(map[string]any{"schema": SchemaCustodyEvent, "id": "x", "seq": seq[st], "site": fmt.Sprintf("site%d", st%10),
			"station": station, "door": fmt.Sprintf("door%d", st), "direction": dir, "time": tm.Format(time.RFC3339Nano),
			"clock_synced": true, "reader": "scanner-1", "raw": "]C101095060001343521012" + lot, "decision": verdict, "reason": "ok",
			"gtin": testGTIN, "lot": lot, "qty": 12, "shipment": fmt.Sprintf("ASN-%06d", i/40),
			"ais": []map[string]string{{"ai": "01", "value": testGTIN}, {"ai": "10", "value": lot}, {"ai": "30", "value": "12"}}})
		i++
		return []any{id, station, seq[st], fmt.Sprintf("site%d", st%10), fmt.Sprintf("door%d", st), SchemaCustodyEvent, KindCustody, tm,
			dir, verdict, "ok", testGTIN, lot, int32(12), json.RawMessage(doc), "bench"}, nil
	})
	got, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "station", "seq", "site", "door", "schema", "kind", "time",
		"direction", "verdict", "reason", "gtin", "lot", "qty", "doc", "collector"}, src)
	if err != nil || got != int64(n) {
		b.Fatalf("copy %d events: %d, %v", n, got, err)
	}
	if _, err := conn.Exec(ctx, `ANALYZE events`); err != nil {
		b.Fatal(err)
	}
}
