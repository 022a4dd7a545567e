package testkit

// GPIO test pins.
//
// periph's own fake, periph.io/x/conn/v3/gpio/gpiotest.Pin, imports
// github.com/jonboulle/clockwork, which has no go.sum entry in this module,
// so it cannot be compiled here without changing go.mod/go.sum. RecordingPin
// therefore implements gpio.PinIO itself, with the same model as gpiotest.Pin
// (one level shared by input and output, edges delivered to WaitForEdge
// through a queue) plus an edge recorder and helpers for tests.

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// Edge is one recorded output level change of a RecordingPin.
type Edge struct {
	Level gpio.Level // the level the pin changed to
	At    time.Time  // when Out() made the change (wall clock, monotonic reading kept)
}

// RecordingPin is an in-memory GPIO pin implementing gpio.PinIO for tests.
//
// As an output it records every level change made by Out() with its time,
// in call order. As an input, the test drives its level with Set, which also
// queues an edge for WaitForEdge when edge detection is enabled by In().
// All methods are safe for concurrent use.
type RecordingPin struct {
	name string
	num  int

	mu       sync.Mutex
	level    gpio.Level
	driven   bool // Set was called: the line is driven externally, pulls no longer apply
	pull     gpio.Pull
	edgeMode gpio.Edge
	pending  int           // queued input edges not yet taken by WaitForEdge
	edges    []Edge        // recorded output changes
	outCalls int           // number of Out calls, changing or not
	changed  chan struct{} // closed and replaced whenever level, edges or armed change
	wake     chan struct{} // capacity 1: an input edge was queued
	halt     chan struct{} // closed and replaced by Halt to interrupt WaitForEdge
	armed    bool          // In() enabled edge detection
	waiting  int           // WaitForEdge calls blocked now
	timeouts int           // WaitForEdge timeouts since an edge was last taken (or In)
	duty     gpio.Duty
	freq     physic.Frequency
}

// NewRecordingPin returns an unregistered pin named name with GPIO number
// num, at level Low, with no pull and edge detection off.
func NewRecordingPin(name string, num int) *RecordingPin {
	return &RecordingPin{
		name:    name,
		num:     num,
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		halt:    make(chan struct{}),
	}
}

// notifyLocked wakes every waiter of WaitLevel/WaitEdges/WaitArmed. p.mu must be held.
func (p *RecordingPin) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// String implements conn.Resource.
func (p *RecordingPin) String() string { return fmt.Sprintf("%s(%d)", p.name, p.num) }

// Halt implements conn.Resource. Like periph's gpioioctl lines, it interrupts
// a WaitForEdge in progress, which then returns false.
func (p *RecordingPin) Halt() error {
	p.mu.Lock()
	close(p.halt)
	p.halt = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// Name implements pin.Pin.
func (p *RecordingPin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *RecordingPin) Number() int { return p.num }

// Function implements pin.Pin.
func (p *RecordingPin) Function() string { return string(p.Func()) }

// Func implements pin.PinFunc: gpio.IN when edge detection or a pull is
// configured by In, else gpio.OUT.
func (p *RecordingPin) Func() pin.Func {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed || p.pull == gpio.PullUp || p.pull == gpio.PullDown {
		return gpio.IN
	}
	return gpio.OUT
}

// SupportedFuncs implements pin.PinFunc.
func (p *RecordingPin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN, gpio.OUT} }

// SetFunc implements pin.PinFunc. It is not supported and always fails.
func (p *RecordingPin) SetFunc(f pin.Func) error {
	return fmt.Errorf("testkit: pin %s: SetFunc(%s) not supported; use In or Out", p.name, f)
}

// In implements gpio.PinIn. A pull-up or pull-down sets the level unless the
// test has driven the line with Set. Enabling edge detection discards edges
// queued before the call, as real drivers do, and marks the pin armed
// (see WaitArmed).
func (p *RecordingPin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pull = pull
	if !p.driven {
		switch pull {
		case gpio.PullUp:
			p.level = gpio.High
		case gpio.PullDown:
			p.level = gpio.Low
		}
	}
	p.edgeMode = edge
	p.pending = 0
	select {
	case <-p.wake:
	default:
	}
	p.armed = edge != gpio.NoEdge
	p.timeouts = 1 // nothing taken yet: a watcher has nothing to settle
	p.notifyLocked()
	return nil
}

// Read implements gpio.PinIn: the current level.
func (p *RecordingPin) Read() gpio.Level { return p.Level() }

// WaitForEdge implements gpio.PinIn. It takes one queued edge and returns
// true, or returns false after timeout or when Halt is called. A negative
// timeout waits without limit; zero only checks the queue.
func (p *RecordingPin) WaitForEdge(timeout time.Duration) bool {
	var timer <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	p.mu.Lock()
	halt := p.halt
	p.mu.Unlock()
	for {
		p.mu.Lock()
		if p.pending > 0 {
			p.pending--
			p.timeouts = 0
			p.notifyLocked()
			p.mu.Unlock()
			return true
		}
		if timeout == 0 {
			p.mu.Unlock()
			return false
		}
		p.waiting++
		p.notifyLocked()
		p.mu.Unlock()
		timedOut := false
		select {
		case <-p.wake:
		case <-timer:
			timedOut = true
		case <-halt:
		}
		p.mu.Lock()
		p.waiting--
		if timedOut {
			p.timeouts++
			p.notifyLocked()
		}
		p.mu.Unlock()
		if timedOut {
			return false
		}
		select {
		case <-halt:
			return false
		default:
		}
	}
}

// Pull implements gpio.PinIn: the pull last set by In.
func (p *RecordingPin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn. It reports gpio.Float.
func (p *RecordingPin) DefaultPull() gpio.Pull { return gpio.Float }

// Out implements gpio.PinOut. A call that changes the level is recorded as
// an Edge; a call with the current level is counted (see OutCalls) but not
// recorded.
func (p *RecordingPin) Out(l gpio.Level) error {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outCalls++
	if l == p.level {
		return nil
	}
	p.level = l
	p.edges = append(p.edges, Edge{Level: l, At: now})
	p.notifyLocked()
	return nil
}

// PWM implements gpio.PinOut by storing duty and frequency; it records no edge.
func (p *RecordingPin) PWM(duty gpio.Duty, f physic.Frequency) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.duty, p.freq = duty, f
	return nil
}

// Level returns the pin's current level, as last set by Out, Set or a pull.
func (p *RecordingPin) Level() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// Edges returns a copy of the output level changes recorded so far, oldest first.
func (p *RecordingPin) Edges() []Edge {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Edge(nil), p.edges...)
}

// EdgeCount returns how many output level changes are recorded, without
// copying them (for polling in benchmarks, where Edges' copy would be the
// garbage that is measured).
func (p *RecordingPin) EdgeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.edges)
}

// WaitEdgeTo waits, without polling, for an output edge to level l after
// the first n recorded ones and returns the first such edge (its At is the
// time Out was called, however late this wakes); it fails the test if none
// comes within timeout.
func (p *RecordingPin) WaitEdgeTo(t testing.TB, n int, l gpio.Level, timeout time.Duration) Edge {
	t.Helper()
	var e Edge
	found := func() bool {
		for i := n; i < len(p.edges); i++ {
			if p.edges[i].Level == l {
				e = p.edges[i]
				return true
			}
		}
		return false
	}
	if !p.waitFor(timeout, found) {
		t.Fatalf("pin %s: no edge to %s after the first %d within %v: %v", p.name, l, n, timeout, p.Edges())
	}
	return e
}

// OutCalls returns how many times Out was called, including calls that did
// not change the level.
func (p *RecordingPin) OutCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outCalls
}

// Set drives the pin's level from outside, as a button or switch would.
// When the level changes and In enabled edge detection for that direction,
// an edge is queued for WaitForEdge. Set never blocks.
func (p *RecordingPin) Set(l gpio.Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.driven = true
	if l == p.level {
		return
	}
	p.level = l
	p.notifyLocked()
	if p.edgeMode == gpio.BothEdges ||
		(p.edgeMode == gpio.RisingEdge && l == gpio.High) ||
		(p.edgeMode == gpio.FallingEdge && l == gpio.Low) {
		p.pending++
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Bounce drives the levels in order with gap between them, simulating a
// bouncing contact; the final level is the last one given.
func (p *RecordingPin) Bounce(gap time.Duration, levels ...gpio.Level) {
	for i, l := range levels {
		if i > 0 && gap > 0 {
			time.Sleep(gap)
		}
		p.Set(l)
	}
}

// waitFor blocks until cond (called with p.mu held) is true or timeout
// passes, and reports whether cond became true.
func (p *RecordingPin) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok := cond()
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			p.mu.Lock()
			defer p.mu.Unlock()
			return cond()
		}
	}
}

// WaitLevel waits until the pin is at level l and fails the test if that
// does not happen within timeout.
func (p *RecordingPin) WaitLevel(t testing.TB, l gpio.Level, timeout time.Duration) {
	t.Helper()
	if !p.waitFor(timeout, func() bool { return p.level == l }) {
		t.Fatalf("pin %s: still %s after %v, want %s; edges %v", p.name, p.Level(), timeout, l, p.Edges())
	}
}

// WaitEdges waits until at least n output edges are recorded and returns
// them all; it fails the test if fewer than n arrive within timeout.
func (p *RecordingPin) WaitEdges(t testing.TB, n int, timeout time.Duration) []Edge {
	t.Helper()
	if !p.waitFor(timeout, func() bool { return len(p.edges) >= n }) {
		t.Fatalf("pin %s: %d edges after %v, want at least %d: %v", p.name, len(p.Edges()), timeout, n, p.Edges())
	}
	return p.Edges()
}

// WaitArmed waits until In has enabled edge detection and a watcher is
// blocked in WaitForEdge, so that edges from Set are neither discarded by a
// later In nor taken for the level the watcher reads at its start (a
// watcher reads it after In, before it first waits for an edge; a Set in
// between would be no change to it). It fails the test after timeout.
func (p *RecordingPin) WaitArmed(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !p.waitFor(timeout, func() bool { return p.armed && p.waiting > 0 }) {
		t.Fatalf("pin %s: In() with edge detection and a WaitForEdge not called within %v (armed %v)", p.name, timeout, p.Armed())
	}
}

// Armed reports whether In enabled edge detection.
func (p *RecordingPin) Armed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.armed
}

// WaitIdle waits until a watcher of this input is idle: every queued edge
// has been taken by WaitForEdge, a WaitForEdge since the last take has timed
// out (a debounce window ran out, so the watcher has read the settled
// level), and a WaitForEdge is blocked waiting for the next edge. Tests call
// it between simulated actions so that a slow watcher never merges them. It
// fails the test after timeout.
func (p *RecordingPin) WaitIdle(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !p.waitFor(timeout, func() bool { return p.pending == 0 && p.timeouts > 0 && p.waiting > 0 }) {
		t.Fatalf("pin %s: watcher not idle within %v", p.name, timeout)
	}
}

// RegisterPins creates one RecordingPin per name, registers each in periph's
// gpioreg so that gpioreg.ByName finds it, and unregisters them at t.Cleanup.
// The pins get numbers from 1000 up so they do not collide with real GPIO
// numbers. It fails the test if a name is already registered.
func RegisterPins(t testing.TB, names ...string) map[string]*RecordingPin {
	t.Helper()
	pins := make(map[string]*RecordingPin, len(names))
	for i, name := range names {
		p := NewRecordingPin(name, 1000+i)
		if err := gpioreg.Register(p); err != nil {
			t.Fatalf("registering test GPIO pin %q: %v", name, err)
		}
		t.Cleanup(func() {
			if err := gpioreg.Unregister(name); err != nil {
				t.Errorf("unregistering test GPIO pin %q: %v", name, err)
			}
		})
		pins[name] = p
	}
	return pins
}

var _ gpio.PinIO = (*RecordingPin)(nil)
var _ pin.PinFunc = (*RecordingPin)(nil)
