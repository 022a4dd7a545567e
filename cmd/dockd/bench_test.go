package main

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

// BenchmarkScanToLight measures, on the whole in-process daemon, the time
// from the last byte of a scan written into the pty to the lamp's GPIO edge:
// serial read, framing, decode, rules, allowlist look-up, the fsync'd bbolt
// append, and the light goroutine. Scans alternate accept/reject so every
// one produces an edge (green, then red).
func BenchmarkScanToLight(b *testing.B) {
	s := startStation(b)
	green, red := s.pins["GPIO17"], s.pins["GPIO22"]
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lot, pin := "LOT42", green
		if i%2 == 1 {
			lot, pin = "LOT99", red
		}
		before := pin.EdgeCount()
		t0 := time.Now()
		s.write(gs1Scan(lot, fmt.Sprintf("B%d", i)))
		// Blocks on the pin's change signal: no polling loop spinning a
		// core, no copied edge lists (whose garbage made the daemon's GC,
		// not the daemon, the p99). The edge carries its own time.
		edge := pin.WaitEdgeTo(b, before, gpio.High, 10*time.Second)
		lat = append(lat, edge.At.Sub(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, "scan-light")
}

// BenchmarkEndToEnd measures scans/s from the pty to a Mosquitto subscriber
// (decided, durable, published at QoS 1, PUBACKed and received) with 500
// scans written back to back per iteration.
func BenchmarkEndToEnd(b *testing.B) {
	s := startStation(b)
	const n = 500
	total := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < n; j++ {
			s.write(gs1Scan("LOT42", fmt.Sprintf("E%d-%d", i, j)))
		}
		total += n
		s.sub.WaitFor(b, func(ms []testkit.Message) bool { return len(ms) >= total+1 }, time.Minute) // +1: retained status
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	evs := receivedEvents(b, s.sub.Messages())
	if ids := distinctIDs(evs); ids != total {
		b.Fatalf("%d distinct events arrived, want %d", ids, total)
	}
}

func reportLatency(b *testing.B, lat []time.Duration, name string) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), name+"-p50-µs")
	b.ReportMetric(q(0.99), name+"-p99-µs")
	b.ReportMetric(0, "ns/op")
}

func distinctIDs(evs []dock.CustodyEvent) int {
	ids := map[string]bool{}
	for _, e := range evs {
		ids[e.ID] = true
	}
	return len(ids)
}

// BenchmarkScanToPuback measures, on the whole in-process daemon with the
// broker up, the time from a scan written into the pty until the broker's
// PUBACK for its event reached the uplink (durable append and publish
// included).
func BenchmarkScanToPuback(b *testing.B) {
	s := startStation(b)
	waitUntil(b, 10*time.Second, "uplink connected", s.d.up.Connected)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		target := s.d.queue.Stats().NewestSeq + 1
		t0 := time.Now()
		s.write(gs1Scan("LOT42", fmt.Sprintf("P%d", i)))
		for s.d.up.Stats().AckedSeq < target {
			time.Sleep(20 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, "scan-puback")
}
