package custody

import (
	"errors"
	"testing"

	"github.com/dockd/dockd/internal/dock"
)

// mapList is a list snapshot held in memory: the rules' input, not a mock of
// storage (internal/allowlist tests the bbolt side).
type mapList struct {
	lots map[string]Lot
	err  error
}

func (m mapList) Product(gtin string) (bool, error) {
	for _, l := range m.lots {
		if l.GTIN == gtin {
			return true, m.err
		}
	}
	return false, m.err
}

func (m mapList) Lot(gtin, lot string) (Lot, bool, error) {
	l, ok := m.lots[gtin+"/"+lot]
	return l, ok, m.err
}

func TestDecideReasonByReason(t *testing.T) {
	const g = "09506000134352"
	list := mapList{lots: map[string]Lot{
		g + "/OK":   {GTIN: g, Lot: "OK", Status: Released, Expiry: "2027-06-30"},
		g + "/OLD":  {GTIN: g, Lot: "OLD", Status: Released, Expiry: "2026-01-31"},
		g + "/RC":   {GTIN: g, Lot: "RC", Status: Recalled, RecallID: "RC-1", Reason: "salmonella"},
		g + "/BL":   {GTIN: g, Lot: "BL", Status: Blocked},
		g + "/QU":   {GTIN: g, Lot: "QU", Status: Quarantined},
		g + "/NOEX": {GTIN: g, Lot: "NOEX", Status: Released},
	}}
	const today = "2026-11-25"
	cases := []struct {
		name   string
		it     Item
		pol    Policy
		want   dock.Verdict
		reason dock.Reason
	}{
		{"released lot", Item{GTIN: g, Lot: "OK"}, Policy{}, dock.Accept, dock.ReasonOK},
		{"released, no expiry anywhere", Item{GTIN: g, Lot: "NOEX"}, Policy{}, dock.Accept, dock.ReasonOK},
		{"label expiry today is still good", Item{GTIN: g, Lot: "NOEX", Expiry: today}, Policy{}, dock.Accept, dock.ReasonOK},
		{"unknown gtin", Item{GTIN: "04012345000016", Lot: "OK"}, Policy{}, dock.Reject, dock.ReasonUnknownGTIN},
		{"no gtin at all", Item{Lot: "OK"}, Policy{}, dock.Reject, dock.ReasonUnknownGTIN},
		{"sscc only warns", Item{SSCC: "106141411234567897"}, Policy{}, dock.Warn, dock.ReasonUnknownSerial},
		{"no lot", Item{GTIN: g}, Policy{}, dock.Reject, dock.ReasonUnknownLot},
		{"unknown lot", Item{GTIN: g, Lot: "NOPE"}, Policy{}, dock.Reject, dock.ReasonUnknownLot},
		{"unknown lot warns by policy", Item{GTIN: g, Lot: "NOPE"}, Policy{Warn: map[dock.Reason]bool{dock.ReasonUnknownLot: true}}, dock.Warn, dock.ReasonUnknownLot},
		{"recalled", Item{GTIN: g, Lot: "RC"}, Policy{}, dock.Reject, dock.ReasonLotRecalled},
		{"blocked", Item{GTIN: g, Lot: "BL"}, Policy{}, dock.Reject, dock.ReasonLotBlocked},
		{"quarantined", Item{GTIN: g, Lot: "QU"}, Policy{}, dock.Reject, dock.ReasonLotQuarantined},
		{"expired by list", Item{GTIN: g, Lot: "OLD"}, Policy{}, dock.Reject, dock.ReasonExpired},
		{"expired by label", Item{GTIN: g, Lot: "OK", Expiry: "2026-11-24"}, Policy{}, dock.Reject, dock.ReasonExpired},
		{"later label expiry does not override list", Item{GTIN: g, Lot: "OLD", Expiry: "2030-01-01"}, Policy{}, dock.Reject, dock.ReasonExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.it, list, c.pol, dock.Receiving, today)
			if got.Verdict != c.want || got.Reason != c.reason {
				t.Fatalf("Decide = %+v, want %s/%s", got, c.want, c.reason)
			}
			if c.reason != dock.ReasonOK && got.Detail == "" {
				t.Fatalf("a failed rule must say why: %+v", got)
			}
		})
	}
}

func TestDecideStorageErrorRejects(t *testing.T) {
	got := Decide(Item{GTIN: "09506000134352", Lot: "OK"}, mapList{err: errors.New("disk gone")}, Policy{}, dock.Shipping, "2026-11-25")
	if got.Verdict != dock.Reject || got.Reason != dock.ReasonStorageFault {
		t.Fatalf("got %+v", got)
	}
}

func TestRecallDetailNamesRecall(t *testing.T) {
	list := mapList{lots: map[string]Lot{"1/RC": {GTIN: "1", Lot: "RC", Status: Recalled, RecallID: "RC-9", Reason: "glass"}}}
	got := Decide(Item{GTIN: "1", Lot: "RC"}, list, Policy{}, dock.Receiving, "2026-01-01")
	if got.Detail != "lot RC is recalled (RC-9): glass" {
		t.Fatalf("detail %q", got.Detail)
	}
}
