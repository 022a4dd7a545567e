package light

import (
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// SignalKind is the shape of one output's waveform.
type SignalKind int

// The waveforms an output can follow.
const (
	SignalOff    SignalKind = iota // always off (the zero Signal)
	SignalSteady                   // always on
	SignalBlink                    // on for On, off for Off, repeating
	SignalPulses                   // Count times on for On, off for Off, then off
)

// Signal is the waveform of one lamp or the buzzer within a pattern. Time
// runs from the moment the pattern starts showing, so a blink or pulse
// always begins with its on-phase. The zero Signal is off.
type Signal struct {
	Kind  SignalKind
	On    time.Duration // on-time of each cycle (Blink, Pulses); must be > 0
	Off   time.Duration // off-time of each cycle (Blink, Pulses); must be > 0
	Count int           // number of pulses (Pulses)
}

// Steady returns a signal that is on for as long as the pattern shows.
func Steady() Signal { return Signal{Kind: SignalSteady} }

// Blink returns a signal that is on for on, then off for off, repeating.
// The rate is 1/(on+off): Blink(500ms, 500ms) blinks at 1 Hz.
func Blink(on, off time.Duration) Signal { return Signal{Kind: SignalBlink, On: on, Off: off} }

// Pulses returns a signal that goes on n times for on, with off between
// pulses, and then stays off.
func Pulses(n int, on, off time.Duration) Signal {
	return Signal{Kind: SignalPulses, On: on, Off: off, Count: n}
}

// phase returns whether s is on during its phase i (phases count from 0
// when the pattern starts) and how long that phase lasts (negative: for
// ever). Blink alternates on/off phases without end; Pulses has 2·Count-1
// phases and is then off for ever.
func (s Signal) phase(i int) (on bool, dur time.Duration) {
	switch s.Kind {
	case SignalSteady:
		return true, -1
	case SignalBlink:
		switch {
		case s.On <= 0:
			return false, -1
		case s.Off <= 0:
			return true, -1
		case i%2 == 0:
			return true, s.On
		default:
			return false, s.Off
		}
	case SignalPulses:
		switch {
		case s.On <= 0 || s.Count <= 0:
			return false, -1
		case s.Off <= 0:
			if i == 0 {
				return true, time.Duration(s.Count) * s.On
			}
			return false, -1
		case i >= 2*s.Count-1:
			return false, -1
		case i%2 == 0:
			return true, s.On
		default:
			return false, s.Off
		}
	default:
		return false, -1
	}
}

// maxLag is how late a phase may start and still keep the pattern's
// schedule; a later start (the goroutine was stalled) shifts the rest of
// the pattern instead, so no phase is skipped or cut short by more than this.
const maxLag = 20 * time.Millisecond

// tracker follows one Signal through its phases in real time. Each step
// advances at most one phase, so a stall never swallows a beep or a flash.
type tracker struct {
	sig   Signal
	idx   int
	start time.Time // when phase idx began
}

// advance moves t to the phase current at now and returns its on-state and
// the time it ends (zero: never).
func (t *tracker) advance(now time.Time) (on bool, end time.Time) {
	on, dur := t.sig.phase(t.idx)
	if dur >= 0 && !now.Before(t.start.Add(dur)) {
		next := t.start.Add(dur)
		t.idx++
		on, dur = t.sig.phase(t.idx)
		if now.Sub(next) > maxLag {
			next = now
		}
		t.start = next
	}
	if dur < 0 {
		return on, time.Time{}
	}
	return on, t.start.Add(dur)
}

// Pattern is what the four outputs do while one cause is shown.
type Pattern struct {
	Green, Amber, Red, Buzzer Signal
}

// signals returns the pattern's signals in output order.
func (p Pattern) signals() [numOutputs]Signal {
	return [numOutputs]Signal{p.Green, p.Amber, p.Red, p.Buzzer}
}

// Cause names what the light is showing: a decision, a condition, the lamp
// test, or nothing.
type Cause string

// The causes the light can show. Decisions and conditions use the string
// values of dock.Verdict and dock.Condition.
const (
	CauseIdle          Cause = "idle"
	CauseTest          Cause = "test"
	CauseAccept        Cause = Cause(dock.Accept)
	CauseWarn          Cause = Cause(dock.Warn)
	CauseReject        Cause = Cause(dock.Reject)
	CauseReaderDown    Cause = Cause(dock.ConditionReaderDown)
	CauseBrokerOffline Cause = Cause(dock.ConditionBrokerOffline)
	CauseBufferHigh    Cause = Cause(dock.ConditionBufferHigh)
	CauseBufferFull    Cause = Cause(dock.ConditionBufferFull)
	CauseStorageFault  Cause = Cause(dock.ConditionStorageFault)
	CauseRejectHold    Cause = Cause(dock.ConditionRejectHold)
)

// conditionOrder lists the conditions by priority, highest first: faults
// (storage fault, buffer full, reader down), then background states
// (buffer high, broker offline).
var conditionOrder = []dock.Condition{
	dock.ConditionStorageFault,
	dock.ConditionRejectHold,
	dock.ConditionBufferFull,
	dock.ConditionReaderDown,
	dock.ConditionBufferHigh,
	dock.ConditionBrokerOffline,
}

// IsFault reports whether c is a fault (reader down, buffer full, storage
// fault) rather than a background state (broker offline, buffer high).
func IsFault(c dock.Condition) bool {
	switch c {
	case dock.ConditionStorageFault, dock.ConditionRejectHold, dock.ConditionBufferFull, dock.ConditionReaderDown:
		return true
	}
	return false
}

// Beep timing used by the default patterns.
const (
	beepOn  = 150 * time.Millisecond
	beepOff = 150 * time.Millisecond
)

// DefaultPatterns returns a fresh copy of the built-in patterns:
//
//	idle            all off
//	accept          green steady
//	warn            amber steady, 1 short beep
//	reject          red steady, 3 short beeps
//	reader_down     amber blink 1 Hz (500 ms on / 500 ms off)
//	broker_offline  amber 0.5 Hz with short on-time (200 ms on / 1.8 s off)
//	buffer_high     amber slow even blink (1 s on / 1 s off)
//	buffer_full     amber + red steady, buzzer chirp 250 ms every 5 s
//	storage_fault   red fast blink 4 Hz (125 ms on / 125 ms off)
//	reject_hold     red slow blink (1 s on / 1 s off) until acknowledged
//	test            not a fixed pattern: each output in turn (see StackLight.Test)
func DefaultPatterns() map[Cause]Pattern {
	return map[Cause]Pattern{
		CauseIdle:          {},
		CauseAccept:        {Green: Steady()},
		CauseWarn:          {Amber: Steady(), Buzzer: Pulses(1, beepOn, beepOff)},
		CauseReject:        {Red: Steady(), Buzzer: Pulses(3, beepOn, beepOff)},
		CauseReaderDown:    {Amber: Blink(500*time.Millisecond, 500*time.Millisecond)},
		CauseBrokerOffline: {Amber: Blink(200*time.Millisecond, 1800*time.Millisecond)},
		CauseBufferHigh:    {Amber: Blink(time.Second, time.Second)},
		CauseBufferFull:    {Amber: Steady(), Red: Steady(), Buzzer: Blink(250*time.Millisecond, 4750*time.Millisecond)},
		CauseStorageFault:  {Red: Blink(125*time.Millisecond, 125*time.Millisecond)},
		CauseRejectHold:    {Red: Blink(time.Second, time.Second)},
	}
}
