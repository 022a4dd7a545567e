// Package command parses the commands central sends a station and runs
// them, idempotently, through an Executor the daemon provides. It is pure:
// no MQTT, no hardware. The daemon subscribes to the station's command
// topic, passes each message to Handler.Handle and publishes the reply it
// returns (uplink/contract/CONTRACT.md).
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/jsonstrict"
)

// Payload schema names (uplink/contract/command*.schema.json).
const (
	Schema      = "dockd.command/1"
	ReplySchema = "dockd.command-reply/1"
)

// The command names: the last level of PREFIX/SITE/DOOR/cmd/NAME.
const (
	NameSetDirection  = "set-direction"
	NameLightTest     = "light-test"
	NameReloadConfig  = "reload-config"
	NameRequestStatus = "request-status"
	NameOpenShipment  = "open-shipment"
	NameCloseShipment = "close-shipment"
)

// Names lists every command this package knows, in documentation order.
var Names = []string{NameSetDirection, NameLightTest, NameReloadConfig, NameRequestStatus, NameOpenShipment, NameCloseShipment}

// MaxPayload is the largest command message Parse reads at all; a Handler
// refuses larger ones unread, at Config.MaxPayload (default
// DefaultMaxPayload) or this, whichever is smaller.
const MaxPayload = 1 << 20

// DefaultMaxPayload is a Handler's default bound on one command message:
// enough for an open-shipment of several hundred lines. Larger shipment
// lists travel in the allowlist (shipment rows).
const DefaultMaxPayload = 64 << 10

// Bounds on a command's time to live (ttl_s).
const (
	DefaultTTL = 5 * time.Minute
	MaxTTL     = 24 * time.Hour
)

// Limits on an open-shipment command, as in the schema.
const (
	MaxShipmentLines = 10000
	maxLotLen        = 20
	maxShipmentIDLen = 64
)

// Code is the machine-readable kind of a failed command, from a fixed set.
type Code string

// Error codes of a reply.
const (
	CodeMalformed      Code = "malformed"       // not a dockd.command/1 JSON object, or a bad id/name/sent_at
	CodeUnknownCommand Code = "unknown_command" // the topic names no known command
	CodeInvalidArgs    Code = "invalid_args"    // args do not fit the command
	CodeDuplicateID    Code = "duplicate_id"    // the id was used before for a different command
	CodeUnsupported    Code = "unsupported"     // this station cannot run the command (Executor returned ErrUnsupported)
	CodeFailed         Code = "failed"          // the Executor returned an error or panicked
	CodeTimeout        Code = "timeout"         // the command did not finish within Config.Timeout
	CodeTooLarge       Code = "too_large"       // the message exceeds the station's command size limit; not read
	CodeRetained       Code = "retained"        // delivered as a retained message: never executed (commands must not be retained)
	CodeExpired        Code = "expired"         // issued_at + ttl_s has passed: arrived too late to be run
)

// Error is a command failure with its reply code. Parse returns it, and an
// Executor may return one (wrapped or not) to choose the code itself.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

func errorf(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// ErrUnsupported is returned (possibly wrapped) by an Executor for a
// command the station cannot carry out (e.g. no config file to reload); the
// reply code is unsupported.
var ErrUnsupported = errors.New("not supported by this station")

// ShipmentLine is one expected line of a shipment. The most specific key
// given is matched: SSCC, else GTIN+Serial, else GTIN+Lot, else GTIN. Qty 0
// means no limit.
type ShipmentLine struct {
	GTIN   string `json:"gtin,omitempty"`
	Lot    string `json:"lot,omitempty"`
	Serial string `json:"serial,omitempty"`
	SSCC   string `json:"sscc,omitempty"`
	Qty    int    `json:"qty,omitempty"`
}

// Shipment is the argument of open-shipment and close-shipment. For
// close-shipment only ID is set. Direction is empty when central left it to
// the door's current direction. Lines empty on open means the shipment must
// already be known to the allowlist.
type Shipment struct {
	ID        string         `json:"shipment"`
	Direction dock.Direction `json:"direction,omitempty"`
	Lines     []ShipmentLine `json:"lines,omitempty"`
}

// Executor carries out commands on the station. Handler calls it from the
// goroutine that called Handle, one command at a time per id; calls for
// different ids may run concurrently when Handle is called concurrently.
type Executor interface {
	// SetDirection switches the door; scans decided afterwards carry d.
	SetDirection(d dock.Direction) error
	// LightTest runs the lamp test and returns when it is done or ctx ends.
	LightTest(ctx context.Context) error
	// ReloadConfig re-reads what the station can change without a restart.
	ReloadConfig() error
	// Shipment opens (open true) or closes an expected shipment at this door.
	Shipment(open bool, s Shipment) error
	// Status returns the station status (the retained status payload).
	Status() any
}

// Command is a parsed command: the name from the topic, the id, and the
// raw args (checked by Parse against the command's rules).
type Command struct {
	ID     string
	Name   string
	SentAt time.Time // zero when absent (informational)
	// IssuedAt is when central issued the command (zero when absent), and
	// TTL how long after that it may still be run (DefaultTTL when the
	// command carries issued_at without ttl_s).
	IssuedAt time.Time
	TTL      time.Duration
	Args     json.RawMessage

	direction dock.Direction
	shipment  Shipment
}

// Direction is the argument of set-direction.
func (c Command) Direction() dock.Direction { return c.direction }

// Shipment is the argument of open-shipment and close-shipment.
func (c Command) Shipment() Shipment { return c.shipment }

var (
	idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	digits14  = regexp.MustCompile(`^[0-9]{14}$`)
	digits18  = regexp.MustCompile(`^[0-9]{18}$`)
)

// ValidID reports whether id is a well-formed command id (one topic level,
// never starting with '_').
func ValidID(id string) bool { return idPattern.MatchString(id) }

// envelope is the JSON form of a command.
type envelope struct {
	Schema *string         `json:"schema"`
	ID     *string         `json:"id"`
	Name   *string         `json:"name"`
	Args   json.RawMessage `json:"args"` // "null" when given as null, nil when absent
	SentAt *string         `json:"sent_at"`
	// IssuedAt and TTLS bound when the command may run (CONTRACT.md).
	IssuedAt *string         `json:"issued_at"`
	TTLS     json.RawMessage `json:"ttl_s"`
}

// Parse reads a command for name (the last topic level) from payload. It
// never panics. On error it returns an *Error and the Command holds the id
// when the id itself was readable (so the caller can answer on the id's
// reply topic). Unknown envelope members are ignored (forward
// compatibility); unknown args members are refused (a misspelt argument
// must not be silently dropped). A member name given twice anywhere, or
// data after the object, is malformed (jsonstrict): with two ids the
// station and central could disagree about which command this is.
func Parse(name string, payload []byte) (Command, error) {
	cmd := Command{Name: name}
	if len(payload) > MaxPayload {
		return cmd, errorf(CodeTooLarge, "payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	var env envelope
	if err := jsonstrict.Decode(payload, &env, false); err != nil {
		return cmd, errorf(CodeMalformed, "payload is not a JSON object: %v", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(payload), []byte("null")) {
		return cmd, errorf(CodeMalformed, "payload is null, want a JSON object")
	}
	if env.ID == nil {
		return cmd, errorf(CodeMalformed, "no id")
	}
	if !ValidID(*env.ID) {
		return cmd, errorf(CodeMalformed, "id %q: want 1-64 of A-Z a-z 0-9 . _ : - starting with a letter or digit", *env.ID)
	}
	cmd.ID = *env.ID
	switch {
	case env.Schema == nil:
		return cmd, errorf(CodeMalformed, "no schema (want %q)", Schema)
	case *env.Schema != Schema:
		return cmd, errorf(CodeMalformed, "schema %q, want %q", *env.Schema, Schema)
	}
	if env.SentAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *env.SentAt)
		if err != nil {
			return cmd, errorf(CodeMalformed, "sent_at %q is not an RFC 3339 date-time", *env.SentAt)
		}
		cmd.SentAt = t
	}
	if err := cmd.parseExpiry(env); err != nil {
		return cmd, err
	}
	if !known(name) {
		return cmd, errorf(CodeUnknownCommand, "unknown command %q (known: %v)", name, Names)
	}
	if env.Name != nil && *env.Name != name {
		return cmd, errorf(CodeMalformed, "payload names command %q but was sent on the topic of %q", *env.Name, name)
	}
	args := json.RawMessage(`{}`)
	if env.Args != nil {
		args = env.Args
		if t := bytes.TrimSpace(args); len(t) == 0 || t[0] != '{' {
			return cmd, errorf(CodeMalformed, "args must be a JSON object")
		}
	}
	cmd.Args = args
	if err := cmd.parseArgs(); err != nil {
		return cmd, err
	}
	return cmd, nil
}

// parseExpiry reads issued_at and ttl_s.
func (c *Command) parseExpiry(env envelope) *Error {
	if env.TTLS != nil && env.IssuedAt == nil {
		return errorf(CodeMalformed, "ttl_s without issued_at")
	}
	if env.IssuedAt == nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, *env.IssuedAt)
	if err != nil {
		return errorf(CodeMalformed, "issued_at %q is not an RFC 3339 date-time", *env.IssuedAt)
	}
	c.IssuedAt, c.TTL = t, DefaultTTL
	if env.TTLS != nil {
		var n int64
		if err := json.Unmarshal(env.TTLS, &n); err != nil || n < 1 || time.Duration(n)*time.Second > MaxTTL {
			return errorf(CodeMalformed, "ttl_s %s: want whole seconds, 1 to %d", env.TTLS, int64(MaxTTL/time.Second))
		}
		c.TTL = time.Duration(n) * time.Second
	}
	return nil
}

// Expired reports whether the command may no longer run at now: it carries
// issued_at and now is more than TTL (plus skew, for clocks that differ a
// little) after it. A command without issued_at never expires.
func (c Command) Expired(now time.Time, skew time.Duration) bool {
	return !c.IssuedAt.IsZero() && now.Sub(c.IssuedAt) > c.TTL+skew
}

func known(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}

func strictDecode(raw json.RawMessage, v any) error {
	return jsonstrict.Decode(raw, v, true)
}

func (c *Command) parseArgs() error {
	switch c.Name {
	case NameSetDirection:
		var a struct {
			Direction *dock.Direction `json:"direction"`
		}
		if err := strictDecode(c.Args, &a); err != nil {
			return errorf(CodeInvalidArgs, "set-direction args: %v", err)
		}
		if a.Direction == nil || !a.Direction.Valid() {
			return errorf(CodeInvalidArgs, "set-direction needs direction receiving or shipping")
		}
		c.direction = *a.Direction
	case NameLightTest, NameReloadConfig, NameRequestStatus:
		var a struct{}
		if err := strictDecode(c.Args, &a); err != nil {
			return errorf(CodeInvalidArgs, "%s takes no args: %v", c.Name, err)
		}
	case NameOpenShipment:
		var a struct {
			ID        *string         `json:"shipment"`
			Direction *dock.Direction `json:"direction"`
			Lines     []rawLine       `json:"lines"`
		}
		if err := strictDecode(c.Args, &a); err != nil {
			return errorf(CodeInvalidArgs, "open-shipment args: %v", err)
		}
		if err := checkShipmentID(a.ID); err != nil {
			return err
		}
		if a.Direction != nil && !a.Direction.Valid() {
			return errorf(CodeInvalidArgs, "open-shipment direction %q: want receiving or shipping", *a.Direction)
		}
		if len(a.Lines) > MaxShipmentLines {
			return errorf(CodeInvalidArgs, "open-shipment has %d lines, at most %d", len(a.Lines), MaxShipmentLines)
		}
		c.shipment = Shipment{ID: *a.ID}
		for i, rl := range a.Lines {
			l, err := rl.line()
			if err == nil {
				err = checkLine(l)
			}
			if err != nil {
				return errorf(CodeInvalidArgs, "open-shipment line %d: %s", i, err.Msg)
			}
			c.shipment.Lines = append(c.shipment.Lines, l)
		}
		if a.Direction != nil {
			c.shipment.Direction = *a.Direction
		}
	case NameCloseShipment:
		var a struct {
			ID *string `json:"shipment"`
		}
		if err := strictDecode(c.Args, &a); err != nil {
			return errorf(CodeInvalidArgs, "close-shipment args: %v", err)
		}
		if err := checkShipmentID(a.ID); err != nil {
			return err
		}
		c.shipment = Shipment{ID: *a.ID}
	}
	return nil
}

func checkShipmentID(id *string) *Error {
	if id == nil || *id == "" {
		return errorf(CodeInvalidArgs, "no shipment id")
	}
	if n := len([]rune(*id)); n > maxShipmentIDLen {
		return errorf(CodeInvalidArgs, "shipment id of %d characters, at most %d", n, maxShipmentIDLen)
	}
	for _, r := range *id {
		if r < 0x20 || r == '/' || r == '+' || r == '#' {
			return errorf(CodeInvalidArgs, "shipment id %q has a control character or one of / + #", *id)
		}
	}
	return nil
}

// rawLine tells a member given as "" or null from one left out.
type rawLine struct {
	GTIN   *string `json:"gtin"`
	Lot    *string `json:"lot"`
	Serial *string `json:"serial"`
	SSCC   *string `json:"sscc"`
	Qty    *int    `json:"qty"`
}

func (r rawLine) line() (ShipmentLine, *Error) {
	var l ShipmentLine
	for _, f := range []struct {
		name string
		src  *string
		dst  *string
	}{{"gtin", r.GTIN, &l.GTIN}, {"lot", r.Lot, &l.Lot}, {"serial", r.Serial, &l.Serial}, {"sscc", r.SSCC, &l.SSCC}} {
		if f.src == nil {
			continue
		}
		if *f.src == "" {
			return l, errorf(CodeInvalidArgs, "%s is empty", f.name)
		}
		*f.dst = *f.src
	}
	if r.Qty != nil {
		l.Qty = *r.Qty
	}
	return l, nil
}

func checkLine(l ShipmentLine) *Error {
	switch {
	case l.GTIN == "" && l.SSCC == "":
		return errorf(CodeInvalidArgs, "needs gtin or sscc")
	case l.GTIN != "" && !digits14.MatchString(l.GTIN):
		return errorf(CodeInvalidArgs, "gtin %q is not 14 digits", l.GTIN)
	case l.SSCC != "" && !digits18.MatchString(l.SSCC):
		return errorf(CodeInvalidArgs, "sscc %q is not 18 digits", l.SSCC)
	case (l.Lot != "" || l.Serial != "") && l.GTIN == "":
		return errorf(CodeInvalidArgs, "lot or serial without gtin")
	case len([]rune(l.Lot)) > maxLotLen || len([]rune(l.Serial)) > maxLotLen:
		return errorf(CodeInvalidArgs, "lot or serial longer than %d characters", maxLotLen)
	case l.Qty < 0:
		return errorf(CodeInvalidArgs, "qty %d is negative", l.Qty)
	}
	return nil
}
