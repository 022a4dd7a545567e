package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

// withCheckDigit appends the GS1 mod-10 check digit to body.
func withCheckDigit(body string) string {
	sum := 0
	for i := 0; i < len(body); i++ {
		d := int(body[i] - '0')
		if (len(body)-i)%2 == 1 {
			d *= 3
		}
		sum += d
	}
	return body + fmt.Sprint((10-sum%10)%10)
}

// scanOf is what a GS1-128 scanner sends: GTIN, then the variable-length
// element strings lot, serial and extra, separated by GS.
func scanOf(gtin, lot, serial string, extra ...string) string {
	s := "]C1"
	if gtin != "" {
		s += "01" + gtin
	}
	var vars []string
	if lot != "" {
		vars = append(vars, "10"+lot)
	}
	if serial != "" {
		vars = append(vars, "21"+serial)
	}
	vars = append(vars, extra...)
	return s + strings.Join(vars, gs) + "\r"
}

// Every reason code of the rules is reached end to end: a scan written
// into the pty is decided by the running daemon on a list with lots,
// batches, serials, pallets and an expected shipment, and the decision is
// what central receives. Custody state changes from the station's own
// accepted scans at once; the trace lists what crossed the door.
func TestEveryReasonThroughThePTY(t *testing.T) {
	s := startStation(t)
	g1 := demoGTIN                        // serials tracked
	g2 := "04012345000016"                // serials not tracked
	gx := withCheckDigit("0401234500009") // not on the list
	sscc := withCheckDigit("10614141123456789"[:17])
	soon := time.Now().AddDate(0, 0, 10).Format("2006-01-02")
	list := fmt.Sprintf(`{"gtin":%[1]q,"lot":"OK","status":"released","expiry":"2030-01-01","batches":["OK-B"]}
{"gtin":%[1]q,"lot":"RC","status":"recalled","recall_id":"RC-7","reason":"glass"}
{"gtin":%[1]q,"lot":"BL","status":"blocked"}
{"gtin":%[1]q,"lot":"QU","status":"quarantined"}
{"gtin":%[1]q,"lot":"OLD","status":"released","expiry":"2020-01-01"}
{"gtin":%[1]q,"lot":"SOON","status":"released","expiry":%[3]q}
{"gtin":%[1]q,"lot":"OTHER","status":"released"}
{"gtin":%[1]q,"serial":"S1","lot":"OK","state":"expected"}
{"gtin":%[1]q,"serial":"S2","lot":"OK","state":"expected"}
{"gtin":%[1]q,"serial":"S3","lot":"OK","state":"expected"}
{"gtin":%[2]q,"lot":"X","status":"released"}
{"sscc":%[4]q,"gtin":%[1]q,"lot":"OK","state":"expected"}
{"shipment":"SO-1","door":"door-9","direction":"shipping","gtin":%[1]q,"lot":"OK"}
{"shipment":"SO-1","door":"door-9","direction":"shipping","gtin":%[1]q,"lot":"OTHER","qty":2}
{"shipment":"SO-1","door":"door-9","direction":"shipping","sscc":%[4]q}
`, g1, g2, soon, sscc)
	if _, err := s.d.list.Import(context.Background(), strings.NewReader(list), allowlist.ImportOptions{Version: "e2e"}); err != nil {
		t.Fatal(err)
	}
	s.d.station.SetPolicy(custody.Policy{ExpiresSoonDays: 30})

	steps := []struct {
		dir    dock.Direction
		scan   string
		want   dock.Verdict
		reason dock.Reason
	}{
		{dock.Receiving, scanOf(g1, "OK", "S1"), dock.Accept, dock.ReasonOK},
		{dock.Receiving, scanOf(g1, "OK-B", "S2"), dock.Accept, dock.ReasonOK}, // a batch code of lot OK
		{dock.Receiving, scanOf(g1, "OK", "S1"), dock.Reject, dock.ReasonDuplicateSerial},
		{dock.Receiving, "]C100" + sscc + "\r", dock.Accept, dock.ReasonOK},
		{dock.Receiving, scanOf(gx, "OK", ""), dock.Reject, dock.ReasonUnknownGTIN},
		{dock.Receiving, scanOf(g1, "NOPE", ""), dock.Reject, dock.ReasonUnknownLot},
		{dock.Receiving, scanOf(g1, "RC", ""), dock.Reject, dock.ReasonLotRecalled},
		{dock.Receiving, scanOf(g1, "BL", ""), dock.Reject, dock.ReasonLotBlocked},
		{dock.Receiving, scanOf(g1, "QU", ""), dock.Reject, dock.ReasonLotQuarantined},
		{dock.Receiving, scanOf(g1, "OLD", ""), dock.Reject, dock.ReasonExpired},
		{dock.Receiving, scanOf(g1, "SOON", ""), dock.Warn, dock.ReasonExpiresSoon},
		{dock.Receiving, scanOf(g1, "OK", "S-NOPE"), dock.Reject, dock.ReasonUnknownSerial},
		{dock.Receiving, scanOf(g1, "OTHER", "S3"), dock.Reject, dock.ReasonSerialLotMismatch},
		{dock.Receiving, scanOf(g1, "OK", "S1"), dock.Reject, dock.ReasonDuplicateSerial},
		{dock.Receiving, "]C1" + "0102" + "x" + "\r", dock.Reject, dock.ReasonBadScan},
		{dock.Shipping, scanOf(g1, "OK", "S1"), dock.Accept, dock.ReasonOK},
		{dock.Shipping, scanOf(g1, "OK", "S1"), dock.Reject, dock.ReasonAlreadyShipped},
		{dock.Shipping, scanOf(g1, "OK", "S3"), dock.Reject, dock.ReasonNotInCustody},
		{dock.Shipping, scanOf(g2, "X", ""), dock.Reject, dock.ReasonNotExpected},
		{dock.Shipping, scanOf(g1, "OTHER", "", "302"), dock.Accept, dock.ReasonOK}, // count 2 of 2
		{dock.Shipping, scanOf(g1, "OTHER", ""), dock.Reject, dock.ReasonOverQuantity},
		{dock.Shipping, "]C100" + sscc + "\r", dock.Accept, dock.ReasonOK},
		{dock.Receiving, scanOf(g1, "OK", "S1"), dock.Accept, dock.ReasonOK}, // shipped, comes back: returned
	}
	for i, st := range steps {
		if s.d.station.Direction() != st.dir {
			if err := s.d.station.SetDirection(st.dir); err != nil {
				t.Fatal(err)
			}
		}
		s.write(st.scan)
		evs := s.waitDecisions(i+1, 10*time.Second)
		ev := evs[i]
		if ev.Verdict != st.want || ev.Reason != st.reason {
			t.Fatalf("step %d %s %q: got %s/%s (%s), want %s/%s", i, st.dir, st.scan, ev.Verdict, ev.Reason, ev.Detail, st.want, st.reason)
		}
		if ev.AllowlistVersion != "e2e" {
			t.Fatalf("step %d: allowlist version %q", i, ev.AllowlistVersion)
		}
	}
	// Central received every decision with its reason.
	got := waitEvents(t, s.sub, len(steps), 30*time.Second)
	reasons := map[dock.Reason]bool{}
	batchSeen := false
	for _, ev := range got {
		reasons[ev.Reason] = true
		// S2 was scanned with the batch code OK-B of lot OK: the event
		// names the lot and keeps the batch.
		if ev.Serial == "S2" && ev.Reason == dock.ReasonOK {
			batchSeen = true
			if ev.Lot != "OK" || ev.Batch != "OK-B" {
				t.Errorf("batch scan: lot %q batch %q, want lot OK batch OK-B", ev.Lot, ev.Batch)
			}
		}
	}
	if !batchSeen {
		t.Error("the batch-code scan of S2 never reached central")
	}
	for _, r := range []dock.Reason{dock.ReasonBadScan, dock.ReasonUnknownGTIN, dock.ReasonUnknownLot, dock.ReasonLotRecalled,
		dock.ReasonLotBlocked, dock.ReasonLotQuarantined, dock.ReasonExpired, dock.ReasonExpiresSoon, dock.ReasonUnknownSerial,
		dock.ReasonSerialLotMismatch, dock.ReasonDuplicateSerial, dock.ReasonNotInCustody, dock.ReasonAlreadyShipped,
		dock.ReasonNotExpected, dock.ReasonOverQuantity} {
		if !reasons[r] {
			t.Errorf("central never received reason %s", r)
		}
	}
	if x, _, _ := s.d.list.Serial(g1, "S1"); x.State != custody.Returned || x.Door != "door-9" {
		t.Fatalf("S1 custody %+v", x)
	}
	if err := s.d.list.Flush(); err != nil {
		t.Fatal(err)
	}
	tr, err := s.d.list.Trace(allowlist.TraceQuery{Serial: "S1", GTIN: g1})
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, r := range tr {
		path = append(path, string(r.Direction)+":"+string(r.Reason))
	}
	if want := "receiving:ok receiving:duplicate_serial receiving:duplicate_serial shipping:ok shipping:already_shipped receiving:ok"; strings.Join(path, " ") != want {
		t.Fatalf("trace of S1:\n got %s\nwant %s", strings.Join(path, " "), want)
	}
}
