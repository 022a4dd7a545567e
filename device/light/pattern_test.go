package light

import (
	"testing"
	"time"
)

func TestSignalAt(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		s      Signal
		el     time.Duration
		on     bool
		change time.Duration // -1: never
	}{
		{"off", Signal{}, 5 * ms, false, -1},
		{"steady", Steady(), time.Hour, true, -1},
		{"blink start", Blink(100*ms, 300*ms), 0, true, 100 * ms},
		{"blink in on", Blink(100*ms, 300*ms), 40 * ms, true, 60 * ms},
		{"blink in off", Blink(100*ms, 300*ms), 100 * ms, false, 300 * ms},
		{"blink later cycle on", Blink(100*ms, 300*ms), 1250 * ms, true, 50 * ms},
		{"blink later cycle off", Blink(100*ms, 300*ms), 1350 * ms, false, 250 * ms},
		{"blink negative elapsed", Blink(100*ms, 300*ms), -5 * ms, true, 100 * ms},
		{"pulse 1 on", Pulses(3, 150*ms, 150*ms), 10 * ms, true, 140 * ms},
		{"pulse 1 gap", Pulses(3, 150*ms, 150*ms), 200 * ms, false, 100 * ms},
		{"pulse 3 on", Pulses(3, 150*ms, 150*ms), 610 * ms, true, 140 * ms},
		{"after last pulse", Pulses(3, 150*ms, 150*ms), 750 * ms, false, -1},
		{"long after", Pulses(3, 150*ms, 150*ms), time.Hour, false, -1},
		{"zero pulses", Pulses(0, 150*ms, 150*ms), 0, false, -1},
		{"blink without on-time", Blink(0, 100*ms), 0, false, -1},
		{"blink without off-time", Blink(100*ms, 0), 5 * time.Second, true, -1},
		{"pulses without off-time", Pulses(2, 100*ms, 0), 150 * ms, true, 50 * ms},
		{"pulses without off-time done", Pulses(2, 100*ms, 0), 200 * ms, false, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			on, next := tc.s.at(tc.el)
			if on != tc.on || next != tc.change {
				t.Errorf("at(%v) = %v, %v; want %v, %v", tc.el, on, next, tc.on, tc.change)
			}
		})
	}
}

func TestPatternLevelsEarliestChange(t *testing.T) {
	p := DefaultPatterns()[CauseReject]
	on, next := p.levels(0)
	if on != [numOutputs]bool{false, false, true, true} || next != beepOn {
		t.Errorf("reject at 0: %v next %v", on, next)
	}
	on, next = p.levels(time.Second)
	if on != [numOutputs]bool{false, false, true, false} || next != -1 {
		t.Errorf("reject after beeps: %v next %v", on, next)
	}
}

func TestDefaultPatternsCoverEveryCause(t *testing.T) {
	pats := DefaultPatterns()
	for _, c := range conditionOrder {
		if _, ok := pats[Cause(c)]; !ok {
			t.Errorf("no default pattern for condition %s", c)
		}
	}
	for _, c := range []Cause{CauseIdle, CauseAccept, CauseWarn, CauseReject} {
		if _, ok := pats[c]; !ok {
			t.Errorf("no default pattern for %s", c)
		}
	}
	if pats[CauseIdle] != (Pattern{}) {
		t.Errorf("idle is not all off: %+v", pats[CauseIdle])
	}
	// Every fault lights something; distinct causes look different.
	seen := map[Pattern]Cause{}
	for c, p := range pats {
		if other, dup := seen[p]; dup {
			t.Errorf("%s and %s share a pattern", c, other)
		}
		seen[p] = c
	}
}
