package reader

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

func TestDeduperAdmit(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type sighting struct {
		key  string
		ms   int
		want bool
	}
	tests := []struct {
		name   string
		window time.Duration
		seq    []sighting
	}{
		{"disabled admits repeats", 0, []sighting{{"A", 0, true}, {"A", 1, true}, {"A", 2, true}}},
		{"negative window disabled", -time.Second, []sighting{{"A", 0, true}, {"A", 0, true}}},
		{"repeat within window suppressed", 2 * time.Second, []sighting{{"A", 0, true}, {"A", 500, false}, {"A", 1999, false}}},
		{"distinct keys independent", 2 * time.Second, []sighting{{"A", 0, true}, {"B", 10, true}, {"A", 20, false}, {"B", 30, false}}},
		{"after a quiet window admitted again", 2 * time.Second, []sighting{{"A", 0, true}, {"A", 2000, true}, {"A", 2100, false}}},
		{"window slides while the code stays in view", 2 * time.Second, []sighting{
			{"A", 0, true}, {"A", 1500, false}, {"A", 3000, false}, {"A", 4500, false}, {"A", 6500, true},
		}},
		{"clock stepped back counts as repeat", time.Second, []sighting{{"A", 5000, true}, {"A", 1000, false}, {"A", 5999, false}, {"A", 7000, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDeduper(tc.window)
			for i, s := range tc.seq {
				if got := d.Admit(s.key, at(s.ms)); got != s.want {
					t.Errorf("sighting %d (%s at %dms): Admit = %v, want %v", i, s.key, s.ms, got, s.want)
				}
			}
		})
	}
}

func TestDeduperForgetsOldKeys(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := NewDeduper(time.Second)
	for i := range 1000 {
		d.Admit(fmt.Sprintf("code-%d", i), t0)
	}
	if d.Len() != 1000 {
		t.Fatalf("Len = %d after 1000 distinct codes, want 1000", d.Len())
	}
	d.Admit("later", t0.Add(3*time.Second))
	if d.Len() != 1 {
		t.Errorf("Len = %d after the window passed, want 1 (old keys forgotten)", d.Len())
	}
	if d.Window() != time.Second {
		t.Errorf("Window = %v", d.Window())
	}
}

func TestDeduperAdmitFrame(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := NewDeduper(2 * time.Second)
	f := func(reader, data string, ms int, err error) dock.Frame {
		return dock.Frame{Reader: reader, Data: []byte(data), At: t0.Add(time.Duration(ms) * time.Millisecond), Err: err}
	}
	steps := []struct {
		frame dock.Frame
		want  bool
	}{
		{f("s1", "0100614141999996", 0, nil), true},
		{f("s1", "0100614141999996", 100, nil), false},
		{f("s2", "0100614141999996", 150, nil), true}, // another reader is another key
		{f("s1", "TOOLONG", 200, dock.ErrFrameTooLong), true},
		{f("s1", "TOOLONG", 210, errors.Join(dock.ErrFrameTooLong)), true},
		{f("s1", "0100614141999996", 2050, nil), false}, // refreshed at 100ms
		{f("s1", "0100614141999996", 4100, nil), true},  // 2050ms after the last sighting
	}
	for i, s := range steps {
		if got := d.AdmitFrame(s.frame); got != s.want {
			t.Errorf("step %d: AdmitFrame(%s %q) = %v, want %v", i, s.frame.Reader, s.frame.Data, got, s.want)
		}
	}
}

func BenchmarkDeduperAdmit(b *testing.B) {
	d := NewDeduper(2 * time.Second)
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("3074257BF7194E40000%05X", i)
	}
	t0 := time.Unix(1_700_000_000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Admit(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Millisecond))
	}
}
