// Package contract is the station's MQTT contract with central: the topic
// scheme and a JSON Schema (draft 2020-12) for every payload, embedded so
// tools and tests use exactly the files that are checked in. CONTRACT.md in
// this directory is the prose; the schemas are the authority on fields.
//
// The package is pure: it builds topic names and hands out schema bytes. It
// imports no MQTT or I/O package.
package contract

import (
	"embed"
	"fmt"
	"strings"
)

// Schemas holds every *.schema.json of this directory. Read-only, safe for
// concurrent use.
//
//go:embed *.schema.json
var Schemas embed.FS

// Schema file names inside Schemas, one per payload kind.
const (
	EventSchemaFile             = "event.schema.json"
	OperatorEventSchemaFile     = "operator-event.schema.json"
	StatusSchemaFile            = "status.schema.json"
	CommandSchemaFile           = "command.schema.json"
	CommandReplySchemaFile      = "command-reply.schema.json"
	AllowlistManifestSchemaFile = "allowlist-manifest.schema.json"
	AllowlistDeltaSchemaFile    = "allowlist-delta.schema.json"
	AllowlistRowSchemaFile      = "allowlist-row.schema.json"
	AllowlistAckSchemaFile      = "allowlist-ack.schema.json"
	ReceiptSchemaFile           = "receipt.schema.json"
	SeqGapSchemaFile            = "seq-gap.schema.json"
	ReceiptProbeSchemaFile      = "receipt-probe.schema.json"
)

// Schema names ("schema" member) of the receipt and gap payloads.
const (
	ReceiptSchema = "dockd.receipt/1"
	SeqGapSchema  = "dockd.seq-gap/1"
	// ReceiptProbeSchema is the doctor's request for a receipt.
	ReceiptProbeSchema = "dockd.receipt-probe/1"
)

// SchemaURL is the $id of a schema file: an identifier, never fetched.
func SchemaURL(file string) string { return "https://dockd.invalid/contract/v1/" + file }

// DefaultPrefix is the versioned topic root. A breaking change to any
// payload or topic moves every topic to the next version (dockd/v2), so
// old and new stations can share a broker.
const DefaultPrefix = "dockd/v1"

// Topic levels under a station's base (PREFIX/SITE/DOOR).
const (
	LevelEvents    = "events"
	LevelStatus    = "status"
	LevelCommand   = "cmd"
	LevelReply     = "cmd-reply"
	LevelEPCIS     = "epcis" // EPCIS 2.0 documents, when epcis.enabled
	LevelAllowlist = "allowlist"
	LevelReceipts  = "receipts" // central → station: what central has stored
	// LevelReceiptProbe is where dockd doctor asks central for a receipt.
	LevelReceiptProbe = "receipt-probe"
)

// InvalidReplyID is the reply topic level for a command whose id could not
// be read. Command ids cannot start with '_', so it never collides.
const InvalidReplyID = "_invalid"

// Topics builds one station's topic names. The zero Prefix means
// DefaultPrefix. Site and Door must be single topic levels (config
// validation guarantees it). Values are immutable; safe for concurrent use.
type Topics struct {
	Prefix, Site, Door string
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Base is PREFIX/SITE/DOOR.
func (t Topics) Base() string { return t.prefix() + "/" + t.Site + "/" + t.Door }

// Events is where custody events are published (QoS 1, not retained).
func (t Topics) Events() string { return t.Base() + "/" + LevelEvents }

// EPCIS is where the station publishes the EPCIS 2.0 document of each scan
// record (QoS 1, not retained) when epcis.enabled is on.
func (t Topics) EPCIS() string { return t.Base() + "/" + LevelEPCIS }

// Receipts is where central confirms what it has durably stored (QoS 1,
// not retained; payload receipt.schema.json). The station subscribes to it
// when mqtt.delivery is receipt.
func (t Topics) Receipts() string { return t.Base() + "/" + LevelReceipts }

// ReceiptProbe is where dockd doctor asks central to answer with a receipt
// (payload receipt-probe.schema.json); central subscribes to
// PREFIX/+/+/receipt-probe.
func (t Topics) ReceiptProbe() string { return t.Base() + "/" + LevelReceiptProbe }

// Status is the retained status and last-will topic.
func (t Topics) Status() string { return t.Base() + "/" + LevelStatus }

// Command is the topic central publishes command name on.
func (t Topics) Command(name string) string { return t.Base() + "/" + LevelCommand + "/" + name }

// CommandFilter is the subscription filter for every command of this
// station, and only this station: PREFIX/SITE/DOOR/cmd/+.
func (t Topics) CommandFilter() string { return t.Base() + "/" + LevelCommand + "/+" }

// Reply is the topic the answer to command id is published on.
func (t Topics) Reply(id string) string { return t.Base() + "/" + LevelReply + "/" + id }

// ReplyFilter is what central subscribes to for every reply of this station.
func (t Topics) ReplyFilter() string { return t.Base() + "/" + LevelReply + "/+" }

// AllowlistFilter is the subscription filter for the site's allowlist
// updates (payloads: internal/allowlist/CONTRACT.md).
func (t Topics) AllowlistFilter() string {
	return t.prefix() + "/" + t.Site + "/" + LevelAllowlist + "/#"
}

// CommandName returns the command name when topic is exactly one of this
// station's command topics (PREFIX/SITE/DOOR/cmd/NAME with NAME a single,
// non-empty level), and ok false for any other topic.
func (t Topics) CommandName(topic string) (name string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.Base()+"/"+LevelCommand+"/")
	if !found || rest == "" || strings.ContainsAny(rest, "/+#\x00") {
		return "", false
	}
	return rest, true
}

// Schema returns the bytes of the named schema file.
func Schema(file string) ([]byte, error) {
	b, err := Schemas.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading contract schema %q: %w", file, err)
	}
	return b, nil
}
