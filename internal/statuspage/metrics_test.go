package statuspage

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockd/dockd/internal/dock"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestMetricsOnScrape(t *testing.T) {
	src := newFakeSource()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, src)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{}, src, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, s)

	for _, ev := range []dock.CustodyEvent{
		{Decision: dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}},
		{Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot}},
		{Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot}},
		{Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonBadScan}, ErrorKind: "bad_check_digit"},
	} {
		m.ObserveEvent(ev)
	}
	m.ObservePublishLatency(3 * time.Millisecond)
	m.ObservePublishLatency(2 * time.Second)
	last := time.Unix(1700000000, 500e6)
	src.update(false, func(s *Snapshot) {
		s.Readers = []Reader{{ID: "scanner-1", Up: true, LastScan: last}, {ID: "rfid-1", Up: false}}
		s.Buffer = Buffer{Depth: 12, Bytes: 3400, OldestAgeS: 42.5, Fill: 0.25}
		s.Storage = &Storage{WrittenBytes: 123 << 20}
		s.Broker.Connected = false
		s.Light = Light{Amber: true, Showing: "broker_offline", Conditions: []dock.Condition{dock.ConditionBrokerOffline}, Running: true}
	})

	text := scrape(t, base+"/metrics")
	for _, want := range []string{
		`dockd_scans_total{decision="accept",reason="ok"} 1`,
		`dockd_scans_total{decision="reject",reason="unknown_lot"} 2`,
		`dockd_scans_total{decision="reject",reason="bad_scan"} 1`,
		`dockd_decode_errors_total{kind="bad_check_digit"} 1`,
		`dockd_publish_latency_seconds_count 2`,
		`dockd_publish_latency_seconds_bucket{le="0.005"} 1`,
		`dockd_publish_latency_seconds_bucket{le="2.5"} 2`,
		`dockd_reader_up{reader="scanner-1"} 1`,
		`dockd_reader_up{reader="rfid-1"} 0`,
		`dockd_reader_last_scan_timestamp_seconds{reader="scanner-1"} 1.7000000005e+09`,
		`dockd_buffer_depth 12`,
		`dockd_buffer_bytes 3400`,
		`dockd_buffer_oldest_age_seconds 42.5`,
		`dockd_buffer_fill_ratio 0.25`,
		`dockd_broker_connected 0`,
		`dockd_allowlist_info{version="v7"} 1`,
		`dockd_allowlist_lots 3`,
		`dockd_condition_active{condition="broker_offline"} 1`,
		`dockd_condition_active{condition="reader_down"} 0`,
		`dockd_light_output_on{output="amber"} 1`,
		`dockd_light_output_on{output="red"} 0`,
		`dockd_station_info{direction="receiving",door="door-1",site="site",station="site-door-1",version=""} 1`,
		`dockd_storage_written_bytes_total 1.28974848e+08`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(text, "dockd_buffer_unconfirmed") {
		t.Error("unconfirmed gauges exported without receipt delivery")
	}
	if strings.Contains(text, `dockd_reader_last_scan_timestamp_seconds{reader="rfid-1"}`) {
		t.Error("last-scan time exported for a reader that never scanned")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}

	// Gauges follow the source at the next scrape.
	src.update(false, func(s *Snapshot) { s.Buffer.Depth = 0; s.Broker.Connected = true })
	text = scrape(t, base+"/metrics")
	if !strings.Contains(text, "dockd_buffer_depth 0\n") || !strings.Contains(text, "dockd_broker_connected 1\n") {
		t.Fatalf("gauges did not follow the source:\n%s", text)
	}

	// Receipt delivery: the unconfirmed backlog beside the buffer depth.
	unconf := 7
	src.update(false, func(s *Snapshot) { s.Buffer.Unconfirmed, s.Buffer.UnconfirmedOldestAgeS = &unconf, 12.5 })
	text = scrape(t, base+"/metrics")
	if !strings.Contains(text, "dockd_buffer_unconfirmed 7\n") || !strings.Contains(text, "dockd_buffer_unconfirmed_oldest_age_seconds 12.5\n") {
		t.Fatalf("unconfirmed gauges missing:\n%s", text)
	}

	// Registering twice on one registry is an error, not a panic.
	if _, err := NewMetrics(reg, src); err == nil {
		t.Fatal("second NewMetrics on the same registry succeeded")
	}
}

func TestNoRegistryNoMetrics(t *testing.T) {
	base := serve(t, newServer(t, Config{}, newFakeSource()))
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics without a registry: %d", resp.StatusCode)
	}
}

func BenchmarkObserveEvent(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry(), newFakeSource())
	if err != nil {
		b.Fatal(err)
	}
	ev := dock.CustodyEvent{Decision: dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot}}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveEvent(ev)
	}
}
