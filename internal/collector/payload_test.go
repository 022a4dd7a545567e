package collector

import (
	"errors"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	f := newFake("hamburg", "door-9")
	r, err := Parse(DefaultPrefix, f.topic(), f.eventWith(42, "0e4c7a3c-1111-4a2b-8c3d-000000000001", map[string]any{
		"serial": "S1", "sscc": "109506000000000017", "qty": 5}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindCustody || r.Seq != 42 || r.Station != "hamburg-door-9" || r.Site != "hamburg" || r.Door != "door-9" ||
		r.Decision != "accept" || r.Reason != "ok" || r.Lot != "L0" || r.Serial != "S1" || r.SSCC != "109506000000000017" ||
		r.Qty != 5 || r.GTIN != "09506000134352" || !r.JSONB || r.Direction != "receiving" {
		t.Fatalf("parsed %+v", r)
	}
	g, err := Parse(DefaultPrefix, f.topic(), f.gap(10, 3, 9))
	if err != nil || g.Kind != KindGap || g.GapFrom != 3 || g.GapTo != 9 || g.Seq != 10 {
		t.Fatalf("gap: %+v %v", g, err)
	}
	op := []byte(`{"schema":"dockd.operator-event/1","kind":"operator","action":"acknowledge","id":"0e4c7a3c-1111-4a2b-8c3d-000000000002",
"seq":7,"site":"hamburg","station":"x","door":"door-9","direction":"shipping","time":"2026-01-01T00:00:00Z","clock_synced":true}`)
	o, err := Parse(DefaultPrefix, f.topic(), op)
	if err != nil || o.Kind != KindOperator || o.Reason != "acknowledge" || o.Direction != "shipping" {
		t.Fatalf("operator: %+v %v", o, err)
	}
	nul, err := Parse(DefaultPrefix, f.topic(), f.eventWith(1, uuid(), map[string]any{"raw": "a\x00b"}))
	if err != nil || nul.JSONB {
		t.Fatalf("a payload with \\u0000 must parse and not go to jsonb: %+v %v", nul, err)
	}
}

func TestParseRejects(t *testing.T) {
	f := newFake("s", "d")
	cases := []struct {
		topic   string
		payload string
		want    string
	}{
		{"dockd/v1/s/d/status", string(f.event(1)), "is not dockd/v1/SITE/DOOR/events"},
		{"dockd/v1/s/d/x/events", string(f.event(1)), "is not dockd/v1"},
		{"other/v1/s/d/events", string(f.event(1)), "is not dockd/v1"},
		{f.topic(), `{"schema":"dockd.seq-gap/1","kind":"gap"}`, "id"},
		{f.topic(), string(f.gap(5, 5, 5)), "from..to"},
		{f.topic(), string(f.gap(5, 0, 2)), "from..to"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"seq": -1})), "not a JSON object"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"seq": uint64(9223372036854775808)})), "seq missing or outside"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"station": ""})), "station must be"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"direction": "sideways"})), "direction"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"qty": 0})), "qty"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"reason": nil})), "reason missing"},
		{f.topic(), string(f.eventWith(1, uuid(), map[string]any{"schema": "dockd.operator-event/1"})), "kind must be"},
		{f.topic(), "null", `no "schema"`},
	}
	for _, c := range cases {
		_, err := Parse(DefaultPrefix, c.topic, []byte(c.payload))
		var pe *PayloadError
		if !errors.Is(err, ErrBadPayload) || !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s, %.60s): %v, want a PayloadError mentioning %q", c.topic, c.payload, err, c.want)
		}
	}
}

// FuzzParse: whatever arrives on an events topic, Parse returns a record
// or a PayloadError, never panics, and what it accepts is consistent.
func FuzzParse(f *testing.F) {
	st := newFake("s", "d")
	f.Add("dockd/v1/s/d/events", st.event(1))
	f.Add("dockd/v1/s/d/events", st.gap(9, 2, 8))
	f.Add("dockd/v1/s/d/events", st.eventWith(3, uuid(), map[string]any{"raw": "\x00\uffff", "qty": 2}))
	f.Add("dockd/v1/s/d/events", []byte(`{"schema":"dockd.operator-event/1","kind":"operator","action":"direction","id":"0e4c7a3c-1111-4a2b-8c3d-000000000002","seq":7,"site":"s","station":"x","door":"d","direction":"shipping","time":"2026-01-01T00:00:00Z"}`))
	f.Add("dockd/v1/s/d/events", []byte(`{"schema":1}`))
	f.Add("dockd/v1/+/d/events", []byte(`[]`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		r, err := Parse(DefaultPrefix, topic, payload)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) || !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error is not a PayloadError: %v", err)
			}
			return
		}
		site, door, ok := SplitEventsTopic(DefaultPrefix, topic)
		if !ok || r.Site != site || r.Door != door || r.Seq < 1 || r.Seq > 1<<63-1 || r.Station == "" || len(r.ID) != 36 {
			t.Fatalf("accepted an inconsistent record %+v from %q", r, topic)
		}
		if r.Kind == KindGap && !(r.GapFrom >= 1 && r.GapFrom <= r.GapTo && r.GapTo < r.Seq) {
			t.Fatalf("accepted gap %d..%d at seq %d", r.GapFrom, r.GapTo, r.Seq)
		}
		if string(r.Payload) != string(payload) {
			t.Fatal("payload not kept as received")
		}
	})
}

func TestProgressFill(t *testing.T) {
	var p Progress
	steps := []struct {
		lo, hi    uint64
		upto, max uint64
		holes     int
	}{
		{1, 1, 1, 1, 0},
		{3, 3, 1, 3, 1},    // hole 2
		{7, 7, 1, 7, 2},    // holes 2, 4..6
		{5, 5, 1, 7, 3},    // holes 2, 4, 6
		{2, 2, 3, 7, 2},    // holes 4, 6 left
		{1, 3, 3, 7, 2},    // old seqs: nothing changes
		{6, 6, 3, 7, 1},    // hole 4 left
		{4, 4, 7, 7, 0},    // all filled
		{10, 12, 7, 12, 1}, // declared gap beyond: hole 8..9
		{8, 9, 12, 12, 0},
	}
	for i, s := range steps {
		p.Fill(s.lo, s.hi)
		if p.Upto != s.upto || p.Max != s.max || len(p.Holes) != s.holes {
			t.Fatalf("step %d Fill(%d,%d): %+v, want upto %d max %d with %d holes", i, s.lo, s.hi, p, s.upto, s.max, s.holes)
		}
	}
	if p.Fill(3, 2) || p.Fill(1, 12) {
		t.Fatal("a no-op Fill reported a change")
	}
}

// FuzzProgress: any order of fills gives the same upto as counting.
func FuzzProgress(f *testing.F) {
	f.Add([]byte{3, 1, 2, 9, 4})
	f.Fuzz(func(t *testing.T, seqs []byte) {
		if len(seqs) > 128 {
			seqs = seqs[:128] // 64 distinct seqs; longer inputs add nothing
		}
		var p Progress
		have := map[uint64]bool{}
		for _, b := range seqs {
			s := uint64(b%64) + 1
			p.Fill(s, s)
			have[s] = true
		}
		var want uint64
		for have[want+1] {
			want++
		}
		if p.Upto != want {
			t.Fatalf("upto %d, want %d (%+v)", p.Upto, want, p)
		}
		for i, h := range p.Holes {
			if h.Lo > h.Hi || h.Lo <= p.Upto || h.Hi >= p.Max || (i > 0 && p.Holes[i-1].Hi+1 >= h.Lo) {
				t.Fatalf("bad holes %+v", p)
			}
		}
	})
}
