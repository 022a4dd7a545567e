// Package statuspage is the technician's window into a running station: one
// mobile-friendly HTML page (stack light, readers, the last scans, buffer,
// broker, allowlist) that updates live over server-sent events, a small JSON
// API behind it, the buttons a technician needs (lamp test, switch
// direction, simulate a scan) and the Prometheus metrics on /metrics.
//
// The package owns no station part. It reads and drives the station through
// Source, an interface declared here for cmd/dockd to fill.
//
// # Who may press buttons
//
// Reading (the page, GET /api/status, GET /api/events, GET /metrics) is open
// unless Config.AuthReads is set. Nothing that changes state (POST
// /api/light-test, /api/direction, /api/reload, /api/simulate, /logout) works without
// authentication, from anywhere, loopback included:
//
//   - a browser session (cookie), made by a one-time login link
//     (Server.LoginLink; `dockd login-link` asks for one on the control
//     socket), by the login form with the technician password, or by a
//     client certificate; every state change must also carry the
//     session's CSRF token (X-CSRF-Token, the page embeds it) and an
//     Origin naming this very page;
//   - HTTP basic auth with the technician password (Config.PasswordSHA256),
//     for scripts; wrong passwords back off per client, exponentially;
//   - a client certificate (Config.ClientCAFile), for non-browser clients;
//   - the control socket (Server.ServeLocal), where the kernel names the
//     local user (SO_PEERCRED): root, the station's user or its group.
//
// Every request on TCP passes a Host check (an IP literal, localhost, the
// listen host or Config.AllowedHosts: DNS rebinding is refused) and an
// Origin check (same origin only; Sec-Fetch-Site cross-site is refused but
// for a plain navigation to the page or the login). Each refusal is logged
// in one line with the reason ("refused"). Every action is handed to the
// Source with its Actor (who and how), which records it for the audit
// trail.
package statuspage

import (
	"context"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// Source is what the status page needs from a station. cmd/dockd fills it
// from the daemon's parts. Every method must be safe for concurrent use.
type Source interface {
	// Snapshot returns everything the page shows, as of now. The value is
	// not retained by the caller beyond the request.
	Snapshot() Snapshot
	// Changes returns a channel that receives (coalesced, never blocking
	// the sender) when something on the page may have changed, and a
	// function that unsubscribes and releases it. Sources that cannot
	// notify may return a nil channel: the page then relies on polling.
	Changes() (<-chan struct{}, func())
	// LightTest runs the lamp test (every lamp and the buzzer in turn) for
	// a and returns when it is over; the Source records who asked.
	LightTest(ctx context.Context, a Actor) error
	// SetDirection switches the door between receiving and shipping for a
	// and records who did.
	SetDirection(d dock.Direction, a Actor) error
	// ReloadConfig re-reads the station's config file for a, applies what
	// can change without a restart, and records who did; an error says why
	// nothing was applied.
	ReloadConfig(a Actor) error
	// Inject runs data through the pipeline as a simulated scan (as an RFID
	// EPC in hex when tag is true) asked for by a, and returns the custody
	// event with its decision. The event is recorded like any other scan,
	// but always under reader dock.SimulatedReader and marked simulated.
	Inject(ctx context.Context, data []byte, tag bool, a Actor) (dock.CustodyEvent, error)
}

// Snapshot is the state of a station as the page shows it. It is plain,
// JSON-serialisable data; the JSON names are the page's API (GET
// /api/status).
type Snapshot struct {
	Station   string         `json:"station"`
	Site      string         `json:"site"`
	Door      string         `json:"door"`
	Direction dock.Direction `json:"direction"`
	Version   string         `json:"version,omitempty"`
	// Time is when the snapshot was taken; Started when the station started.
	Time    time.Time `json:"time"`
	Started time.Time `json:"started,omitzero"`

	Light     Light             `json:"light"`
	Readers   []Reader          `json:"readers"`
	Recent    []Scan            `json:"recent"`           // newest first, at most RecentMax
	Counts    map[string]uint64 `json:"counts,omitempty"` // scans per verdict since start
	Buffer    Buffer            `json:"buffer"`
	Broker    Broker            `json:"broker"`
	Allowlist Allowlist         `json:"allowlist"`
	Storage   *Storage          `json:"storage,omitempty"` // nil when the system does not tell
}

// Storage is the station's own wear on its storage.
type Storage struct {
	// WrittenBytes is what the daemon has caused to be written to storage
	// since it started (/proc/self/io write_bytes; not journald's logs).
	WrittenBytes int64 `json:"written_bytes"`
}

// RecentMax is how many scans the page lists.
const RecentMax = 50

// Light is the stack light: which outputs are energised now and why.
type Light struct {
	Green      bool             `json:"green"`
	Amber      bool             `json:"amber"`
	Red        bool             `json:"red"`
	Buzzer     bool             `json:"buzzer"`
	Showing    string           `json:"showing"` // idle, test, accept, warn, reject or a condition
	Why        string           `json:"why,omitempty"`
	Conditions []dock.Condition `json:"conditions,omitempty"`
	Running    bool             `json:"running"`
}

// Reader is one reader's health.
type Reader struct {
	ID       string    `json:"id"`
	Up       bool      `json:"up"`
	Port     string    `json:"port,omitempty"`
	Error    string    `json:"error,omitempty"` // why it is down, when known
	Since    time.Time `json:"since,omitzero"`  // when it went up or down
	LastScan time.Time `json:"last_scan,omitzero"`
}

// Scan is one line of the recent-scans list.
type Scan struct {
	Seq       uint64         `json:"seq"` // 0 when the scan was refused (not recorded)
	Time      time.Time      `json:"time"`
	Reader    string         `json:"reader"`
	Raw       string         `json:"raw"`
	GTIN      string         `json:"gtin,omitempty"`
	Lot       string         `json:"lot,omitempty"`
	Serial    string         `json:"serial,omitempty"`
	SSCC      string         `json:"sscc,omitempty"`
	EPC       string         `json:"epc,omitempty"`
	Direction dock.Direction `json:"direction"`
	Verdict   dock.Verdict   `json:"decision"`
	Reason    dock.Reason    `json:"reason"`
	Detail    string         `json:"detail,omitempty"`
	ErrorKind string         `json:"error_kind,omitempty"`
}

// ScanOf converts a custody event into a page line.
func ScanOf(ev dock.CustodyEvent) Scan {
	return Scan{
		Seq: ev.Seq, Time: ev.Time, Reader: ev.Reader, Raw: ev.Raw, GTIN: ev.GTIN, Lot: ev.Lot,
		Serial: ev.Serial, SSCC: ev.SSCC, EPC: ev.EPC, Direction: ev.Direction,
		Verdict: ev.Verdict, Reason: ev.Reason, Detail: ev.Detail, ErrorKind: ev.ErrorKind,
	}
}

// Buffer is the durable store-and-forward queue.
type Buffer struct {
	Depth      int     `json:"depth"` // undelivered events
	Bytes      int64   `json:"bytes"`
	OldestAgeS float64 `json:"oldest_age_s"` // age of the oldest undelivered event; 0 when empty
	Fill       float64 `json:"fill"`         // Bytes / budget
	Alarm      bool    `json:"alarm"`
	Full       bool    `json:"full"`
	// Unconfirmed is set only with receipt delivery: events published to
	// the broker that central has not receipted yet (still in Depth), and
	// seconds since the oldest was first published.
	Unconfirmed           *int    `json:"unconfirmed,omitempty"`
	UnconfirmedOldestAgeS float64 `json:"unconfirmed_oldest_age_s,omitempty"`
}

// Broker is the MQTT uplink.
type Broker struct {
	Configured bool      `json:"configured"` // false: no uplink, events stay in the buffer
	URL        string    `json:"url,omitempty"`
	Connected  bool      `json:"connected"`
	LastAck    time.Time `json:"last_ack,omitzero"`
}

// Allowlist is the active allowlist version.
type Allowlist struct {
	Version string    `json:"version"`
	Lots    int       `json:"lots"`
	Updated time.Time `json:"updated,omitzero"`
}
