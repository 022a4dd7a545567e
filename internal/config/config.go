// Package config holds the station's configuration: its schema, defaults,
// parsing with file:line errors, and validation. It does no I/O: callers
// read the file and hand Parse its bytes and name, so the same code checks
// a file on disk, an embedded default and a config pushed by central.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/epcis"
)

// Config is the whole station configuration. The YAML keys are the
// snake_case names in the struct tags; firmware-config/dockd.yaml documents
// every key.
type Config struct {
	Station   Station   `yaml:"station"`
	StateDir  string    `yaml:"state_dir"`
	Readers   []Reader  `yaml:"readers"`
	Light     Light     `yaml:"light"`
	MQTT      MQTT      `yaml:"mqtt"`
	Buffer    Buffer    `yaml:"buffer"`
	Decode    Decode    `yaml:"decode"`
	Policy    Policy    `yaml:"policy"`
	Allowlist Allowlist `yaml:"allowlist"`
	Status    Status    `yaml:"status"`
	EPCIS     EPCIS     `yaml:"epcis"`
	Log       Log       `yaml:"log"`
}

// EPCIS turns on the GS1 EPCIS 2.0 rendering of custody events, published
// on PREFIX/SITE/DOOR/epcis beside each event (internal/epcis renders it;
// uplink/contract/CONTRACT.md documents it).
type EPCIS struct {
	// Enabled publishes an EPCISDocument for every scan record. Off by default.
	Enabled bool `yaml:"enabled"`
	// ReadPoint is the door, BizLocation the site: an SGLN
	// (urn:epc:id:sgln:…), a GLN Digital Link (https://id.gs1.org/414/…) or
	// an https URI the site owns. Required when Enabled.
	ReadPoint   string `yaml:"read_point"`
	BizLocation string `yaml:"biz_location"`
	// CompanyPrefixes maps leading digits of GS1 keys (after the indicator
	// or extension digit) to the GS1 Company Prefix length of keys starting
	// with them; the longest match wins. Keys it does not cover are written
	// as GS1 Digital Link URIs, whether read from a barcode or a tag.
	CompanyPrefixes map[string]int `yaml:"company_prefixes"`
	// TransactionType is the CBV business transaction type of the ids of
	// expected shipments (po, desadv, bol, …; empty: untyped);
	// TransactionURI is the URI of a shipment id with {id} in its place.
	TransactionType string `yaml:"transaction_type"`
	TransactionURI  string `yaml:"transaction_uri"`
}

// Prefixes returns the company prefix table (validated by Parse).
func (e EPCIS) Prefixes() epcis.Prefixes {
	p, _ := epcis.NewPrefixes(e.CompanyPrefixes)
	return p
}

// Allowlist configures the local list and what central may send down.
type Allowlist struct {
	// PublicKey (base64 Ed25519) makes the station accept only updates
	// signed by central's key.
	PublicKey string `yaml:"public_key"`
	// AllowUnsigned accepts unsigned updates from central. With a broker
	// configured, one of PublicKey and AllowUnsigned is required (never
	// both): unsigned lists must be a decision, not a default.
	AllowUnsigned bool `yaml:"allow_unsigned"`
	// MaxChunkBytes bounds one snapshot chunk, MaxDeltaBytes one delta,
	// MaxSnapshotBytes a whole snapshot (its manifest's bytes and what is
	// staged for it). Larger messages are refused before they are parsed
	// or stored.
	MaxChunkBytes    ByteSize `yaml:"max_chunk_bytes"`
	MaxDeltaBytes    ByteSize `yaml:"max_delta_bytes"`
	MaxSnapshotBytes ByteSize `yaml:"max_snapshot_bytes"`
	// StagingTTL: a snapshot still incomplete this long after its first
	// part arrived is dropped and its staging freed.
	StagingTTL time.Duration `yaml:"staging_ttl"`
	// DiskReserve is free space under state_dir that staging never takes,
	// on top of what the event buffer may still grow to (buffer.max_bytes
	// minus what it holds).
	DiskReserve ByteSize `yaml:"disk_reserve"`
	// TraceRetention is how long what crossed the door stays in the local
	// trace (dockd trace).
	TraceRetention time.Duration `yaml:"trace_retention"`
}

// DirectionPolicy overrides the severity of reasons for one direction.
type DirectionPolicy struct {
	Warn   []dock.Reason `yaml:"warn"`
	Reject []dock.Reason `yaml:"reject"`
}

// Status is the technician's status page and /metrics.
type Status struct {
	// Addr is host:port to listen on; empty turns the page off. Loopback by
	// default: reaching it from the LAN needs a password or client certs.
	Addr         string `yaml:"addr"`
	PasswordFile string `yaml:"password_file"` // the password, or "sha256:HEX"
	AuthReads    bool   `yaml:"auth_reads"`    // also ask for the password to view
	TLSCert      string `yaml:"tls_cert"`
	TLSKey       string `yaml:"tls_key"`
	ClientCA     string `yaml:"client_ca"` // require client certificates signed by this CA
	// AllowedHosts are the host names browsers may use for the page (IP
	// literals, localhost and the addr's host always work); any other Host
	// header is refused (DNS rebinding).
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Socket is the control socket for the technician's tools on the box
	// (dockd simulate, light test, login-link); default STATE_DIR/control.sock,
	// "off" turns it off.
	Socket string `yaml:"socket"`
}

// ControlSocket is the control socket's path, "" when it is off.
func (s Status) ControlSocket(stateDir string) string {
	switch s.Socket {
	case "off":
		return ""
	case "":
		return filepath.Join(stateDir, "control.sock")
	}
	return s.Socket
}

// Station names the door this box serves.
type Station struct {
	Site      string         `yaml:"site"`
	Door      string         `yaml:"door"`
	ID        string         `yaml:"id"` // defaults to SITE-DOOR
	Direction dock.Direction `yaml:"direction"`
	// TimeZone is the site's IANA time zone (e.g. Europe/Berlin): the day
	// expiry dates are checked against, and the offset EPCIS events carry.
	// Empty: the box's local zone.
	TimeZone string `yaml:"time_zone"`
}

// Location returns the site's time zone (validated by Parse); the box's
// local zone when none is set.
func (s Station) Location() *time.Location {
	if s.TimeZone == "" {
		return time.Local
	}
	if l, err := time.LoadLocation(s.TimeZone); err == nil {
		return l
	}
	return time.Local
}

// Reader is one barcode scanner or RFID reader.
type Reader struct {
	ID string `yaml:"id"`
	// Type is "serial" (a barcode scanner on a serial port), "rfid" (a UHF
	// RFID reader on a serial port) or "stdin" (the demo's virtual reader:
	// lines typed into the terminal).
	Type string `yaml:"type"`
	// Profile names a reader profile in firmware-config/profiles whose
	// serial settings, suffix and RFID protocol fill what the entry leaves out.
	Profile  string        `yaml:"profile"`
	Port     string        `yaml:"port"`
	Baud     int           `yaml:"baud"`
	DataBits int           `yaml:"data_bits"`
	Parity   string        `yaml:"parity"`
	StopBits string        `yaml:"stop_bits"`
	Suffix   string        `yaml:"suffix"`
	Prefix   string        `yaml:"prefix"`
	MaxFrame int           `yaml:"max_frame"`
	Backoff  time.Duration `yaml:"max_backoff"`
	// DedupeWindow: the same code (or tag) seen again within this window is
	// one scan. Off (0) by default for barcode scanners (handhelds), 2s for
	// RFID; negative turns it off.
	DedupeWindow time.Duration `yaml:"dedupe_window"`

	// RFID only.
	Protocol       string        `yaml:"protocol"` // ascii | mercury
	Region         string        `yaml:"region"`   // mercury: NA, EU, IN, JP, PRC, KR, AU, NZ, OPEN
	ReadPowerCDBm  int           `yaml:"read_power_cdbm"`
	MinRSSI        int           `yaml:"min_rssi"` // dBm; weaker reads are ignored (0 = off)
	Fields         []string      `yaml:"fields"`   // ascii: column layout, e.g. [epc, antenna, rssi]
	Separator      string        `yaml:"separator"`
	MaxLine        int           `yaml:"max_line"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	StallTimeout   time.Duration `yaml:"stall_timeout"`
}

// Light is the stack light and buzzer.
type Light struct {
	// Driver is "gpio" (periph.io pins on this board) or "virtual" (lamp
	// changes are logged; for hosts without GPIO).
	Driver       string        `yaml:"driver"`
	ActiveLow    bool          `yaml:"active_low"`
	Pins         Pins          `yaml:"pins"`
	DecisionHold time.Duration `yaml:"decision_hold"`
	Inputs       Inputs        `yaml:"inputs"`
}

// Inputs are GPIO inputs at the door, wired to ground (pull-up; closed reads low).
type Inputs struct {
	// AckButton silences the buzzer and releases a reject hold.
	AckButton string `yaml:"ack_button"`
	// DirectionSwitch is a key switch: closed = shipping, open = receiving.
	DirectionSwitch string        `yaml:"direction_switch"`
	Debounce        time.Duration `yaml:"debounce"`
}

// Pins names the GPIO lines by periph.io name (e.g. GPIO17).
type Pins struct {
	Green  string `yaml:"green"`
	Amber  string `yaml:"amber"`
	Red    string `yaml:"red"`
	Buzzer string `yaml:"buzzer"`
}

// MQTT is the uplink to central.
type MQTT struct {
	// Broker is tcp://host:port, ssl://host:port, or empty for no uplink
	// (events are still kept in the buffer). After Parse it is the first
	// entry of Brokers (a config may give either key, not both).
	Broker string `yaml:"broker"`
	// Brokers lists broker URLs tried in order: when a connection to one
	// fails or is lost, the next one is tried (then the first again).
	// After Parse it holds at least Broker when any broker is configured.
	Brokers []string `yaml:"brokers"`
	// Delivery says when an event leaves the buffer: "broker" (default)
	// when the broker acknowledged it (PUBACK), "receipt" only when
	// central's receipt covers it (uplink/contract/CONTRACT.md, Receipts).
	Delivery string `yaml:"delivery"`
	// ReceiptTimeout (receipt delivery): events acknowledged by the broker
	// but not covered by a receipt for this long are published again.
	ReceiptTimeout time.Duration `yaml:"receipt_timeout"`
	// ReceiptAlarm (receipt delivery): an event waiting this long for its
	// receipt raises the buffer alarm (amber background, status, log).
	ReceiptAlarm time.Duration `yaml:"receipt_alarm"`
	ClientID     string        `yaml:"client_id"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	// TLS: the CA that signed the broker's certificate (empty: system
	// roots), this station's client certificate and key for mTLS (the key
	// must not be readable by group or others), and the name to verify the
	// broker's certificate against (default: the broker URL's host).
	CAFile      string        `yaml:"ca_file"`
	CertFile    string        `yaml:"cert_file"`
	KeyFile     string        `yaml:"key_file"`
	ServerName  string        `yaml:"server_name"`
	TopicPrefix string        `yaml:"topic_prefix"`
	InFlight    int           `yaml:"in_flight"`
	KeepAlive   time.Duration `yaml:"keep_alive"`
	AckTimeout  time.Duration `yaml:"ack_timeout"`
	// Heartbeat is how often the retained status is republished.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Limits bound what central may send (checked before parsing).
	Limits Limits `yaml:"limits"`
}

// Limits bound inbound MQTT messages by topic (allowlist topics: see
// Allowlist.Max*).
type Limits struct {
	// CommandBytes bounds one message on PREFIX/SITE/DOOR/cmd/NAME.
	CommandBytes ByteSize `yaml:"command_bytes"`
}

// Delivery modes (MQTT.Delivery).
const (
	DeliveryBroker  = "broker"
	DeliveryReceipt = "receipt"
)

// brokerURL reports whether b has a scheme the uplink speaks.
func brokerURL(b string) bool {
	for _, p := range []string{"tcp://", "ssl://", "mqtt://", "mqtts://"} {
		if strings.HasPrefix(b, p) && len(b) > len(p) {
			return true
		}
	}
	return false
}

// Buffer is the durable store-and-forward queue.
type Buffer struct {
	MaxBytes      ByteSize      `yaml:"max_bytes"`
	MaxAge        time.Duration `yaml:"max_age"`
	AlarmFraction float64       `yaml:"alarm_fraction"`
}

// Decode tunes the scan decoder.
type Decode struct {
	// NoAIM says how a scan without an AIM symbology identifier is read:
	// "gs1" (element string when it parses as one, else plain) or "plain".
	NoAIM string `yaml:"no_aim"`
	// PlainPatterns are regular expressions with named groups gtin, lot,
	// serial for legacy labels that are not GS1.
	PlainPatterns []string `yaml:"plain_patterns"`
	// DigitalLink says how GS1 Digital Link URIs are judged: "strict"
	// (default: as the GS1 reference decoder does) or "lenient" (four
	// documented relaxations; see scan.Config.DigitalLink and the README).
	DigitalLink string `yaml:"digital_link"`
}

// Policy says which reasons only warn instead of reject.
type Policy struct {
	// Warn lists reason codes that light amber and accept instead of reject.
	Warn []dock.Reason `yaml:"warn"`
	// HoldAfterReject keeps the red lamp on after a reject until someone
	// presses the acknowledge button (light.inputs.ack_button).
	HoldAfterReject bool `yaml:"hold_after_reject"`
	// ExpiresSoonDays warns (expires_soon) for lots expiring within this many
	// days; 0 turns the rule off.
	ExpiresSoonDays int `yaml:"expires_soon_days"`
	// Receiving and Shipping override Warn per direction, e.g. unknown_lot
	// warns on receiving but rejects on shipping.
	Receiving DirectionPolicy `yaml:"receiving"`
	Shipping  DirectionPolicy `yaml:"shipping"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error
	Format string `yaml:"format"` // auto|text|json (auto: text on a terminal, JSON otherwise)
}

// ByteSize is a size in bytes that YAML may give as a number or with a
// unit: 512KiB, 256MiB, 1GiB, 10MB.
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize reads "1048576", "512KiB", "256MiB", "1GiB", "10MB", "1kB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q: want a whole number of bytes, optionally with KiB, MiB, GiB, kB, MB or GB", s)
	}
	return ByteSize(n * mult), nil
}

// Error is a configuration error with its place in the file.
type Error struct {
	File string
	Line int    // 0 when the line is not known
	Key  string // dotted path, e.g. readers[0].baud
	Msg  string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", where, e.Msg)
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Defaults returns the configuration every key falls back to.
func Defaults() Config {
	return Config{
		Station:  Station{Direction: dock.Receiving},
		StateDir: "/var/lib/dockd",
		Light:    Light{Driver: "virtual", DecisionHold: 2 * time.Second},
		MQTT: MQTT{
			TopicPrefix: "dockd/v1",
			InFlight:    32,
			KeepAlive:   15 * time.Second,
			AckTimeout:  10 * time.Second,
			Heartbeat:   30 * time.Second,
			Limits:      Limits{CommandBytes: 64 << 10},
			Delivery:    DeliveryBroker,
			// Receipts: resend after 30 s without one, alarm after 5 min.
			ReceiptTimeout: 30 * time.Second,
			ReceiptAlarm:   5 * time.Minute,
		},
		Buffer: Buffer{MaxBytes: 256 << 20, MaxAge: 7 * 24 * time.Hour, AlarmFraction: 0.8},
		Decode: Decode{NoAIM: "gs1", DigitalLink: "strict"},
		Status: Status{Addr: "127.0.0.1:8080"},
		Allowlist: Allowlist{TraceRetention: 90 * 24 * time.Hour, MaxChunkBytes: 256 << 10, MaxDeltaBytes: 1 << 20,
			MaxSnapshotBytes: 64 << 20, StagingTTL: time.Hour, DiskReserve: 32 << 20},
		Log: Log{Level: "info", Format: "auto"},
	}
}

// applyProfile fills what a reader entry left out from its named profile.
func applyProfile(r *Reader) error {
	if r.Profile == "" {
		return nil
	}
	p, err := firmwareconfig.Profile(r.Profile)
	if err != nil {
		return fmt.Errorf("%q: %w (known: %s)", r.Profile, err, strings.Join(firmwareconfig.Profiles(), ", "))
	}
	if r.Type == "" {
		r.Type = map[string]string{"rfid": "rfid"}[p.Kind]
	}
	if r.Baud == 0 {
		r.Baud = p.Serial.Baud
	}
	if r.DataBits == 0 {
		r.DataBits = p.Serial.DataBits
	}
	if r.Parity == "" {
		r.Parity = p.Serial.Parity
	}
	if r.StopBits == "" {
		r.StopBits = p.Serial.StopBits
	}
	if r.Suffix == "" {
		r.Suffix = p.Suffix
	}
	if r.Protocol == "" {
		r.Protocol = p.Protocol
	}
	if r.Region == "" {
		r.Region = p.Region
	}
	if len(r.Fields) == 0 {
		r.Fields = p.Fields
	}
	if r.Separator == "" {
		r.Separator = p.Separator
	}
	return nil
}

// readerDefaults fills what a reader entry (and its profile) left out.
func readerDefaults(r *Reader) {
	if r.Type == "" {
		r.Type = "serial"
	}
	if r.Type == "rfid" {
		if r.Baud == 0 {
			r.Baud = 115200
		}
		if r.Suffix == "" {
			r.Suffix = "LF"
		}
		if r.DedupeWindow == 0 {
			r.DedupeWindow = 2 * time.Second
		}
	}
	if r.Baud == 0 {
		r.Baud = 9600
	}
	if r.DataBits == 0 {
		r.DataBits = 8
	}
	if r.Parity == "" {
		r.Parity = "none"
	}
	if r.StopBits == "" {
		r.StopBits = "1"
	}
	if r.Suffix == "" {
		r.Suffix = "CR"
	}
	if r.MaxFrame == 0 {
		r.MaxFrame = 4096
	}
	if r.Backoff == 0 {
		r.Backoff = time.Second
	}
}

// Parse reads a YAML config over the defaults and validates it. file names
// the source in errors. A non-nil error is an Errors listing every problem
// with its line.
func Parse(file string, data []byte) (Config, error) {
	cfg := Defaults()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, Errors{yamlError(file, err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file, all defaults
		return cfg, yamlErrors(file, err)
	}
	var profileErrs Errors
	for i := range cfg.Readers {
		if err := applyProfile(&cfg.Readers[i]); err != nil {
			profileErrs = append(profileErrs, &Error{File: file, Line: lineOf(&root, "readers", i, "profile"), Key: keyOf("readers", i, "profile"), Msg: err.Error()})
		}
		readerDefaults(&cfg.Readers[i])
	}
	if len(profileErrs) > 0 {
		return cfg, profileErrs
	}
	if cfg.Station.ID == "" && cfg.Station.Site != "" && cfg.Station.Door != "" {
		cfg.Station.ID = cfg.Station.Site + "-" + cfg.Station.Door
	}
	if cfg.MQTT.ClientID == "" {
		cfg.MQTT.ClientID = "dockd-" + cfg.Station.ID
	}
	brokerBoth := cfg.MQTT.Broker != "" && len(cfg.MQTT.Brokers) > 0
	if cfg.MQTT.Broker != "" && len(cfg.MQTT.Brokers) == 0 {
		cfg.MQTT.Brokers = []string{cfg.MQTT.Broker}
	}
	if len(cfg.MQTT.Brokers) > 0 && !brokerBoth {
		cfg.MQTT.Broker = cfg.MQTT.Brokers[0]
	}
	errs := cfg.validate(file, &root)
	if brokerBoth {
		errs = append(Errors{{File: file, Line: lineOf(&root, "mqtt", "brokers"), Key: "mqtt.brokers",
			Msg: "give either broker (one URL) or brokers (a list), not both"}}, errs...)
	}
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

func yamlError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: m[2]}
	}
	return &Error{File: file, Msg: msg}
}

func yamlErrors(file string, err error) Errors {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var out Errors
		for _, e := range te.Errors {
			out = append(out, yamlError(file, errors.New(e)))
		}
		return out
	}
	return Errors{yamlError(file, err)}
}

// TopicBase is the station's topic root: PREFIX/SITE/DOOR.
func (c *Config) TopicBase() string {
	return c.MQTT.TopicPrefix + "/" + c.Station.Site + "/" + c.Station.Door
}

var (
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	pinPattern = regexp.MustCompile(`^(GPIO[0-9]{1,3}|P[0-9]_[0-9]{1,2}|gpiochip[0-9]+/[0-9]{1,3})$`)
	validBauds = map[int]bool{1200: true, 2400: true, 4800: true, 9600: true, 19200: true, 38400: true, 57600: true, 115200: true, 230400: true, 460800: true, 921600: true}
)

func (c *Config) validate(file string, root *yaml.Node) Errors {
	var errs Errors
	bad := func(msg string, path ...any) {
		errs = append(errs, &Error{File: file, Line: lineOf(root, path...), Key: keyOf(path...), Msg: msg})
	}
	if c.Station.Site == "" {
		bad("missing: every station needs a site id", "station", "site")
	} else if !idPattern.MatchString(c.Station.Site) {
		bad(fmt.Sprintf("%q: use letters, digits, '.', '_' or '-' (max 64), it becomes part of MQTT topics", c.Station.Site), "station", "site")
	}
	if c.Station.Door == "" {
		bad("missing: every station needs a door id", "station", "door")
	} else if !idPattern.MatchString(c.Station.Door) {
		bad(fmt.Sprintf("%q: use letters, digits, '.', '_' or '-' (max 64), it becomes part of MQTT topics", c.Station.Door), "station", "door")
	}
	if c.Station.Door == "allowlist" {
		bad(`"allowlist" is reserved: PREFIX/SITE/allowlist/… is the site's allowlist topic`, "station", "door")
	}
	if !c.Station.Direction.Valid() {
		bad(fmt.Sprintf("%q: want receiving or shipping", c.Station.Direction), "station", "direction")
	}
	if tz := c.Station.TimeZone; tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			bad(fmt.Sprintf("%q is not an IANA time zone such as Europe/Berlin or UTC (is tzdata installed?)", tz), "station", "time_zone")
		}
	}
	c.validateEPCIS(bad)
	if c.StateDir == "" {
		bad("missing: a directory for the buffer and allowlist files", "state_dir")
	}
	if len(c.Readers) == 0 {
		bad("no readers: configure at least one scanner", "readers")
	}
	seen := map[string]bool{}
	for i, r := range c.Readers {
		switch {
		case r.ID == "":
			bad("missing reader id", "readers", i, "id")
		case !idPattern.MatchString(r.ID):
			bad(fmt.Sprintf("%q: use letters, digits, '.', '_' or '-'", r.ID), "readers", i, "id")
		case seen[r.ID]:
			bad(fmt.Sprintf("%q used twice: reader ids must be unique", r.ID), "readers", i, "id")
		case r.ID == dock.SimulatedReader:
			bad(fmt.Sprintf("%q is reserved for simulated scans (dockd simulate): choose another reader id", r.ID), "readers", i, "id")
		}
		seen[r.ID] = true
		switch r.Type {
		case "serial", "rfid":
			if r.Port == "" {
				bad("missing port (e.g. /dev/serial/by-id/usb-…)", "readers", i, "port")
			}
		case "stdin":
		default:
			bad(fmt.Sprintf("%q: want serial, rfid or stdin", r.Type), "readers", i, "type")
		}
		if r.Type == "rfid" && r.Protocol != "ascii" && r.Protocol != "mercury" {
			bad(fmt.Sprintf("%q: an rfid reader needs protocol ascii or mercury", r.Protocol), "readers", i, "protocol")
		}
		if !validBauds[r.Baud] {
			bad(fmt.Sprintf("%d is not a standard baud rate (1200 … 921600)", r.Baud), "readers", i, "baud")
		}
		if r.DataBits < 5 || r.DataBits > 8 {
			bad(fmt.Sprintf("%d: want 5, 6, 7 or 8", r.DataBits), "readers", i, "data_bits")
		}
		switch r.Parity {
		case "none", "even", "odd", "mark", "space":
		default:
			bad(fmt.Sprintf("%q: want none, even, odd, mark or space", r.Parity), "readers", i, "parity")
		}
		switch r.StopBits {
		case "1", "1.5", "2":
		default:
			bad(fmt.Sprintf("%q: want 1, 1.5 or 2", r.StopBits), "readers", i, "stop_bits")
		}
		switch r.Suffix {
		case "CR", "LF", "CRLF":
		default:
			bad(fmt.Sprintf("%q: want CR, LF or CRLF", r.Suffix), "readers", i, "suffix")
		}
		if r.MaxFrame < 64 || r.MaxFrame > 1<<20 {
			bad(fmt.Sprintf("%d: want 64 … 1048576 bytes", r.MaxFrame), "readers", i, "max_frame")
		}
	}
	switch c.Light.Driver {
	case "virtual":
	case "gpio":
		for _, p := range []struct{ role, name string }{{"green", c.Light.Pins.Green}, {"amber", c.Light.Pins.Amber}, {"red", c.Light.Pins.Red}, {"buzzer", c.Light.Pins.Buzzer}} {
			if p.name == "" {
				if p.role == "green" || p.role == "red" {
					bad("missing: the gpio driver needs at least green and red pins", "light", "pins", p.role)
				}
				continue
			}
			if !pinPattern.MatchString(p.name) {
				bad(fmt.Sprintf("%q is not a pin name: use the periph.io name such as GPIO17 (BCM numbering) or P1_11 (header pin)", p.name), "light", "pins", p.role)
			}
		}
	default:
		bad(fmt.Sprintf("%q: want gpio or virtual", c.Light.Driver), "light", "driver")
	}
	for _, in := range []struct{ key, name string }{{"ack_button", c.Light.Inputs.AckButton}, {"direction_switch", c.Light.Inputs.DirectionSwitch}} {
		if in.name != "" && !pinPattern.MatchString(in.name) {
			bad(fmt.Sprintf("%q is not a pin name: use the periph.io name such as GPIO5", in.name), "light", "inputs", in.key)
		}
	}
	if c.Policy.HoldAfterReject && c.Light.Inputs.AckButton == "" {
		bad("hold_after_reject needs light.inputs.ack_button to release the hold", "policy", "hold_after_reject")
	}
	if c.Light.DecisionHold < 200*time.Millisecond || c.Light.DecisionHold > time.Minute {
		bad(fmt.Sprintf("%s: want 200ms … 1m", c.Light.DecisionHold), "light", "decision_hold")
	}
	if b := c.MQTT.Broker; b != "" && !brokerURL(b) {
		bad(fmt.Sprintf("%q: want tcp://host:port or ssl://host:port", b), "mqtt", "broker")
	}
	for i, b := range c.MQTT.Brokers {
		if !brokerURL(b) {
			bad(fmt.Sprintf("%q: want tcp://host:port or ssl://host:port", b), "mqtt", "brokers", i)
		}
	}
	switch c.MQTT.Delivery {
	case DeliveryBroker:
	case DeliveryReceipt:
		if len(c.MQTT.Brokers) == 0 {
			bad("receipt delivery needs mqtt.broker or mqtt.brokers (receipts come from central)", "mqtt", "delivery")
		}
	default:
		bad(fmt.Sprintf("%q: want broker or receipt", c.MQTT.Delivery), "mqtt", "delivery")
	}
	if c.MQTT.ReceiptTimeout < time.Second || c.MQTT.ReceiptTimeout > 24*time.Hour {
		bad(fmt.Sprintf("%s: want 1s … 24h", c.MQTT.ReceiptTimeout), "mqtt", "receipt_timeout")
	}
	if c.MQTT.ReceiptAlarm < c.MQTT.ReceiptTimeout {
		bad(fmt.Sprintf("%s: want at least receipt_timeout (%s)", c.MQTT.ReceiptAlarm, c.MQTT.ReceiptTimeout), "mqtt", "receipt_alarm")
	}
	if c.MQTT.Heartbeat < time.Second {
		bad(fmt.Sprintf("%s: want at least 1s", c.MQTT.Heartbeat), "mqtt", "heartbeat")
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		bad("cert_file and key_file go together (mTLS needs both)", "mqtt", "cert_file")
	}
	if c.MQTT.InFlight < 1 || c.MQTT.InFlight > 65535 {
		bad(fmt.Sprintf("%d: want 1 … 65535", c.MQTT.InFlight), "mqtt", "in_flight")
	}
	if strings.ContainsAny(c.MQTT.TopicPrefix, "#+") || c.MQTT.TopicPrefix == "" {
		bad(fmt.Sprintf("%q: a topic prefix without wildcards", c.MQTT.TopicPrefix), "mqtt", "topic_prefix")
	}
	if c.Buffer.MaxBytes < 1<<20 {
		bad(fmt.Sprintf("%d bytes: want at least 1MiB", c.Buffer.MaxBytes), "buffer", "max_bytes")
	}
	if c.Buffer.AlarmFraction <= 0 || c.Buffer.AlarmFraction >= 1 {
		bad(fmt.Sprintf("%v: want a fraction between 0 and 1, e.g. 0.8", c.Buffer.AlarmFraction), "buffer", "alarm_fraction")
	}
	switch c.Decode.NoAIM {
	case "gs1", "plain":
	default:
		bad(fmt.Sprintf("%q: want gs1 or plain", c.Decode.NoAIM), "decode", "no_aim")
	}
	switch c.Decode.DigitalLink {
	case "strict", "lenient":
	default:
		bad(fmt.Sprintf("%q: want strict or lenient", c.Decode.DigitalLink), "decode", "digital_link")
	}
	for i, p := range c.Decode.PlainPatterns {
		if _, err := regexp.Compile(p); err != nil {
			bad(fmt.Sprintf("bad regular expression: %v", err), "decode", "plain_patterns", i)
		}
	}
	for i, r := range c.Policy.Warn {
		if !WarnableReasons[r] {
			bad(fmt.Sprintf("%q cannot be turned into a warning (known: see README, policy)", r), "policy", "warn", i)
		}
	}
	for _, dp := range []struct {
		key string
		p   DirectionPolicy
	}{{"receiving", c.Policy.Receiving}, {"shipping", c.Policy.Shipping}} {
		for i, r := range dp.p.Warn {
			if !WarnableReasons[r] {
				bad(fmt.Sprintf("%q cannot be turned into a warning", r), "policy", dp.key, "warn", i)
			}
		}
		for i, r := range dp.p.Reject {
			if !WarnableReasons[r] {
				bad(fmt.Sprintf("%q is not a reason a policy can set", r), "policy", dp.key, "reject", i)
			}
		}
	}
	if c.Policy.ExpiresSoonDays < 0 || c.Policy.ExpiresSoonDays > 3650 {
		bad(fmt.Sprintf("%d: want 0 (off) … 3650 days", c.Policy.ExpiresSoonDays), "policy", "expires_soon_days")
	}
	if k := c.Allowlist.PublicKey; k != "" {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			bad("want a base64 Ed25519 public key (32 bytes)", "allowlist", "public_key")
		}
	}
	if (c.MQTT.Broker != "" || len(c.MQTT.Brokers) > 0) && c.Allowlist.PublicKey == "" && !c.Allowlist.AllowUnsigned {
		bad("the uplink is on but no key checks central's allowlist updates: set allowlist.public_key to central's Ed25519 public key (base64; dockd provision --allowlist-key), or accept unsigned lists knowingly with allowlist.allow_unsigned: true", "allowlist", "public_key")
	}
	if c.Allowlist.PublicKey != "" && c.Allowlist.AllowUnsigned {
		bad("allow_unsigned: true contradicts public_key: remove one", "allowlist", "allow_unsigned")
	}
	sizeIn := func(v ByteSize, lo, hi int64, path ...any) {
		if int64(v) < lo || int64(v) > hi {
			bad(fmt.Sprintf("%d bytes: want %s … %s", v, human(lo), human(hi)), path...)
		}
	}
	sizeIn(c.MQTT.Limits.CommandBytes, 1<<10, 1<<20, "mqtt", "limits", "command_bytes")
	sizeIn(c.Allowlist.MaxChunkBytes, 1<<10, 16<<20, "allowlist", "max_chunk_bytes")
	sizeIn(c.Allowlist.MaxDeltaBytes, 1<<10, 16<<20, "allowlist", "max_delta_bytes")
	sizeIn(c.Allowlist.MaxSnapshotBytes, int64(c.Allowlist.MaxChunkBytes), 4<<30, "allowlist", "max_snapshot_bytes")
	sizeIn(c.Allowlist.DiskReserve, 0, 1<<40, "allowlist", "disk_reserve")
	if c.Allowlist.StagingTTL < time.Minute || c.Allowlist.StagingTTL > 7*24*time.Hour {
		bad(fmt.Sprintf("%s: want 1m … 168h", c.Allowlist.StagingTTL), "allowlist", "staging_ttl")
	}
	if c.Allowlist.TraceRetention < time.Hour {
		bad(fmt.Sprintf("%s: want at least 1h", c.Allowlist.TraceRetention), "allowlist", "trace_retention")
	}
	if a := c.Status.Addr; a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad(fmt.Sprintf("%q: want host:port, e.g. 127.0.0.1:8080 (empty turns the page off)", a), "status", "addr")
		} else if host == "" || host == "0.0.0.0" || host == "::" {
			if c.Status.PasswordFile == "" && c.Status.ClientCA == "" {
				bad(fmt.Sprintf("%q listens beyond this box: set status.password_file or status.client_ca", a), "status", "addr")
			}
		}
	}
	for i, h := range c.Status.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ @*") {
			bad(fmt.Sprintf("%q: want a host name or address (no scheme, path or wildcard)", h), "status", "allowed_hosts", i)
		}
	}
	if p := c.Status.Socket; p != "" && p != "off" && (!filepath.IsAbs(p) || len(p) > 100) {
		bad(fmt.Sprintf("%q: want an absolute path of at most 100 bytes, or off", p), "status", "socket")
	}
	if (c.Status.TLSCert == "") != (c.Status.TLSKey == "") {
		bad("tls_cert and tls_key go together", "status", "tls_cert")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad(fmt.Sprintf("%q: want debug, info, warn or error", c.Log.Level), "log", "level")
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		bad(fmt.Sprintf("%q: want auto, text or json", c.Log.Format), "log", "format")
	}
	return errs
}

// human writes a byte count with the largest binary unit that divides it.
func human(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return fmt.Sprintf("%d%s", n/u.m, u.s)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// validateEPCIS checks the epcis section: locations and transactions even
// when the rendering is off (so a typo is caught before it is turned on).
func (c *Config) validateEPCIS(bad func(msg string, path ...any)) {
	e := c.EPCIS
	for _, l := range []struct{ key, uri string }{{"read_point", e.ReadPoint}, {"biz_location", e.BizLocation}} {
		if l.uri == "" {
			if e.Enabled {
				bad("missing: EPCIS needs the door's and the site's location (an SGLN such as urn:epc:id:sgln:4012345.00001.door9, a GLN Digital Link, or an https URI the site owns)", "epcis", l.key)
			}
			continue
		}
		if err := epcis.CheckLocation(l.uri); err != nil {
			bad(strings.TrimPrefix(err.Error(), epcis.ErrConfig.Error()+": "), "epcis", l.key)
		}
	}
	keys := make([]string, 0, len(e.CompanyPrefixes))
	for k := range e.CompanyPrefixes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := epcis.NewPrefixes(map[string]int{k: e.CompanyPrefixes[k]}); err != nil {
			bad(strings.TrimPrefix(err.Error(), epcis.ErrConfig.Error()+": "), "epcis", "company_prefixes", k)
		}
	}
	if err := epcis.CheckTransaction(e.TransactionType, ""); err != nil {
		bad(strings.TrimPrefix(err.Error(), epcis.ErrConfig.Error()+": "), "epcis", "transaction_type")
	}
	if err := epcis.CheckTransaction("", e.TransactionURI); err != nil {
		bad(strings.TrimPrefix(err.Error(), epcis.ErrConfig.Error()+": "), "epcis", "transaction_uri")
	}
}

// WarnableReasons are the reasons a site policy may downgrade to a warning.
// Faults of the station itself (buffer full, storage) and bad scans always reject.
var WarnableReasons = map[dock.Reason]bool{
	dock.ReasonUnknownGTIN: true, dock.ReasonUnknownLot: true, dock.ReasonLotQuarantined: true,
	dock.ReasonExpired: true, dock.ReasonExpiresSoon: true, dock.ReasonUnknownSerial: true,
	dock.ReasonSerialLotMismatch: true, dock.ReasonDuplicateSerial: true, dock.ReasonNotInCustody: true,
	dock.ReasonAlreadyShipped: true, dock.ReasonNotExpected: true, dock.ReasonOverQuantity: true,
	dock.ReasonLotBlocked: true, dock.ReasonLotRecalled: true,
}

func keyOf(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch v := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		}
	}
	return b.String()
}

// lineOf finds the line of the deepest node along path that exists, so a
// missing key points at its parent block.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch v := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == v {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
			if next == nil {
				return line
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || v >= len(n.Content) {
				return line
			}
			n = n.Content[v]
			line = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode {
		line = n.Line
	}
	return line
}
