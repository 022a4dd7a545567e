package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/serverproc"
	"github.com/dockd/dockd/internal/testkit"
)

// startCollect runs `dockd collect run` in this process against broker and
// db, serving /trace on a free port, and returns that base URL once the
// collector's subscription is acknowledged.
func startCollect(t *testing.T, db string, brokers ...string) (baseURL string) {
	t.Helper()
	port, err := serverproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"collect", "run", "--db", db, "--name", "e2e", "--http", addr}
	for _, b := range brokers {
		args = append(args, "--broker", b)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, nil, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("collect run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("collect run did not stop")
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", logs.String())
		}
	})
	waitUntil(t, 60*time.Second, "the collector to subscribe", func() bool {
		return strings.Contains(logs.String(), "collector: subscribed")
	})
	return "http://" + addr
}

// TestCollectStationToPostgres: a whole station (pty scanner → decision →
// buffer → MQTT) and `dockd collect run` on the same Mosquitto: every scan
// is a row in PostgreSQL, and `dockd collect trace` and GET /trace show
// where the lot crossed, which way, when and with what decision.
func TestCollectStationToPostgres(t *testing.T) {
	pg := testkit.StartPostgres(t)
	s := startStation(t)
	base := startCollect(t, pg.DSN(), s.broker.URL())
	s.write(gs1Scan("LOT42", "S1"))
	s.write(gs1Scan("LOT99", "S2"))
	s.write(gs1Scan("LOT42", "S3"))
	evs := s.waitDecisions(3, 10*time.Second)
	waitUntil(t, 20*time.Second, "3 rows in PostgreSQL", func() bool {
		return pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, evs[0].Station) == 3
	})

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"collect", "trace", "--db", pg.DSN(), "--lot", "LOT42"}, nil, &out, &errb); err != nil {
		t.Fatalf("collect trace: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("collect trace --lot LOT42: want a header and 2 rows:\n%s", out.String())
	}
	for i, serial := range []string{"S1", "S3"} {
		f := strings.Fields(lines[i+1])
		// TIME SITE DOOR STATION SEQ DIRECTION DECISION REASON GTIN LOT SERIAL ...
		if f[1] != "test-site" || f[2] != "door-9" || f[5] != "receiving" || f[6] != string(evs[0].Decision.Verdict) || f[9] != "LOT42" || f[10] != serial {
			t.Fatalf("trace row %d: %q", i, lines[i+1])
		}
	}

	res, err := http.Get(base + "/trace?lot=LOT99")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr collector.TraceResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /trace: %d %v", res.StatusCode, err)
	}
	if len(tr.Crossings) != 1 || tr.Crossings[0].Serial != "S2" || tr.Crossings[0].Door != "door-9" || tr.Crossings[0].Seq != evs[1].Seq {
		t.Fatalf("GET /trace?lot=LOT99: %+v, want the one S2 crossing (seq %d)", tr.Crossings, evs[1].Seq)
	}

	out.Reset()
	if err := run(context.Background(), []string{"collect", "trace", "--db", pg.DSN(), "--serial", "S2", "--json"}, nil, &out, &errb); err != nil {
		t.Fatalf("collect trace --json: %v", err)
	}
	var tj collector.TraceResponse
	if err := json.Unmarshal(out.Bytes(), &tj); err != nil || len(tj.Crossings) != 1 || tj.Crossings[0].Lot != "LOT99" {
		t.Fatalf("collect trace --serial S2 --json: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"collect", "--help"}, {"collect", "run", "--help"}, {"collect", "trace", "--help"}} {
		var o bytes.Buffer
		if err := run(context.Background(), args, nil, &o, &o); err != nil {
			t.Fatalf("%v: %v, want exit 0", args, err)
		}
	}
}
