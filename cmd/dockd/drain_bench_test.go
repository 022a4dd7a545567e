package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/outbox"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink"
)

// drainN is the backlog both sides move in BenchmarkDrainVsRelay.
const drainN = 100_000

// eventLike is a payload of the size of a real custody event (~420 bytes).
func eventLike(i int) string {
	return fmt.Sprintf(`{"schema":"dockd.custody-event/1","id":"00000000-0000-4000-8000-%012d","seq":%d,"site":"bench","station":"bench-door-1","door":"door-1","direction":"receiving","time":"2026-11-25T14:23:16.700800923Z","clock_synced":true,"reader":"scanner-1","raw":"]C1010950600013435210LOT42\u001d21S%d","symbology":"GS1-128","form":"element_string","gtin":"09506000134352","lot":"LOT42","serial":"S%d","decision":"accept","reason":"ok","allowlist_version":"sample"}`, i, i, i, i)
}

// counter counts messages a QoS 1 subscriber receives on a filter: the
// central side of both runs. It returns the count and a stop function.
func counter(b *testing.B, broker, filter string) (*atomic.Int64, func()) {
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		uplink.Watch(ctx, broker, fmt.Sprintf("bench-central-%d", time.Now().UnixNano()), filter, func(string, []byte, bool) { n.Add(1) })
	}()
	time.Sleep(300 * time.Millisecond) // let the subscription settle before anything is published
	return &n, func() { cancel(); <-done }
}

// waitArrivals waits until n messages arrived, or until nothing arrived for
// quiet; it returns the time of the last arrival seen.
func waitArrivals(c *atomic.Int64, n int64, start time.Time, quiet time.Duration) (int64, time.Duration) {
	last, lastAt := int64(-1), time.Now()
	var elapsed time.Duration
	for {
		got := c.Load()
		if got != last {
			last, lastAt = got, time.Now()
			elapsed = time.Since(start)
		}
		if got >= n || time.Since(lastAt) > quiet {
			return got, elapsed
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkDrainVsRelay drains a 100k-event backlog from the bbolt buffer
// into a local Mosquitto at QoS 1 through the uplink (acks written back to
// the buffer), and, in the same run against the same broker, relays the same
// number of lines with `mosquitto_pub -l -q 1` — the do-it-yourself baseline.
// Both are counted at a QoS 1 subscriber: what arrives, not what was sent.
func BenchmarkDrainVsRelay(b *testing.B) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		b.Skip("mosquitto_pub not installed (Debian package mosquitto-clients)")
	}
	m := testkit.StartMosquitto(b)
	host, port, _ := strings.Cut(m.Addr(), ":")
	lines := make([]string, drainN)
	for i := range lines {
		lines[i] = eventLike(i + 1)
	}
	input := strings.Join(lines, "\n") + "\n"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	for i := 0; i < b.N; i++ {
		// Baseline: mosquitto_pub relaying lines.
		got, stop := counter(b, m.URL(), "relay/#")
		start := time.Now()
		cmd := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", "relay/events", "-l")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		relayArrived, relayTime := waitArrivals(got, drainN, start, 3*time.Second)
		stop()
		if err != nil {
			b.Logf("mosquitto_pub: %v %s", err, out)
		}

		// dockd: a bbolt backlog drained by the uplink.
		q, err := buffer.Open(filepath.Join(b.TempDir(), "buffer.db"), buffer.Options{MaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ { // fill concurrently: group commit
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < drainN; j += 32 {
					if _, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return []byte(lines[j]), nil }); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got, stop = counter(b, m.URL(), "bench/#")
		up, err := uplink.New(uplink.Config{Broker: m.URL(), ClientID: "bench-station", EventsTopic: "bench/events", StatusTopic: "bench/status", InFlight: 128}, outbox.Outbox{Q: q}, log)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- up.Run(ctx) }()
		dockdArrived, dockdTime := waitArrivals(got, drainN, start, 5*time.Second)
		for q.Stats().Depth > 0 && time.Since(start) < time.Minute {
			time.Sleep(5 * time.Millisecond)
		}
		ackedAll := q.Stats().Depth == 0
		cancel()
		<-done
		stop()
		q.Close()
		if dockdArrived < drainN || !ackedAll {
			b.Fatalf("dockd delivered %d of %d (buffer emptied: %v)", dockdArrived, drainN, ackedAll)
		}
		relayRate := float64(relayArrived) / relayTime.Seconds()
		dockdRate := float64(dockdArrived) / dockdTime.Seconds()
		b.ReportMetric(dockdRate, "dockd-msgs/s")
		b.ReportMetric(relayRate, "relay-msgs/s")
		b.ReportMetric(float64(relayArrived)/drainN*100, "relay-arrived-%")
		b.ReportMetric(dockdRate/relayRate, "ratio")
		b.ReportMetric(0, "ns/op")
	}
}
