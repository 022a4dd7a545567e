package light

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/testkit"
)

// wait bounds every wait in these tests; generous for a loaded 2-core box.
var wait = testkit.Slow(5 * time.Second)

// rig is a StackLight on recording pins with Run going.
type rig struct {
	l                         *StackLight
	green, amber, red, buzzer *testkit.RecordingPin
	stop                      func() error // cancels Run and returns its error
}

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	r := &rig{
		green:  testkit.NewRecordingPin("G", 1),
		amber:  testkit.NewRecordingPin("A", 2),
		red:    testkit.NewRecordingPin("R", 3),
		buzzer: testkit.NewRecordingPin("B", 4),
	}
	r.l = New(Pins{Green: r.green, Amber: r.amber, Red: r.red, Buzzer: r.buzzer}, o, nil)
	return r
}

// start runs Run until stop is called or the test ends.
func (r *rig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.l.Run(ctx) }()
	var stopped bool
	var err error
	r.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatal("Run did not return after its context ended")
			}
		}
		return err
	}
	t.Cleanup(func() {
		if stopped {
			return // the test stopped Run and checked the error itself
		}
		if err := r.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitState(t, r.l, "running", func(s State) bool { return s.Running })
}

// waitState polls State (bounded) until ok holds.
func waitState(t *testing.T, l *StackLight, what string, ok func(State) bool) State {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := l.State()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("state never became %s; last %+v", what, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// levels returns the recorded levels of edges.
func levels(es []testkit.Edge) []gpio.Level {
	out := make([]gpio.Level, len(es))
	for i, e := range es {
		out[i] = e.Level
	}
	return out
}

// alternating reports whether es alternate High, Low, High, ...
func alternating(es []testkit.Edge) bool {
	for i, e := range es {
		if e.Level != (i%2 == 0) {
			return false
		}
	}
	return true
}

// within reports whether d is want within tolerance. Timers never fire
// early, so the early side is tight (30% or 40ms, whichever is larger);
// the late side allows for scheduling stalls on a loaded machine running
// -race (100% or 150ms; stalls of 150ms were seen with every core busy).
// Tests measure from the pattern's origin rather than from
// the previous edge, so one late edge does not make the next gap short.
// Under qemu (make test-arm) the late side is testkit.Slow's multiple.
func within(d, want time.Duration) bool {
	early := max(want*3/10, 40*time.Millisecond)
	late := testkit.Slow(max(want, 150*time.Millisecond))
	return d >= want-early && d <= want+late
}

func assertNoEdges(t *testing.T, name string, p *testkit.RecordingPin) {
	t.Helper()
	if es := p.Edges(); len(es) != 0 {
		t.Errorf("%s pin changed: %v", name, levels(es))
	}
}
