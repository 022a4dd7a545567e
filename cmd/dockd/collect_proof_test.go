package main

// Whole-daemon proofs of issue 11: real `dockd run` station processes
// (pty scanners, bbolt, MQTT) and the real collector (internal/collector,
// as `dockd collect run` runs it) writing into a private PostgreSQL.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/testkit"
)

// liveCollector is an in-process collector that a test can stop and start
// again under the same name (so the same persistent session).
type liveCollector struct {
	t      *testing.T
	c      *collector.Collector
	cancel context.CancelFunc
	done   chan error
}

func startLiveCollector(t *testing.T, db string, brokers ...string) *liveCollector {
	t.Helper()
	c, err := collector.New(collector.Config{Brokers: brokers, DB: db, Name: "proof",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := &liveCollector{t: t, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { lc.done <- c.Run(ctx) }()
	t.Cleanup(lc.stop)
	select {
	case <-c.Subscribed():
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not subscribe")
	}
	return lc
}

func (lc *liveCollector) stop() {
	if lc.cancel == nil {
		return
	}
	lc.cancel()
	lc.cancel = nil
	select {
	case err := <-lc.done:
		if err != nil {
			lc.t.Errorf("collector: %v", err)
		}
	case <-time.After(30 * time.Second):
		lc.t.Errorf("collector did not stop")
	}
}

// proofStation is one `dockd run` child process at test-site/DOOR.
type proofStation struct {
	door string
	pty  *testkit.PTY
	p    *proc
}

func startProofStation(t *testing.T, door, delivery string, brokers ...string) *proofStation {
	t.Helper()
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	y := stationConfig(dir, pty.Path(), brokers[0], "virtual")
	y = strings.Replace(y, "door: door-9", "door: "+door, 1)
	if len(brokers) > 1 {
		y = regexp.MustCompile(`(?m)^  broker: .*$`).ReplaceAllString(y, fmt.Sprintf("  brokers: [%s]", quoteJoin(brokers)))
	}
	if delivery == "receipt" {
		y = receiptYAML(y, "2s", "1h")
	}
	path := filepath.Join(dir, "dockd.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return &proofStation{door: door, pty: pty, p: startProc(t, path)}
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (s *proofStation) station() string { return "test-site-" + s.door }

// scan sends n accepted scans (LOT42, unique serials) and waits for their
// decisions.
func (s *proofStation) scan(t *testing.T, tag string, n int) {
	t.Helper()
	before := len(s.p.decided())
	for i := 0; i < n; i++ {
		if err := s.pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("%s%s%03d", tag, s.door[len(s.door)-1:], i)))); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, "decisions", func() bool { return len(s.p.decided()) >= before+n })
}

// proofCounts reads what PostgreSQL holds of the stations' offered seqs.
type proofCounts struct {
	offered, stored, lost int
	duplicates            int64
}

func countStored(t *testing.T, pg *testkit.Postgres, stations []*proofStation, dups int64) proofCounts {
	t.Helper()
	var c proofCounts
	c.duplicates = dups
	for _, s := range stations {
		seqs := s.p.decided()
		c.offered += len(seqs)
		stored := 0
		for _, seq := range seqs {
			n := pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1 AND seq = $2`, s.station(), int64(seq))
			if n > 1 {
				t.Fatalf("%s seq %d stored %d times", s.station(), seq, n)
			}
			stored += int(n)
		}
		if rows := pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, s.station()); rows != int64(stored) {
			t.Fatalf("%s: %d rows, but only %d are decisions the station logged", s.station(), rows, stored)
		}
		c.stored += stored
	}
	c.lost = c.offered - c.stored
	return c
}

// TestCollectProofBrokerKill: two stations, the collector offline, a
// broker kill -9 (no persistence: everything queued for the collector is
// gone) — with delivery: receipt every event the stations decided ends in
// PostgreSQL exactly once; the same run with delivery: broker shows the
// loss. Both counts are printed.
func TestCollectProofBrokerKill(t *testing.T) {
	results := map[string]proofCounts{}
	for _, delivery := range []string{"receipt", "broker"} {
		t.Run(delivery, func(t *testing.T) {
			broker := testkit.StartMosquitto(t)
			pg := testkit.StartPostgres(t)
			lc := startLiveCollector(t, pg.DSN(), broker.URL())
			lc.stop() // offline: the broker queues events in its session
			seen := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/+/events")
			stations := []*proofStation{
				startProofStation(t, "door-8", delivery, broker.URL()),
				startProofStation(t, "door-9", delivery, broker.URL()),
			}
			const before, after = 15, 5
			for _, s := range stations {
				s.scan(t, "a", before)
			}
			seen.WaitCount(t, len(stations)*before, 30*time.Second) // at the broker, queued for the offline collector
			broker.Kill()
			broker.Start()
			lc = startLiveCollector(t, pg.DSN(), broker.URL())
			for _, s := range stations {
				s.scan(t, "b", after)
			}
			offered := len(stations) * (before + after)
			if delivery == "receipt" {
				waitUntil(t, 60*time.Second, "every decided event in PostgreSQL", func() bool {
					return pg.QueryInt(`SELECT count(*) FROM events WHERE station LIKE 'test-site-%'`) >= int64(offered)
				})
			} else {
				waitUntil(t, 60*time.Second, "the events decided after the restart in PostgreSQL", func() bool {
					return pg.QueryInt(`SELECT count(*) FROM events WHERE station LIKE 'test-site-%'`) >= int64(len(stations)*after)
				})
				time.Sleep(3 * time.Second) // room for anything else to arrive
			}
			c := countStored(t, pg, stations, lc.c.Stats().Duplicates.Load())
			results[delivery] = c
			t.Logf("delivery=%s: offered %d, stored in PostgreSQL %d, lost %d, duplicates suppressed %d",
				delivery, c.offered, c.stored, c.lost, c.duplicates)
			if c.offered != offered {
				t.Fatalf("offered %d decisions, want %d", c.offered, offered)
			}
			if delivery == "receipt" {
				if c.lost != 0 || c.stored != offered {
					t.Fatalf("receipt delivery lost %d of %d", c.lost, offered)
				}
				for _, s := range stations {
					if u := pg.QueryInt(`SELECT upto FROM stations WHERE station = $1`, s.station()); u != int64(before+after) {
						t.Fatalf("%s: upto %d, want %d", s.station(), u, before+after)
					}
				}
			} else if c.lost == 0 {
				t.Fatalf("broker delivery lost nothing across a broker kill -9 with the collector offline: the proof shows nothing")
			}
		})
	}
	fmt.Printf("broker kill -9, collector offline: receipt delivery: offered %d, stored %d, lost %d; broker delivery: offered %d, stored %d, lost %d\n",
		results["receipt"].offered, results["receipt"].stored, results["receipt"].lost,
		results["broker"].offered, results["broker"].stored, results["broker"].lost)
}

// TestCollectProofNATSCluster: a 3-member NATS cluster, two receipt-mode
// stations each on its own member with the others as failover
// (mqtt.brokers), the collector on the third; kill -9 the member the first
// station is on: 0 events lost, the station fails over and its receipts
// resume.
func TestCollectProofNATSCluster(t *testing.T) {
	nc := testkit.StartNATSCluster(t, 3)
	pg := testkit.StartPostgres(t)
	u := nc.URLs()
	lc := startLiveCollector(t, pg.DSN(), u[2], u[0], u[1])
	stations := []*proofStation{
		startProofStation(t, "door-8", "receipt", u[0], u[1], u[2]),
		startProofStation(t, "door-9", "receipt", u[1], u[2], u[0]),
	}
	const before, after = 10, 10
	for _, s := range stations {
		s.scan(t, "a", before)
	}
	waitUntil(t, 60*time.Second, "the first events receipted", func() bool {
		return pg.QueryInt(`SELECT coalesce(sum(upto), 0) FROM stations WHERE station LIKE 'test-site-%'`) == int64(len(stations)*before)
	})
	status := testkit.NewSubscriber(t, u[2], "dockd/v1/test-site/door-8/status")
	t.Logf("first %d events of each station receipted; killing member 0", before)
	nc.Nodes[0].Kill() // door-8's member
	for _, s := range stations {
		s.scan(t, "b", after)
	}
	t.Logf("scanned %d more at each station", after)
	total := int64(len(stations) * (before + after))
	waitUntil(t, 240*time.Second, "every event stored and receipted after the member kill", func() bool {
		return pg.QueryInt(`SELECT coalesce(sum(upto), 0) FROM stations WHERE station LIKE 'test-site-%'`) == total
	})
	t.Logf("all stored and receipted")
	c := countStored(t, pg, stations, lc.c.Stats().Duplicates.Load())
	t.Logf("NATS member kill: offered %d, stored %d, lost %d, duplicates suppressed %d", c.offered, c.stored, c.lost, c.duplicates)
	if c.lost != 0 || int64(c.stored) != total {
		t.Fatalf("lost %d of %d", c.lost, c.offered)
	}
	// Receipts resumed: door-8's buffer (it keeps events until a receipt
	// covers them) drains to empty after the failover, as its heartbeat
	// status says on a surviving member.
	since := time.Now()
	status.WaitFor(t, func(ms []testkit.Message) bool {
		var st Status
		return len(ms) > 0 && json.Unmarshal(ms[len(ms)-1].Payload, &st) == nil && st.State == "online" &&
			st.Time.After(since) && st.Buffer.Depth == 0
	}, 60*time.Second)
}
