package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/config"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func TestProvisionFlags(t *testing.T) {
	scanner := testkit.NewPTY(t)
	tests := []struct {
		name  string
		args  []string
		code  int
		check func(t *testing.T, cfg config.Config)
	}{
		{"complete", []string{"--site", "dc-east", "--door", "door-07", "--direction", "shipping",
			"--reader", "scanner-1=" + scanner.Path() + ",rs232-lf", "--reader", "scanner-2=/dev/ttyACM9",
			"--light", "gpio", "--pins", "green=GPIO5,red=GPIO6", "--active-low",
			"--broker", "ssl://broker.example:8883", "--username", "door07", "--password-file", "/etc/dockd/pw", "--allowlist-key", testAllowlistKey, "--yes"}, 0,
			func(t *testing.T, c config.Config) {
				if c.Station.ID != "dc-east-door-07" || c.Station.Direction != dock.Shipping || c.StateDir != "/var/lib/dockd" {
					t.Errorf("station %+v state %s", c.Station, c.StateDir)
				}
				if len(c.Readers) != 2 || c.Readers[0].Port != scanner.Path() || c.Readers[0].Baud != 9600 || c.Readers[0].Suffix != "LF" ||
					c.Readers[1].Baud != 115200 || c.Readers[1].Suffix != "CR" {
					t.Errorf("readers %+v", c.Readers)
				}
				if c.Light.Driver != "gpio" || c.Light.Pins.Green != "GPIO5" || c.Light.Pins.Amber != "" || !c.Light.ActiveLow {
					t.Errorf("light %+v", c.Light)
				}
				if c.MQTT.Broker != "ssl://broker.example:8883" || c.MQTT.Username != "door07" || c.MQTT.PasswordFile != "/etc/dockd/pw" ||
					c.MQTT.Delivery != config.DeliveryBroker {
					t.Errorf("mqtt %+v", c.MQTT)
				}
				if c.Allowlist.PublicKey != testAllowlistKey || c.Allowlist.AllowUnsigned {
					t.Errorf("allowlist %+v", c.Allowlist)
				}
			}},
		{"receipt delivery", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "tcp://a:1883,tcp://b:1883", "--delivery", "receipt", "--allowlist-key", testAllowlistKey, "--yes"}, 0,
			func(t *testing.T, c config.Config) {
				if c.MQTT.Delivery != config.DeliveryReceipt || len(c.MQTT.Brokers) != 2 || c.MQTT.Brokers[1] != "tcp://b:1883" {
					t.Errorf("mqtt %+v", c.MQTT)
				}
			}},
		{"bad delivery", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "tcp://a:1883", "--delivery", "central", "--yes"}, 1, nil},
		{"receipt without broker", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--delivery", "receipt", "--yes"}, 1, nil},
		{"minimal", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/ttyUSB0", "--yes"}, 0,
			func(t *testing.T, c config.Config) {
				if c.Light.Driver != "virtual" || c.MQTT.Broker != "" || c.Station.Direction != dock.Receiving {
					t.Errorf("defaults: %+v", c)
				}
			}},
		{"bad site id", []string{"--site", "dc east!", "--door", "d", "--reader", "r=/dev/ttyUSB0", "--yes"}, 1, nil},
		{"no reader", []string{"--site", "s", "--door", "d", "--yes"}, 1, nil},
		{"bad pin", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--light", "gpio", "--pins", "green=pin17,red=GPIO6", "--yes"}, 1, nil},
		{"broker without allowlist key", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "tcp://h:1883", "--yes"}, 1, nil},
		{"bad allowlist key", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "tcp://h:1883", "--allowlist-key", "abc", "--yes"}, 2, nil},
		{"unsigned on purpose", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "tcp://h:1883", "--allow-unsigned", "--yes"}, 0,
			func(t *testing.T, c config.Config) {
				if !c.Allowlist.AllowUnsigned || c.Allowlist.PublicKey != "" {
					t.Errorf("allowlist %+v", c.Allowlist)
				}
			}},
		{"bad broker", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x", "--broker", "http://x", "--yes"}, 1, nil},
		{"unknown profile", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x,keyboard", "--yes"}, 2, nil},
		{"not a terminal without --yes", []string{"--site", "s", "--door", "d", "--reader", "r=/dev/x"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "etc", "dockd.yaml")
			var out, errOut bytes.Buffer
			err := cmdProvision(context.Background(), append([]string{"--config", path}, tt.args...), strings.NewReader(""), &out, &errOut)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", got, err, tt.code, &out, &errOut)
			}
			if tt.code != 0 {
				if _, err := os.Stat(path); err == nil {
					t.Error("a config was written although provision failed")
				}
				return
			}
			if !strings.Contains(out.String(), "Plan:") || !strings.Contains(out.String(), "Wrote "+path) {
				t.Errorf("no plan printed before writing:\n%s", &out)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o640 {
				t.Fatalf("config file %v %v", fi, err)
			}
			// check-config accepts what provision wrote.
			var cc bytes.Buffer
			if err := run(context.Background(), []string{"check-config", path}, nil, &cc, &cc); err != nil {
				t.Fatalf("check-config rejects the provisioned file: %v\n%s", err, cc.String())
			}
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".dockd.yaml.*")); len(left) > 0 {
				t.Errorf("temp files left behind: %v", left)
			}
		})
	}
}

func TestProvisionKeepsBackup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dockd.yaml")
	os.WriteFile(path, []byte("old: config\n"), 0o600)
	args := []string{"--config", path, "--site", "s", "--door", "d", "--reader", "r=/dev/ttyUSB0", "--yes"}
	var out bytes.Buffer
	if err := cmdProvision(context.Background(), args, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	if b, _ := os.ReadFile(path + ".bak"); string(b) != "old: config\n" {
		t.Errorf("backup holds %q", b)
	}
	if !strings.Contains(out.String(), "replace") {
		t.Errorf("the plan does not say the file is replaced:\n%s", &out)
	}
}

// terminal plays a technician at a pseudo-terminal: it waits for each
// prompt on the master side and types the answer.
type terminal struct {
	t    *testing.T
	pty  *testkit.PTY
	out  chan string
	seen strings.Builder
}

func newTerminal(t *testing.T) (*terminal, *os.File) {
	p := testkit.NewPTY(t)
	slave, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	term := &terminal{t: t, pty: p, out: make(chan string, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := p.Read(buf)
			if n > 0 {
				term.out <- string(buf[:n])
			}
			if err != nil {
				close(term.out)
				return
			}
		}
	}()
	return term, slave
}

// expect waits until prompt has been printed since the last expect, then
// types answer and a newline.
func (term *terminal) expect(prompt, answer string) {
	term.t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(term.seen.String(), prompt) {
		select {
		case s, ok := <-term.out:
			if !ok {
				term.t.Fatalf("terminal closed waiting for %q; saw:\n%s", prompt, term.seen.String())
			}
			term.seen.WriteString(s)
		case <-deadline:
			term.t.Fatalf("no prompt %q within 10s; saw:\n%s", prompt, term.seen.String())
		}
	}
	// Keep only what follows the prompt, so the next expect cannot match
	// an earlier prompt.
	rest := term.seen.String()
	rest = rest[strings.Index(rest, prompt)+len(prompt):]
	term.seen.Reset()
	term.seen.WriteString(rest)
	if err := term.pty.Write([]byte(answer + "\n")); err != nil {
		term.t.Fatal(err)
	}
}

func TestProvisionInteractive(t *testing.T) {
	// Two "scanners" in a by-id directory for the technician to pick from.
	byID := filepath.Join(t.TempDir(), "by-id")
	os.MkdirAll(byID, 0o755)
	for _, name := range []string{"usb-Acme_Scanner_A-if00", "usb-Acme_Scanner_B-if00"} {
		p := testkit.NewPTY(t)
		if err := os.Symlink(p.TTY(), filepath.Join(byID, name)); err != nil {
			t.Fatal(err)
		}
	}
	term, slave := newTerminal(t)
	path := filepath.Join(t.TempDir(), "dockd.yaml")
	done := make(chan error, 1)
	go func() {
		done <- cmdProvision(context.Background(), []string{"--config", path, "--by-id", byID, "--site", "dc-west"}, slave, slave, slave)
	}()
	term.expect("Site id (e.g. dc-east) [dc-west]: ", "")
	term.expect("Door id (e.g. door-07): ", "")
	term.expect("an answer is required", "")
	term.expect("Door id (e.g. door-07): ", "door-3")
	term.expect("Direction (receiving or shipping) [receiving]: ", "sideways")
	term.expect("want receiving or shipping", "shipping")
	term.expect("2) usb-Acme_Scanner_B-if00", "")
	term.expect("Reader 1 port (number or path): ", "2")
	term.expect("Reader 1 id [scanner-1]: ", "")
	term.expect("Reader 1 profile [usb]: ", "rs232")
	term.expect("Reader 2 port (number, path, or empty to finish): ", "/dev/ttyAMA0")
	term.expect("Reader 2 id [scanner-2]: ", "gate-rfid")
	term.expect("Reader 2 profile [usb]: ", "")
	term.expect("Reader 3 port (number, path, or empty to finish): ", "")
	term.expect("Is a GPIO stack light fitted? (y/N): ", "y")
	term.expect("Pin for green [GPIO17]: ", "GPIO5")
	term.expect("Pin for amber [GPIO27]: ", "")
	term.expect("Pin for red [GPIO22]: ", "")
	term.expect("Pin for buzzer (empty: none) [GPIO23]: ", "")
	term.expect("active low)? (y/N): ", "n")
	term.expect("MQTT broker URL", "tcp://10.0.0.5:1883, tcp://10.0.0.6:1883")
	term.expect("[broker]: ", "central")
	term.expect("answer broker or receipt", "receipt")
	term.expect("MQTT user name (empty: none): ", "door3")
	term.expect("File holding the MQTT password [/etc/dockd/mqtt-password]: ", "")
	term.expect("Central's allowlist public key (Ed25519, base64; empty: none): ", "")
	term.expect("Accept unsigned allowlists? (y/N): ", "")
	term.expect("Central's allowlist public key (Ed25519, base64; empty: none): ", "not-a-key")
	term.expect("is not a base64 Ed25519 public key", testAllowlistKey) // answers the repeated question
	term.expect("Write it? (Y/n): ", "y")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("provision: %v\n%s", err, term.seen.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("provision did not finish")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Station.Site != "dc-west" || cfg.Station.Door != "door-3" || cfg.Station.Direction != dock.Shipping {
		t.Errorf("station %+v", cfg.Station)
	}
	if len(cfg.Readers) != 2 || cfg.Readers[0].Port != filepath.Join(byID, "usb-Acme_Scanner_B-if00") || cfg.Readers[0].Baud != 9600 ||
		cfg.Readers[1].ID != "gate-rfid" || cfg.Readers[1].Port != "/dev/ttyAMA0" || cfg.Readers[1].Baud != 115200 {
		t.Errorf("readers %+v", cfg.Readers)
	}
	if cfg.Light.Driver != "gpio" || cfg.Light.Pins.Green != "GPIO5" || cfg.Light.Pins.Red != "GPIO22" {
		t.Errorf("light %+v", cfg.Light)
	}
	if cfg.MQTT.Broker != "tcp://10.0.0.5:1883" || cfg.MQTT.Username != "door3" || cfg.MQTT.PasswordFile != "/etc/dockd/mqtt-password" ||
		len(cfg.MQTT.Brokers) != 2 || cfg.MQTT.Brokers[1] != "tcp://10.0.0.6:1883" || cfg.MQTT.Delivery != config.DeliveryReceipt {
		t.Errorf("mqtt %+v", cfg.MQTT)
	}
	if cfg.Allowlist.PublicKey != testAllowlistKey {
		t.Errorf("allowlist %+v", cfg.Allowlist)
	}
}

// testAllowlistKey is a well-formed Ed25519 public key (32 bytes, base64).
const testAllowlistKey = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

func TestProvisionInteractiveCancel(t *testing.T) {
	term, slave := newTerminal(t)
	path := filepath.Join(t.TempDir(), "dockd.yaml")
	done := make(chan error, 1)
	go func() {
		done <- cmdProvision(context.Background(), []string{"--config", path, "--by-id", t.TempDir(),
			"--site", "s", "--door", "d", "--reader", "r=/dev/ttyUSB0"}, slave, slave, slave)
	}()
	for _, p := range []string{"Site id", "Door id", "Direction", "Reader 1 port", "Reader 1 id", "Reader 1 profile", "Reader 2 port",
		"stack light fitted?", "MQTT broker URL"} {
		term.expect(p, "")
	}
	term.expect("Write it? (Y/n): ", "n")
	select {
	case err := <-done:
		if exitCode(err) != 1 {
			t.Fatalf("cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("provision did not finish")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("cancelled provision wrote the file")
	}
}
