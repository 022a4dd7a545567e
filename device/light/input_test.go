package light

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/testkit"
)

const testDebounce = 60 * time.Millisecond

var (
	L = gpio.Low
	H = gpio.High
)

// drive plays actions on pin, each a burst of bounces driven back to back
// (inside the debounce window), waiting between actions until the watcher
// has settled, so separate actions are separate changes however slowly the
// watcher runs.
func drive(t *testing.T, p *testkit.RecordingPin, actions [][]gpio.Level) {
	t.Helper()
	for _, a := range actions {
		p.Bounce(0, a...)
		p.WaitIdle(t, wait)
	}
}

// recv waits for one value from ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s within %v", what, wait)
		panic("unreachable")
	}
}

// watchDone runs fn(ctx) in a goroutine and, at cleanup, cancels it and
// checks it returned nil.
func watchDone(t *testing.T, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := recv(t, done, "watcher return"); err != nil {
			t.Errorf("watcher returned %v", err)
		}
	})
}

func TestWatchButton(t *testing.T) {
	tests := []struct {
		name    string
		actions [][]gpio.Level
		presses int
	}{
		{"clean press", [][]gpio.Level{{L}}, 1},
		{"bouncy press is one", [][]gpio.Level{{L, H, L, H, L}}, 1},
		{"bouncy press and release", [][]gpio.Level{{L, H, L}, {H, L, H}}, 1},
		{"glitch is no press", [][]gpio.Level{{L, H}}, 0},
		{"two presses", [][]gpio.Level{{L, H, L}, {H}, {L}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testkit.NewRecordingPin("BTN", 5)
			presses := make(chan struct{}, 100)
			watchDone(t, func(ctx context.Context) error {
				return WatchButton(ctx, p, testDebounce, func() { presses <- struct{}{} })
			})
			p.WaitArmed(t, wait)
			if p.Read() != gpio.High {
				t.Fatalf("button input not pulled up: %s", p.Read())
			}
			// A final sentinel press, after everything else settled, proves
			// every earlier change was processed when it is reported.
			drive(t, p, append(tc.actions, []gpio.Level{H}, []gpio.Level{L}))
			for i := 0; i < tc.presses+1; i++ {
				recv(t, presses, "press")
			}
			if n := len(presses); n != 0 {
				t.Errorf("%d presses more than %d", n, tc.presses)
			}
		})
	}
}

func TestWatchSwitch(t *testing.T) {
	tests := []struct {
		name    string
		actions [][]gpio.Level
		want    []gpio.Level // after the initial High
	}{
		{"no change", nil, nil},
		{"bouncy close", [][]gpio.Level{{L, H, L, H, L}}, []gpio.Level{L}},
		{"glitch ignored", [][]gpio.Level{{L, H}}, nil},
		{"close then open", [][]gpio.Level{{L, H, L}, {H, L, H}}, []gpio.Level{L, H}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testkit.NewRecordingPin("SW", 6)
			changes := make(chan gpio.Level, 100)
			watchDone(t, func(ctx context.Context) error {
				return WatchSwitch(ctx, p, testDebounce, func(l gpio.Level) { changes <- l })
			})
			if got := recv(t, changes, "initial level"); got != gpio.High {
				t.Fatalf("initial level %s, want High (pull-up)", got)
			}
			p.WaitArmed(t, wait)
			final := gpio.High
			if len(tc.want) > 0 {
				final = tc.want[len(tc.want)-1]
			}
			drive(t, p, append(tc.actions, []gpio.Level{!final}))
			want := append(append([]gpio.Level(nil), tc.want...), !final)
			for i, w := range want {
				if got := recv(t, changes, "change"); got != w {
					t.Fatalf("change %d = %s, want %s (want all %v)", i, got, w, want)
				}
			}
			if n := len(changes); n != 0 {
				t.Errorf("%d extra changes", n)
			}
		})
	}
}

func TestWatchConfigureError(t *testing.T) {
	err := WatchButton(context.Background(), gpio.INVALID, testDebounce, func() {})
	if err == nil {
		t.Fatal("WatchButton on an invalid pin returned nil")
	}
}
