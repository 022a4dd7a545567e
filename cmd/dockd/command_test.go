package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// pahoPublisher publishes on its own MQTT connection: central's side in
// these tests.
type pahoPublisher struct{ cli mqtt.Client }

func newPahoPublisher(t testing.TB, broker, id string) *pahoPublisher {
	t.Helper()
	cli := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(id).SetConnectTimeout(5 * time.Second))
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting %s to %s: %v", id, broker, tok.Error())
	}
	t.Cleanup(func() { cli.Disconnect(100) })
	return &pahoPublisher{cli: cli}
}

func (p *pahoPublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	tok := p.cli.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startCommandStation is startStation with the uplink connected, so the
// daemon's own command service (wired in daemon.go) answers central.
func startCommandStation(t *testing.T) *testStation {
	t.Helper()
	s := startStation(t)
	waitUntil(t, 10*time.Second, "uplink connected", s.d.up.Connected)
	return s
}

// central publishes a command the way central would.
func central(t *testing.T, p *pahoPublisher, name, payload string) {
	t.Helper()
	topic := contract.Topics{Site: "test-site", Door: "door-9"}.Command(name)
	if err := p.Publish(context.Background(), topic, []byte(payload)); err != nil {
		t.Fatalf("publishing %s: %v", topic, err)
	}
}

// replies returns the reply payloads received on cmd-reply/id, in order.
func replies(msgs []testkit.Message, id string) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/cmd-reply/"+id) {
			out = append(out, m.Payload)
		}
	}
	return out
}

func waitReply(t *testing.T, sub *testkit.Subscriber, id string, n int) [][]byte {
	t.Helper()
	var got [][]byte
	sub.WaitFor(t, func(ms []testkit.Message) bool { got = replies(ms, id); return len(got) >= n }, 30*time.Second)
	for _, r := range got {
		contracttest.Require(t, contract.CommandReplySchemaFile, r)
	}
	return got
}

func cmdJSON(id, args string) string {
	if args == "" {
		return fmt.Sprintf(`{"schema":"dockd.command/1","id":%q}`, id)
	}
	return fmt.Sprintf(`{"schema":"dockd.command/1","id":%q,"args":%s}`, id, args)
}

func TestCommandsEndToEnd(t *testing.T) {
	s := startCommandStation(t)
	c := newPahoPublisher(t, s.broker.URL(), "central")

	// set-direction, then a second command, then the first id again: the
	// repeat is answered from the cache and does not switch back.
	central(t, c, "set-direction", cmdJSON("dir-1", `{"direction":"shipping"}`))
	first := waitReply(t, s.sub, "dir-1", 1)[0]
	if s.d.station.Direction() != dock.Shipping {
		t.Fatalf("direction %s after set-direction shipping", s.d.station.Direction())
	}
	central(t, c, "set-direction", cmdJSON("dir-2", `{"direction":"receiving"}`))
	waitReply(t, s.sub, "dir-2", 1)
	central(t, c, "set-direction", cmdJSON("dir-1", `{"direction":"shipping"}`))
	again := waitReply(t, s.sub, "dir-1", 2)[1]
	if string(again) != string(first) {
		t.Fatalf("repeated id got another reply:\n%s\n%s", first, again)
	}
	if s.d.station.Direction() != dock.Receiving {
		t.Fatal("a repeated command id was executed again")
	}

	// light-test drives every output of the real (recording) pins.
	since := time.Now()
	central(t, c, "light-test", cmdJSON("lt-1", ""))
	var r command.Reply
	json.Unmarshal(waitReply(t, s.sub, "lt-1", 1)[0], &r)
	if !r.OK {
		t.Fatalf("light test failed: %+v", r.Error)
	}
	for _, pin := range []string{"GPIO17", "GPIO27", "GPIO22", "GPIO23"} {
		if !wentHigh(s.pins[pin], since) {
			t.Errorf("lamp test did not drive %s", pin)
		}
	}

	// request-status answers with the status, which satisfies its schema.
	central(t, c, "request-status", cmdJSON("st-1", ""))
	var sr struct {
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
	}
	json.Unmarshal(waitReply(t, s.sub, "st-1", 1)[0], &sr)
	if !sr.OK {
		t.Fatal("request-status failed")
	}
	contracttest.Require(t, contract.StatusSchemaFile, sr.Result)

	// Errors: each gets one reply with the right code, and nothing crashes.
	for _, tc := range []struct {
		name, payload, id string
		code              command.Code
	}{
		{"open-shipment", cmdJSON("sh-1", `{"shipment":"ASN-1"}`), "sh-1", command.CodeInvalidArgs}, // no lines
		{"format-disk", cmdJSON("fd-1", ""), "fd-1", command.CodeUnknownCommand},
		{"set-direction", cmdJSON("bad-1", `{"direction":"north"}`), "bad-1", command.CodeInvalidArgs},
		{"set-direction", `{{{ not json`, contract.InvalidReplyID, command.CodeMalformed},
	} {
		central(t, c, tc.name, tc.payload)
		var rep command.Reply
		json.Unmarshal(waitReply(t, s.sub, tc.id, 1)[0], &rep)
		if rep.OK || rep.Error == nil || rep.Error.Code != tc.code {
			t.Errorf("%s %s: reply %+v, want code %s", tc.name, tc.payload, rep, tc.code)
		}
	}

	// open-shipment / close-shipment: while ASN-7 is open at this door, a
	// lot on it is accepted up to its quantity, anything else is
	// not_expected; closed, the door is back to the plain list rules.
	ship := func(id, name, args string) {
		t.Helper()
		central(t, c, name, cmdJSON(id, args))
		var rep command.Reply
		json.Unmarshal(waitReply(t, s.sub, id, 1)[0], &rep)
		if !rep.OK {
			t.Fatalf("%s: %+v", name, rep)
		}
	}
	scan := func(lot, serial string) dock.CustodyEvent {
		t.Helper()
		n := len(s.waitDecisions(0, time.Second))
		s.write(gs1Scan(lot, serial))
		evs := s.waitDecisions(n+1, 10*time.Second)
		return evs[len(evs)-1]
	}
	ship("sh-2", "open-shipment", `{"shipment":"ASN-7","direction":"receiving","lines":[{"gtin":"09506000134352","lot":"LOT42","qty":1}]}`)
	if ev := scan("LOT42", "A1"); ev.Verdict != dock.Accept {
		t.Fatalf("lot on the open shipment: %+v", ev)
	}
	if ev := scan("LOT42", "A2"); ev.Reason != dock.ReasonOverQuantity {
		t.Fatalf("beyond the line's quantity: %s", ev.Reason)
	}
	n := len(s.waitDecisions(0, time.Second))
	s.write("]C10104012345000016" + "10B2026-11" + gs + "21A3\r") // released and on the list, not on ASN-7
	if evs := s.waitDecisions(n+1, 10*time.Second); evs[len(evs)-1].Reason != dock.ReasonNotExpected {
		t.Fatalf("a lot not on the shipment: %s", evs[len(evs)-1].Reason)
	}
	ship("sh-3", "close-shipment", `{"shipment":"ASN-7"}`)
	if ev := scan("LOT42", "A4"); ev.Verdict != dock.Accept {
		t.Fatalf("after close-shipment: %+v", ev)
	}

	// reload-config: the unchanged file reloads; a new direction in the file
	// is applied live; a change that needs a restart is refused, by name.
	cfgPath := filepath.Join(s.dir, "dockd.yaml")
	orig, _ := os.ReadFile(cfgPath)
	reload := func(id string) command.Reply {
		central(t, c, "reload-config", cmdJSON(id, ""))
		var rep command.Reply
		json.Unmarshal(waitReply(t, s.sub, id, 1)[0], &rep)
		return rep
	}
	if rep := reload("rl-1"); !rep.OK {
		t.Fatalf("reload of the unchanged file: %+v", rep)
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), "direction: receiving", "direction: shipping", 1)), 0o600)
	if rep := reload("rl-2"); !rep.OK || s.d.station.Direction() != dock.Shipping {
		t.Fatalf("reload with a new direction: %+v, door runs %s", rep, s.d.station.Direction())
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), "baud: 115200", "baud: 9600", 1)), 0o600)
	if rep := reload("rl-3"); rep.OK || rep.Error == nil || !strings.Contains(rep.Error.Message, "need a restart") || !strings.Contains(rep.Error.Message, "readers") {
		t.Fatalf("reload with a reader change: %+v", rep)
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), "baud: 115200", "baud: 115201", 1)), 0o600)
	if rep := reload("rl-4"); rep.OK || rep.Error == nil || !strings.Contains(rep.Error.Message, "dockd.yaml:") {
		t.Fatalf("reload of an invalid file: %+v", rep)
	}
	os.WriteFile(cfgPath, orig, 0o600)
	reload("rl-5")
	s.d.station.SetDirection(dock.Receiving)

	// A command for another door is not this station's business; the next
	// command's reply proves the first was passed over.
	other := contract.Topics{Site: "test-site", Door: "door-1"}.Command("set-direction")
	if err := c.Publish(context.Background(), other, []byte(cmdJSON("other-1", `{"direction":"shipping"}`))); err != nil {
		t.Fatal(err)
	}
	central(t, c, "request-status", cmdJSON("st-2", ""))
	waitReply(t, s.sub, "st-2", 1)
	if len(replies(s.sub.Messages(), "other-1")) != 0 || s.d.station.Direction() != dock.Receiving {
		t.Fatal("the station acted on another door's command")
	}

	// The retained status shows the direction central last set.
	central(t, c, "set-direction", cmdJSON("dir-3", `{"direction":"shipping"}`))
	waitReply(t, s.sub, "dir-3", 1)
	s.sub.WaitFor(t, func(ms []testkit.Message) bool {
		for i := len(ms) - 1; i >= 0; i-- {
			if strings.HasSuffix(ms[i].Topic, "/status") {
				var st Status
				return json.Unmarshal(ms[i].Payload, &st) == nil && st.Direction == dock.Shipping
			}
		}
		return false
	}, 10*time.Second)
}
