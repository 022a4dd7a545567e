package light

import (
	"testing"
	"time"
)

func TestSignalPhase(t *testing.T) {
	ms := time.Millisecond
	type ph struct {
		on  bool
		dur time.Duration
	}
	tests := []struct {
		name string
		s    Signal
		want []ph // phases 0.. ; the last repeats for ever if its dur is -1
	}{
		{"off", Signal{}, []ph{{false, -1}}},
		{"steady", Steady(), []ph{{true, -1}}},
		{"blink", Blink(100*ms, 300*ms), []ph{{true, 100 * ms}, {false, 300 * ms}, {true, 100 * ms}, {false, 300 * ms}, {true, 100 * ms}}},
		{"pulses", Pulses(3, 150*ms, 50*ms), []ph{{true, 150 * ms}, {false, 50 * ms}, {true, 150 * ms}, {false, 50 * ms}, {true, 150 * ms}, {false, -1}}},
		{"one pulse", Pulses(1, 150*ms, 50*ms), []ph{{true, 150 * ms}, {false, -1}}},
		{"zero pulses", Pulses(0, 150*ms, 150*ms), []ph{{false, -1}}},
		{"blink without on-time", Blink(0, 100*ms), []ph{{false, -1}}},
		{"blink without off-time", Blink(100*ms, 0), []ph{{true, -1}}},
		{"pulses without off-time", Pulses(2, 100*ms, 0), []ph{{true, 200 * ms}, {false, -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, w := range tc.want {
				on, dur := tc.s.phase(i)
				if on != w.on || dur != w.dur {
					t.Errorf("phase(%d) = %v, %v; want %v, %v", i, on, dur, w.on, w.dur)
				}
			}
			if last := tc.want[len(tc.want)-1]; last.dur < 0 {
				if on, dur := tc.s.phase(len(tc.want) + 7); on != last.on || dur != last.dur {
					t.Errorf("final phase does not last: phase(%d) = %v, %v", len(tc.want)+7, on, dur)
				}
			}
		})
	}
}

func TestTrackerKeepsScheduleAndNeverSkips(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	tr := tracker{sig: Pulses(3, 150*ms, 150*ms), start: t0}
	steps := []struct {
		at  time.Duration // since t0
		on  bool
		end time.Duration // since t0; -1: never
	}{
		{0, true, 150 * ms},
		{100 * ms, true, 150 * ms},
		{152 * ms, false, 300 * ms}, // on time (lag within maxLag): schedule kept
		{300 * ms, true, 450 * ms},
		// Stalled from 300ms to 900ms: the gap phase runs now instead of
		// the whole rest being skipped, and each phase keeps its length.
		{900 * ms, false, 1050 * ms},
		{1050 * ms, true, 1200 * ms}, // the third beep still sounds
		{5000 * ms, false, -1},
		{9000 * ms, false, -1},
	}
	for _, st := range steps {
		on, end := tr.advance(t0.Add(st.at))
		wantEnd := time.Time{}
		if st.end >= 0 {
			wantEnd = t0.Add(st.end)
		}
		if on != st.on || !end.Equal(wantEnd) {
			t.Errorf("advance(+%v) = %v, +%v; want %v, +%v", st.at, on, end.Sub(t0), st.on, st.end)
		}
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
