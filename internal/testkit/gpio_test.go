package testkit

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
)

func TestRecordingPinRecordsOnlyChanges(t *testing.T) {
	tests := []struct {
		name   string
		writes []gpio.Level
		want   []gpio.Level
	}{
		{"none", nil, nil},
		{"low on low pin", []gpio.Level{gpio.Low}, nil},
		{"one change", []gpio.Level{gpio.High}, []gpio.Level{gpio.High}},
		{"repeats collapse", []gpio.Level{gpio.High, gpio.High, gpio.Low, gpio.Low, gpio.High},
			[]gpio.Level{gpio.High, gpio.Low, gpio.High}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewRecordingPin("T", 1)
			before := time.Now()
			for _, l := range tc.writes {
				if err := p.Out(l); err != nil {
					t.Fatalf("Out(%s): %v", l, err)
				}
			}
			after := time.Now()
			edges := p.Edges()
			if len(edges) != len(tc.want) {
				t.Fatalf("edges = %v, want levels %v", edges, tc.want)
			}
			for i, e := range edges {
				if e.Level != tc.want[i] {
					t.Errorf("edge %d level = %s, want %s", i, e.Level, tc.want[i])
				}
				if e.At.Before(before) || e.At.After(after) {
					t.Errorf("edge %d at %v outside the calls [%v, %v]", i, e.At, before, after)
				}
				if i > 0 && e.At.Before(edges[i-1].At) {
					t.Errorf("edge %d earlier than edge %d", i, i-1)
				}
			}
			if p.OutCalls() != len(tc.writes) {
				t.Errorf("OutCalls = %d, want %d", p.OutCalls(), len(tc.writes))
			}
			wantLevel := gpio.Low
			if n := len(tc.writes); n > 0 {
				wantLevel = tc.writes[n-1]
			}
			if p.Level() != wantLevel || p.Read() != wantLevel {
				t.Errorf("Level = %s, Read = %s, want %s", p.Level(), p.Read(), wantLevel)
			}
		})
	}
}

func TestRecordingPinWaitLevelFromOtherGoroutine(t *testing.T) {
	p := NewRecordingPin("T", 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = p.Out(gpio.High)
	}()
	p.WaitLevel(t, gpio.High, 5*time.Second)
	edges := p.WaitEdges(t, 1, time.Second)
	if edges[0].Level != gpio.High {
		t.Fatalf("edges = %v", edges)
	}
}

// fakeTB captures Fatalf so that failing helpers can be tested.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// runTB runs fn with a fakeTB in its own goroutine (Fatalf exits it) and
// returns the failure message, "" if none.
func runTB(t *testing.T, fn func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func TestRecordingPinWaitHelpersFailOnTimeout(t *testing.T) {
	p := NewRecordingPin("T", 1)
	if msg := runTB(t, func(tb testing.TB) { p.WaitLevel(tb, gpio.High, 30*time.Millisecond) }); msg == "" {
		t.Error("WaitLevel did not fail for a level never reached")
	}
	if msg := runTB(t, func(tb testing.TB) { p.WaitEdges(tb, 1, 30*time.Millisecond) }); msg == "" {
		t.Error("WaitEdges did not fail without edges")
	}
	if msg := runTB(t, func(tb testing.TB) { p.WaitArmed(tb, 30*time.Millisecond) }); msg == "" {
		t.Error("WaitArmed did not fail without In")
	}
	_ = p.Out(gpio.High)
	if msg := runTB(t, func(tb testing.TB) { p.WaitLevel(tb, gpio.High, 30*time.Millisecond) }); msg != "" {
		t.Errorf("WaitLevel failed for the current level: %s", msg)
	}
}

func TestRecordingPinInputEdges(t *testing.T) {
	tests := []struct {
		name  string
		pull  gpio.Pull
		mode  gpio.Edge
		sets  []gpio.Level
		edges int // edges WaitForEdge must deliver
		final gpio.Level
	}{
		{"both edges pull-up", gpio.PullUp, gpio.BothEdges, []gpio.Level{gpio.Low, gpio.High, gpio.Low}, 3, gpio.Low},
		{"falling only", gpio.PullUp, gpio.FallingEdge, []gpio.Level{gpio.Low, gpio.High, gpio.Low}, 2, gpio.Low},
		{"rising only", gpio.PullDown, gpio.RisingEdge, []gpio.Level{gpio.High, gpio.Low}, 1, gpio.Low},
		{"no edge detection", gpio.PullUp, gpio.NoEdge, []gpio.Level{gpio.Low}, 0, gpio.Low},
		{"same level is no edge", gpio.PullUp, gpio.BothEdges, []gpio.Level{gpio.High, gpio.High}, 0, gpio.High},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewRecordingPin("IN", 2)
			if err := p.In(tc.pull, tc.mode); err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.sets {
				p.Set(l)
			}
			got := 0
			for p.WaitForEdge(0) {
				got++
			}
			if got != tc.edges {
				t.Errorf("WaitForEdge delivered %d edges, want %d", got, tc.edges)
			}
			if p.Read() != tc.final {
				t.Errorf("Read = %s, want %s", p.Read(), tc.final)
			}
			if len(p.Edges()) != 0 {
				t.Errorf("input changes were recorded as output edges: %v", p.Edges())
			}
		})
	}
}

func TestRecordingPinPullAndDiscard(t *testing.T) {
	p := NewRecordingPin("IN", 2)
	if err := p.In(gpio.PullUp, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	if p.Read() != gpio.High || p.Pull() != gpio.PullUp {
		t.Fatalf("after pull-up: level %s pull %s", p.Read(), p.Pull())
	}
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	p.Set(gpio.Low)
	// Re-arming discards the queued edge; the externally driven level stays.
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if p.WaitForEdge(0) {
		t.Error("edge queued before In was delivered after it")
	}
	if p.Read() != gpio.Low {
		t.Errorf("pull-up overrode an externally driven line: %s", p.Read())
	}
}

func TestRecordingPinWaitForEdgeBlocksAndHalts(t *testing.T) {
	p := NewRecordingPin("IN", 2)
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	got := make(chan bool)
	go func() { got <- p.WaitForEdge(-1) }()
	p.Set(gpio.Low)
	if !<-got {
		t.Fatal("WaitForEdge(-1) returned false after an edge")
	}

	go func() { got <- p.WaitForEdge(-1) }()
	// Halt may run before the waiter has taken the halt channel; repeat
	// until it returns (bounded).
	deadline := time.After(5 * time.Second)
	for {
		_ = p.Halt()
		select {
		case r := <-got:
			if r {
				t.Fatal("WaitForEdge returned true after Halt without an edge")
			}
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("Halt did not interrupt WaitForEdge")
		}
	}
}

func TestRecordingPinWaitForEdgeTimeout(t *testing.T) {
	p := NewRecordingPin("IN", 2)
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if p.WaitForEdge(30 * time.Millisecond) {
		t.Fatal("WaitForEdge returned true without an edge")
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("WaitForEdge returned after %v, before its 30ms timeout", d)
	}
}

func TestRegisterPins(t *testing.T) {
	names := []string{"TKGPIO17", "TKGPIO27"}
	t.Run("registered", func(t *testing.T) {
		pins := RegisterPins(t, names...)
		for _, n := range names {
			got := gpioreg.ByName(n)
			if got == nil {
				t.Fatalf("gpioreg.ByName(%q) = nil", n)
			}
			if got != pins[n] {
				t.Fatalf("gpioreg.ByName(%q) is not the returned pin", n)
			}
			if err := got.Out(gpio.High); err != nil {
				t.Fatal(err)
			}
			if pins[n].Level() != gpio.High {
				t.Errorf("Out through gpioreg did not reach pin %q", n)
			}
		}
	})
	for _, n := range names {
		if gpioreg.ByName(n) != nil {
			t.Errorf("pin %q still registered after cleanup", n)
		}
	}
}

func TestRecordingPinWaitIdle(t *testing.T) {
	p := NewRecordingPin("IN", 2)
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	seen := make(chan gpio.Level, 10)
	go func() { // a minimal debouncing watcher
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !p.WaitForEdge(50 * time.Millisecond) {
				continue
			}
			for p.WaitForEdge(20 * time.Millisecond) {
			}
			seen <- p.Read()
		}
	}()
	defer func() { close(stop); <-done }()
	p.WaitIdle(t, 5*time.Second) // idle before any edge
	for i, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} {
		p.Bounce(0, l)
		p.WaitIdle(t, 5*time.Second)
		if len(seen) != 1 {
			t.Fatalf("action %d: watcher reported %d levels when idle, want 1", i, len(seen))
		}
		if got := <-seen; got != l {
			t.Fatalf("action %d: watcher read %s, want %s", i, got, l)
		}
	}
	if msg := runTB(t, func(tb testing.TB) {
		q := NewRecordingPin("Q", 3)
		_ = q.In(gpio.PullUp, gpio.BothEdges)
		q.Set(gpio.Low) // nobody takes it
		q.WaitIdle(tb, 30*time.Millisecond)
	}); msg == "" {
		t.Error("WaitIdle did not fail with an edge nobody took")
	}
}
