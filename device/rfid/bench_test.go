package rfid_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/dockd/dockd/device/rfid"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMercuryThroughput measures tag reads per second sustained from
// two emulated M6e Nano modules streaming continuously, with the emulator's
// output paced at baud/10 bytes per second (8N1), dedupe off so every read
// is emitted. cpu-% is the whole process (driver and emulators) per wall
// second; 100 = one core.
func BenchmarkMercuryThroughput(b *testing.B) {
	for _, baud := range []int{115200, 921600} {
		b.Run(fmt.Sprintf("baud=%d/readers=2", baud), func(b *testing.B) {
			frames := make(chan dock.Frame, 4096)
			ctx, cancel := context.WithCancel(context.Background())
			var dones []chan error
			states := make(chan dock.ReaderState, 64)
			for i := range 2 {
				p := testkit.NewPTY(b)
				var tags []testkit.MercuryTag
				for j := range 64 {
					tags = append(tags, testkit.MercuryTag{EPC: fmt.Sprintf("3074257BF7194E40%02X00%06X", i, j), RSSI: -50, Antenna: 1})
				}
				testkit.NewMercury(b, p, testkit.MercuryConfig{Tags: tags, LineRate: baud / 10})
				r, err := rfid.New(rfid.Config{
					ID: fmt.Sprintf("rfid-%d", i), Port: p.Path(), Baud: baud, Protocol: rfid.ProtocolMercury,
					Region: "NA", DedupeWindow: -1,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				dones = append(dones, done)
				go func() { done <- r.Run(ctx, frames, states) }()
			}
			b.Cleanup(func() {
				cancel()
				for _, d := range dones {
					if err := <-d; !errors.Is(err, context.Canceled) {
						b.Errorf("Run = %v", err)
					}
				}
			})
			for range 2 {
				if st := <-states; !st.Up {
					b.Fatalf("reader down: %v", st.Err)
				}
			}
			<-frames // streaming has started
			b.ResetTimer()
			cpu0, t0 := cpuTime(b), time.Now()
			for range b.N {
				<-frames
			}
			wall, cpu := time.Since(t0), cpuTime(b)-cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/wall.Seconds(), "reads/s")
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/read")
		})
	}
}
