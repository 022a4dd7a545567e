package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// ReaderWait bounds the waits of ReaderRun: generous, for things that should
// happen "soon" even on a loaded machine.
const ReaderWait = 5 * time.Second

// FrameSource is what a reader driver offers (device/reader.Serial,
// device/rfid.Reader): Run until ctx ends, sending frames and up/down states.
type FrameSource interface {
	Run(ctx context.Context, frames chan<- dock.Frame, states chan<- dock.ReaderState) error
}

// ReaderRun is a reader's Run on its own goroutine for one test, with the
// channels it reports on. Its methods must be called from the test goroutine.
type ReaderRun struct {
	Frames chan dock.Frame
	States chan dock.ReaderState
	// Describe, when set, adds context (e.g. the reader's counters) to a
	// failed wait.
	Describe func() string
}

// RunReader starts r.Run with a frame channel of frameBuf and stops it at
// test end, failing the test if Run does not return context.Canceled within
// ReaderWait.
func RunReader(t testing.TB, r FrameSource, frameBuf int) *ReaderRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &ReaderRun{Frames: make(chan dock.Frame, frameBuf), States: make(chan dock.ReaderState, 16)}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, rn.Frames, rn.States) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(ReaderWait):
			t.Errorf("Run did not return after cancel")
		}
	})
	return rn
}

func (rn *ReaderRun) describe() string {
	if rn.Describe == nil {
		return ""
	}
	return " (" + rn.Describe() + ")"
}

// State waits for the next state and fails unless it says up.
func (rn *ReaderRun) State(t testing.TB, up bool) dock.ReaderState {
	t.Helper()
	select {
	case st := <-rn.States:
		if st.Up != up {
			t.Fatalf("state %+v, want Up=%v", st, up)
		}
		return st
	case <-time.After(ReaderWait):
		t.Fatalf("no state (want Up=%v) within %v%s", up, ReaderWait, rn.describe())
	}
	return dock.ReaderState{}
}

// Frame waits for the next frame.
func (rn *ReaderRun) Frame(t testing.TB) dock.Frame {
	t.Helper()
	select {
	case f := <-rn.Frames:
		return f
	case <-time.After(ReaderWait):
		t.Fatalf("no frame within %v%s", ReaderWait, rn.describe())
	}
	return dock.Frame{}
}

// NoFrame fails if a frame is waiting now.
func (rn *ReaderRun) NoFrame(t testing.TB) {
	t.Helper()
	select {
	case f := <-rn.Frames:
		t.Fatalf("unexpected frame %q (err %v)", f.Data, f.Err)
	default:
	}
}

// NoState fails if a state change is waiting now; why says what the test
// expected instead.
func (rn *ReaderRun) NoState(t testing.TB, why string) {
	t.Helper()
	select {
	case st := <-rn.States:
		t.Errorf("state change %+v: %s", st, why)
	default:
	}
}
