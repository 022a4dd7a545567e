// Package dock is the station's shared vocabulary: the values that travel
// between readers, the decoder, the rules, the durable buffer, the light and
// the uplink. It holds plain data types only and imports no I/O package, so
// every other package may depend on it without pulling hardware or network
// code along.
package dock

import (
	"errors"
	"time"
)

// Direction is which way goods cross a door.
type Direction string

// The two directions a door can run in.
const (
	Receiving Direction = "receiving"
	Shipping  Direction = "shipping"
)

// Valid reports whether d is one of the known directions.
func (d Direction) Valid() bool { return d == Receiving || d == Shipping }

// ErrFrameTooLong marks a Frame whose input exceeded the reader's frame bound.
// The bytes up to the next terminator were discarded; Frame.Data holds a
// prefix of them for the record.
var ErrFrameTooLong = errors.New("frame too long")

// Frame is one delimited message from a reader: a barcode, or one tag read.
// Data is owned by the receiver (the reader never reuses it).
type Frame struct {
	Reader string    // reader id from config
	Data   []byte    // payload without the terminator (and without a stripped prefix)
	At     time.Time // when the terminator arrived
	// Err is non-nil when the frame is not a clean read, e.g. ErrFrameTooLong.
	Err error
	// Tag carries RFID read metadata when the reader knows it; nil for barcodes.
	Tag *TagRead
	// Injected is set for a scan a person injected (dockd simulate, the
	// status page), not read by a reader: its event is recorded under
	// reader SimulatedReader, marked simulated, with who asked.
	Injected *Injection
}

// SimulatedReader is the reader id of every injected scan. No configured
// reader may use it, so a real read never looks simulated and a simulated
// one never looks real.
const SimulatedReader = "simulate"

// Injection says who injected a simulated scan and how.
type Injection struct {
	Actor string // e.g. local:alice(uid=1000), user:technician
	Via   string // cli, page, api
}

// TagRead is what an RFID reader says about one tag observation.
type TagRead struct {
	Antenna int `json:"antenna,omitempty"`
	RSSI    int `json:"rssi,omitempty"`  // dBm
	Phase   int `json:"phase,omitempty"` // degrees, when reported
}

// ReaderState is a change in a reader's health.
type ReaderState struct {
	Reader string
	Up     bool
	Port   string // the resolved device (e.g. /dev/ttyUSB0) when up
	Err    error  // why it is down, when known
	At     time.Time
}

// Verdict is what the operator is told.
type Verdict string

// Verdicts, in rising severity.
const (
	Accept Verdict = "accept"
	Warn   Verdict = "warn"   // accepted, amber
	Reject Verdict = "reject" // red
)

// Reason is a code from a fixed, documented set explaining a Verdict.
type Reason string

// The reason codes. Accept decisions carry ReasonOK.
const (
	ReasonOK                Reason = "ok"
	ReasonBadScan           Reason = "bad_scan"
	ReasonUnknownGTIN       Reason = "unknown_gtin"
	ReasonUnknownLot        Reason = "unknown_lot"
	ReasonLotRecalled       Reason = "lot_recalled"
	ReasonLotBlocked        Reason = "lot_blocked"
	ReasonLotQuarantined    Reason = "lot_quarantined"
	ReasonExpired           Reason = "expired"
	ReasonExpiresSoon       Reason = "expires_soon"
	ReasonUnknownSerial     Reason = "unknown_serial"
	ReasonSerialLotMismatch Reason = "serial_lot_mismatch"
	ReasonDuplicateSerial   Reason = "duplicate_serial"
	ReasonNotInCustody      Reason = "not_in_custody"
	ReasonAlreadyShipped    Reason = "already_shipped"
	ReasonNotExpected       Reason = "not_expected"
	ReasonOverQuantity      Reason = "over_quantity"
	ReasonBufferFull        Reason = "buffer_full"
	ReasonStorageFault      Reason = "storage_fault"
)

// Decision is the outcome of the rules for one scan.
type Decision struct {
	Verdict Verdict `json:"decision,omitempty"` // always set on scans; absent on operator records
	Reason  Reason  `json:"reason,omitempty"`
	Detail  string  `json:"detail,omitempty"` // human-readable, e.g. the decode error
	// ExpectedShipment is the id of the expected shipment (ASN/PO) open at
	// the door whose line the scan matched, whatever the verdict; empty when
	// no shipment is open or none matched. The station records it in
	// CustodyEvent.Shipment (it is not marshalled from here).
	ExpectedShipment string `json:"-"`
}

// Condition is a standing state of the station that the light shows
// underneath decisions (faults outrank decisions; see device/light).
type Condition string

// Conditions the station raises and clears.
const (
	ConditionReaderDown    Condition = "reader_down"
	ConditionBrokerOffline Condition = "broker_offline"
	ConditionBufferHigh    Condition = "buffer_high" // above the alarm threshold
	ConditionBufferFull    Condition = "buffer_full"
	ConditionStorageFault  Condition = "storage_fault"
	// ConditionRejectHold: the site holds the door after a reject until
	// someone acknowledges it (the acknowledge button).
	ConditionRejectHold Condition = "reject_hold"
)

// ErrBufferFull is what an Outbox returns (wrapped) when its byte budget is
// spent: the scan is refused rather than an older custody record dropped.
var ErrBufferFull = errors.New("buffer full")
