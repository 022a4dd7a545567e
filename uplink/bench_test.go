package uplink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

// BenchmarkDrain measures draining a 10k-record in-memory outbox into a
// local Mosquitto at QoS 1 (connect included), for several in-flight
// windows. Reported as msgs/s.
func BenchmarkDrain(b *testing.B) {
	const records = 10_000
	for _, inflight := range []int{1, 32, 128} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			m := testkit.StartMosquitto(b)
			cfg := testConfig(b, m.URL())
			cfg.InFlight = inflight
			cfg.AckTimeout = 10 * time.Second
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				out := newMemOutbox()
				out.Append(records)
				c, err := New(cfg, out, log)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				go func() { done <- c.Run(ctx) }()
				deadline := time.Now().Add(2 * time.Minute)
				for {
					if a, _, _ := out.state(); a == records {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("outbox not drained within 2 minutes: %+v", c.Stats())
					}
					time.Sleep(time.Millisecond) // bounded poll; ≤1 ms of 10k-message runs
				}
				total += time.Since(start)
				b.StopTimer()
				cancel()
				if err := <-done; err != context.Canceled {
					b.Fatalf("Run: %v", err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(records*b.N)/total.Seconds(), "msgs/s")
		})
	}
}
