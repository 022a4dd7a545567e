package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/scan"
	"github.com/dockd/dockd/internal/testkit"
)

// A pallet of 200 SGTIN-96 tags passes a Mercury-protocol RFID reader
// (emulated on a real pty): every tag is decided exactly once despite being
// read over and over, each event carries its EPC URI, GTIN, serial and the
// tag metadata, and tags below the RSSI threshold (the next door) are not.
func TestRFIDPalletThroughStation(t *testing.T) {
	tagPTY := testkit.NewPTY(t)
	var tags []testkit.MercuryTag
	for i := 0; i < 200; i++ {
		hex, err := scan.EncodeSGTIN96(1, "9506000", "013435", uint64(1000+i))
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, testkit.MercuryTag{EPC: hex, RSSI: -50, Antenna: 1 + i%2, Phase: 90})
	}
	far, _ := scan.EncodeSGTIN96(1, "9506000", "013435", 999999)
	tags = append(tags, testkit.MercuryTag{EPC: far, RSSI: -80, Antenna: 1})
	testkit.NewMercury(t, tagPTY, testkit.MercuryConfig{Tags: tags})

	s := startStationWith(t, func(_, y string) string {
		return strings.Replace(y, "readers:\n", "readers:\n  - id: uhf-1\n    type: rfid\n    profile: thingmagic-m6e-nano\n    region: EU\n    port: "+tagPTY.Path()+"\n    min_rssi: -65\n    dedupe_window: 30s\n", 1)
	})
	evs := s.waitDecisions(200, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // the emulator keeps reading: no more decisions may come
	evs = s.waitDecisions(200, time.Second)
	if len(evs) != 200 {
		t.Fatalf("%d decisions for 200 tags (dedupe or RSSI threshold broken)", len(evs))
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Reader != "uhf-1" || e.Tag == nil || e.Tag.RSSI != -50 || !strings.HasPrefix(e.EPC, "urn:epc:id:sgtin:9506000.013435.") || e.GTIN != "09506000134352" {
			t.Fatalf("tag event: %+v", e)
		}
		if e.Serial == "999999" {
			t.Fatal("a tag below the RSSI threshold was decided")
		}
		if seen[e.Serial] {
			t.Fatalf("serial %s decided twice", e.Serial)
		}
		seen[e.Serial] = true
		// Tag reads carry no lot: the list cannot accept them at lot level.
		if e.Verdict != dock.Reject || e.Reason != dock.ReasonUnknownLot {
			t.Fatalf("tag decision %s/%s", e.Verdict, e.Reason)
		}
	}
	waitEvents(t, s.sub, 200, 30*time.Second)
}
