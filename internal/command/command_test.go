package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/jsonstrict"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

var topics = contract.Topics{Site: "s1", Door: "d1"}

var quiet = slog.New(slog.DiscardHandler)

func cmdPayload(id, args string) []byte {
	if args == "" {
		return []byte(`{"schema":"dockd.command/1","id":"` + id + `"}`)
	}
	return []byte(`{"schema":"dockd.command/1","id":"` + id + `","args":` + args + `}`)
}

// parseCases are payloads for a command name with the expected outcome
// ("" = accepted, else the error code).
var parseCases = []struct {
	name, cmd, payload string
	want               Code
}{
	{"set direction", NameSetDirection, `{"schema":"dockd.command/1","id":"c1","args":{"direction":"shipping"}}`, ""},
	{"set direction with matching name and sent_at", NameSetDirection, `{"schema":"dockd.command/1","id":"c1","name":"set-direction","sent_at":"2026-03-01T10:00:00Z","args":{"direction":"receiving"}}`, ""},
	{"set direction bad value", NameSetDirection, `{"schema":"dockd.command/1","id":"c1","args":{"direction":"sideways"}}`, CodeInvalidArgs},
	{"set direction missing args", NameSetDirection, `{"schema":"dockd.command/1","id":"c1"}`, CodeInvalidArgs},
	{"set direction misspelt arg", NameSetDirection, `{"schema":"dockd.command/1","id":"c1","args":{"directon":"shipping"}}`, CodeInvalidArgs},
	{"light test", NameLightTest, `{"schema":"dockd.command/1","id":"lt-1"}`, ""},
	{"light test empty args", NameLightTest, `{"schema":"dockd.command/1","id":"lt-1","args":{}}`, ""},
	{"light test with an arg", NameLightTest, `{"schema":"dockd.command/1","id":"lt-1","args":{"seconds":3}}`, CodeInvalidArgs},
	{"reload", NameReloadConfig, `{"schema":"dockd.command/1","id":"r:1"}`, ""},
	{"status", NameRequestStatus, `{"schema":"dockd.command/1","id":"st.1","extra":"ignored"}`, ""},
	{"open shipment by id", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1"}}`, ""},
	{"open shipment with lines", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","direction":"receiving","lines":[{"gtin":"09506000134352","lot":"L1","qty":10},{"sscc":"106141411234567897"},{"gtin":"09506000134352","serial":"S1"}]}}`, ""},
	{"open shipment line without key", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"qty":1}]}}`, CodeInvalidArgs},
	{"open shipment empty line", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{}]}}`, CodeInvalidArgs},
	{"open shipment lot without gtin", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"sscc":"106141411234567897","lot":"L"}]}}`, CodeInvalidArgs},
	{"open shipment empty lot", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"gtin":"09506000134352","lot":""}]}}`, CodeInvalidArgs},
	{"open shipment short gtin", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"gtin":"950600013435"}]}}`, CodeInvalidArgs},
	{"open shipment negative qty", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"gtin":"09506000134352","qty":-1}]}}`, CodeInvalidArgs},
	{"open shipment long lot", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","lines":[{"gtin":"09506000134352","lot":"123456789012345678901"}]}}`, CodeInvalidArgs},
	{"open shipment bad direction", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN-1","direction":"up"}}`, CodeInvalidArgs},
	{"open shipment slash in id", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{"shipment":"ASN/1"}}`, CodeInvalidArgs},
	{"open shipment no id", NameOpenShipment, `{"schema":"dockd.command/1","id":"o1","args":{}}`, CodeInvalidArgs},
	{"close shipment", NameCloseShipment, `{"schema":"dockd.command/1","id":"c-9","args":{"shipment":"ASN-1"}}`, ""},
	{"close shipment with lines", NameCloseShipment, `{"schema":"dockd.command/1","id":"c-9","args":{"shipment":"ASN-1","lines":[]}}`, CodeInvalidArgs},
	{"unknown command", "self-destruct", `{"schema":"dockd.command/1","id":"x1"}`, CodeUnknownCommand},
	{"name differs from topic", NameLightTest, `{"schema":"dockd.command/1","id":"x1","name":"reload-config"}`, CodeMalformed},
	{"wrong schema", NameLightTest, `{"schema":"dockd.command/2","id":"x1"}`, CodeMalformed},
	{"no schema", NameLightTest, `{"id":"x1"}`, CodeMalformed},
	{"no id", NameLightTest, `{"schema":"dockd.command/1"}`, CodeMalformed},
	{"id with slash", NameLightTest, `{"schema":"dockd.command/1","id":"a/b"}`, CodeMalformed},
	{"id starting with underscore", NameLightTest, `{"schema":"dockd.command/1","id":"_invalid"}`, CodeMalformed},
	{"id too long", NameLightTest, `{"schema":"dockd.command/1","id":"` + strings.Repeat("a", 65) + `"}`, CodeMalformed},
	{"id a number", NameLightTest, `{"schema":"dockd.command/1","id":7}`, CodeMalformed},
	{"args an array", NameLightTest, `{"schema":"dockd.command/1","id":"x1","args":[]}`, CodeMalformed},
	{"args null", NameLightTest, `{"schema":"dockd.command/1","id":"x1","args":null}`, CodeMalformed},
	{"bad sent_at", NameLightTest, `{"schema":"dockd.command/1","id":"x1","sent_at":"yesterday"}`, CodeMalformed},
	{"not JSON", NameLightTest, `light test please`, CodeMalformed},
	{"JSON null", NameLightTest, `null`, CodeMalformed},
	{"JSON array", NameLightTest, `[{"id":"x1"}]`, CodeMalformed},
	{"empty", NameLightTest, ``, CodeMalformed},
	{"duplicate id", NameLightTest, `{"schema":"dockd.command/1","id":"c18","id":"c19"}`, CodeMalformed},
	{"duplicate arg", NameSetDirection, `{"schema":"dockd.command/1","id":"c1","args":{"direction":"shipping","direction":"receiving"}}`, CodeMalformed},
	{"trailing data", NameLightTest, `{"schema":"dockd.command/1","id":"x1"}{"schema":"dockd.command/1","id":"x2"}`, CodeMalformed},
	{"issued_at and ttl_s", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"2026-03-01T10:00:00Z","ttl_s":60}`, ""},
	{"issued_at alone", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"2026-03-01T10:00:00.5+01:00"}`, ""},
	{"ttl_s without issued_at", NameLightTest, `{"schema":"dockd.command/1","id":"x1","ttl_s":60}`, CodeMalformed},
	{"ttl_s zero", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"2026-03-01T10:00:00Z","ttl_s":0}`, CodeMalformed},
	{"ttl_s fractional", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"2026-03-01T10:00:00Z","ttl_s":1.5}`, CodeMalformed},
	{"ttl_s over a day", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"2026-03-01T10:00:00Z","ttl_s":86401}`, CodeMalformed},
	{"bad issued_at", NameLightTest, `{"schema":"dockd.command/1","id":"x1","issued_at":"now"}`, CodeMalformed},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.cmd, []byte(tc.payload))
			var ce *Error
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && !errors.As(err, &ce):
				t.Fatalf("accepted or untyped error %v, want code %s", err, tc.want)
			case tc.want != "" && ce.Code != tc.want:
				t.Fatalf("code %s (%v), want %s", ce.Code, err, tc.want)
			}
		})
	}
}

// TestParseAgreesWithSchema checks that Parse accepts exactly the payloads
// command.schema.json accepts (with the topic's name written into the
// payload, which the schema needs to pick the args rules).
func TestParseAgreesWithSchema(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			payload := []byte(tc.payload)
			if errors.Is(jsonstrict.Check(payload), jsonstrict.ErrDuplicateKey) {
				t.Skip("JSON Schema cannot see a member name given twice (the schema's description forbids it)")
			}
			var m map[string]any
			if json.Unmarshal(payload, &m) == nil && m != nil {
				if n, has := m["name"]; !has {
					m["name"] = tc.cmd
				} else if n != tc.cmd {
					t.Skip("the schema cannot see the topic")
				}
				payload, _ = json.Marshal(m)
			}
			schemaErr := contracttest.Validate(contract.CommandSchemaFile, payload)
			_, parseErr := Parse(tc.cmd, []byte(tc.payload))
			if (schemaErr == nil) != (parseErr == nil) {
				t.Fatalf("schema says %v, Parse says %v for %s", schemaErr, parseErr, payload)
			}
		})
	}
}

func TestParsedArgs(t *testing.T) {
	c, err := Parse(NameOpenShipment, []byte(parseCases[11].payload))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Shipment()
	if s.ID != "ASN-1" || s.Direction != dock.Receiving || len(s.Lines) != 3 ||
		s.Lines[0] != (ShipmentLine{GTIN: "09506000134352", Lot: "L1", Qty: 10}) || s.Lines[1].SSCC != "106141411234567897" || s.Lines[2].Serial != "S1" {
		t.Fatalf("shipment %+v", s)
	}
	c, err = Parse(NameSetDirection, cmdPayload("d", `{"direction":"shipping"}`))
	if err != nil || c.Direction() != dock.Shipping || c.ID != "d" {
		t.Fatalf("got %+v, %v", c, err)
	}
}

// fakeExec records calls; block, when set, holds LightTest until closed.
type fakeExec struct {
	mu        sync.Mutex
	calls     map[string]int
	direction dock.Direction
	shipments []string
	block     chan struct{}
	started   chan struct{}
	failWith  error
	panicOn   string
}

func newFake() *fakeExec { return &fakeExec{calls: map[string]int{}} }

func (f *fakeExec) count(name string) int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls[name] }

func (f *fakeExec) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeExec) note(name string) {
	f.mu.Lock()
	f.calls[name]++
	f.mu.Unlock()
	if f.panicOn == name {
		panic("boom in " + name)
	}
}

func (f *fakeExec) SetDirection(d dock.Direction) error {
	f.note(NameSetDirection)
	f.mu.Lock()
	f.direction = d
	f.mu.Unlock()
	return f.failWith
}

func (f *fakeExec) LightTest(ctx context.Context) error {
	f.note(NameLightTest)
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.failWith
}

func (f *fakeExec) ReloadConfig() error { f.note(NameReloadConfig); return f.failWith }

func (f *fakeExec) Shipment(open bool, s Shipment) error {
	f.note(map[bool]string{true: NameOpenShipment, false: NameCloseShipment}[open])
	f.mu.Lock()
	f.shipments = append(f.shipments, fmt.Sprint(open, s.ID, len(s.Lines)))
	f.mu.Unlock()
	return f.failWith
}

func (f *fakeExec) Status() any {
	f.note(NameRequestStatus)
	return map[string]any{"state": "online", "direction": f.direction}
}

func decodeReply(t *testing.T, b []byte) Reply {
	t.Helper()
	contracttest.Require(t, contract.CommandReplySchemaFile, b)
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, b)
	}
	return r
}

func TestHandlerReplies(t *testing.T) {
	cases := []struct {
		name      string
		topic     string
		payload   []byte
		failWith  error
		panicOn   string
		wantTopic string
		wantOK    bool
		wantCode  Code
		wantCalls map[string]int
	}{
		{"set direction", topics.Command(NameSetDirection), cmdPayload("a1", `{"direction":"shipping"}`), nil, "", topics.Reply("a1"), true, "", map[string]int{NameSetDirection: 1}},
		{"request status", topics.Command(NameRequestStatus), cmdPayload("a2", ""), nil, "", topics.Reply("a2"), true, "", map[string]int{NameRequestStatus: 1}},
		{"open shipment", topics.Command(NameOpenShipment), cmdPayload("a3", `{"shipment":"ASN-7"}`), nil, "", topics.Reply("a3"), true, "", map[string]int{NameOpenShipment: 1}},
		{"close shipment", topics.Command(NameCloseShipment), cmdPayload("a4", `{"shipment":"ASN-7"}`), nil, "", topics.Reply("a4"), true, "", map[string]int{NameCloseShipment: 1}},
		{"light test", topics.Command(NameLightTest), cmdPayload("a5", ""), nil, "", topics.Reply("a5"), true, "", map[string]int{NameLightTest: 1}},
		{"executor fails", topics.Command(NameReloadConfig), cmdPayload("a6", ""), errors.New("config: line 3: bad key"), "", topics.Reply("a6"), false, CodeFailed, map[string]int{NameReloadConfig: 1}},
		{"executor unsupported", topics.Command(NameReloadConfig), cmdPayload("a7", ""), fmt.Errorf("reload: %w", ErrUnsupported), "", topics.Reply("a7"), false, CodeUnsupported, map[string]int{NameReloadConfig: 1}},
		{"executor typed error", topics.Command(NameCloseShipment), cmdPayload("a8", `{"shipment":"nope"}`), &Error{Code: CodeInvalidArgs, Msg: "no open shipment nope"}, "", topics.Reply("a8"), false, CodeInvalidArgs, map[string]int{NameCloseShipment: 1}},
		{"executor panics", topics.Command(NameSetDirection), cmdPayload("a9", `{"direction":"receiving"}`), nil, NameSetDirection, topics.Reply("a9"), false, CodeFailed, map[string]int{NameSetDirection: 1}},
		{"unknown command", topics.Command("reboot"), cmdPayload("b1", ""), nil, "", topics.Reply("b1"), false, CodeUnknownCommand, map[string]int{}},
		{"malformed with id", topics.Command(NameSetDirection), cmdPayload("b2", `{"direction":1}`), nil, "", topics.Reply("b2"), false, CodeInvalidArgs, map[string]int{}},
		{"garbage", topics.Command(NameSetDirection), []byte("\x00\xff{"), nil, "", topics.Reply(contract.InvalidReplyID), false, CodeMalformed, map[string]int{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.failWith, f.panicOn = tc.failWith, tc.panicOn
			h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f})
			rt, rb := h.Handle(context.Background(), tc.topic, tc.payload)
			if rt != tc.wantTopic {
				t.Fatalf("reply topic %q, want %q", rt, tc.wantTopic)
			}
			r := decodeReply(t, rb)
			if r.OK != tc.wantOK || (r.Error == nil) != (tc.wantCode == "") || (r.Error != nil && r.Error.Code != tc.wantCode) {
				t.Fatalf("reply %s", rb)
			}
			for _, n := range Names {
				if f.count(n) != tc.wantCalls[n] {
					t.Errorf("%s called %d times, want %d", n, f.count(n), tc.wantCalls[n])
				}
			}
		})
	}
}

func TestHandlerIgnoresForeignTopics(t *testing.T) {
	f := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f})
	for _, topic := range []string{
		contract.Topics{Site: "s1", Door: "d2"}.Command(NameLightTest), // another door
		contract.Topics{Prefix: "dockd/v2", Site: "s1", Door: "d1"}.Command(NameLightTest),
		topics.Base() + "/cmd/light-test/extra",
		topics.Base() + "/cmd/",
		topics.Base() + "/cmd",
		topics.Reply("x"),
		topics.Events(),
	} {
		if rt, rb := h.Handle(context.Background(), topic, cmdPayload("z1", "")); rt != "" || rb != nil {
			t.Errorf("%s: answered on %q: %s", topic, rt, rb)
		}
	}
	if n := f.count(NameLightTest); n != 0 {
		t.Fatalf("light test ran %d times for foreign topics", n)
	}
}

func TestHandlerIdempotent(t *testing.T) {
	f := newFake()
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var tick atomic.Int64
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f, CacheSize: 2,
		Now: func() time.Time { return now.Add(time.Duration(tick.Add(1)) * time.Second) }})
	ctx := context.Background()
	send := func(id, dir string) []byte {
		_, b := h.Handle(ctx, topics.Command(NameSetDirection), cmdPayload(id, `{"direction":"`+dir+`"}`))
		return b
	}
	first := send("k1", "shipping")
	again := send("k1", "shipping")
	if string(first) != string(again) {
		t.Fatalf("repeated id got a different reply:\n%s\n%s", first, again)
	}
	if n := f.count(NameSetDirection); n != 1 {
		t.Fatalf("executed %d times, want 1", n)
	}
	// Same id, other command: refused, not executed, not cached.
	_, dup := h.Handle(ctx, topics.Command(NameLightTest), cmdPayload("k1", ""))
	if r := decodeReply(t, dup); r.Error == nil || r.Error.Code != CodeDuplicateID {
		t.Fatalf("reused id for another command: %s", dup)
	}
	if f.count(NameLightTest) != 0 {
		t.Fatal("light test ran for a reused id")
	}
	// Failed replies are remembered too.
	_, bad1 := h.Handle(ctx, topics.Command(NameSetDirection), cmdPayload("k2", `{"direction":"up"}`))
	_, bad2 := h.Handle(ctx, topics.Command(NameSetDirection), cmdPayload("k2", `{"direction":"up"}`))
	if string(bad1) != string(bad2) {
		t.Fatalf("failed reply not repeated:\n%s\n%s", bad1, bad2)
	}
	// The cache is bounded (2): k1 is evicted by k2 and k3 and runs again.
	send("k3", "receiving")
	if h.Cached() != 2 {
		t.Fatalf("cache holds %d ids, want 2", h.Cached())
	}
	send("k1", "shipping")
	if n := f.count(NameSetDirection); n != 3 {
		t.Fatalf("executed %d times, want 3 (k1, k3, k1 after eviction)", n)
	}
}

// TestHandlerConcurrentDuplicate sends the same id while the first copy is
// still running: the command runs once and both get the same reply.
func TestHandlerConcurrentDuplicate(t *testing.T) {
	f := newFake()
	f.block, f.started = make(chan struct{}), make(chan struct{}, 1)
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f})
	ctx := context.Background()
	replies := make(chan []byte, 2)
	go func() { _, b := h.Handle(ctx, topics.Command(NameLightTest), cmdPayload("L", "")); replies <- b }()
	<-f.started
	go func() { _, b := h.Handle(ctx, topics.Command(NameLightTest), cmdPayload("L", "")); replies <- b }()
	close(f.block)
	a, b := <-replies, <-replies
	if string(a) != string(b) {
		t.Fatalf("replies differ:\n%s\n%s", a, b)
	}
	if n := f.count(NameLightTest); n != 1 {
		t.Fatalf("light test ran %d times", n)
	}
}

func TestHandlerTimeout(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{}) // never released
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f, Timeout: 20 * time.Millisecond})
	_, b := h.Handle(context.Background(), topics.Command(NameLightTest), cmdPayload("t1", ""))
	if r := decodeReply(t, b); r.Error == nil || r.Error.Code != CodeTimeout {
		t.Fatalf("reply %s, want timeout", b)
	}
}

func TestHandlerStatusResult(t *testing.T) {
	f := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f})
	h.Handle(context.Background(), topics.Command(NameSetDirection), cmdPayload("s1", `{"direction":"shipping"}`))
	_, b := h.Handle(context.Background(), topics.Command(NameRequestStatus), cmdPayload("s2", ""))
	var r struct {
		Result struct {
			Direction string `json:"direction"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Result.Direction != "shipping" {
		t.Fatalf("status reply %s (%v)", b, err)
	}
}

func TestUnencodableResult(t *testing.T) {
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: chanStatus{newFake()}})
	_, b := h.Handle(context.Background(), topics.Command(NameRequestStatus), cmdPayload("u1", ""))
	if r := decodeReply(t, b); r.Error == nil || r.Error.Code != CodeFailed {
		t.Fatalf("reply %s", b)
	}
}

type chanStatus struct{ *fakeExec }

func (chanStatus) Status() any { return make(chan int) }

func BenchmarkHandle(b *testing.B) {
	f := newFake()
	h := NewHandler(Config{Topics: topics, Station: "s1-d1", Log: quiet, Exec: f, CacheSize: 1024})
	topic := topics.Command(NameSetDirection)
	payloads := make([][]byte, 4096)
	for i := range payloads {
		payloads[i] = cmdPayload(fmt.Sprintf("id-%d", i), `{"direction":"shipping"}`)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.Handle(context.Background(), topic, payloads[i%len(payloads)])
	}
}
