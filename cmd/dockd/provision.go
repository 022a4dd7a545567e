package main

// dockd provision: write a door's config, interactively on a terminal or
// from flags for scripts. The file is validated with the same code as
// check-config before anything is written, and replaced atomically.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/dockd/dockd/internal/config"
)

// readerProfile is a named set of serial settings for a scanner family.
type readerProfile struct {
	Baud   int
	Suffix string
	Note   string
}

// readerProfiles are the settings `provision --reader ID=PORT,PROFILE`
// knows. USB CDC-ACM scanners ignore the baud rate.
var readerProfiles = map[string]readerProfile{
	"usb":      {115200, "CR", "USB serial (CDC-ACM) scanner, CR suffix (most Honeywell, Zebra, Datalogic in USB-COM mode)"},
	"usb-lf":   {115200, "LF", "USB serial scanner, LF suffix"},
	"rs232":    {9600, "CR", "RS-232 scanner at 9600 8N1, CR suffix"},
	"rs232-lf": {9600, "LF", "RS-232 scanner at 9600 8N1, LF suffix"},
	"crlf":     {9600, "CRLF", "RS-232 scanner at 9600 8N1, CR LF suffix"},
}

const defaultProfile = "usb"

// provReader is one reader to configure.
type provReader struct{ ID, Port, Profile string }

// provPlan is everything provision writes.
type provPlan struct {
	Site, Door, StationID, Direction, StateDir string
	Readers                                    []provReader
	LightDriver                                string
	Pins                                       config.Pins
	ActiveLow                                  bool
	Broker, Username, PasswordFile             string
	CAFile, CertFile, KeyFile                  string
	// AllowlistKey is central's Ed25519 public key (base64) that signs
	// allowlist updates; AllowUnsigned accepts unsigned ones instead.
	AllowlistKey  string
	AllowUnsigned bool
	// Delivery is mqtt.delivery: broker or receipt.
	Delivery string
}

// brokerList splits a comma-separated broker answer into mqtt.brokers.
func (p provPlan) brokerList() []string {
	var out []string
	for _, b := range strings.Split(p.Broker, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// mqttTLSKeys reports whether this build's config schema has the mqtt TLS
// file keys (mqtt.ca_file, mqtt.cert_file, mqtt.key_file), and reads them
// from cfg. The keys arrive with the TLS work; until then provision refuses
// TLS files instead of writing a config check-config would reject.
func mqttTLSKeys(cfg config.MQTT) (ca, cert, key string, ok bool) {
	v := reflect.ValueOf(cfg)
	get := func(tag string) (string, bool) {
		for i := 0; i < v.NumField(); i++ {
			if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == tag && v.Field(i).Kind() == reflect.String {
				return v.Field(i).String(), true
			}
		}
		return "", false
	}
	ca, ok1 := get("ca_file")
	cert, ok2 := get("cert_file")
	key, ok3 := get("key_file")
	return ca, cert, key, ok1 && ok2 && ok3
}

// q quotes s as a YAML double-quoted scalar (JSON strings are valid YAML).
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// yaml renders the plan as a commented config file.
func (p provPlan) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# dockd station configuration, written by `dockd provision`.\n")
	fmt.Fprintf(&b, "# Every key is documented in /usr/share/doc/dockd/README.md and the shipped\n# default (firmware-config/dockd.yaml). Check it with: dockd check-config FILE\n\n")
	fmt.Fprintf(&b, "station:\n  site: %s\n  door: %s\n", q(p.Site), q(p.Door))
	if p.StationID != "" {
		fmt.Fprintf(&b, "  id: %s\n", q(p.StationID))
	}
	fmt.Fprintf(&b, "  direction: %s\n\nstate_dir: %s\n\nreaders:\n", p.Direction, q(p.StateDir))
	for _, r := range p.Readers {
		prof := readerProfiles[r.Profile]
		fmt.Fprintf(&b, "  - id: %s   # profile %s: %s\n    type: serial\n    port: %s\n    baud: %d\n    suffix: %s\n",
			q(r.ID), r.Profile, prof.Note, q(r.Port), prof.Baud, prof.Suffix)
	}
	fmt.Fprintf(&b, "\nlight:\n  driver: %s\n  active_low: %t\n", p.LightDriver, p.ActiveLow)
	if p.LightDriver == "gpio" {
		fmt.Fprintf(&b, "  pins:\n")
		for _, pin := range []struct{ role, name string }{{"green", p.Pins.Green}, {"amber", p.Pins.Amber}, {"red", p.Pins.Red}, {"buzzer", p.Pins.Buzzer}} {
			if pin.name != "" {
				fmt.Fprintf(&b, "    %s: %s\n", pin.role, q(pin.name))
			}
		}
	}
	if bl := p.brokerList(); len(bl) > 1 {
		fmt.Fprintf(&b, "\nmqtt:\n  brokers:   # tried in order; on a failed or lost connection the next one\n")
		for _, u := range bl {
			fmt.Fprintf(&b, "    - %s\n", q(u))
		}
	} else {
		fmt.Fprintf(&b, "\nmqtt:\n  broker: %s\n", q(p.Broker))
	}
	if p.Delivery != "" {
		fmt.Fprintf(&b, "  delivery: %s   # broker: an event leaves this box on the broker's PUBACK; receipt: only once central has written it down\n", p.Delivery)
	}
	if p.Username != "" {
		fmt.Fprintf(&b, "  username: %s\n", q(p.Username))
	}
	if p.PasswordFile != "" {
		fmt.Fprintf(&b, "  password_file: %s\n", q(p.PasswordFile))
	}
	for _, kv := range []struct{ k, v string }{{"ca_file", p.CAFile}, {"cert_file", p.CertFile}, {"key_file", p.KeyFile}} {
		if kv.v != "" {
			fmt.Fprintf(&b, "  %s: %s\n", kv.k, q(kv.v))
		}
	}
	switch {
	case p.AllowlistKey != "":
		fmt.Fprintf(&b, "\nallowlist:\n  public_key: %s   # central's Ed25519 key: only updates signed with it are accepted\n", q(p.AllowlistKey))
	case p.AllowUnsigned:
		fmt.Fprintf(&b, "\nallowlist:\n  allow_unsigned: true   # unsigned updates from central are accepted (dockd doctor warns)\n")
	}
	return b.String()
}

// summary is what provision prints before it writes.
func (p provPlan) summary(w io.Writer, path string, exists bool, owner string) {
	fmt.Fprintf(w, "\nPlan:\n")
	fmt.Fprintf(w, "  station   site %s, door %s, %s\n", p.Site, p.Door, p.Direction)
	for _, r := range p.Readers {
		fmt.Fprintf(w, "  reader    %s on %s (profile %s)\n", r.ID, r.Port, r.Profile)
	}
	if p.LightDriver == "gpio" {
		fmt.Fprintf(w, "  light     gpio green=%s amber=%s red=%s buzzer=%s active_low=%t\n", p.Pins.Green, p.Pins.Amber, p.Pins.Red, p.Pins.Buzzer, p.ActiveLow)
	} else {
		fmt.Fprintf(w, "  light     virtual (no stack light)\n")
	}
	if p.Broker == "" {
		fmt.Fprintf(w, "  broker    none: events stay in the buffer\n")
	} else {
		fmt.Fprintf(w, "  broker    %s", p.Broker)
		if p.Username != "" {
			fmt.Fprintf(w, " as %s (password from %s)", p.Username, p.PasswordFile)
		}
		if p.CAFile != "" || p.CertFile != "" {
			fmt.Fprintf(w, ", TLS ca=%s cert=%s key=%s", p.CAFile, p.CertFile, p.KeyFile)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  delivery  %s\n", firstNonEmpty(p.Delivery, config.DeliveryBroker))
		switch {
		case p.AllowlistKey != "":
			fmt.Fprintf(w, "  allowlist signed by central's key %s\n", p.AllowlistKey)
		case p.AllowUnsigned:
			fmt.Fprintf(w, "  allowlist UNSIGNED updates accepted\n")
		}
	}
	verb := "create"
	if exists {
		verb = "replace (the old file is kept as " + path + ".bak)"
	}
	fmt.Fprintf(w, "  file      %s %s, mode 0640, owner %s\n\n", verb, path, owner)
}

// serialByID lists dir (normally /dev/serial/by-id) as name → device.
func serialByID(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out
}

// readerFlag parses repeated --reader ID=PORT[,PROFILE].
type readerFlag []provReader

func (r *readerFlag) String() string { return fmt.Sprint(*r) }

func (r *readerFlag) Set(v string) error {
	id, rest, ok := strings.Cut(v, "=")
	if !ok || id == "" || rest == "" {
		return errors.New("want ID=PORT[,PROFILE]")
	}
	port, prof, _ := strings.Cut(rest, ",")
	if prof == "" {
		prof = defaultProfile
	}
	if _, ok := readerProfiles[prof]; !ok {
		return fmt.Errorf("unknown profile %q (known: %s)", prof, profileNames())
	}
	*r = append(*r, provReader{ID: id, Port: port, Profile: prof})
	return nil
}

func profileNames() string {
	var n []string
	for k := range readerProfiles {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// prompter asks questions on a terminal.
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

// ask prints question with its default and returns the answer (the
// default on an empty line). io.EOF means the technician gave up.
func (p *prompter) ask(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.out, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.out, "%s: ", question)
	}
	line, err := p.in.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("reading the answer to %q: %w", question, err)
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return def, nil
	}
	return line, nil
}

// need asks until the answer is not empty.
func (p *prompter) need(question, def string) (string, error) {
	for {
		a, err := p.ask(question, def)
		if err != nil || a != "" {
			return a, err
		}
		fmt.Fprintln(p.out, "  an answer is required")
	}
}

func (p *prompter) yes(question string, def bool) (bool, error) {
	d := "y/N"
	if def {
		d = "Y/n"
	}
	a, err := p.ask(question+" ("+d+")", "")
	if err != nil {
		return false, err
	}
	if a == "" {
		return def, nil
	}
	return strings.HasPrefix(strings.ToLower(a), "y"), nil
}

// interview fills in the plan on a terminal, flag values as defaults.
func (pl *provPlan) interview(p *prompter, byID string) error {
	var err error
	fmt.Fprintln(p.out, "dockd provision: set up this door. Press Enter to keep the value in [brackets].")
	if pl.Site, err = p.need("Site id (e.g. dc-east)", pl.Site); err != nil {
		return err
	}
	if pl.Door, err = p.need("Door id (e.g. door-07)", pl.Door); err != nil {
		return err
	}
	for {
		if pl.Direction, err = p.need("Direction (receiving or shipping)", pl.Direction); err != nil {
			return err
		}
		if pl.Direction == "receiving" || pl.Direction == "shipping" {
			break
		}
		fmt.Fprintln(p.out, "  want receiving or shipping")
		pl.Direction = "receiving"
	}

	ports := serialByID(byID)
	if len(ports) > 0 {
		fmt.Fprintf(p.out, "Serial devices in %s:\n", byID)
		for i, port := range ports {
			tty, _ := filepath.EvalSymlinks(port)
			fmt.Fprintf(p.out, "  %d) %s → %s\n", i+1, filepath.Base(port), tty)
		}
	} else {
		fmt.Fprintf(p.out, "No serial devices in %s: plug the scanners in first, or type a port path.\n", byID)
	}
	fmt.Fprintf(p.out, "Profiles: %s\n", profileNames())
	given := pl.Readers
	pl.Readers = nil
	for i := 0; ; i++ {
		var def provReader
		if i < len(given) {
			def = given[i]
		}
		prompt := fmt.Sprintf("Reader %d port (number, path, or empty to finish)", i+1)
		if i == 0 {
			prompt = "Reader 1 port (number or path)"
		}
		a, err := p.ask(prompt, def.Port)
		if err != nil {
			return err
		}
		if a == "" {
			if i == 0 {
				fmt.Fprintln(p.out, "  at least one reader is required")
				i--
				continue
			}
			break
		}
		if n, err := strconv.Atoi(a); err == nil && n >= 1 && n <= len(ports) {
			a = ports[n-1]
		}
		r := provReader{Port: a}
		if r.ID, err = p.need(fmt.Sprintf("Reader %d id", i+1), firstNonEmpty(def.ID, fmt.Sprintf("scanner-%d", i+1))); err != nil {
			return err
		}
		for {
			if r.Profile, err = p.need(fmt.Sprintf("Reader %d profile", i+1), firstNonEmpty(def.Profile, defaultProfile)); err != nil {
				return err
			}
			if _, ok := readerProfiles[r.Profile]; ok {
				break
			}
			fmt.Fprintf(p.out, "  unknown profile; known: %s\n", profileNames())
		}
		pl.Readers = append(pl.Readers, r)
	}

	gpio, err := p.yes("Is a GPIO stack light fitted?", pl.LightDriver == "gpio")
	if err != nil {
		return err
	}
	pl.LightDriver = "virtual"
	if gpio {
		pl.LightDriver = "gpio"
		for _, pin := range []struct {
			role string
			v    *string
		}{{"green", &pl.Pins.Green}, {"amber", &pl.Pins.Amber}, {"red", &pl.Pins.Red}, {"buzzer (empty: none)", &pl.Pins.Buzzer}} {
			if *pin.v, err = p.ask("Pin for "+pin.role, *pin.v); err != nil {
				return err
			}
		}
		if pl.ActiveLow, err = p.yes("Does the relay board switch on a low level (active low)?", pl.ActiveLow); err != nil {
			return err
		}
	}
	if pl.Broker, err = p.ask("MQTT broker URL (tcp://host:1883 or ssl://host:8883; several: comma-separated, tried in order; empty: none)", pl.Broker); err != nil {
		return err
	}
	if pl.Broker != "" {
		for {
			d, err := p.ask("Delivery: broker (an event leaves this box when the broker acknowledges it) or receipt (only when central has written it down; needs central's collector)",
				firstNonEmpty(pl.Delivery, config.DeliveryBroker))
			if err != nil {
				return err
			}
			if d == config.DeliveryBroker || d == config.DeliveryReceipt {
				pl.Delivery = d
				break
			}
			fmt.Fprintf(p.out, "  %q: answer broker or receipt\n", d)
		}
		if pl.Username, err = p.ask("MQTT user name (empty: none)", pl.Username); err != nil {
			return err
		}
		if pl.Username != "" {
			if pl.PasswordFile, err = p.need("File holding the MQTT password", firstNonEmpty(pl.PasswordFile, "/etc/dockd/mqtt-password")); err != nil {
				return err
			}
		}
		if err := pl.askAllowlistKey(p); err != nil {
			return err
		}
		if strings.Contains(pl.Broker, "ssl://") || strings.Contains(pl.Broker, "mqtts://") {
			if _, _, _, ok := mqttTLSKeys(config.MQTT{}); ok {
				for _, f := range []struct {
					q string
					v *string
				}{{"CA certificate file (empty: system CAs)", &pl.CAFile}, {"Client certificate file (empty: none)", &pl.CertFile}, {"Client key file", &pl.KeyFile}} {
					if f.v == &pl.KeyFile && pl.CertFile == "" {
						break
					}
					if *f.v, err = p.ask(f.q, *f.v); err != nil {
						return err
					}
				}
			} else {
				fmt.Fprintln(p.out, "  (this version verifies the broker against the system CAs; CA and client certificate files are not configurable yet)")
			}
		}
	}
	return nil
}

// askAllowlistKey asks for central's allowlist signing key until a valid
// one is given, or the technician explicitly accepts unsigned lists.
func (pl *provPlan) askAllowlistKey(p *prompter) error {
	for {
		k, err := p.ask("Central's allowlist public key (Ed25519, base64; empty: none)", pl.AllowlistKey)
		if err != nil {
			return err
		}
		if k != "" {
			if err := checkAllowlistKey(k); err != nil {
				fmt.Fprintf(p.out, "  %v\n", err)
				continue
			}
			pl.AllowlistKey, pl.AllowUnsigned = k, false
			return nil
		}
		ok, err := p.yes("Without a key anyone who can publish on the site's allowlist topics decides what this door accepts. Accept unsigned allowlists?", false)
		if err != nil {
			return err
		}
		if ok {
			pl.AllowlistKey, pl.AllowUnsigned = "", true
			return nil
		}
	}
}

// checkAllowlistKey says what is wrong with a base64 Ed25519 public key.
func checkAllowlistKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return fmt.Errorf("%q is not a base64 Ed25519 public key (%d bytes)", k, ed25519.PublicKeySize)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// configOwner is the group the config should belong to: dockd when the
// group exists (the service reads it), else the file stays root's.
func configOwner() (gid int, name string) {
	g, err := user.LookupGroup("dockd")
	if err != nil {
		return -1, "root:root"
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, "root:root"
	}
	return id, "root:dockd"
}

// writeFileAtomic replaces path with data: a temp file in the same
// directory, written, given mode and group, fsynced, renamed over path,
// and the directory fsynced. A crash leaves the old or the new file.
func writeFileAtomic(path string, data []byte, mode os.FileMode, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	fail := func(err error) error {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if gid >= 0 && os.Geteuid() == 0 {
		if err := f.Chown(0, gid); err != nil {
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// cmdProvision writes a station config. See the usage text for flags.
func cmdProvision(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	path := fs.String("config", "/etc/dockd/dockd.yaml", "config file to write")
	var pl provPlan
	fs.StringVar(&pl.Site, "site", "", "site id")
	fs.StringVar(&pl.Door, "door", "", "door id")
	fs.StringVar(&pl.StationID, "station-id", "", "station id (default SITE-DOOR)")
	fs.StringVar(&pl.Direction, "direction", "receiving", "receiving or shipping")
	fs.StringVar(&pl.StateDir, "state-dir", "/var/lib/dockd", "state directory")
	var readers readerFlag
	fs.Var(&readers, "reader", "ID=PORT[,PROFILE] (repeatable); profiles: "+profileNames())
	fs.StringVar(&pl.LightDriver, "light", "virtual", "light driver: gpio or virtual")
	pins := fs.String("pins", "green=GPIO17,amber=GPIO27,red=GPIO22,buzzer=GPIO23", "light pins ROLE=PIN,… (periph names)")
	fs.BoolVar(&pl.ActiveLow, "active-low", false, "relay board switches on a low level")
	fs.StringVar(&pl.Broker, "broker", "", "MQTT broker URL (tcp://host:1883, ssl://host:8883), several comma-separated (failover in order); empty: no uplink")
	fs.StringVar(&pl.Delivery, "delivery", "", "with a broker: broker (default: events leave the box on the broker's PUBACK) or receipt (only on central's receipt)")
	fs.StringVar(&pl.Username, "username", "", "MQTT user name")
	fs.StringVar(&pl.PasswordFile, "password-file", "", "file holding the MQTT password")
	fs.StringVar(&pl.CAFile, "ca-file", "", "CA certificate for the broker (TLS)")
	fs.StringVar(&pl.CertFile, "cert-file", "", "client certificate (mutual TLS)")
	fs.StringVar(&pl.KeyFile, "key-file", "", "client key (mutual TLS)")
	fs.StringVar(&pl.AllowlistKey, "allowlist-key", "", "central's Ed25519 public key (base64) that signs allowlist updates; required with --broker unless --allow-unsigned")
	fs.BoolVar(&pl.AllowUnsigned, "allow-unsigned", false, "accept unsigned allowlist updates from central (doctor warns)")
	yes := fs.Bool("yes", false, "do not ask: take everything from flags and write")
	byID := fs.String("by-id", "/dev/serial/by-id", "where to list serial devices")
	if err := parseArgs(fs, "dockd provision [flags]   (asks on a terminal; --yes takes everything from flags)", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("provision: unexpected argument %q (every setting is a flag)", fs.Arg(0))}
	}
	pl.Readers = readers
	for _, kv := range strings.Split(*pins, ",") {
		role, pin, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch role {
		case "green":
			pl.Pins.Green = pin
		case "amber":
			pl.Pins.Amber = pin
		case "red":
			pl.Pins.Red = pin
		case "buzzer":
			pl.Pins.Buzzer = pin
		case "":
		default:
			return &exitError{2, fmt.Errorf("--pins: unknown role %q (green, amber, red, buzzer)", role)}
		}
	}

	f, isFile := stdin.(*os.File)
	interactive := !*yes && isFile && term.IsTerminal(int(f.Fd()))
	var p *prompter
	if interactive {
		p = &prompter{in: bufio.NewReader(stdin), out: stdout}
		if err := pl.interview(p, *byID); err != nil {
			return err
		}
	} else if !*yes {
		return &exitError{2, errors.New("provision: stdin is not a terminal: give the settings as flags and --yes")}
	}
	if pl.CAFile != "" || pl.CertFile != "" || pl.KeyFile != "" {
		if _, _, _, ok := mqttTLSKeys(config.MQTT{}); !ok {
			return &exitError{2, errors.New("provision: this version's config has no mqtt.ca_file/cert_file/key_file yet; leave out --ca-file, --cert-file and --key-file (the broker is verified against the system CAs)")}
		}
	}

	if pl.AllowlistKey != "" {
		if err := checkAllowlistKey(pl.AllowlistKey); err != nil {
			return &exitError{2, fmt.Errorf("--allowlist-key: %w", err)}
		}
		pl.AllowUnsigned = false
	}
	if pl.Broker != "" && pl.Delivery == "" {
		pl.Delivery = config.DeliveryBroker
	}
	data := []byte(pl.yaml())
	cfg, err := config.Parse(*path, data)
	if err == nil {
		err = checkDevices(*path, cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "provision: the config would not be valid; nothing was written:\n%v\n", err)
		return &exitError{1, fmt.Errorf("provision: invalid settings for %s", *path)}
	}
	for _, r := range pl.Readers {
		if _, err := os.Stat(r.Port); err != nil {
			fmt.Fprintf(stdout, "note: reader %s: %s does not exist now (unplugged?); `dockd doctor` checks it again.\n", r.ID, r.Port)
		}
	}
	for _, f := range secretFiles(cfg) {
		if _, err := os.Stat(f.path); err != nil {
			fmt.Fprintf(stdout, "note: %s %s does not exist yet; create it for the service user only: install -m 0600 -o dockd /dev/stdin %s\n", f.key, f.path, f.path)
		}
	}
	_, statErr := os.Stat(*path)
	exists := statErr == nil
	gid, owner := configOwner()
	pl.summary(stdout, *path, exists, owner)
	if interactive {
		ok, err := p.yes("Write it?", true)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(stdout, "Nothing written.")
			return &exitError{1, errors.New("provision: cancelled")}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*path), 0o755); err != nil {
		return fmt.Errorf("provision: creating %s: %w", filepath.Dir(*path), err)
	}
	if exists {
		old, err := os.ReadFile(*path)
		if err != nil {
			return fmt.Errorf("provision: reading the old config for its backup: %w", err)
		}
		if err := writeFileAtomic(*path+".bak", old, 0o640, gid); err != nil {
			return fmt.Errorf("provision: backup: %w", err)
		}
	}
	if err := writeFileAtomic(*path, data, 0o640, gid); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	fmt.Fprintf(stdout, "Wrote %s. Next: dockd doctor --config %s, then systemctl restart dockd.\n", *path, *path)
	return nil
}
