package allowlist

import (
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
)

// bucketLocalShips holds shipments opened and closed at this station (by
// central's open-shipment/close-shipment commands), beside the list's own.
var bucketLocalShips = []byte("local-shipments")

// localShip is a station-side shipment record: an open shipment, or a
// tombstone that closes a shipment of that id (local or from the list).
type localShip struct {
	custody.Shipment
	Closed bool `json:"closed,omitempty"`
}

// ErrShipment marks an invalid open/close shipment request.
var ErrShipment = errors.New("invalid shipment")

// OpenShipment opens (or replaces) shipment sh at its door: while open,
// scans in its direction at that door are matched against its lines
// (not_expected, over_quantity). Durable on return; safe for concurrent use.
func (s *Store) OpenShipment(sh custody.Shipment) error {
	if sh.ID == "" || sh.Door == "" || !sh.Direction.Valid() {
		return fmt.Errorf("%w: want an id, a door and a direction (receiving|shipping), got %q %q %q", ErrShipment, sh.ID, sh.Door, sh.Direction)
	}
	if len(sh.Lines) == 0 {
		return fmt.Errorf("%w %s: no lines", ErrShipment, sh.ID)
	}
	for i, l := range sh.Lines {
		if l.GTIN == "" && l.SSCC == "" {
			return fmt.Errorf("%w %s: line %d names neither a gtin nor an sscc", ErrShipment, sh.ID, i+1)
		}
		if l.Qty < 0 {
			return fmt.Errorf("%w %s: line %d: negative qty", ErrShipment, sh.ID, i+1)
		}
	}
	return s.putLocalShip(localShip{Shipment: sh})
}

// CloseShipment closes shipment id at door, whether it was opened here or
// came with the list. Durable on return; closing twice is not an error.
func (s *Store) CloseShipment(door, id string) error {
	if id == "" || door == "" {
		return fmt.Errorf("%w: close needs an id and a door", ErrShipment)
	}
	return s.putLocalShip(localShip{Shipment: custody.Shipment{ID: id, Door: door}, Closed: true})
}

func (s *Store) putLocalShip(r localShip) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLocalShips)
		if err != nil {
			return err
		}
		return b.Put(key2(r.Door, r.ID), v)
	})
	if err != nil {
		return fmt.Errorf("storing shipment %s at %s: %w", r.ID, r.Door, err)
	}
	return nil
}

// localShipments merges the station's own shipment records into the list's
// shipments for door and dir: tombstones hide, local open ones are added.
func localShipments(tx *bolt.Tx, door string, dir dock.Direction, list []custody.Shipment) ([]custody.Shipment, error) {
	b := tx.Bucket(bucketLocalShips)
	if b == nil {
		return list, nil
	}
	closed := map[string]bool{}
	var open []custody.Shipment
	c := b.Cursor()
	prefix := key2(door, "")
	for k, v := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
		var r localShip
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("reading local shipment %q: %w", k, err)
		}
		if r.Closed {
			closed[r.ID] = true
		} else if r.Direction == dir {
			open = append(open, r.Shipment)
		}
	}
	if len(closed) == 0 && len(open) == 0 {
		return list, nil
	}
	out := make([]custody.Shipment, 0, len(list)+len(open))
	for _, sh := range list {
		if !closed[sh.ID] {
			out = append(out, sh)
		}
	}
	for _, sh := range open {
		if !closed[sh.ID] {
			out = append(out, sh)
		}
	}
	return out, nil
}
