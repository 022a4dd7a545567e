package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/testkit"
)

// signalWriter collects output and signals when it contains a string.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.found != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.found)
		w.found = nil
	}
	return len(p), nil
}

// retainMessage publishes a retained message, as the station does with
// its status.
func retainMessage(t *testing.T, broker, topic, payload string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("doctor-test-retainer"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// doctorJSON runs doctor --json and returns the report and exit code.
func doctorJSON(t *testing.T, args []string, stderr *signalWriter) (doctorReport, int) {
	t.Helper()
	var out bytes.Buffer
	if stderr == nil {
		stderr = &signalWriter{}
	}
	err := cmdDoctor(context.Background(), append([]string{"--json"}, args...), &out, stderr)
	var rep doctorReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("doctor --json output is not JSON (%v):\n%s\nstderr: %s", jerr, &out, stderr.buf.String())
	}
	if rep.OK != (err == nil) {
		t.Errorf("report ok=%v but err=%v", rep.OK, err)
	}
	return rep, exitCode(err)
}

func row(t *testing.T, rep doctorReport, check string) checkRow {
	t.Helper()
	for _, r := range rep.Checks {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no %q row in %+v", check, rep.Checks)
	return checkRow{}
}

func wantRow(t *testing.T, rep doctorReport, check string, lvl checkLevel, detail, fix string) {
	t.Helper()
	r := row(t, rep, check)
	if r.Status != lvl || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
		t.Errorf("%s: %s %q fix %q; want %s with %q, fix with %q", check, r.Status, r.Detail, r.Fix, lvl, detail, fix)
	}
}

// TestDoctorAllGood: a scanner on a pty that sends a test scan, a real
// Mosquitto, GPIO test pins, the sample allowlist.
func TestDoctorAllGood(t *testing.T) {
	dir := t.TempDir()
	scanner := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	testkit.RegisterPins(t, "GPIO17", "GPIO27", "GPIO22", "GPIO23")
	importSample(t, dir)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(stationConfig(dir, scanner.Path(), broker.URL(), "gpio")), 0o600)

	stderr := &signalWriter{want: "Scan a label with reader scanner-1 now", found: make(chan struct{})}
	found := stderr.found
	go func() {
		select {
		case <-found:
			scanner.Write([]byte(gs1Scan("LOT42", "S1")))
		case <-time.After(20 * time.Second):
		}
	}()
	// Not --json here: the prompt to scan goes to stderr only in table mode.
	var out bytes.Buffer
	err := cmdDoctor(context.Background(), []string{"--config", path, "--wait-scan", "5"}, &out, stderr)
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, &out)
	}
	table := out.String()
	for _, want := range []string{"STATUS", "PASS config", "PASS broker reachable", "PASS broker login", "PASS broker round trip",
		"PASS allowlist", "version sample", "PASS light", "PASS buffer", "state volume", " free of ", "not created yet", "PASS reader scanner-1", "sends: \"]C101" + demoGTIN} {
		if !strings.Contains(strings.Join(strings.Fields(table), " "), want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "FAIL") {
		t.Errorf("a check failed:\n%s", table)
	}
	t.Logf("\n%s", table)
}

// TestDoctorFailures: the scanner is missing, the broker stopped, no
// allowlist, and a silent reader when a scan is awaited.
func TestDoctorFailures(t *testing.T) {
	dir := t.TempDir()
	broker := testkit.StartMosquitto(t)
	broker.Stop()
	silent := testkit.NewPTY(t)
	path := filepath.Join(dir, "dockd.yaml")
	yaml := stationConfig(dir, filepath.Join(dir, "by-id", "usb-gone-if00"), broker.URL(), "virtual")
	yaml = strings.Replace(yaml, "readers:\n", "readers:\n  - id: quiet\n    port: "+silent.Path()+"\n", 1)
	os.WriteFile(path, []byte(yaml), 0o600)

	rep, code := doctorJSON(t, []string{"--config", path, "--wait-scan", "1"}, nil)
	if code != 1 || rep.OK {
		t.Fatalf("exit %d ok %v, want 1 and false", code, rep.OK)
	}
	wantRow(t, rep, "config", levelPass, "2 reader(s)", "")
	wantRow(t, rep, "reader scanner-1", levelFail, "usb-gone-if00 is missing", "plug the scanner in")
	wantRow(t, rep, "reader quiet", levelFail, "sent nothing within 1s", "serial (USB-COM/CDC) mode")
	wantRow(t, rep, "broker reachable", levelFail, "refused", "check the broker address")
	wantRow(t, rep, "allowlist", levelFail, "no allowlist", "dockd allowlist import")
	wantRow(t, rep, "light", levelWarn, "virtual", "light.driver: gpio")
	for _, r := range rep.Checks {
		if r.Status != levelPass && r.Fix == "" {
			t.Errorf("%s is %s without a fix", r.Check, r.Status)
		}
	}
}

func TestDoctorBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dockd.yaml")
	os.WriteFile(path, []byte("station:\n  site: s\nreaders: []\n"), 0o600)
	rep, code := doctorJSON(t, []string{"--config", path}, nil)
	if code != 1 || len(rep.Checks) != 1 {
		t.Fatalf("exit %d, rows %+v", code, rep.Checks)
	}
	wantRow(t, rep, "config", levelFail, "station.door", "dockd check-config")

	rep, _ = doctorJSON(t, []string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, nil)
	wantRow(t, rep, "config", levelFail, "no such file", "dockd provision")
}

// TestDoctorBesideRunningStation: with the buffer held by a station, the
// doctor reports it locked (healthy) and takes the allowlist and reader
// state from the station's retained status.
func TestDoctorBesideRunningStation(t *testing.T) {
	dir := t.TempDir()
	scanner := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(stationConfig(dir, scanner.Path(), broker.URL(), "virtual")), 0o600)
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	os.WriteFile(filepath.Join(dir, "allowlist.db"), nil, 0o600) // present; the station would hold it
	status := `{"schema":"dockd.station-status/1","station":"test-site-door-9","state":"online",
		"readers":[{"id":"scanner-1","up":true,"port":"/dev/ttyACM0"}],
		"allowlist":{"version":"2026-11-w48","lots":1234,"updated":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `"}}`
	retainMessage(t, broker.URL(), "dockd/v1/test-site/door-9/status", status)

	rep, _ := doctorJSON(t, []string{"--config", path}, nil)
	wantRow(t, rep, "buffer", levelPass, "locked by the running station (healthy)", "")
	wantRow(t, rep, "allowlist", levelPass, "version 2026-11-w48, 1234 lots", "")
	wantRow(t, rep, "reader scanner-1", levelPass, "reports it up on /dev/ttyACM0", "")
	wantRow(t, rep, "broker round trip", levelPass, "doctor", "")
}

// A state_dir on a RAM filesystem is flagged: stored events would not
// survive a power cut. (A removable card is flagged the same way, from
// /sys/block/*/removable; this machine has none to show.)
func TestDoctorVolumeOnTmpfs(t *testing.T) {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Skip("no /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "dockd-doctor-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	d := &doctor{}
	d.cfg.StateDir = dir
	d.checkVolume()
	if len(d.rows) != 1 || d.rows[0].Status != levelWarn || !strings.Contains(d.rows[0].Detail, "tmpfs") {
		t.Fatalf("rows %+v, want one warning naming tmpfs", d.rows)
	}
}
