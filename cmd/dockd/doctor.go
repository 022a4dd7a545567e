package main

// dockd doctor: one table of checks, each pass, warn or fail with the fix.
// It is safe to run beside the running station: it opens nothing the
// station holds for writing, and reads the station's own view (its
// retained status on the broker) where the station holds a lock.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/device/light"
	"github.com/dockd/dockd/device/reader"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/uplink"
)

// checkLevel is a check's outcome.
type checkLevel string

const (
	levelPass checkLevel = "pass"
	levelWarn checkLevel = "warn"
	levelFail checkLevel = "fail"
)

// checkRow is one line of the doctor's table (and of its JSON).
type checkRow struct {
	Check  string     `json:"check"`
	Status checkLevel `json:"status"`
	Detail string     `json:"detail"`
	Fix    string     `json:"fix,omitempty"`
}

// doctorReport is the JSON document of `dockd doctor --json`.
type doctorReport struct {
	OK     bool       `json:"ok"`
	Config string     `json:"config"`
	Checks []checkRow `json:"checks"`
}

// doctor holds one run's inputs and the rows found so far.
type doctor struct {
	cfg      config.Config
	path     string
	waitScan time.Duration
	timeout  time.Duration
	stderr   io.Writer
	rows     []checkRow

	stationRunning bool
	status         *Status // the station's retained status, when the probe got one
}

func (d *doctor) add(check string, lvl checkLevel, detail, fix string) {
	d.rows = append(d.rows, checkRow{Check: check, Status: lvl, Detail: detail, Fix: fix})
}

// Thresholds the doctor judges by.
const (
	doctorMinFreeBytes  = 64 << 20            // below: fail, the buffer may not even start
	doctorAllowlistAge  = 7 * 24 * time.Hour  // older: warn
	doctorCertExpiry    = 30 * 24 * time.Hour // server certificate expiring sooner: warn
	doctorBacklogAlarm  = time.Hour           // oldest undelivered event older: warn
	doctorProbeTimeout  = 5 * time.Second
	doctorReaderTimeout = 3 * time.Second // to see a reader's first up/down state
)

// cmdDoctor runs every check and prints the table (or JSON). It returns an
// exitError with code 1 when any check failed.
func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	path := fs.String("config", "/etc/dockd/dockd.yaml", "config file")
	asJSON := fs.Bool("json", false, "print a JSON report instead of the table")
	wait := fs.Int("wait-scan", 0, "wait up to N seconds for a test scan on each reader (0: only check the port opens)")
	timeout := fs.Duration("timeout", doctorProbeTimeout, "broker check timeout")
	if err := parseArgs(fs, "dockd doctor [--config FILE] [--json] [--wait-scan N] [--timeout D]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("doctor: unexpected argument %q", fs.Arg(0))}
	}
	d := &doctor{path: *path, waitScan: time.Duration(*wait) * time.Second, timeout: *timeout, stderr: stderr}
	if *asJSON {
		d.stderr = io.Discard
	}
	d.run(ctx)

	failed := 0
	for _, r := range d.rows {
		if r.Status == levelFail {
			failed++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doctorReport{OK: failed == 0, Config: *path, Checks: d.rows}); err != nil {
			return fmt.Errorf("doctor: writing the report: %w", err)
		}
	} else {
		printDoctorTable(stdout, d.rows)
	}
	if failed > 0 {
		return &exitError{1, fmt.Errorf("doctor: %d check(s) failed", failed)}
	}
	return nil
}

func printDoctorTable(w io.Writer, rows []checkRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(r.Status)), r.Check, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\t→ fix: %s\n", r.Fix)
		}
	}
	tw.Flush()
}

// run performs the checks in order. A config that does not load stops
// everything after it: nothing else can be checked without it.
func (d *doctor) run(ctx context.Context) {
	cfg, err := loadConfig(d.path)
	if err == nil {
		d.checkSecrets(cfg) // a row each, with its fix
		err = withoutSecretErrors(checkDevices(d.path, cfg))
	}
	if err != nil {
		fix := "correct the lines named above (dockd check-config " + d.path + "), or write a new config with dockd provision"
		if errors.Is(err, os.ErrNotExist) {
			fix = "write one with dockd provision"
		}
		d.add("config", levelFail, oneLine(err.Error()), fix)
		return
	}
	d.cfg = cfg
	d.add("config", levelPass, fmt.Sprintf("%s: station %s, door %s, %s, %d reader(s)", d.path, cfg.Station.ID, cfg.Station.Door, cfg.Station.Direction, len(cfg.Readers)), "")

	// Storage first: a locked buffer tells us the station is running.
	d.checkDisk()
	d.checkVolume()
	d.checkBuffer()
	d.checkBroker(ctx)
	d.checkAllowlist()
	d.checkSigning()
	d.checkClock()
	d.checkLight()
	for _, rc := range cfg.Readers {
		d.checkReader(ctx, rc)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (d *doctor) checkDisk() {
	dir := d.cfg.StateDir
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		d.add("disk", levelFail, fmt.Sprintf("state_dir %s: %v", dir, err),
			"create it for the service user: install -d -o dockd -g dockd -m 0750 "+dir+" (the package and systemd's StateDirectory do this)")
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	detail := fmt.Sprintf("%s: %s free of %s", dir, humanBytes(free), humanBytes(int64(st.Blocks)*int64(st.Bsize)))
	switch {
	case free < doctorMinFreeBytes:
		d.add("disk", levelFail, detail, "free space on this filesystem (old logs: journalctl --vacuum-size=50M); the buffer needs room to record scans")
	case free < int64(d.cfg.Buffer.MaxBytes):
		d.add("disk", levelWarn, detail+fmt.Sprintf(", less than buffer.max_bytes (%s)", humanBytes(int64(d.cfg.Buffer.MaxBytes))),
			"free space, or lower buffer.max_bytes so a long broker outage fills the budget before the disk")
	default:
		d.add("disk", levelPass, detail, "")
	}
}

func (d *doctor) checkBuffer() {
	path := filepath.Join(d.cfg.StateDir, "buffer.db")
	st, err := buffer.Check(path, buffer.Options{MaxBytes: int64(d.cfg.Buffer.MaxBytes), MaxAge: d.cfg.Buffer.MaxAge, AlarmFraction: d.cfg.Buffer.AlarmFraction})
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.add("buffer", levelPass, path+": not created yet (the station creates it at start)", "")
	case errors.Is(err, buffer.ErrLocked):
		d.stationRunning = true
		d.add("buffer", levelPass, path+": locked by the running station (healthy)", "")
	case errors.Is(err, buffer.ErrCorrupt):
		d.add("buffer", levelFail, oneLine(err.Error()),
			"stop the station (systemctl stop dockd), rescue what is readable with dockd buffer export FILE; at the next start the station moves the damaged file aside and starts a new one")
	case err != nil:
		d.add("buffer", levelFail, oneLine(err.Error()), "check the state directory's owner and mode (dockd:dockd 0750)")
	default:
		d.bufferRow(path, st.Depth, st.Bytes, st.OldestAt, st.Alarm || st.OverAge)
	}
}

func (d *doctor) bufferRow(where string, depth int, bytes int64, oldest time.Time, alarm bool) {
	detail := fmt.Sprintf("%s: %d undelivered event(s), %s", where, depth, humanBytes(bytes))
	if depth > 0 && !oldest.IsZero() {
		detail += ", oldest " + time.Since(oldest).Round(time.Second).String() + " ago"
	}
	switch {
	case alarm:
		d.add("buffer", levelWarn, detail+" (alarm)", "the broker has not taken events for a long time: fix the broker rows below; events are delivered when it is back")
	case depth > 0 && time.Since(oldest) > doctorBacklogAlarm:
		d.add("buffer", levelWarn, detail, "events are waiting for the broker: fix the broker rows")
	default:
		d.add("buffer", levelPass, detail, "")
	}
}

// doctorTLS builds the broker TLS config from the config's TLS file keys,
// when this build has them.
func doctorTLS(m config.MQTT) (*tls.Config, error) {
	ca, cert, key, ok := mqttTLSKeys(m)
	if !ok || (ca == "" && cert == "") {
		return nil, nil
	}
	cfg := &tls.Config{}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("reading mqtt.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.ca_file %s holds no PEM certificate", ca)
		}
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("loading mqtt.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

func (d *doctor) checkBroker(ctx context.Context) {
	m := d.cfg.MQTT
	if m.Broker == "" {
		d.add("broker", levelWarn, "no mqtt.broker configured: events stay in the buffer", "set mqtt.broker (dockd provision --broker …)")
		return
	}
	pc := uplink.ProbeConfig{
		Broker: m.Broker, Username: m.Username, ClientID: m.ClientID + "-doctor",
		Topic: d.cfg.TopicBase() + "/doctor", StatusTopic: d.cfg.TopicBase() + "/status", Timeout: d.timeout,
	}
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			d.add("broker auth", levelFail, fmt.Sprintf("mqtt.password_file: %v", err),
				"create it readable by the service only: install -m 0600 -o dockd /dev/stdin "+m.PasswordFile)
			return
		}
		pc.Password = strings.TrimSpace(string(b))
	}
	tcfg, err := doctorTLS(m)
	if err != nil {
		d.add("broker TLS", levelFail, oneLine(err.Error()), "point mqtt.ca_file/cert_file/key_file at readable PEM files")
		return
	}
	pc.TLS = tcfg
	receipts := m.Delivery == config.DeliveryReceipt
	if receipts {
		tp := d.topics()
		pc.ReceiptsTopic, pc.ReceiptProbeTopic, pc.StationID = tp.Receipts(), tp.ReceiptProbe(), d.cfg.Station.ID
		pc.ReceiptTimeout = d.timeout
	}
	res, err := uplink.Probe(ctx, pc)
	if len(res.Status) > 0 {
		var s Status
		if json.Unmarshal(res.Status, &s) == nil {
			d.status = &s
		}
	}
	isTLS := strings.HasPrefix(m.Broker, "ssl://") || strings.HasPrefix(m.Broker, "tls://") || strings.HasPrefix(m.Broker, "mqtts://")

	if !res.Reachable {
		d.add("broker reachable", levelFail, oneLine(errString(err)),
			"check the broker address and port in mqtt.broker, that the broker runs, and the network/firewall between (nc -vz HOST PORT)")
		return
	}
	d.add("broker reachable", levelPass, m.Broker, "")
	if isTLS {
		if !res.TLS {
			d.add("broker TLS", levelFail, oneLine(errString(err)),
				"the broker's certificate must be signed by the CA in mqtt.ca_file (or a system CA) and name the host in mqtt.broker; check the clock too (certificates have validity dates)")
			return
		}
		detail := fmt.Sprintf("%s, server %s, valid until %s", res.TLSVersion, res.ServerCert, res.ServerCertExpiry.Format("2006-01-02"))
		if time.Until(res.ServerCertExpiry) < doctorCertExpiry {
			d.add("broker TLS", levelWarn, detail, "the broker's certificate expires soon: tell the broker's operator")
		} else {
			d.add("broker TLS", levelPass, detail, "")
		}
	}
	if !res.Connected {
		fix := "the broker refused the connection: see its log"
		if errors.Is(err, uplink.ErrProbeAuth) {
			fix = "check mqtt.username and the password in mqtt.password_file (or the client certificate) against the broker's accounts"
		}
		d.add("broker login", levelFail, oneLine(errString(err)), fix)
		return
	}
	who := "anonymous"
	if m.Username != "" {
		who = "as " + m.Username
	}
	d.add("broker login", levelPass, fmt.Sprintf("%s, connected in %s", who, ms(res.ConnectTime)), "")
	if !res.Echoed {
		d.add("broker round trip", levelFail, oneLine(errString(err)),
			"the broker's ACL must let this station publish and subscribe under "+d.cfg.TopicBase()+"/#")
		return
	}
	d.add("broker round trip", levelPass, fmt.Sprintf("publish → PUBACK → delivery in %s on %s", ms(res.RoundTrip), pc.Topic), "")
	if receipts {
		d.checkReceipts(res, err, pc)
	}
	d.checkStandbyBrokers(ctx, pc)
}

// ms formats a short duration in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (d *doctor) checkAllowlist() {
	path := filepath.Join(d.cfg.StateDir, "allowlist.db")
	fix := "import the site's list: dockd allowlist import FILE.csv (or wait for central to push one)"
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		d.add("allowlist", levelFail, path+": no allowlist: every scan is rejected as unknown", fix)
		return
	}
	var in allowlist.Info
	if d.stationRunning {
		if d.status == nil {
			d.add("allowlist", levelPass, path+": in use by the running station (its status was not available to read the version)", "")
			return
		}
		in = d.status.Allowlist
	} else {
		list, err := allowlist.Open(path)
		if errors.Is(err, berrors.ErrTimeout) {
			d.add("allowlist", levelPass, path+": locked by the running station (healthy)", "")
			return
		}
		if err != nil {
			d.add("allowlist", levelFail, oneLine(err.Error()), "check the state directory's owner and mode; re-import the list")
			return
		}
		in, err = list.Info()
		list.Close()
		if err != nil {
			d.add("allowlist", levelFail, oneLine(err.Error()), fix)
			return
		}
	}
	if in.Version == "" {
		d.add("allowlist", levelFail, "no version imported yet: every scan is rejected as unknown", fix)
		return
	}
	detail := fmt.Sprintf("version %s, %d lots", in.Version, in.Lots)
	if !in.Updated.IsZero() {
		detail += fmt.Sprintf(", active since %s (%s ago)", in.Updated.Format("2006-01-02 15:04"), time.Since(in.Updated).Round(time.Minute))
	}
	if !in.Updated.IsZero() && time.Since(in.Updated) > doctorAllowlistAge {
		d.add("allowlist", levelWarn, detail, "the list is more than a week old: check central's updates reach this station, or import a current list")
		return
	}
	d.add("allowlist", levelPass, detail, "")
}

func (d *doctor) checkClock() {
	if clockSynced() {
		d.add("clock", levelPass, "synchronised ("+time.Now().UTC().Format(time.RFC3339)+")", "")
		return
	}
	d.add("clock", levelWarn, "not synchronised: events are marked clock_synced=false",
		"enable NTP (timedatectl set-ntp true) and check the time server is reachable (timedatectl timesync-status)")
}

func (d *doctor) checkLight() {
	l := d.cfg.Light
	if l.Driver != "gpio" {
		d.add("light", levelWarn, "driver virtual: no stack light is driven", "if a stack light is fitted, set light.driver: gpio and its pins (dockd provision)")
		return
	}
	if d.stationRunning {
		d.add("light", levelPass, "GPIO pins in use by the running station", "")
		return
	}
	_, err := light.OpenGPIO(light.PinNames{Green: l.Pins.Green, Amber: l.Pins.Amber, Red: l.Pins.Red, Buzzer: l.Pins.Buzzer, ActiveLow: l.ActiveLow})
	if err == nil {
		d.add("light", levelPass, fmt.Sprintf("pins green=%s amber=%s red=%s buzzer=%s exist and are writable (set to off)", l.Pins.Green, l.Pins.Amber, l.Pins.Red, l.Pins.Buzzer), "")
		return
	}
	fix := "use pin names of this board (periph.io names: GPIO17 or P1_11)"
	if errors.Is(err, light.ErrPermission) {
		fix = "add the service user to group gpio: usermod -aG gpio dockd" + groupNote("gpio")
	}
	d.add("light", levelFail, oneLine(err.Error()), fix)
}

// groupNote says whether user dockd is in group g, for fixes.
func groupNote(g string) string {
	u, err := user.Lookup("dockd")
	if err != nil {
		return " (user dockd does not exist: reinstall the package)"
	}
	gids, _ := u.GroupIds()
	grp, err := user.LookupGroup(g)
	if err != nil {
		return fmt.Sprintf(" (group %s does not exist: groupadd --system %s, and a udev rule giving it the devices)", g, g)
	}
	for _, id := range gids {
		if id == grp.Gid {
			return fmt.Sprintf(" (dockd is already in %s: check the device's group with ls -l)", g)
		}
	}
	return fmt.Sprintf(" (dockd is not in %s now)", g)
}

// checkReader opens the reader with the station's own reader code and, if
// asked, waits for a test scan.
func (d *doctor) checkReader(ctx context.Context, rc config.Reader) {
	name := "reader " + rc.ID
	if rc.Type != "serial" {
		d.add(name, levelPass, "type "+rc.Type+": nothing to check", "")
		return
	}
	if _, err := os.Stat(rc.Port); err != nil {
		fix := "plug the scanner in; ls -l /dev/serial/by-id/ shows what is connected"
		if ports := serialByID("/dev/serial/by-id"); len(ports) > 0 {
			fix += " (now: " + strings.Join(ports, ", ") + ")"
		}
		d.add(name, levelFail, fmt.Sprintf("%s is missing: %v", rc.Port, err), fix+"; then set its port with dockd provision")
		return
	}
	if d.stationRunning {
		detail := rc.Port + ": in use by the running station"
		if d.status != nil {
			for _, r := range d.status.Readers {
				if r.ID == rc.ID {
					if !r.Up {
						d.add(name, levelFail, detail+", which reports it down", "check the cable; journalctl -u dockd says why")
						return
					}
					detail += ", which reports it up on " + r.Port
				}
			}
		}
		d.add(name, levelPass, detail+" (stop the station to test a scan)", "")
		return
	}

	r, err := reader.NewSerial(readerConfig(rc), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		d.add(name, levelFail, oneLine(err.Error()), "correct the reader's settings in the config")
		return
	}
	wait := doctorReaderTimeout + d.waitScan
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	frames := make(chan dock.Frame, 1)
	states := make(chan dock.ReaderState, 1)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(rctx, frames, states) }()
	defer func() { cancel(); <-done }()

	var up dock.ReaderState
	select {
	case up = <-states:
	case <-rctx.Done():
		d.add(name, levelFail, rc.Port+": no answer from the port", "unplug and replug the scanner")
		return
	}
	if !up.Up {
		fix := "check the port path"
		switch {
		case errors.Is(up.Err, reader.ErrPermission):
			fix = "add the service user to group dialout: usermod -aG dialout dockd" + groupNote("dialout")
		case errors.Is(up.Err, reader.ErrPortBusy):
			fix = "another program holds the port: stop it (fuser -v " + rc.Port + ")"
		case errors.Is(up.Err, reader.ErrNotSerial):
			fix = "the path is not a serial port, or refuses the line settings: check port and baud"
		}
		d.add(name, levelFail, oneLine(errString(up.Err)), fix)
		return
	}
	if d.waitScan <= 0 {
		d.add(name, levelPass, fmt.Sprintf("%s → %s opens (run with --wait-scan 10 to test a scan)", rc.Port, up.Port), "")
		return
	}
	fmt.Fprintf(d.stderr, "Scan a label with reader %s now (waiting %v)…\n", rc.ID, d.waitScan)
	scanWait := time.NewTimer(d.waitScan)
	defer scanWait.Stop()
	select {
	case f := <-frames:
		d.add(name, levelPass, fmt.Sprintf("%s → %s sends: %s", rc.Port, up.Port, strconv.QuoteToASCII(truncate(string(f.Data), 60))), "")
	case st := <-states:
		d.add(name, levelFail, fmt.Sprintf("%s went down while waiting: %v", rc.Port, st.Err), "check the cable")
	case <-scanWait.C:
		d.add(name, levelFail, fmt.Sprintf("%s opens but sent nothing within %v", rc.Port, d.waitScan),
			fmt.Sprintf("set the scanner to serial (USB-COM/CDC) mode, not keyboard; check baud %d and that it ends codes with %s", rc.Baud, rc.Suffix))
	case <-ctx.Done():
		d.add(name, levelFail, "interrupted", "")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
