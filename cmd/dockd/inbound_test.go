package main

// Inbound MQTT against a running daemon: what central (or anyone who can
// publish on the station's topics) sends is bounded before it is parsed,
// retained and stale commands do not run, duplicate member names are
// refused, allowlist staging is bounded in bytes and in disk space, and
// secret files others can read are refused. Every refusal is answered
// where the contract has an answer and logged in one line; nothing stored
// is lost.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

var brokerLine = regexp.MustCompile(`broker: "([^"]+)"`)

// publishRetained publishes one retained QoS 1 message and waits for its PUBACK.
func publishRetained(t testing.TB, broker, topic string, payload []byte) {
	t.Helper()
	cli := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("central-retain").SetConnectTimeout(5 * time.Second))
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	if tok := cli.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing retained %s: %v", topic, tok.Error())
	}
}

func replyOf(t *testing.T, b []byte) command.Reply {
	t.Helper()
	var r command.Reply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// A retained set-direction left on the broker is delivered as retained at
// every (re)subscribe — after every restart: it is answered retained and
// never executed. A command older than its ttl is answered expired; two
// ids in one command and a command over mqtt.limits.command_bytes are
// refused. The door's direction never moves, and a good command still runs.
func TestCommandsRetainedStaleDuplicateOversized(t *testing.T) {
	topics := contract.Topics{Site: "test-site", Door: "door-9"}
	s := startStationOpts(t, func(dir, y string) string {
		// Left behind by central before this start (as before a restart).
		publishRetained(t, brokerLine.FindStringSubmatch(y)[1], topics.Command("set-direction"), []byte(cmdJSON("ret-1", `{"direction":"shipping"}`)))
		return strings.Replace(y, "  ack_timeout: 2s\n", "  ack_timeout: 2s\n  limits:\n    command_bytes: 4KiB\n", 1)
	}, daemonOptions{ClockSynced: func() bool { return true }})
	waitUntil(t, 10*time.Second, "uplink connected", s.d.up.Connected)
	c := newPahoPublisher(t, s.broker.URL(), "central")

	if r := replyOf(t, waitReply(t, s.sub, "ret-1", 1)[0]); r.OK || r.Error.Code != command.CodeRetained {
		t.Fatalf("retained command: %+v", r)
	}
	stale := fmt.Sprintf(`{"schema":"dockd.command/1","id":"old-1","issued_at":%q,"ttl_s":60,"args":{"direction":"shipping"}}`,
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	central(t, c, "set-direction", stale)
	if r := replyOf(t, waitReply(t, s.sub, "old-1", 1)[0]); r.OK || r.Error.Code != command.CodeExpired {
		t.Fatalf("stale command: %+v", r)
	}
	central(t, c, "set-direction", `{"schema":"dockd.command/1","id":"c18","id":"c19","args":{"direction":"shipping"}}`)
	central(t, c, "set-direction", cmdJSON("big-1", `{"direction":"shipping","pad":"`+strings.Repeat("x", 8<<10)+`"}`))
	inv := waitReply(t, s.sub, contract.InvalidReplyID, 2)
	if r := replyOf(t, inv[0]); r.Error == nil || r.Error.Code != command.CodeMalformed || !strings.Contains(r.Error.Message, "duplicate") {
		t.Fatalf("duplicate ids: %+v", r)
	}
	if r := replyOf(t, inv[1]); r.Error == nil || r.Error.Code != command.CodeTooLarge {
		t.Fatalf("oversized: %+v", r)
	}
	if d := s.d.station.Direction(); d != dock.Receiving {
		t.Fatalf("a refused command moved the door to %s", d)
	}
	fresh := fmt.Sprintf(`{"schema":"dockd.command/1","id":"new-1","issued_at":%q,"ttl_s":60,"args":{"direction":"shipping"}}`, time.Now().UTC().Format(time.RFC3339))
	central(t, c, "set-direction", fresh)
	if r := replyOf(t, waitReply(t, s.sub, "new-1", 1)[0]); !r.OK || s.d.station.Direction() != dock.Shipping {
		t.Fatalf("fresh command: %+v", r)
	}
	for _, want := range []string{"retained command ignored", "command refused: arrived after its time to live", "duplicate member name", "command refused unread: too large"} {
		if !strings.Contains(s.logs.String(), want) {
			t.Errorf("no log line %q", want)
		}
	}
}

// Secret files at mode 0644 (the MQTT password, the status password) are
// refused by check-config, by run and by doctor, with the fix; at 0600
// they are accepted.
func TestSecretFilesRefused(t *testing.T) {
	dir := t.TempDir()
	pty := testkit.NewPTY(t)
	mqttPw := filepath.Join(dir, "mqtt-password")
	pagePw := filepath.Join(dir, "status-password")
	for _, f := range []string{mqttPw, pagePw} {
		os.WriteFile(f, []byte("s3cret\n"), 0o600)
		os.Chmod(f, 0o644)
	}
	y := stationConfig(dir, pty.Path(), "tcp://127.0.0.1:1", "virtual")
	y = strings.Replace(y, "  in_flight: 16\n", "  in_flight: 16\n  username: door-9\n  password_file: "+mqttPw+"\n", 1)
	y = strings.Replace(y, "status:\n  addr: 127.0.0.1:0\n", "status:\n  addr: 127.0.0.1:0\n  password_file: "+pagePw+"\n", 1)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(y), 0o600)

	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"check-config", path}, nil, &out, &errOut)
	for _, want := range []string{"mqtt.password_file", "status.password_file", "mode 0644", "chmod 0600 " + mqttPw, "chmod 0600 " + pagePw} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("check-config: %v; want %q in it", err, want)
		}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDaemon(cfg, slog.New(slog.DiscardHandler), daemonOptions{}); err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "chmod 0600") {
		t.Fatalf("run: %v", err)
	}
	out.Reset()
	run(context.Background(), []string{"doctor", "--config", path, "--json", "--timeout", "500ms"}, nil, &out, &errOut)
	var rep doctorReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out.String())
	}
	failed := map[string]string{}
	for _, r := range rep.Checks {
		if r.Status == levelFail {
			failed[r.Check] = r.Fix
		}
	}
	if !strings.Contains(failed["secret mqtt.password_file"], "chmod 0600 "+mqttPw) || !strings.Contains(failed["secret status.password_file"], "chmod 0600 "+pagePw) {
		t.Fatalf("doctor rows: %+v", rep.Checks)
	}
	// Fixed as the message says: accepted.
	for _, f := range []string{mqttPw, pagePw} {
		os.Chmod(f, 0o600)
	}
	if err := run(context.Background(), []string{"check-config", path}, nil, &out, &errOut); err != nil {
		t.Fatalf("after chmod 0600: %v", err)
	}
}

// waitAck waits for the allowlist ack of seq with the given status and
// reason, and returns it (checked against the schema).
func waitAck(t *testing.T, sub *testkit.Subscriber, seq uint64, reason string, timeout time.Duration) allowlist.Ack {
	t.Helper()
	var a allowlist.Ack
	sub.WaitFor(t, func(ms []testkit.Message) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/allowlist/ack") {
				var x allowlist.Ack
				json.Unmarshal(m.Payload, &x)
				if x.Seq == seq && x.Reason == reason {
					contracttest.Require(t, contract.AllowlistAckSchemaFile, m.Payload)
					a = x
					return true
				}
			}
		}
		return false
	}, timeout)
	return a
}
