// Package custody holds the rules that decide, for one scan at one door,
// whether the goods may cross: accept, warn or reject, with a reason code.
// The rules are pure and deterministic given (item, list snapshot, policy,
// direction, today); they import no I/O package.
package custody

import (
	"fmt"

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

// Lot is one allowlist entry: a lot (batch) of one product.
type Lot struct {
	GTIN     string    `json:"gtin"`
	Lot      string    `json:"lot"`
	Status   LotStatus `json:"status"`
	Expiry   string    `json:"expiry,omitempty"` // YYYY-MM-DD; empty when the list does not say
	Reason   string    `json:"reason,omitempty"` // why blocked/recalled/quarantined, recall id
	RecallID string    `json:"recall_id,omitempty"`
}

// List is the read side of the allowlist the rules consult. Implementations
// answer from one consistent snapshot per call.
type List interface {
	// Product reports whether any lot of gtin is on the list.
	Product(gtin string) (bool, error)
	// Lot returns the entry for gtin+lot.
	Lot(gtin, lot string) (Lot, bool, error)
}

// Item is what a decoded scan says about the goods, reduced to what the
// rules need. Dates are YYYY-MM-DD.
type Item struct {
	GTIN, Lot, Serial, SSCC string
	Expiry                  string
}

// Policy adjusts the rules per site and door.
type Policy struct {
	// Warn holds reasons that accept with a warning (amber) instead of
	// rejecting. Bad scans and station faults always reject.
	Warn map[dock.Reason]bool
}

// Decide returns the decision for it at a door running in dir on the date
// today (YYYY-MM-DD, the station's local date). An error from the list is a
// storage fault and rejects: the door never opens on a list it cannot read.
func Decide(it Item, list List, pol Policy, dir dock.Direction, today string) dock.Decision {
	if it.GTIN == "" {
		if it.SSCC != "" {
			// Pallet-level (SSCC-only) checks need the expected-shipment
			// model; until then an SSCC label is recorded with a warning.
			return pol.verdict(dock.ReasonUnknownSerial, "SSCC "+it.SSCC+" has no GTIN to check against the list", true)
		}
		return pol.verdict(dock.ReasonUnknownGTIN, "the scan carries no GTIN", false)
	}
	known, err := list.Product(it.GTIN)
	if err != nil {
		return dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonStorageFault, Detail: err.Error()}
	}
	if !known {
		return pol.verdict(dock.ReasonUnknownGTIN, "GTIN "+it.GTIN+" is not on the list", false)
	}
	if it.Lot == "" {
		return pol.verdict(dock.ReasonUnknownLot, "the scan carries no lot (AI 10)", false)
	}
	lot, ok, err := list.Lot(it.GTIN, it.Lot)
	if err != nil {
		return dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonStorageFault, Detail: err.Error()}
	}
	if !ok {
		return pol.verdict(dock.ReasonUnknownLot, fmt.Sprintf("lot %q of GTIN %s is not on the list", it.Lot, it.GTIN), false)
	}
	switch lot.Status {
	case Recalled:
		return pol.verdict(dock.ReasonLotRecalled, detail("lot "+it.Lot+" is recalled", lot), false)
	case Blocked:
		return pol.verdict(dock.ReasonLotBlocked, detail("lot "+it.Lot+" is blocked", lot), false)
	case Quarantined:
		return pol.verdict(dock.ReasonLotQuarantined, detail("lot "+it.Lot+" is quarantined", lot), false)
	}
	// The earlier of the label's and the list's expiry counts.
	exp := it.Expiry
	if lot.Expiry != "" && (exp == "" || lot.Expiry < exp) {
		exp = lot.Expiry
	}
	if exp != "" && exp < today {
		return pol.verdict(dock.ReasonExpired, "expired on "+exp, false)
	}
	return dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}
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

// verdict turns a failed rule into a decision: reject, unless the policy (or
// the rule itself, by softByDefault) makes it a warning.
func (p Policy) verdict(r dock.Reason, detail string, softByDefault bool) dock.Decision {
	v := dock.Reject
	if softByDefault || p.Warn[r] {
		v = dock.Warn
	}
	return dock.Decision{Verdict: v, Reason: r, Detail: detail}
}

// BadScan is the decision for input that did not decode; kind is the
// decoder's error kind (e.g. check_digit) and always rejects.
func BadScan(kind, msg string) dock.Decision {
	return dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonBadScan, Detail: kind + ": " + msg}
}
