package dock

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// EventSchema is the version of the CustodyEvent payload published to MQTT.
const EventSchema = "dockd.custody-event/1"

// OperatorEventSchema names operator records (Kind "operator") on the same
// topic: an operator action, no scan and no decision.
const OperatorEventSchema = "dockd.operator-event/1"

// CustodyEvent is the record of one scan at a door: who/what/where/when/why.
// It is what the buffer stores (as JSON) and what the uplink publishes,
// byte for byte. Once appended its ID and Seq never change, so central can
// drop duplicates from at-least-once delivery.
type CustodyEvent struct {
	Schema string `json:"schema"`
	// Kind is empty for a scan; "operator" for an operator record: a state
	// change of the station (acknowledge button, direction, lamp test,
	// config reload, shipment opened or closed, allowlist activated), with
	// Action saying which. Operator records carry no decision.
	Kind   string `json:"kind,omitempty"`
	Action string `json:"action,omitempty"`
	// Actor names who made an operator record's change or injected a
	// simulated scan ("operator" at the door, user:NAME, cert:CN,
	// local:NAME(uid=N), central); Via says how (button, key_switch,
	// page, api, cli, mqtt, startup). CommandID is central's command id
	// when Via is mqtt.
	Actor     string `json:"actor,omitempty"`
	Via       string `json:"via,omitempty"`
	CommandID string `json:"command_id,omitempty"`
	// PreviousDirection is the door's direction before an operator
	// record of action direction (Direction holds the new one).
	PreviousDirection Direction `json:"previous_direction,omitempty"`
	// Shipment is the shipment id of a shipment_open/shipment_close record,
	// and on a scan the expected shipment (ASN/PO) open at the door whose
	// line the scan matched, whatever the decision (Decision.ExpectedShipment).
	Shipment string `json:"shipment,omitempty"`
	// Simulated marks a scan injected by a person (dockd simulate, the
	// status page) instead of read by a reader; Reader is then always
	// SimulatedReader.
	Simulated bool      `json:"simulated,omitempty"`
	ID        string    `json:"id"`  // random 128-bit id, UUID form
	Seq       uint64    `json:"seq"` // per-station, strictly increasing, assigned by the buffer
	Site      string    `json:"site"`
	Station   string    `json:"station"`
	Door      string    `json:"door"`
	Direction Direction `json:"direction"`
	Time      time.Time `json:"time"`
	// ClockSynced is false when wall time was not known to be synchronised
	// (a Pi without RTC before NTP); ordering then relies on Seq only.
	ClockSynced bool   `json:"clock_synced"`
	Reader      string `json:"reader"`
	Raw         string `json:"raw"`               // the frame as read, control bytes escaped by JSON
	RawHex      string `json:"raw_hex,omitempty"` // the exact bytes, when they are not valid UTF-8

	Symbology string    `json:"symbology,omitempty"`
	Form      string    `json:"form,omitempty"`
	AIs       []AIValue `json:"ais,omitempty"`
	GTIN      string    `json:"gtin,omitempty"`
	Lot       string    `json:"lot,omitempty"`
	// Batch is the scanned AI 10 value when the list knows it as one of a
	// lot's batch codes; Lot then names that lot.
	Batch string `json:"batch,omitempty"`
	// Qty is the label's count of trade items (AI 30, else AI 37), when given.
	Qty    int      `json:"qty,omitempty"`
	Serial string   `json:"serial,omitempty"`
	SSCC   string   `json:"sscc,omitempty"`
	Expiry string   `json:"expiry,omitempty"` // YYYY-MM-DD
	EPC    string   `json:"epc,omitempty"`    // pure-identity URI for tags
	Tag    *TagRead `json:"tag,omitempty"`

	Decision
	ErrorKind        string `json:"error_kind,omitempty"` // decode error kind for bad_scan
	AllowlistVersion string `json:"allowlist_version,omitempty"`
}

// AIValue is one GS1 Application Identifier and its value, in scan order.
type AIValue struct {
	AI    string `json:"ai"`
	Value string `json:"value"`
}

// NewEventID returns a random RFC 4122 version 4 UUID for a new event.
func NewEventID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on Linux ≥ 3.17
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
