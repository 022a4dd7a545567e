package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/epcis/epcistest"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// TestPayloadsFollowTheContract runs the whole daemon on real parts, scans
// accepted, warned-or-rejected and unreadable codes, and validates every
// payload a subscriber receives against uplink/contract's JSON Schemas:
// each event, each retained status, and the offline status on shutdown.
func TestPayloadsFollowTheContract(t *testing.T) {
	s := startStationWith(t, func(_, y string) string { return epcisSection(y) })
	scans := []struct {
		data   string
		reason dock.Reason
	}{
		{gs1Scan("LOT42", "C1"), dock.ReasonOK},                 // released lot
		{gs1Scan("LOT43", "C2"), dock.ReasonLotRecalled},        // recalled
		{gs1Scan("LOT44", "C3"), dock.ReasonLotBlocked},         // blocked
		{gs1Scan("LOT99", "C4"), dock.ReasonUnknownLot},         // not on the list
		{"]C10104012345000016" + "10B2026-11\r", dock.ReasonOK}, // another product, no serial
		{"\x01\x02garbage\xff\r", dock.ReasonBadScan},           // line noise
		{"]C1019506000134352\r", dock.ReasonBadScan},            // truncated GTIN
	}
	for _, sc := range scans {
		s.write(sc.data)
	}
	decided := s.waitDecisions(len(scans), 10*time.Second)
	for i, sc := range scans {
		if decided[i].Reason != sc.reason {
			t.Errorf("scan %d (%q): reason %s, want %s", i, sc.data, decided[i].Reason, sc.reason)
		}
	}
	waitEvents(t, s.sub, len(scans), 15*time.Second)

	s.sub.WaitFor(t, func(ms []testkit.Message) bool { return len(epcisDocs(t, ms)) >= len(scans)-2 }, 15*time.Second)
	events, statuses, docs := 0, 0, 0
	for _, m := range s.sub.Messages() {
		switch {
		case strings.HasSuffix(m.Topic, "/"+contract.LevelEPCIS):
			docs++
			epcistest.Require(t, m.Payload)
		case strings.HasSuffix(m.Topic, "/"+contract.LevelEvents):
			events++
			contracttest.Require(t, contract.EventSchemaFile, m.Payload)
		case strings.HasSuffix(m.Topic, "/"+contract.LevelStatus):
			statuses++
			contracttest.Require(t, contract.StatusSchemaFile, m.Payload)
			// The daemon's own write counter (it has at least created its files).
			if strings.Contains(string(m.Payload), `"online"`) && !strings.Contains(string(m.Payload), `"storage":{"written_bytes":`) {
				t.Errorf("online status without storage.written_bytes: %s", m.Payload)
			}
		}
	}
	if events < len(scans) || statuses == 0 || docs != len(scans)-2 {
		t.Fatalf("validated %d events, %d statuses and %d EPCIS documents; want %d events, a status and %d documents (none for the 2 bad scans)", events, statuses, docs, len(scans), len(scans)-2)
	}

	// A clean shutdown publishes the offline status, which follows the
	// schema too (the broker's will is the same payload).
	s.stop()
	msgs := s.sub.WaitFor(t, func(ms []testkit.Message) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/status") && strings.Contains(string(m.Payload), `"offline"`) {
				return true
			}
		}
		return false
	}, 10*time.Second)
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/status") && strings.Contains(string(m.Payload), `"offline"`) {
			contracttest.Require(t, contract.StatusSchemaFile, m.Payload)
		}
	}
}

// TestSchemasRejectDrift makes sure the event schema is not vacuous for the
// daemon's own payloads: a real event altered in ways a careless change
// would alter it must fail.
func TestSchemasRejectDrift(t *testing.T) {
	s := startStation(t)
	s.write(gs1Scan("LOT42", "D1"))
	waitEvents(t, s.sub, 1, 15*time.Second)
	var good []byte
	for _, m := range s.sub.Messages() {
		if strings.HasSuffix(m.Topic, "/events") {
			good = m.Payload
			break
		}
	}
	contracttest.Require(t, contract.EventSchemaFile, good)
	for name, f := range map[string]func(map[string]any){
		"undocumented field": func(m map[string]any) { m["colour"] = "red" },
		"missing seq":        func(m map[string]any) { delete(m, "seq") },
		"unknown reason":     func(m map[string]any) { m["reason"] = "felt_wrong" },
		"accept with reason": func(m map[string]any) { m["reason"] = "lot_blocked" },
		"bad time":           func(m map[string]any) { m["time"] = "noon" },
	} {
		var m map[string]any
		json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		if contracttest.Validate(contract.EventSchemaFile, b) == nil {
			t.Errorf("%s: the event schema accepted %s", name, b)
		}
	}
}
