package custody

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// memList is a list snapshot held in memory: the rules' input, not a mock
// of storage (internal/allowlist tests the bbolt side).
type memList struct {
	lots    map[string]Lot // gtin/lot, also gtin/batch
	serials map[string]Serial
	ssccs   map[string]Serial
	ships   []Shipment
	counted map[string]int // id/line
	err     error
}

func (m memList) Product(gtin string) (bool, error) {
	for _, l := range m.lots {
		if l.GTIN == gtin {
			return true, m.err
		}
	}
	return false, m.err
}

func (m memList) Lot(gtin, lot string) (Lot, bool, error) {
	l, ok := m.lots[gtin+"/"+lot]
	return l, ok, m.err
}

func (m memList) Serialised(gtin string) (bool, error) {
	for _, s := range m.serials {
		if s.GTIN == gtin {
			return true, m.err
		}
	}
	return false, m.err
}

func (m memList) Serial(gtin, serial string) (Serial, bool, error) {
	s, ok := m.serials[gtin+"/"+serial]
	return s, ok, m.err
}

func (m memList) TracksSSCC() (bool, error) { return len(m.ssccs) > 0, m.err }

func (m memList) SSCC(sscc string) (Serial, bool, error) {
	s, ok := m.ssccs[sscc]
	return s, ok, m.err
}

func (m memList) Shipments(door string, dir dock.Direction) ([]Shipment, error) {
	var out []Shipment
	for _, s := range m.ships {
		if s.Door == door && s.Direction == dir {
			out = append(out, s)
		}
	}
	return out, m.err
}

func (m memList) Version() string { return "mem" }

func (m memList) Counted(id string, line int) (int, error) {
	return m.counted[id+"/"+string(rune('0'+line))], m.err
}

const (
	g  = "09506000134352"
	g2 = "04012345000016" // on the list, serials not tracked
	p1 = "106141411234567897"
	p2 = "106141411234567880"
)

func testList() memList {
	return memList{
		lots: map[string]Lot{
			g + "/OK":    {GTIN: g, Lot: "OK", Status: Released, Expiry: "2027-06-30", Batches: []string{"OK-B1"}},
			g + "/OK-B1": {GTIN: g, Lot: "OK", Status: Released, Expiry: "2027-06-30", Batches: []string{"OK-B1"}},
			g + "/OLD":   {GTIN: g, Lot: "OLD", Status: Released, Expiry: "2026-01-31"},
			g + "/SOON":  {GTIN: g, Lot: "SOON", Status: Released, Expiry: "2026-12-01"},
			g + "/RC":    {GTIN: g, Lot: "RC", Status: Recalled, RecallID: "RC-1", Reason: "salmonella"},
			g + "/BL":    {GTIN: g, Lot: "BL", Status: Blocked},
			g + "/QU":    {GTIN: g, Lot: "QU", Status: Quarantined},
			g + "/NOEX":  {GTIN: g, Lot: "NOEX", Status: Released},
			g2 + "/X":    {GTIN: g2, Lot: "X", Status: Released},
		},
		serials: map[string]Serial{
			g + "/S-EXP":  {GTIN: g, Serial: "S-EXP", Lot: "OK", State: Expected},
			g + "/S-RCV":  {GTIN: g, Serial: "S-RCV", Lot: "OK", State: Received, Door: "door-1", At: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)},
			g + "/S-SHP":  {GTIN: g, Serial: "S-SHP", Lot: "OK", State: Shipped},
			g + "/S-RET":  {GTIN: g, Serial: "S-RET", Lot: "OK", State: Returned},
			g + "/S-NEW":  {GTIN: g, Serial: "S-NEW", Lot: "OK"},
			g + "/S-LOT2": {GTIN: g, Serial: "S-LOT2", Lot: "NOEX", State: Expected},
		},
		ssccs: map[string]Serial{
			p1: {SSCC: p1, GTIN: g, Lot: "OK", State: Expected},
			p2: {SSCC: p2, State: Shipped},
		},
	}
}

func TestDecideReasonByReason(t *testing.T) {
	list := testList()
	withShips := testList()
	withShips.ships = []Shipment{
		{ID: "ASN-1", Door: "d1", Direction: dock.Receiving, Lines: []Line{{GTIN: g, Lot: "OK", Qty: 2}, {GTIN: g, Lot: "NOEX"}}},
		{ID: "ASN-2", Door: "d2", Direction: dock.Receiving, Lines: []Line{{GTIN: g}}},
		{ID: "SO-1", Door: "d1", Direction: dock.Shipping, Lines: []Line{{SSCC: p1}}},
	}
	withShips.counted = map[string]int{"ASN-1/0": 1}
	const today = "2026-11-25"
	rcv := At{Door: "d1", Direction: dock.Receiving, Today: today}
	shp := At{Door: "d1", Direction: dock.Shipping, Today: today}
	warn := func(rs ...dock.Reason) Policy {
		p := Policy{Warn: map[dock.Reason]bool{}}
		for _, r := range rs {
			p.Warn[r] = true
		}
		return p
	}
	dirPol := Policy{Direction: map[dock.Direction]map[dock.Reason]Severity{
		dock.Receiving: {dock.ReasonUnknownLot: SeverityWarn},
	}}
	cases := []struct {
		name   string
		it     Item
		list   memList
		pol    Policy
		at     At
		want   dock.Verdict
		reason dock.Reason
	}{
		{"released lot", Item{GTIN: g, Lot: "OK"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"batch code of a released lot", Item{GTIN: g, Lot: "OK-B1"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"released, no expiry anywhere", Item{GTIN: g, Lot: "NOEX"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"label expiry today is still good", Item{GTIN: g, Lot: "NOEX", Expiry: today}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"unknown gtin", Item{GTIN: "04012345000023", Lot: "OK"}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownGTIN},
		{"no gtin at all", Item{Lot: "OK"}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownGTIN},
		{"unknown gtin warns by policy", Item{GTIN: "04012345000023", Lot: "OK"}, list, warn(dock.ReasonUnknownGTIN), rcv, dock.Warn, dock.ReasonUnknownGTIN},
		{"no lot", Item{GTIN: g}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownLot},
		{"unknown lot", Item{GTIN: g, Lot: "NOPE"}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownLot},
		{"unknown lot warns by policy", Item{GTIN: g, Lot: "NOPE"}, list, warn(dock.ReasonUnknownLot), rcv, dock.Warn, dock.ReasonUnknownLot},
		{"unknown lot warns on receiving by direction policy", Item{GTIN: g, Lot: "NOPE"}, list, dirPol, rcv, dock.Warn, dock.ReasonUnknownLot},
		{"unknown lot rejects on shipping by direction policy", Item{GTIN: g, Lot: "NOPE"}, list, dirPol, shp, dock.Reject, dock.ReasonUnknownLot},
		{"recalled", Item{GTIN: g, Lot: "RC"}, list, Policy{}, rcv, dock.Reject, dock.ReasonLotRecalled},
		{"blocked", Item{GTIN: g, Lot: "BL"}, list, Policy{}, rcv, dock.Reject, dock.ReasonLotBlocked},
		{"quarantined", Item{GTIN: g, Lot: "QU"}, list, Policy{}, rcv, dock.Reject, dock.ReasonLotQuarantined},
		{"quarantined warns by policy", Item{GTIN: g, Lot: "QU"}, list, warn(dock.ReasonLotQuarantined), rcv, dock.Warn, dock.ReasonLotQuarantined},
		{"expired by list", Item{GTIN: g, Lot: "OLD"}, list, Policy{}, rcv, dock.Reject, dock.ReasonExpired},
		{"expired by label", Item{GTIN: g, Lot: "OK", Expiry: "2026-11-24"}, list, Policy{}, rcv, dock.Reject, dock.ReasonExpired},
		{"later label expiry does not override list", Item{GTIN: g, Lot: "OLD", Expiry: "2030-01-01"}, list, Policy{}, rcv, dock.Reject, dock.ReasonExpired},
		{"expires soon warns", Item{GTIN: g, Lot: "SOON"}, list, Policy{ExpiresSoonDays: 7}, rcv, dock.Warn, dock.ReasonExpiresSoon},
		{"expires soon, window edge inclusive", Item{GTIN: g, Lot: "NOEX", Expiry: "2026-12-02"}, list, Policy{ExpiresSoonDays: 7}, rcv, dock.Warn, dock.ReasonExpiresSoon},
		{"outside the window", Item{GTIN: g, Lot: "NOEX", Expiry: "2026-12-03"}, list, Policy{ExpiresSoonDays: 7}, rcv, dock.Accept, dock.ReasonOK},
		{"expires soon off without a window", Item{GTIN: g, Lot: "SOON"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"expires soon rejects on shipping", Item{GTIN: g, Lot: "SOON"}, list, Policy{ExpiresSoonDays: 7, Direction: map[dock.Direction]map[dock.Reason]Severity{dock.Shipping: {dock.ReasonExpiresSoon: SeverityReject}}}, At{Door: "d1", Direction: dock.Shipping, Today: today}, dock.Reject, dock.ReasonExpiresSoon},
		{"expected serial received", Item{GTIN: g, Lot: "OK", Serial: "S-EXP"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"serial-only label takes the lot from the list", Item{GTIN: g, Serial: "S-EXP"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"unknown serial of a tracked product", Item{GTIN: g, Lot: "OK", Serial: "S-???"}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownSerial},
		{"serial of an untracked product is fine", Item{GTIN: g2, Lot: "X", Serial: "ANY"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"serial lot mismatch", Item{GTIN: g, Lot: "OK", Serial: "S-LOT2"}, list, Policy{}, rcv, dock.Reject, dock.ReasonSerialLotMismatch},
		{"batch code of the serial's lot is no mismatch", Item{GTIN: g, Lot: "OK-B1", Serial: "S-EXP"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"received twice", Item{GTIN: g, Lot: "OK", Serial: "S-RCV"}, list, Policy{}, rcv, dock.Reject, dock.ReasonDuplicateSerial},
		{"returned received again", Item{GTIN: g, Lot: "OK", Serial: "S-RET"}, list, Policy{}, rcv, dock.Reject, dock.ReasonDuplicateSerial},
		{"shipped item comes back", Item{GTIN: g, Lot: "OK", Serial: "S-SHP"}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"ship a received serial", Item{GTIN: g, Lot: "OK", Serial: "S-RCV"}, list, Policy{}, shp, dock.Accept, dock.ReasonOK},
		{"ship a serial that never arrived", Item{GTIN: g, Lot: "OK", Serial: "S-EXP"}, list, Policy{}, shp, dock.Reject, dock.ReasonNotInCustody},
		{"ship a serial with no state", Item{GTIN: g, Lot: "OK", Serial: "S-NEW"}, list, Policy{}, shp, dock.Reject, dock.ReasonNotInCustody},
		{"ship twice", Item{GTIN: g, Lot: "OK", Serial: "S-SHP"}, list, Policy{}, shp, dock.Reject, dock.ReasonAlreadyShipped},
		{"already shipped warns by policy", Item{GTIN: g, Lot: "OK", Serial: "S-SHP"}, list, warn(dock.ReasonAlreadyShipped), shp, dock.Warn, dock.ReasonAlreadyShipped},
		{"expected pallet received", Item{SSCC: p1}, list, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"unknown pallet when pallets are tracked", Item{SSCC: "106141411234567873"}, list, Policy{}, rcv, dock.Reject, dock.ReasonUnknownSerial},
		{"bare pallet label without tracking warns", Item{SSCC: p1}, memList{lots: list.lots}, Policy{}, rcv, dock.Warn, dock.ReasonUnknownSerial},
		{"pallet shipped twice", Item{SSCC: p2}, list, Policy{}, shp, dock.Reject, dock.ReasonAlreadyShipped},
		{"pallet label with another GTIN", Item{SSCC: p1, GTIN: g2, Lot: "X"}, list, Policy{}, rcv, dock.Reject, dock.ReasonSerialLotMismatch},
		{"pallet never arrived cannot ship", Item{SSCC: p1}, list, Policy{}, shp, dock.Reject, dock.ReasonNotInCustody},
		{"on the shipment", Item{GTIN: g, Lot: "NOEX"}, withShips, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"not on the door's shipment", Item{GTIN: g2, Lot: "X"}, withShips, Policy{}, rcv, dock.Reject, dock.ReasonNotExpected},
		{"other door's shipment does not count", Item{GTIN: g, Lot: "SOON"}, withShips, Policy{}, rcv, dock.Reject, dock.ReasonNotExpected},
		{"no shipment at the door takes anything", Item{GTIN: g2, Lot: "X"}, withShips, Policy{}, At{Door: "d9", Direction: dock.Receiving, Today: today}, dock.Accept, dock.ReasonOK},
		{"last one of the line quantity", Item{GTIN: g, Lot: "OK"}, withShips, Policy{}, rcv, dock.Accept, dock.ReasonOK},
		{"over quantity", Item{GTIN: g, Lot: "OK", Qty: 2}, withShips, Policy{}, rcv, dock.Reject, dock.ReasonOverQuantity},
		{"shipping a pallet on the order that never arrived", Item{SSCC: p1}, withShips, Policy{}, shp, dock.Reject, dock.ReasonNotInCustody},
		{"reject outranks an earlier warning", Item{GTIN: g, Lot: "SOON", Serial: "S-RCV"}, list, Policy{ExpiresSoonDays: 30}, rcv, dock.Reject, dock.ReasonSerialLotMismatch},
		{"first reject wins", Item{GTIN: g, Lot: "RC", Expiry: "2020-01-01"}, list, Policy{}, rcv, dock.Reject, dock.ReasonLotRecalled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.it, c.list, c.pol, c.at)
			if got.Verdict != c.want || got.Reason != c.reason {
				t.Fatalf("Decide = %+v, want %s/%s", got, c.want, c.reason)
			}
			if c.reason != dock.ReasonOK && got.Detail == "" {
				t.Fatalf("a failed rule must say why: %+v", got)
			}
			if again := Decide(c.it, c.list, c.pol, c.at); again != got {
				t.Fatalf("not deterministic: %+v then %+v", got, again)
			}
		})
	}
}

// Every reason a rule can give is reachable by some case above.
func TestEveryListReasonCovered(t *testing.T) {
	want := []dock.Reason{dock.ReasonUnknownGTIN, dock.ReasonUnknownLot, dock.ReasonLotRecalled, dock.ReasonLotBlocked,
		dock.ReasonLotQuarantined, dock.ReasonExpired, dock.ReasonExpiresSoon, dock.ReasonUnknownSerial,
		dock.ReasonSerialLotMismatch, dock.ReasonDuplicateSerial, dock.ReasonNotInCustody, dock.ReasonAlreadyShipped,
		dock.ReasonNotExpected, dock.ReasonOverQuantity}
	src := testList()
	src.ships = []Shipment{{ID: "A", Door: "d", Direction: dock.Receiving, Lines: []Line{{GTIN: g, Lot: "OK", Qty: 1}}}}
	items := []Item{{}, {GTIN: g}, {GTIN: g, Lot: "RC"}, {GTIN: g, Lot: "BL"}, {GTIN: g, Lot: "QU"}, {GTIN: g, Lot: "OLD"},
		{GTIN: g, Lot: "SOON"}, {GTIN: g, Lot: "OK", Serial: "?"}, {GTIN: g, Lot: "OK", Serial: "S-LOT2"},
		{GTIN: g, Lot: "OK", Serial: "S-RCV"}, {GTIN: g, Lot: "OK", Serial: "S-EXP"}, {GTIN: g, Lot: "OK", Serial: "S-SHP"},
		{GTIN: g2, Lot: "X"}, {GTIN: g, Lot: "OK", Qty: 2}}
	seen := map[dock.Reason]bool{}
	for _, it := range items {
		for _, dir := range []dock.Direction{dock.Receiving, dock.Shipping} {
			seen[Decide(it, src, Policy{ExpiresSoonDays: 10}, At{Door: "d", Direction: dir, Today: "2026-11-25"}).Reason] = true
		}
	}
	for _, r := range want {
		if !seen[r] {
			t.Errorf("reason %s not reached", r)
		}
	}
}

func TestDecideStorageErrorRejects(t *testing.T) {
	got := Decide(Item{GTIN: g, Lot: "OK"}, memList{err: errors.New("disk gone")}, Policy{}, At{Direction: dock.Shipping, Today: "2026-11-25"})
	if got.Verdict != dock.Reject || got.Reason != dock.ReasonStorageFault || !strings.Contains(got.Detail, "disk gone") {
		t.Fatalf("got %+v", got)
	}
}

func TestDetails(t *testing.T) {
	list := testList()
	at := At{Door: "d1", Direction: dock.Receiving, Today: "2026-11-25"}
	for _, c := range []struct {
		it   Item
		want string
	}{
		{Item{GTIN: g, Lot: "RC"}, "lot RC is recalled (RC-1): salmonella"},
		{Item{GTIN: g, Lot: "OK", Serial: "S-RCV"}, "serial S-RCV is received (last at door door-1 2026-11-24T08:00:00Z)"},
	} {
		if got := Decide(c.it, list, Policy{}, at); got.Detail != c.want {
			t.Errorf("%+v: detail %q, want %q", c.it, got.Detail, c.want)
		}
	}
}

func TestTransition(t *testing.T) {
	cases := []struct {
		dir    dock.Direction
		from   State
		to     State
		reason dock.Reason
	}{
		{dock.Receiving, StateNone, Received, dock.ReasonOK},
		{dock.Receiving, Expected, Received, dock.ReasonOK},
		{dock.Receiving, Received, Received, dock.ReasonDuplicateSerial},
		{dock.Receiving, Shipped, Returned, dock.ReasonOK},
		{dock.Receiving, Returned, Returned, dock.ReasonDuplicateSerial},
		{dock.Shipping, Received, Shipped, dock.ReasonOK},
		{dock.Shipping, Returned, Shipped, dock.ReasonOK},
		{dock.Shipping, Shipped, Shipped, dock.ReasonAlreadyShipped},
		{dock.Shipping, Expected, Expected, dock.ReasonNotInCustody},
		{dock.Shipping, StateNone, StateNone, dock.ReasonNotInCustody},
	}
	for _, c := range cases {
		to, r := Transition(c.dir, c.from)
		if to != c.to || r != c.reason {
			t.Errorf("%s from %q: got %q %s, want %q %s", c.dir, c.from, to, r, c.to, c.reason)
		}
	}
}

// The decision names the shipment whose line the scan matched, whatever
// the verdict, and none when nothing matched.
func TestDecisionNamesMatchedShipment(t *testing.T) {
	src := testList()
	src.ships = []Shipment{{ID: "ASN-7", Door: "d", Direction: dock.Receiving, Lines: []Line{{GTIN: g, Lot: "OK", Qty: 1}, {GTIN: g, Lot: "RC"}}}}
	at := At{Door: "d", Direction: dock.Receiving, Today: "2026-11-25"}
	for _, tc := range []struct {
		it      Item
		verdict dock.Verdict
		ship    string
	}{
		{Item{GTIN: g, Lot: "OK"}, dock.Accept, "ASN-7"},
		{Item{GTIN: g, Lot: "OK", Qty: 2}, dock.Reject, "ASN-7"}, // over_quantity: matched, refused
		{Item{GTIN: g, Lot: "RC"}, dock.Reject, "ASN-7"},         // recalled lot on the shipment
		{Item{GTIN: g2, Lot: "X"}, dock.Reject, ""},              // not_expected
	} {
		d := Decide(tc.it, src, Policy{}, at)
		if d.Verdict != tc.verdict || d.ExpectedShipment != tc.ship {
			t.Errorf("%+v: %s/%s shipment %q, want %s shipment %q", tc.it, d.Verdict, d.Reason, d.ExpectedShipment, tc.verdict, tc.ship)
		}
	}
}
