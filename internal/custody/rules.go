// Package custody holds the rules that decide, for one scan at one door,
// whether the goods may cross: accept, warn or reject, with a reason code.
// The rules are pure and deterministic given (item, list snapshot with the
// door's custody state, policy, door, direction, today); they import no I/O
// package.
package custody

import (
	"fmt"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// LotStatus is what the list says about a lot.
type LotStatus string

// Lot statuses. Only released lots may cross a door without a warning.
const (
	Released    LotStatus = "released"
	Quarantined LotStatus = "quarantined"
	Blocked     LotStatus = "blocked"
	Recalled    LotStatus = "recalled"
)

// Valid reports whether s is a known status.
func (s LotStatus) Valid() bool {
	switch s {
	case Released, Quarantined, Blocked, Recalled:
		return true
	}
	return false
}

// Lot is one allowlist entry: a lot of one product and the batch codes it
// contains (a scan whose AI 10 is one of Batches is a scan of this lot).
type Lot struct {
	GTIN     string    `json:"gtin"`
	Lot      string    `json:"lot"`
	Status   LotStatus `json:"status"`
	Expiry   string    `json:"expiry,omitempty"` // YYYY-MM-DD; empty when the list does not say
	Reason   string    `json:"reason,omitempty"` // why blocked/recalled/quarantined
	RecallID string    `json:"recall_id,omitempty"`
	Batches  []string  `json:"batches,omitempty"`
}

// State is the custody state of one serialised item or pallet (SSCC).
type State string

// Custody states: expected → received → shipped; a shipped item received
// again is returned (in custody again). StateNone means nothing is known.
const (
	StateNone State = ""
	Expected  State = "expected"
	Received  State = "received"
	Shipped   State = "shipped"
	Returned  State = "returned"
)

// Valid reports whether s is a known state (StateNone included).
func (s State) Valid() bool {
	switch s {
	case StateNone, Expected, Received, Shipped, Returned:
		return true
	}
	return false
}

// InCustody reports whether goods in state s are on site.
func (s State) InCustody() bool { return s == Received || s == Returned }

// Serial is one serialised item (GTIN+serial) or one pallet (SSCC, GTIN
// may be empty) with its lot and its effective custody state: the later
// of what the list says and what this station recorded itself.
type Serial struct {
	GTIN   string    `json:"gtin,omitempty"`
	Serial string    `json:"serial,omitempty"`
	SSCC   string    `json:"sscc,omitempty"`
	Lot    string    `json:"lot,omitempty"`
	State  State     `json:"state,omitempty"`
	Door   string    `json:"door,omitempty"` // where the last change happened
	At     time.Time `json:"at,omitzero"`    // when the last change happened
}

// Shipment is an expected shipment (ASN or PO) open at a door: the lots,
// serials or SSCCs expected to cross it, with quantities.
type Shipment struct {
	ID        string         `json:"id"`
	Door      string         `json:"door"`
	Direction dock.Direction `json:"direction"`
	Lines     []Line         `json:"lines"`
}

// Line is one line of a Shipment. The most specific key given is matched:
// SSCC, else GTIN+Serial, else GTIN+Lot, else GTIN. Qty 0 means no limit.
type Line struct {
	GTIN   string `json:"gtin,omitempty"`
	Lot    string `json:"lot,omitempty"`
	Serial string `json:"serial,omitempty"`
	SSCC   string `json:"sscc,omitempty"`
	Qty    int    `json:"qty,omitempty"`
}

// List is one consistent snapshot of the allowlist and of the door's
// custody state, as the rules read it. Implementations answer every call
// of one Decide from the same snapshot. Errors are storage faults.
type List interface {
	// Version names the list version this snapshot is ("" when none).
	Version() string
	// Product reports whether gtin is on the list (any lot or serial of it,
	// or the product itself).
	Product(gtin string) (bool, error)
	// Lot returns the entry for gtin+lot, where lot may also be one of a
	// lot's batch codes.
	Lot(gtin, lot string) (Lot, bool, error)
	// Serialised reports whether the list tracks serials of gtin: then a
	// serial it does not know is unknown_serial.
	Serialised(gtin string) (bool, error)
	// Serial returns gtin+serial with its effective custody state; found
	// when the list or the station's own records know it.
	Serial(gtin, serial string) (Serial, bool, error)
	// TracksSSCC reports whether the list holds any pallet (SSCC) entry.
	TracksSSCC() (bool, error)
	// SSCC returns the pallet with its effective custody state.
	SSCC(sscc string) (Serial, bool, error)
	// Shipments returns the expected shipments open at door for dir, in a
	// stable order; none means the door takes anything the list allows.
	Shipments(door string, dir dock.Direction) ([]Shipment, error)
	// Counted returns the quantity accepted so far on a shipment's line.
	Counted(shipment string, line int) (int, error)
}

// Item is what a decoded scan says about the goods, reduced to what the
// rules need. Dates are YYYY-MM-DD. Qty is the count on the label (AI 30
// or 37); 0 means one.
type Item struct {
	GTIN, Lot, Serial, SSCC string
	Expiry                  string
	Qty                     int
}

// Quantity returns the item's count, at least 1.
func (it Item) Quantity() int {
	if it.Qty > 0 {
		return it.Qty
	}
	return 1
}

// At is where and when a scan is decided.
type At struct {
	Door      string
	Direction dock.Direction
	Today     string // YYYY-MM-DD in the site's time zone
}

// Severity is what a failed rule does to the scan.
type Severity int

// Severities. SeverityDefault defers to the rule's built-in default
// (expires_soon warns, everything else rejects).
const (
	SeverityDefault Severity = iota
	SeverityWarn
	SeverityReject
)

// Policy adjusts the rules per site and door. The zero Policy is the
// built-in default. Bad scans and station faults always reject.
type Policy struct {
	// Warn holds reasons that accept with a warning (amber) instead of
	// rejecting, in both directions.
	Warn map[dock.Reason]bool
	// Direction overrides Warn per direction, e.g. unknown_lot warns on
	// receiving but rejects on shipping.
	Direction map[dock.Direction]map[dock.Reason]Severity
	// ExpiresSoonDays is the expires_soon window: a lot expiring within
	// this many days of today (inclusive) gets expires_soon. 0 disables it.
	ExpiresSoonDays int
}

// Severity returns what reason r does on direction dir under p.
func (p Policy) Severity(r dock.Reason, dir dock.Direction) Severity {
	if s := p.Direction[dir][r]; s != SeverityDefault {
		return s
	}
	if p.Warn[r] {
		return SeverityWarn
	}
	if r == dock.ReasonExpiresSoon {
		return SeverityWarn
	}
	return SeverityReject
}

// outcome collects failed rules: the first reject wins, else the first warn.
type outcome struct {
	pol      Policy
	dir      dock.Direction
	warn     *dock.Decision
	rej      *dock.Decision
	shipment string // the matched shipment's id
}

func (o *outcome) fail(r dock.Reason, detail string) {
	d := dock.Decision{Verdict: dock.Reject, Reason: r, Detail: detail}
	if o.pol.Severity(r, o.dir) == SeverityWarn {
		d.Verdict = dock.Warn
		if o.warn == nil {
			o.warn = &d
		}
		return
	}
	if o.rej == nil {
		o.rej = &d
	}
}

func (o *outcome) soft(r dock.Reason, detail string) {
	if o.warn == nil {
		o.warn = &dock.Decision{Verdict: dock.Warn, Reason: r, Detail: detail}
	}
}

func (o *outcome) decision() dock.Decision {
	d := dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}
	switch {
	case o.rej != nil:
		d = *o.rej
	case o.warn != nil:
		d = *o.warn
	}
	d.ExpectedShipment = o.shipment
	return d
}

func storageFault(err error) dock.Decision {
	return dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonStorageFault, Detail: err.Error()}
}

// Decide returns the decision for it at a door. Every rule is checked; the
// first rule that rejects decides, else the first that warns, else the
// scan is accepted. An error from the list is a storage fault and rejects:
// the door never opens on a list it cannot read. Decision.ExpectedShipment names
// the expected shipment whose line the item matched, whatever the verdict.
func Decide(it Item, list List, pol Policy, at At) dock.Decision {
	o := &outcome{pol: pol, dir: at.Direction}
	if err := decide(it, list, at, o); err != nil {
		return storageFault(err)
	}
	return o.decision()
}

func decide(it Item, list List, at At, o *outcome) error {
	if it.SSCC != "" {
		if err := checkSSCC(it, list, at, o); err != nil {
			return err
		}
	}
	if it.GTIN == "" {
		if it.SSCC == "" {
			o.fail(dock.ReasonUnknownGTIN, "the scan carries no GTIN")
			return nil
		}
		return checkShipment(it, list, at, o)
	}
	known, err := list.Product(it.GTIN)
	if err != nil {
		return err
	}
	if !known {
		o.fail(dock.ReasonUnknownGTIN, "GTIN "+it.GTIN+" is not on the list")
		return nil
	}
	var ser Serial
	var serOK bool
	if it.Serial != "" {
		if ser, serOK, err = list.Serial(it.GTIN, it.Serial); err != nil {
			return err
		}
	}
	lotName := it.Lot
	if lotName == "" && serOK && ser.Lot != "" {
		lotName = ser.Lot // a serial-only label: the list knows its lot
	}
	if err := checkLot(it, lotName, list, at, o); err != nil {
		return err
	}
	if it.Serial != "" {
		if err := checkSerial(it, lotName, ser, serOK, list, at, o); err != nil {
			return err
		}
	}
	return checkShipment(it, list, at, o)
}

func checkLot(it Item, lotName string, list List, at At, o *outcome) error {
	if lotName == "" {
		o.fail(dock.ReasonUnknownLot, "the scan carries no lot (AI 10)")
		return nil
	}
	lot, ok, err := list.Lot(it.GTIN, lotName)
	if err != nil {
		return err
	}
	if !ok {
		o.fail(dock.ReasonUnknownLot, fmt.Sprintf("lot %q of GTIN %s is not on the list", lotName, it.GTIN))
		return nil
	}
	switch lot.Status {
	case Recalled:
		o.fail(dock.ReasonLotRecalled, detail("lot "+lot.Lot+" is recalled", lot))
	case Blocked:
		o.fail(dock.ReasonLotBlocked, detail("lot "+lot.Lot+" is blocked", lot))
	case Quarantined:
		o.fail(dock.ReasonLotQuarantined, detail("lot "+lot.Lot+" is quarantined", lot))
	}
	// The earlier of the label's and the list's expiry counts.
	exp := it.Expiry
	if lot.Expiry != "" && (exp == "" || lot.Expiry < exp) {
		exp = lot.Expiry
	}
	switch {
	case exp == "":
	case exp < at.Today:
		o.fail(dock.ReasonExpired, "expired on "+exp)
	case o.pol.ExpiresSoonDays > 0:
		if t, err := time.Parse("2006-01-02", at.Today); err == nil {
			if soon := t.AddDate(0, 0, o.pol.ExpiresSoonDays).Format("2006-01-02"); exp <= soon {
				o.fail(dock.ReasonExpiresSoon, fmt.Sprintf("expires on %s, within %d days", exp, o.pol.ExpiresSoonDays))
			}
		}
	}
	return nil
}

func checkSerial(it Item, lotName string, ser Serial, known bool, list List, at At, o *outcome) error {
	if !known {
		tracked, err := list.Serialised(it.GTIN)
		if err != nil {
			return err
		}
		if tracked {
			o.fail(dock.ReasonUnknownSerial, fmt.Sprintf("serial %q of GTIN %s is not on the list", it.Serial, it.GTIN))
		}
		return nil
	}
	if ser.Lot != "" && lotName != "" && ser.Lot != lotName {
		if l, ok, err := list.Lot(it.GTIN, lotName); err != nil {
			return err
		} else if !ok || l.Lot != ser.Lot { // a batch code of the serial's lot is no mismatch
			o.fail(dock.ReasonSerialLotMismatch, fmt.Sprintf("serial %q belongs to lot %q, the label says %q", it.Serial, ser.Lot, lotName))
		}
	}
	checkTransition("serial "+it.Serial, ser, at, o)
	return nil
}

func checkSSCC(it Item, list List, at At, o *outcome) error {
	pal, ok, err := list.SSCC(it.SSCC)
	if err != nil {
		return err
	}
	if !ok {
		tracked, err := list.TracksSSCC()
		if err != nil {
			return err
		}
		if tracked {
			o.fail(dock.ReasonUnknownSerial, "SSCC "+it.SSCC+" is not on the list")
		} else if it.GTIN == "" {
			// Nothing to check a bare pallet label against: record it, amber.
			o.soft(dock.ReasonUnknownSerial, "SSCC "+it.SSCC+": the list holds no pallets to check against")
		}
		return nil
	}
	if it.GTIN != "" && pal.GTIN != "" && pal.GTIN != it.GTIN {
		o.fail(dock.ReasonSerialLotMismatch, fmt.Sprintf("SSCC %s holds GTIN %s, the label says %s", it.SSCC, pal.GTIN, it.GTIN))
	}
	if it.Lot != "" && pal.Lot != "" && pal.Lot != it.Lot {
		o.fail(dock.ReasonSerialLotMismatch, fmt.Sprintf("SSCC %s holds lot %q, the label says %q", it.SSCC, pal.Lot, it.Lot))
	}
	checkTransition("SSCC "+it.SSCC, pal, at, o)
	return nil
}

func checkTransition(what string, s Serial, at At, o *outcome) {
	if _, r := Transition(at.Direction, s.State); r != dock.ReasonOK {
		d := what + " is " + string(s.State)
		if s.State == StateNone || s.State == Expected {
			d = what + " never arrived"
		}
		if s.Door != "" {
			d += " (last at door " + s.Door
			if !s.At.IsZero() {
				d += " " + s.At.UTC().Format(time.RFC3339)
			}
			d += ")"
		}
		o.fail(r, d)
	}
}

// Transition returns the custody state after goods in state from cross a
// door in dir, or the reason they may not: receiving goods already in
// custody is duplicate_serial; shipping goods never received is
// not_in_custody; shipping them twice is already_shipped.
func Transition(dir dock.Direction, from State) (State, dock.Reason) {
	switch dir {
	case dock.Receiving:
		switch from {
		case Received, Returned:
			return from, dock.ReasonDuplicateSerial
		case Shipped:
			return Returned, dock.ReasonOK
		}
		return Received, dock.ReasonOK
	case dock.Shipping:
		switch from {
		case Received, Returned:
			return Shipped, dock.ReasonOK
		case Shipped:
			return from, dock.ReasonAlreadyShipped
		}
		return from, dock.ReasonNotInCustody
	}
	return from, dock.ReasonOK
}

func checkShipment(it Item, list List, at At, o *outcome) error {
	ships, err := list.Shipments(at.Door, at.Direction)
	if err != nil || len(ships) == 0 {
		return err
	}
	si, li, ok := MatchLine(ships, it)
	if !ok {
		o.fail(dock.ReasonNotExpected, "not on an open shipment at door "+at.Door)
		return nil
	}
	o.shipment = ships[si].ID
	line := ships[si].Lines[li]
	if line.Qty <= 0 {
		return nil
	}
	n, err := list.Counted(ships[si].ID, li)
	if err != nil {
		return err
	}
	if n+it.Quantity() > line.Qty {
		o.fail(dock.ReasonOverQuantity, fmt.Sprintf("shipment %s line %d: %d of %d already counted, this scan adds %d", ships[si].ID, li+1, n, line.Qty, it.Quantity()))
	}
	return nil
}

// MatchLine finds the shipment line it counts against: the first line,
// in shipment order, whose keys all match it (an SSCC line matches the
// pallet label; a GTIN line any lot and serial of that GTIN).
func MatchLine(ships []Shipment, it Item) (shipment, line int, ok bool) {
	for si, s := range ships {
		for li, l := range s.Lines {
			if lineMatches(l, it) {
				return si, li, true
			}
		}
	}
	return 0, 0, false
}

func lineMatches(l Line, it Item) bool {
	if l.SSCC != "" {
		return l.SSCC == it.SSCC
	}
	if l.GTIN == "" || l.GTIN != it.GTIN {
		return false
	}
	if l.Serial != "" && l.Serial != it.Serial {
		return false
	}
	return l.Lot == "" || l.Lot == it.Lot
}

func detail(s string, l Lot) string {
	if l.RecallID != "" {
		s += " (" + l.RecallID + ")"
	}
	if l.Reason != "" {
		s += ": " + l.Reason
	}
	return s
}

// BadScan is the decision for input that did not decode; kind is the
// decoder's error kind (e.g. check_digit) and always rejects.
func BadScan(kind, msg string) dock.Decision {
	return dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonBadScan, Detail: kind + ": " + msg}
}
