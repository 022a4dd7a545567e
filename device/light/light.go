package light

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
)

// Output indexes, in the order used throughout the package.
const (
	outGreen = iota
	outAmber
	outRed
	outBuzzer
	numOutputs
)

var outputNames = [numOutputs]string{"green", "amber", "red", "buzzer"}

// Defaults applied by New for zero Options fields.
const (
	DefaultDecisionHold = 2 * time.Second
	DefaultTestStep     = 500 * time.Millisecond
)

// ErrAlreadyRunning is returned by Run when Run was called before on the same
// StackLight: one StackLight has exactly one goroutine owning its pins.
var ErrAlreadyRunning = errors.New("light: Run already called on this stack light")

// ErrStopped is returned by Test when Run has returned (or returns during the
// test), so the lamp test cannot run or finish.
var ErrStopped = errors.New("light: stack light is not running")

// Pins are the outputs of a stack light. Green and Red should be present;
// Amber and Buzzer may be nil, in which case their signals are dropped.
// ActiveLow says the pins belong to a relay board that energises on a low
// level; it is combined with Options.ActiveLow (either one inverts).
type Pins struct {
	Green, Amber, Red, Buzzer gpio.PinOut
	ActiveLow                 bool
}

// Options tune a StackLight. The zero value gives the documented defaults.
type Options struct {
	// ActiveLow inverts every level written: on is Low, off (the safe,
	// idle level) is High. For relay boards that switch on a low input.
	ActiveLow bool
	// DecisionHold is how long a decision pattern shows before the light
	// returns to the state underneath. Default DefaultDecisionHold (2s).
	DecisionHold time.Duration
	// TestStep is how long each output is on during Test. Default
	// DefaultTestStep (500ms).
	TestStep time.Duration
	// Patterns overrides built-in patterns (see DefaultPatterns) per cause;
	// causes not present keep their default. CauseTest is ignored.
	Patterns map[Cause]Pattern
}

// State is a snapshot of the light for a status page.
type State struct {
	// Green, Amber, Red and Buzzer are true when that output is energised
	// (logical level, before any active-low inversion).
	Green, Amber, Red, Buzzer bool
	// Showing is the cause whose pattern is on the outputs now.
	Showing Cause
	// Since is when Showing started.
	Since time.Time
	// Why explains the choice in words, e.g. "reject decision (held until
	// 12:00:02.000); underneath: reader_down".
	Why string
	// Decision is the decision being shown, "" when none.
	Decision dock.Verdict
	// DecisionUntil is when the shown decision gives way; zero when none.
	DecisionUntil time.Time
	// Conditions are the active conditions, highest priority first.
	Conditions []dock.Condition
	// Silenced is true when Silence muted the buzzer of the shown pattern.
	Silenced bool
	// Running is true while Run owns the pins.
	Running bool
}

// StackLight drives a dock stack light (green/amber/red lamps and a buzzer)
// from decisions and standing conditions. Only the goroutine inside Run
// touches the pins; every other method is safe for concurrent use and,
// except Test, never blocks.
type StackLight struct {
	pins      [numOutputs]gpio.PinOut
	activeLow bool
	hold      time.Duration
	testStep  time.Duration
	patterns  map[Cause]Pattern
	log       *slog.Logger

	wake    chan struct{} // capacity 1: inputs changed
	testReq chan *testRequest
	done    chan struct{} // closed when Run returns
	started atomic.Bool

	mu         sync.Mutex
	decSeq     uint64
	decVerdict dock.Verdict
	decAt      time.Time
	conds      map[dock.Condition]bool
	silenceSeq uint64
	state      State
}

type testRequest struct {
	ctxDone <-chan struct{}
	done    chan error // capacity 1
}

// New returns a StackLight for pins p. Nothing is written to the pins until
// Run starts. A nil log discards log output.
func New(p Pins, o Options, log *slog.Logger) *StackLight {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.DecisionHold <= 0 {
		o.DecisionHold = DefaultDecisionHold
	}
	if o.TestStep <= 0 {
		o.TestStep = DefaultTestStep
	}
	pats := DefaultPatterns()
	for c, pat := range o.Patterns {
		if c != CauseTest {
			pats[c] = pat
		}
	}
	l := &StackLight{
		pins:      [numOutputs]gpio.PinOut{p.Green, p.Amber, p.Red, p.Buzzer},
		activeLow: p.ActiveLow || o.ActiveLow,
		hold:      o.DecisionHold,
		testStep:  o.TestStep,
		patterns:  pats,
		log:       log,
		wake:      make(chan struct{}, 1),
		testReq:   make(chan *testRequest),
		done:      make(chan struct{}),
		conds:     make(map[dock.Condition]bool),
	}
	l.state = State{Showing: CauseIdle, Why: "not running"}
	return l
}

func (l *StackLight) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// ShowDecision shows the pattern for v for DecisionHold, starting now. It
// never blocks: a decision arriving while another shows replaces it (newest
// wins) and restarts the hold. An unknown verdict shows the reject pattern.
func (l *StackLight) ShowDecision(v dock.Verdict) {
	l.mu.Lock()
	l.decSeq++
	l.decVerdict = v
	l.decAt = time.Now()
	l.mu.Unlock()
	l.poke()
}

// SetCondition raises (on) or clears (!on) a standing condition. It never
// blocks. Unknown conditions are logged and ignored.
func (l *StackLight) SetCondition(c dock.Condition, on bool) {
	known := false
	for _, k := range conditionOrder {
		if k == c {
			known = true
			break
		}
	}
	if !known {
		l.log.Warn("light: ignoring unknown condition", "condition", c, "on", on)
		return
	}
	l.mu.Lock()
	changed := l.conds[c] != on
	if on {
		l.conds[c] = true
	} else {
		delete(l.conds, c)
	}
	l.mu.Unlock()
	if changed {
		l.log.Info("light condition changed", "condition", c, "on", on)
		l.poke()
	}
}

// Silence acknowledges the pattern shown now: its buzzer stops. For a
// decision, until the decision ends; for a condition, until that condition
// clears (raised again, it sounds again). It never blocks.
func (l *StackLight) Silence() {
	l.mu.Lock()
	l.silenceSeq++
	l.mu.Unlock()
	l.poke()
}

// State returns a snapshot of the outputs and what they show. Safe for
// concurrent use; the returned value is not shared.
func (l *StackLight) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state
	s.Conditions = append([]dock.Condition(nil), l.state.Conditions...)
	return s
}

// Test runs the technician lamp test: green, amber, red and the buzzer each
// on alone for TestStep, in that order, then the light returns to normal.
// Decisions and conditions arriving meanwhile are kept and show afterwards
// (a decision only if its hold has not run out). Test blocks until the test
// is done; it returns ctx.Err() if ctx ends first (the test is then cut
// short), and ErrStopped if Run is not running or returns. A Test called
// while another runs waits for it.
func (l *StackLight) Test(ctx context.Context) error {
	req := &testRequest{ctxDone: ctx.Done(), done: make(chan error, 1)}
	select {
	case l.testReq <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return ErrStopped
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run owns the pins: it writes the idle (off) level to every output, then
// shows decisions and conditions until ctx ends. On return every output is
// at its safe, off level. Run returns nil when ctx ends, or the errors from
// writing the safe level; ErrAlreadyRunning if called a second time. Pin
// write errors while running are logged, not returned: a relay glitch must
// not stop the station.
func (l *StackLight) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer close(l.done)
	r := &runner{l: l, silencedConds: make(map[dock.Condition]bool)}
	l.log.Info("stack light running", "active_low", l.activeLow, "decision_hold", l.hold)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		next := r.step(time.Now())
		var timerC <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			timerC = timer.C
		}
		var testReq chan *testRequest
		var testCancel <-chan struct{}
		if r.test == nil {
			testReq = l.testReq
		} else {
			testCancel = r.test.req.ctxDone
		}
		select {
		case <-ctx.Done():
			return r.halt()
		case <-l.wake:
		case <-timerC:
		case req := <-testReq:
			now := time.Now()
			r.test = &activeTest{req: req, began: now, stepStart: now}
			l.log.Info("stack light test started")
		case <-testCancel:
			r.test.req.done <- context.Canceled
			r.test = nil
			l.log.Info("stack light test cancelled")
		}
	}
}

// activeTest is a lamp test in progress: output step is on since stepStart.
type activeTest struct {
	req       *testRequest
	began     time.Time
	step      int
	stepStart time.Time
}

// shownDecision is a decision being shown.
type shownDecision struct {
	seq      uint64
	verdict  dock.Verdict
	at       time.Time
	until    time.Time
	silenced bool
}

// shownKey identifies one showing of a pattern, so a new decision restarts
// its pattern even if the verdict repeats.
type shownKey struct {
	cause Cause
	seq   uint64
}

// runner is the state private to the Run goroutine.
type runner struct {
	l             *StackLight
	dec           *shownDecision
	lastDecSeq    uint64
	lastSilence   uint64
	silencedConds map[dock.Condition]bool
	test          *activeTest
	shown         shownKey
	shownStart    time.Time
	tracks        [numOutputs]tracker // the shown pattern's outputs (not for the test)
	written       [numOutputs]bool    // logical level last written successfully
	writtenValid  [numOutputs]bool
	failing       [numOutputs]bool
}

// step brings the outputs up to date for time now and returns when the next
// change is due (zero: nothing scheduled).
func (r *runner) step(now time.Time) time.Time {
	l := r.l
	l.mu.Lock()
	decSeq, decVerdict, decAt := l.decSeq, l.decVerdict, l.decAt
	silenceSeq := l.silenceSeq
	var conds []dock.Condition
	for _, c := range conditionOrder {
		if l.conds[c] {
			conds = append(conds, c)
		}
	}
	l.mu.Unlock()

	if decSeq != r.lastDecSeq {
		r.lastDecSeq = decSeq
		r.dec = &shownDecision{seq: decSeq, verdict: decVerdict, at: decAt, until: decAt.Add(l.hold)}
	}
	if r.dec != nil && !now.Before(r.dec.until) {
		r.dec = nil
	}
	for c := range r.silencedConds {
		if !containsCond(conds, c) {
			delete(r.silencedConds, c)
		}
	}

	var next time.Time
	schedule := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}

	// The lamp test moves one step per call, each step lasting at least
	// TestStep, so every output is seen even if Run was stalled.
	if r.test != nil && !now.Before(r.test.stepStart.Add(l.testStep)) {
		next := r.test.stepStart.Add(l.testStep)
		if now.Sub(next) > maxLag {
			next = now
		}
		r.test.step++
		r.test.stepStart = next
		if r.test.step >= numOutputs {
			r.test.req.done <- nil
			r.test = nil
			l.log.Info("stack light test done")
		}
	}

	// Decide what shows: test > decision > highest condition > idle.
	var key shownKey
	var start time.Time
	var pat Pattern
	var on [numOutputs]bool
	silenced := false
	switch {
	case r.test != nil:
		key = shownKey{cause: CauseTest}
		start = r.test.began
		on[r.test.step] = true
		schedule(r.test.stepStart.Add(l.testStep))
	case r.dec != nil:
		key = shownKey{cause: Cause(r.dec.verdict), seq: r.dec.seq}
		start = r.dec.at
		p, ok := l.patterns[key.cause]
		if !ok {
			p = l.patterns[CauseReject]
		}
		pat = p
		schedule(r.dec.until)
	case len(conds) > 0:
		key = shownKey{cause: Cause(conds[0])}
		pat = l.patterns[key.cause]
	default:
		key = shownKey{cause: CauseIdle}
		pat = l.patterns[CauseIdle]
	}
	if key != r.shown {
		if r.test == nil && r.dec == nil {
			// A base pattern (re)starts now, so blinks begin with their on-phase.
			r.shownStart = now
		}
		if start.IsZero() {
			start = r.shownStart
		}
		if key.cause != CauseTest {
			// A decision picked up late starts its pattern from the first
			// phase now rather than skipping the phases already due.
			trackStart := start
			if now.Sub(trackStart) > maxLag {
				trackStart = now
			}
			for i, sig := range pat.signals() {
				r.tracks[i] = tracker{sig: sig, start: trackStart}
			}
		}
		r.shown = key
		l.log.Debug("stack light showing", "cause", key.cause)
	}
	if start.IsZero() {
		start = r.shownStart
	}
	if key.cause != CauseTest {
		for i := range r.tracks {
			var end time.Time
			on[i], end = r.tracks[i].advance(now)
			if !end.IsZero() {
				schedule(end)
			}
		}
	}

	// Silence applies to whatever shows when it is requested.
	if silenceSeq != r.lastSilence {
		r.lastSilence = silenceSeq
		switch {
		case key.cause == CauseTest:
		case r.dec != nil:
			r.dec.silenced = true
		case len(conds) > 0:
			r.silencedConds[conds[0]] = true
		}
		l.log.Info("stack light buzzer silenced", "cause", key.cause)
	}
	switch {
	case key.cause == CauseTest:
	case r.dec != nil:
		silenced = r.dec.silenced
	case len(conds) > 0:
		silenced = r.silencedConds[conds[0]]
	}
	if silenced {
		on[outBuzzer] = false
	}

	r.write(on, false)

	st := State{
		Green: on[outGreen], Amber: on[outAmber], Red: on[outRed], Buzzer: on[outBuzzer],
		Showing:    key.cause,
		Since:      start,
		Conditions: conds,
		Silenced:   silenced,
		Running:    true,
	}
	if r.dec != nil {
		st.Decision = r.dec.verdict
		st.DecisionUntil = r.dec.until
	}
	st.Why = why(key.cause, r.dec, conds)
	l.mu.Lock()
	l.state = st
	l.mu.Unlock()
	return next
}

// write sets the outputs to the logical levels on, skipping outputs already
// at that level unless force. Errors are logged once per failure streak.
func (r *runner) write(on [numOutputs]bool, force bool) error {
	var errs []error
	for i, p := range r.l.pins {
		if p == nil {
			continue
		}
		if !force && r.writtenValid[i] && r.written[i] == on[i] {
			continue
		}
		lvl := gpio.Level(on[i] != r.l.activeLow)
		if err := p.Out(lvl); err != nil {
			err = fmt.Errorf("light: setting %s output %s to %s: %w", outputNames[i], p, lvl, err)
			errs = append(errs, err)
			r.writtenValid[i] = false
			if !r.failing[i] {
				r.failing[i] = true
				r.l.log.Warn("stack light output write failed", "output", outputNames[i], "pin", p.String(), "err", err)
			}
			continue
		}
		if r.failing[i] {
			r.failing[i] = false
			r.l.log.Info("stack light output recovered", "output", outputNames[i], "pin", p.String())
		}
		r.written[i], r.writtenValid[i] = on[i], true
	}
	return errors.Join(errs...)
}

// halt writes the safe (off) level to every output and ends a running test.
func (r *runner) halt() error {
	if r.test != nil {
		r.test.req.done <- ErrStopped
		r.test = nil
	}
	err := r.write([numOutputs]bool{}, true)
	r.l.mu.Lock()
	r.l.state = State{Showing: CauseIdle, Since: time.Now(), Why: "stopped: all outputs off"}
	r.l.mu.Unlock()
	if err != nil {
		r.l.log.Error("stack light stopped with outputs possibly on", "err", err)
		return err
	}
	r.l.log.Info("stack light stopped; all outputs off")
	return nil
}

func containsCond(cs []dock.Condition, c dock.Condition) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// why explains what shows, for State.Why.
func why(c Cause, dec *shownDecision, conds []dock.Condition) string {
	names := make([]string, len(conds))
	for i, x := range conds {
		names[i] = string(x)
	}
	switch {
	case c == CauseTest:
		return "lamp test"
	case dec != nil:
		s := fmt.Sprintf("%s decision (held until %s)", dec.verdict, dec.until.Format("15:04:05.000"))
		if len(conds) > 0 {
			s += "; underneath: " + strings.Join(names, ", ")
		}
		return s
	case len(conds) > 0:
		kind := "background"
		if IsFault(conds[0]) {
			kind = "fault"
		}
		s := fmt.Sprintf("%s (%s)", conds[0], kind)
		if len(conds) > 1 {
			s += "; also active: " + strings.Join(names[1:], ", ")
		}
		return s
	default:
		return "idle: no decision or condition"
	}
}
