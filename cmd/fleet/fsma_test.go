package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	central "github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/epcis"
	"github.com/dockd/dockd/internal/epcis/epcistest"
	"github.com/dockd/dockd/internal/fsma204"
	"github.com/dockd/dockd/internal/testkit"
)

// TestFleetFSMA204Answer: 20 stations in receipt delivery scan the sample
// labels (accepted LOT42, recalled LOT43, unknown LOT99, bad frames) into
// central's real collector and PostgreSQL; the FSMA 204 export of LOT42,
// and of the run's whole time range, holds exactly the stored custody
// events whose goods crossed, in (time, station, seq) order with their
// KDEs, and GET /epcis/events returns exactly the stored events of a lot,
// schema-valid, page by page.
func TestFleetFSMA204Answer(t *testing.T) {
	pg := testkit.StartPostgres(t)
	o := fleetOptions(t)
	o.Central, o.Delivery, o.Collector, o.DB, o.Duration = "partitioned", "receipt", true, pg.DSN(), 2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	rep, err := Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cancel()
	if err != nil {
		t.Fatalf("fleet run: %v", err)
	}
	if !rep.OK() || rep.Stored == 0 {
		t.Fatalf("fleet run: offered %d, stored %d, lost %d", rep.Appended, rep.Stored, rep.StoreLost)
	}
	pool, err := pgxpool.New(context.Background(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// What is stored, read independently of the export.
	type stored struct {
		id, station, seq, site, door, dir, verdict, lot, gtin, qty string
		time                                                       time.Time
	}
	read := func(where string, args ...any) []stored {
		rows, err := pool.Query(context.Background(), `SELECT id::text, station, seq::text, site, door, direction, verdict,
  coalesce(lot, ''), coalesce(gtin, ''), coalesce(qty, 1)::text, time FROM events WHERE kind = 'custody' AND `+where+`
ORDER BY time, station, seq`, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []stored
		for rows.Next() {
			var s stored
			if err := rows.Scan(&s.id, &s.station, &s.seq, &s.site, &s.door, &s.dir, &s.verdict, &s.lot, &s.gtin, &s.qty, &s.time); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	crossed := `verdict IN ('accept', 'warn') AND coalesce(doc->>'simulated', '') <> 'true'`
	if n := len(read(`lot = 'LOT43' AND verdict = 'reject'`)); n == 0 {
		t.Fatal("the run stored no refused LOT43 scans: the export's exclusion of rejects is untested")
	}

	export := func(q central.ExportQuery) [][]string {
		var b bytes.Buffer
		w := fsma204.NewCSV(&b)
		n, err := central.ExportFSMA204(context.Background(), pool, q, w)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			t.Fatalf("export %s: %v", q, err)
		}
		recs, err := csv.NewReader(&b).ReadAll()
		if err != nil || len(recs) != n+1 {
			t.Fatalf("export %s: %d rows reported, %d records, %v", q, n, len(recs), err)
		}
		return recs[1:]
	}
	compare := func(what string, got [][]string, want []stored) {
		t.Helper()
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("%s: %d rows, want %d (> 0)", what, len(got), len(want))
		}
		t.Logf("%s: %d rows, as stored", what, len(got))
		for i, s := range want {
			r := got[i]
			cte := fsma204.Receiving
			if s.dir == "shipping" {
				cte = fsma204.Shipping
			}
			exp := map[int]string{fsma204.ColEventID: s.id, fsma204.ColStation: s.station, fsma204.ColSeq: s.seq,
				fsma204.ColCTE: cte, fsma204.ColTLC: "(01)" + s.gtin + "(10)" + s.lot, fsma204.ColQuantity: s.qty,
				fsma204.ColLocation: "site " + s.site + ", door " + s.door, fsma204.ColDecision: s.verdict,
				fsma204.ColTime: s.time.UTC().Format("2006-01-02T15:04:05") + "+00:00"}
			for c, v := range exp {
				if r[c] != v {
					t.Fatalf("%s row %d: %s = %q, want %q", what, i+1, fsma204.Columns()[c], r[c], v)
				}
			}
		}
	}
	compare("export --lot LOT42", export(central.ExportQuery{Lot: "LOT42"}), read(`lot = 'LOT42' AND `+crossed))
	all := read(`true`)
	from, to := all[0].time, all[len(all)-1].time.Add(time.Microsecond)
	compare("export --from --to (the whole run)", export(central.ExportQuery{From: from, To: to}),
		read(crossed+` AND (lot IS NOT NULL OR gtin IS NOT NULL OR sscc IS NOT NULL) AND coalesce(reason, '') <> 'bad_scan'`))

	// EPCIS: every stored event of the lot, page by page, schema-valid.
	srv := httptest.NewServer(central.EPCISHandler(pool))
	defer srv.Close()
	for _, q := range []string{"MATCH_lot=LOT43", "MATCH_epcClass=" + url.QueryEscape("https://id.gs1.org/01/09506000134352/10/LOT42")} {
		var got []string
		next := "/epcis/events?" + q + "&perPage=50"
		for pages := 0; next != ""; pages++ {
			res, err := http.Get(srv.URL + next)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || pages > 1000 {
				t.Fatalf("GET %s: %d %s", next, res.StatusCode, body)
			}
			epcistest.Require(t, body)
			var doc epcis.QueryDocument
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatal(err)
			}
			for _, e := range doc.EPCISBody.QueryResults.ResultsBody.EventList {
				got = append(got, e.Station+"/"+strconv.FormatUint(e.Seq, 10))
			}
			next = ""
			if l := res.Header.Get("Link"); l != "" {
				next = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
			}
		}
		lot := "LOT43"
		if strings.Contains(q, "LOT42") {
			lot = "LOT42"
		}
		var want []string
		for _, s := range read(`lot = $1`, lot) {
			want = append(want, s.station+"/"+s.seq)
		}
		if len(want) == 0 || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("GET /epcis/events?%s: %d events, want the %d stored", q, len(got), len(want))
		}
		t.Logf("EPCIS %s: %d events", q, len(got))
	}
}
