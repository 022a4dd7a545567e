package allowlist

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

func shipmentIDs(t *testing.T, s *Store, door string, dir dock.Direction) []string {
	t.Helper()
	var ids []string
	if err := s.View(func(l custody.List) error {
		ships, err := l.Shipments(door, dir)
		for _, sh := range ships {
			ids = append(ids, sh.ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// Shipments opened and closed at the station sit beside the list's own: an
// open one shows for its door and direction only, a close hides a list
// shipment of that id too, and both survive a reopen of the file.
func TestLocalShipments(t *testing.T) {
	s := openStore(t)
	list := `{"shipment":"SO-1","door":"d1","direction":"shipping","gtin":"09506000134352","lot":"L1"}` + "\n"
	if _, err := s.Import(context.Background(), strings.NewReader(list), ImportOptions{Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.OpenShipment(custody.Shipment{ID: "ASN-1", Door: "d1", Direction: dock.Receiving, Lines: []custody.Line{{GTIN: "09506000134352", Qty: 3}}}); err != nil {
		t.Fatal(err)
	}
	if got := shipmentIDs(t, s, "d1", dock.Receiving); len(got) != 1 || got[0] != "ASN-1" {
		t.Fatalf("receiving at d1: %v", got)
	}
	if got := shipmentIDs(t, s, "d2", dock.Receiving); len(got) != 0 {
		t.Fatalf("another door sees %v", got)
	}
	if got := shipmentIDs(t, s, "d1", dock.Shipping); len(got) != 1 || got[0] != "SO-1" {
		t.Fatalf("shipping at d1: %v", got)
	}
	if err := s.CloseShipment("d1", "SO-1"); err != nil {
		t.Fatal(err)
	}
	if got := shipmentIDs(t, s, "d1", dock.Shipping); len(got) != 0 {
		t.Fatalf("closed list shipment still open: %v", got)
	}
	for _, bad := range []custody.Shipment{
		{ID: "", Door: "d1", Direction: dock.Receiving, Lines: []custody.Line{{GTIN: "1"}}},
		{ID: "X", Door: "d1", Direction: "sideways", Lines: []custody.Line{{GTIN: "1"}}},
		{ID: "X", Door: "d1", Direction: dock.Receiving},
		{ID: "X", Door: "d1", Direction: dock.Receiving, Lines: []custody.Line{{Lot: "L1"}}},
	} {
		if err := s.OpenShipment(bad); !errors.Is(err, ErrShipment) {
			t.Errorf("OpenShipment(%+v) = %v, want ErrShipment", bad, err)
		}
	}
	path := s.path
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := shipmentIDs(t, s2, "d1", dock.Receiving); len(got) != 1 {
		t.Fatalf("after reopen: %v", got)
	}
	if got := shipmentIDs(t, s2, "d1", dock.Shipping); len(got) != 0 {
		t.Fatalf("close lost on reopen: %v", got)
	}
}
