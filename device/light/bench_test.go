package light

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

// BenchmarkShowDecision measures the caller's cost of ShowDecision with Run
// consuming, from parallel callers.
func BenchmarkShowDecision(b *testing.B) {
	g, r := testkit.NewRecordingPin("G", 1), testkit.NewRecordingPin("R", 2)
	l := New(Pins{Green: g, Red: r}, Options{DecisionHold: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.ShowDecision(dock.Accept)
		}
	})
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkDecisionToPin measures the latency from ShowDecision to the lamp
// pin changing level, alternating accept and reject.
func BenchmarkDecisionToPin(b *testing.B) {
	g, r := testkit.NewRecordingPin("G", 1), testkit.NewRecordingPin("R", 2)
	l := New(Pins{Green: g, Red: r}, Options{DecisionHold: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			l.ShowDecision(dock.Accept)
			g.WaitLevel(b, gpio.High, wait)
		} else {
			l.ShowDecision(dock.Reject)
			r.WaitLevel(b, gpio.High, wait)
		}
	}
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkTrackerAdvance measures following one blinking output.
func BenchmarkTrackerAdvance(b *testing.B) {
	t0 := time.Now()
	tr := tracker{sig: Blink(500*time.Millisecond, 500*time.Millisecond), start: t0}
	var sink bool
	for i := 0; i < b.N; i++ {
		on, _ := tr.advance(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		sink = sink != on
	}
	_ = sink
}
