package light

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

func TestDecisionPatterns(t *testing.T) {
	const hold = 900 * time.Millisecond // longer than 3 beeps (750ms)
	tests := []struct {
		verdict dock.Verdict
		lamp    func(*rig) *testkit.RecordingPin
		others  func(*rig) []*testkit.RecordingPin
		beeps   int
	}{
		{dock.Accept, func(r *rig) *testkit.RecordingPin { return r.green },
			func(r *rig) []*testkit.RecordingPin { return []*testkit.RecordingPin{r.amber, r.red} }, 0},
		{dock.Warn, func(r *rig) *testkit.RecordingPin { return r.amber },
			func(r *rig) []*testkit.RecordingPin { return []*testkit.RecordingPin{r.green, r.red} }, 1},
		{dock.Reject, func(r *rig) *testkit.RecordingPin { return r.red },
			func(r *rig) []*testkit.RecordingPin { return []*testkit.RecordingPin{r.green, r.amber} }, 3},
	}
	for _, tc := range tests {
		t.Run(string(tc.verdict), func(t *testing.T) {
			r := newRig(t, Options{DecisionHold: hold})
			r.start(t)
			t0 := time.Now()
			r.l.ShowDecision(tc.verdict)
			lamp := tc.lamp(r)
			es := lamp.WaitEdges(t, 2, wait)
			if len(es) != 2 || !alternating(es) {
				t.Fatalf("lamp edges = %v, want [High Low]", levels(es))
			}
			if d := es[0].At.Sub(t0); d > testkit.Slow(250*time.Millisecond) {
				t.Errorf("lamp came on %v after ShowDecision", d)
			}
			if d := es[1].At.Sub(t0); !within(d, hold) {
				t.Errorf("lamp went off %v after ShowDecision, want about %v", d, hold)
			}
			// The buzzer finished before the hold ended.
			bz := r.buzzer.Edges()
			if len(bz) != 2*tc.beeps || !alternating(bz) {
				t.Fatalf("buzzer edges = %v, want %d beeps", levels(bz), tc.beeps)
			}
			// Beeps follow the pattern's schedule from the decision.
			for i, e := range bz {
				want := time.Duration(i/2)*(beepOn+beepOff) + time.Duration(i%2)*beepOn
				if d := e.At.Sub(t0); !within(d, want) {
					t.Errorf("buzzer edge %d (%s) at %v, want about %v", i, e.Level, d, want)
				}
			}
			for _, p := range tc.others(r) {
				assertNoEdges(t, p.Name(), p)
			}
			s := waitState(t, r.l, "idle", func(s State) bool { return s.Showing == CauseIdle })
			if s.Green || s.Amber || s.Red || s.Buzzer || s.Decision != "" {
				t.Errorf("idle state has outputs on: %+v", s)
			}
		})
	}
}

func TestFaultResumesAfterDecision(t *testing.T) {
	const hold = time.Second
	r := newRig(t, Options{DecisionHold: hold})
	r.start(t)
	r.l.SetCondition(dock.ConditionReaderDown, true)
	r.amber.WaitLevel(t, gpio.High, wait) // 1 Hz blink starts on

	r.l.ShowDecision(dock.Reject)
	r.red.WaitLevel(t, gpio.High, wait)
	// Pins are written before State is published: wait for the snapshot.
	s := waitState(t, r.l, "reject", func(s State) bool { return s.Showing != CauseReaderDown })
	if s.Showing != CauseReject || s.Decision != dock.Reject || s.Amber || !s.Red {
		t.Errorf("during the decision: %+v", s)
	}
	if len(s.Conditions) != 1 || s.Conditions[0] != dock.ConditionReaderDown {
		t.Errorf("conditions under the decision = %v", s.Conditions)
	}
	if r.amber.Level() != gpio.Low {
		t.Error("amber still lit while the reject shows")
	}
	r.red.WaitLevel(t, gpio.Low, wait)
	s = waitState(t, r.l, "reader down", func(s State) bool { return s.Showing == CauseReaderDown })
	if s.Decision != "" || !IsFault(dock.ConditionReaderDown) {
		t.Errorf("after the decision: %+v", s)
	}
	// The fault blink restarts at s.Since with its on-phase and keeps
	// blinking on that schedule.
	var after []testkit.Edge
	for len(after) < 3 {
		es := r.amber.WaitEdges(t, len(r.amber.Edges())+1, wait)
		after = after[:0]
		for _, e := range es {
			if !e.At.Before(s.Since) {
				after = append(after, e)
			}
		}
	}
	if !alternating(after) {
		t.Fatalf("amber after the decision: %v, want High first, alternating", levels(after))
	}
	for i, e := range after {
		if d := e.At.Sub(s.Since); !within(d, time.Duration(i)*500*time.Millisecond) {
			t.Errorf("reader-down edge %d at %v after the resume, want %d×500ms", i, d, i)
		}
	}
}

func TestDecisionOverBackground(t *testing.T) {
	r := newRig(t, Options{DecisionHold: 300 * time.Millisecond})
	r.start(t)
	r.l.SetCondition(dock.ConditionBrokerOffline, true)
	r.amber.WaitLevel(t, gpio.High, wait)
	r.l.ShowDecision(dock.Accept)
	r.green.WaitLevel(t, gpio.High, wait)
	waitState(t, r.l, "accept", func(s State) bool { return s.Showing == CauseAccept })
	if r.amber.Level() != gpio.Low {
		t.Error("background amber lit during accept")
	}
	r.green.WaitLevel(t, gpio.Low, wait)
	s := waitState(t, r.l, "broker offline", func(s State) bool { return s.Showing == CauseBrokerOffline })
	if s.Why == "" {
		t.Error("State.Why empty")
	}
	// Background resumes with its on-phase (200 ms flash).
	r.amber.WaitLevel(t, gpio.High, wait)
	assertNoEdges(t, "red", r.red)
}

func TestConditionPriorities(t *testing.T) {
	tests := []struct {
		name  string
		conds []dock.Condition
		want  Cause
		lamps [3]bool // green, amber, red right after the pattern starts
	}{
		{"none", nil, CauseIdle, [3]bool{}},
		{"broker offline", []dock.Condition{dock.ConditionBrokerOffline}, CauseBrokerOffline, [3]bool{false, true, false}},
		{"buffer high over broker offline", []dock.Condition{dock.ConditionBrokerOffline, dock.ConditionBufferHigh}, CauseBufferHigh, [3]bool{false, true, false}},
		{"reader down over background", []dock.Condition{dock.ConditionBufferHigh, dock.ConditionReaderDown, dock.ConditionBrokerOffline}, CauseReaderDown, [3]bool{false, true, false}},
		{"buffer full over reader down", []dock.Condition{dock.ConditionReaderDown, dock.ConditionBufferFull}, CauseBufferFull, [3]bool{false, true, true}},
		{"storage fault over all", []dock.Condition{dock.ConditionBufferFull, dock.ConditionStorageFault, dock.ConditionReaderDown}, CauseStorageFault, [3]bool{false, false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Options{})
			r.start(t)
			for _, c := range tc.conds {
				r.l.SetCondition(c, true)
			}
			s := waitState(t, r.l, string(tc.want), func(s State) bool {
				return s.Showing == tc.want && len(s.Conditions) == len(tc.conds)
			})
			if got := [3]bool{s.Green, s.Amber, s.Red}; got != tc.lamps {
				t.Errorf("lamps = %v, want %v (%+v)", got, tc.lamps, s)
			}
			for i := 1; i < len(s.Conditions); i++ {
				if priority(s.Conditions[i-1]) > priority(s.Conditions[i]) {
					t.Errorf("conditions not in priority order: %v", s.Conditions)
				}
			}
			// Clearing all returns to idle with every output off.
			for _, c := range tc.conds {
				r.l.SetCondition(c, false)
			}
			waitState(t, r.l, "idle", func(s State) bool { return s.Showing == CauseIdle })
			for _, p := range []*testkit.RecordingPin{r.green, r.amber, r.red, r.buzzer} {
				p.WaitLevel(t, gpio.Low, wait)
			}
		})
	}
}

func priority(c dock.Condition) int {
	for i, x := range conditionOrder {
		if x == c {
			return i
		}
	}
	return len(conditionOrder)
}

func TestBurstOfDecisionsNeverBlocksNewestWins(t *testing.T) {
	r := newRig(t, Options{DecisionHold: time.Minute})
	verdicts := []dock.Verdict{dock.Accept, dock.Warn, dock.Reject}
	// Before Run: nobody consumes, so a blocking send would hang here.
	for i := 0; i < 50; i++ {
		r.l.ShowDecision(verdicts[i%3])
		r.l.SetCondition(dock.ConditionReaderDown, i%2 == 0)
		r.l.Silence()
	}
	r.start(t)
	// While running: 50 decisions within about 10 ms, ending with Reject.
	for i := 0; i < 50; i++ {
		r.l.ShowDecision(verdicts[(i+1)%3])
		if i%10 == 9 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	last := verdicts[50%3]
	if last != dock.Reject {
		t.Fatalf("test setup: last verdict %s", last)
	}
	s := waitState(t, r.l, "the newest decision", func(s State) bool { return s.Decision == last })
	if !s.Red || s.Green || s.Amber {
		t.Errorf("state for newest (reject): %+v", s)
	}
	r.red.WaitLevel(t, gpio.High, wait)
	r.green.WaitLevel(t, gpio.Low, wait)
	r.amber.WaitLevel(t, gpio.Low, wait)
	// The reject's 3 beeps play out after the burst.
	es := r.buzzer.WaitEdges(t, 6, wait)
	if !alternating(es) {
		t.Errorf("buzzer edges %v", levels(es))
	}
}

func TestActiveLow(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		pins bool
	}{
		{"options", Options{ActiveLow: true, DecisionHold: time.Minute}, false},
		{"pins", Options{DecisionHold: time.Minute}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.o)
			r.l = New(Pins{Green: r.green, Amber: r.amber, Red: r.red, Buzzer: r.buzzer, ActiveLow: tc.pins}, tc.o, nil)
			r.start(t)
			all := []*testkit.RecordingPin{r.green, r.amber, r.red, r.buzzer}
			for _, p := range all {
				p.WaitLevel(t, gpio.High, wait) // idle: relays off
			}
			r.l.ShowDecision(dock.Reject)
			r.red.WaitLevel(t, gpio.Low, wait)
			bz := r.buzzer.WaitEdges(t, 2, wait)
			if bz[1].Level != gpio.Low {
				t.Errorf("buzzer edges %v, want it pulled low to sound", levels(bz))
			}
			if s := waitState(t, r.l, "reject", func(s State) bool { return s.Decision != "" }); !s.Red {
				t.Errorf("State reports logical levels; got %+v", s)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			for _, p := range all {
				if p.Level() != gpio.High {
					t.Errorf("%s not at safe High after Run", p.Name())
				}
			}
		})
	}
}

func TestRunExitTurnsEverythingOff(t *testing.T) {
	r := newRig(t, Options{Patterns: map[Cause]Pattern{
		CauseBufferFull: {Amber: Steady(), Red: Steady(), Buzzer: Steady()},
	}})
	r.start(t)
	r.l.SetCondition(dock.ConditionBufferFull, true)
	r.l.ShowDecision(dock.Accept)
	for _, p := range []*testkit.RecordingPin{r.green} {
		p.WaitLevel(t, gpio.High, wait)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	for _, p := range []*testkit.RecordingPin{r.green, r.amber, r.red, r.buzzer} {
		if p.Level() != gpio.Low {
			t.Errorf("%s left at %s after Run", p.Name(), p.Level())
		}
	}
	if s := r.l.State(); s.Running || s.Green || s.Red {
		t.Errorf("state after Run: %+v", s)
	}
	if err := r.l.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
	if err := r.l.Test(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Test after Run = %v, want ErrStopped", err)
	}
}

func TestSilence(t *testing.T) {
	r := newRig(t, Options{Patterns: map[Cause]Pattern{
		CauseBufferFull: {Amber: Steady(), Red: Steady(), Buzzer: Steady()},
	}})
	r.start(t)
	r.l.SetCondition(dock.ConditionBufferFull, true)
	r.buzzer.WaitLevel(t, gpio.High, wait)
	r.l.Silence()
	r.buzzer.WaitLevel(t, gpio.Low, wait)
	s := waitState(t, r.l, "silenced", func(s State) bool { return s.Silenced })
	if !s.Red || !s.Amber || s.Buzzer {
		t.Errorf("silenced buffer-full state: %+v", s)
	}
	// Still silenced after another pattern interrupts.
	r.l.SetCondition(dock.ConditionStorageFault, true)
	waitState(t, r.l, "storage fault", func(s State) bool { return s.Showing == CauseStorageFault })
	r.l.SetCondition(dock.ConditionStorageFault, false)
	waitState(t, r.l, "buffer full", func(s State) bool { return s.Showing == CauseBufferFull })
	if r.buzzer.Level() != gpio.Low {
		t.Error("acknowledged buffer-full buzzer sounded again")
	}
	// Cleared and raised again: it sounds again.
	r.l.SetCondition(dock.ConditionBufferFull, false)
	waitState(t, r.l, "idle", func(s State) bool { return s.Showing == CauseIdle })
	r.l.SetCondition(dock.ConditionBufferFull, true)
	r.buzzer.WaitLevel(t, gpio.High, wait)
}

func TestLampTest(t *testing.T) {
	const step = 150 * time.Millisecond
	r := newRig(t, Options{TestStep: step})
	r.start(t)
	all := []*testkit.RecordingPin{r.green, r.amber, r.red, r.buzzer}
	start := time.Now()
	if err := r.l.Test(context.Background()); err != nil {
		t.Fatalf("Test: %v", err)
	}
	if d := time.Since(start); d < 4*step {
		t.Errorf("Test returned after %v, before 4 steps of %v", d, step)
	}
	// Each output was on alone, once, in the order green, amber, red,
	// buzzer, on the schedule that starts when Test is called.
	origin := start
	for i, p := range all {
		es := p.WaitEdges(t, 2, wait)
		if len(es) != 2 || !alternating(es) {
			t.Fatalf("%s edges during the test = %v, want [High Low]", p.Name(), levels(es))
		}
		if i > 0 && es[0].At.Before(all[i-1].Edges()[1].At) {
			t.Errorf("%s came on before %s went off", p.Name(), all[i-1].Name())
		}
		for j, e := range es {
			want := time.Duration(i+j) * step
			if d := e.At.Sub(origin); !within(d, want) {
				t.Errorf("%s went %s at %v, want about %v", p.Name(), e.Level, d, want)
			}
		}
	}
	waitState(t, r.l, "idle after the test", func(s State) bool { return s.Showing == CauseIdle })

	// With a condition underneath, a cancelled test returns the context's
	// error, ends early, and the condition shows again.
	r.l.SetCondition(dock.ConditionBufferFull, true)
	r.red.WaitLevel(t, gpio.High, wait)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- r.l.Test(ctx) }()
	waitState(t, r.l, "testing", func(s State) bool { return s.Showing == CauseTest })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Test = %v", err)
	}
	waitState(t, r.l, "buffer full after cancel", func(s State) bool { return s.Showing == CauseBufferFull })
	r.red.WaitLevel(t, gpio.High, wait)
	r.amber.WaitLevel(t, gpio.High, wait)
}

func TestUnknownVerdictShowsReject(t *testing.T) {
	r := newRig(t, Options{DecisionHold: time.Minute})
	r.start(t)
	r.l.ShowDecision(dock.Verdict("bogus"))
	r.red.WaitLevel(t, gpio.High, wait)
	r.l.SetCondition(dock.Condition("bogus"), true)
	r.l.ShowDecision(dock.Accept)
	if s := waitState(t, r.l, "accept", func(s State) bool { return s.Decision == dock.Accept }); len(s.Conditions) != 0 {
		t.Errorf("unknown condition recorded: %v", s.Conditions)
	}
}

// failingPin is a recording pin whose writes fail while broken is set.
type failingPin struct {
	*testkit.RecordingPin
	broken atomic.Bool
}

var errRelay = errors.New("relay driver gone")

func (f *failingPin) Out(l gpio.Level) error {
	if f.broken.Load() {
		return errRelay
	}
	return f.RecordingPin.Out(l)
}

func TestPinWriteFailures(t *testing.T) {
	g := &failingPin{RecordingPin: testkit.NewRecordingPin("G", 1)}
	red := testkit.NewRecordingPin("R", 3)
	l := New(Pins{Green: g, Red: red}, Options{DecisionHold: time.Minute}, nil)
	r := &rig{l: l}
	r.start(t)
	g.broken.Store(true)
	l.ShowDecision(dock.Accept)
	waitState(t, l, "accept", func(s State) bool { return s.Decision == dock.Accept })
	if g.Level() != gpio.Low {
		t.Fatal("broken pin changed")
	}
	// Once the pin works again the light catches up at the next change.
	g.broken.Store(false)
	l.ShowDecision(dock.Reject)
	red.WaitLevel(t, gpio.High, wait)
	l.ShowDecision(dock.Accept)
	g.WaitLevel(t, gpio.High, wait)

	g.broken.Store(true)
	err := r.stop()
	if !errors.Is(err, errRelay) || !strings.Contains(err.Error(), "green") {
		t.Fatalf("Run = %v, want the green write error", err)
	}
	if red.Level() != gpio.Low {
		t.Error("red not switched off although its pin works")
	}
}
