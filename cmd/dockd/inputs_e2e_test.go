package main

import (
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// The door's GPIO inputs on the whole daemon: with hold_after_reject a
// reject keeps the red lamp going until the acknowledge button is pressed
// (a bouncing press counts once); the key switch turns the door to
// shipping; each input change is an operator record on the event stream.
func TestDoorInputs(t *testing.T) {
	var inputs map[string]*testkit.RecordingPin
	s := startStationWith(t, func(_, y string) string {
		inputs = testkit.RegisterPins(t, "GPIO5", "GPIO6")
		y = strings.Replace(y, "  decision_hold: 300ms\n", "  decision_hold: 300ms\n  inputs: {ack_button: GPIO5, direction_switch: GPIO6, debounce: 20ms}\n", 1)
		return y + "policy:\n  hold_after_reject: true\n"
	})
	inputs["GPIO5"].WaitArmed(t, 5*time.Second)
	inputs["GPIO6"].WaitArmed(t, 5*time.Second)
	red := s.pins["GPIO22"]

	s.write(gs1Scan("LOT99", "H1")) // unknown lot: reject
	waitEvents(t, s.sub, 1, 10*time.Second)
	time.Sleep(time.Second) // past the decision's 300 ms hold
	if st := s.d.light.State(); st.Showing != "reject_hold" {
		t.Fatalf("after the reject's hold the light shows %q, want reject_hold", st.Showing)
	}
	n := len(red.Edges())
	time.Sleep(2200 * time.Millisecond)
	if len(red.Edges()) == n {
		t.Fatal("red lamp not blinking while the door is held")
	}

	inputs["GPIO5"].Bounce(2*time.Millisecond, gpio.Low, gpio.High, gpio.Low) // press, with contact bounce
	time.Sleep(100 * time.Millisecond)
	inputs["GPIO5"].Set(gpio.High) // release
	waitUntil(t, 3*time.Second, "hold released", func() bool { return s.d.light.State().Showing != "reject_hold" })
	red.WaitLevel(t, gpio.Low, 2*time.Second)

	inputs["GPIO6"].Set(gpio.Low) // key to shipping
	waitUntil(t, 3*time.Second, "door switched to shipping", func() bool { return s.d.station.Direction() == dock.Shipping })
	s.write(gs1Scan("LOT42", "H2"))
	evs := waitEvents(t, s.sub, 4, 10*time.Second)

	for _, m := range s.sub.Messages() {
		if strings.HasSuffix(m.Topic, "/events") && strings.Contains(string(m.Payload), `"kind":"operator"`) {
			contracttest.Require(t, contract.OperatorEventSchemaFile, m.Payload)
		}
	}
	var acks, dirs int
	for _, e := range evs {
		switch {
		case e.Kind == "operator" && e.Action == "acknowledge":
			acks++
		case e.Kind == "operator" && e.Action == "direction":
			dirs++
			if e.Direction != dock.Shipping {
				t.Fatalf("direction record: %+v", e)
			}
		case e.Serial == "H2":
			if e.Direction != dock.Shipping || e.Verdict != dock.Accept {
				t.Fatalf("scan after the switch: %+v", e)
			}
		}
	}
	if acks != 1 || dirs != 1 {
		t.Fatalf("operator records: %d acknowledge (want 1: bounces count once), %d direction (want 1)", acks, dirs)
	}
}
