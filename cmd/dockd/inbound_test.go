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
// they are accepted. The doctor also warns about unsigned allowlists.
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
	unsignedWarned := false
	for _, r := range rep.Checks {
		if r.Status == levelFail {
			failed[r.Check] = r.Fix
		}
		unsignedWarned = unsignedWarned || r.Check == "allowlist signing" && r.Status == levelWarn && strings.Contains(r.Detail, "allow_unsigned")
	}
	if !unsignedWarned {
		t.Errorf("doctor did not warn about allowlist.allow_unsigned: %+v", rep.Checks)
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

// peakRSS is a process's peak resident memory (VmHWM) and current RSS, in KiB.
func peakRSS(t testing.TB, pid int) (hwm, now int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &hwm)
		}
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &now)
		}
	}
	return hwm, now
}

// dirBytes is the allocated size of the files in dir (what they take on disk).
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			if st, ok := fi.Sys().(interface{ Blocks() int64 }); ok {
				n += st.Blocks() * 512
			} else {
				n += fi.Size()
			}
		}
	}
	return n
}

// Oversized and endless messages on every topic the station subscribes to,
// through a broker that enforces no size limit (the worst case: the
// station's own bounds are all there is). The real daemon runs as a child
// process (no race detector) so its memory can be measured. Bounds checked:
// the daemon makes no copy of an oversized message (its peak RSS grows by
// about the one buffer paho reads the packet into, not by several), the
// state directory grows by at most the staging limit, every refusal is
// answered, and the station keeps deciding and delivering scans, losing
// none it had stored.
func TestInboundFloodBounded(t *testing.T) {
	bin := dockdPlainBinary(t)
	dir := t.TempDir()
	importSample(t, dir)
	pty := testkit.NewPTY(t)
	broker := testkit.StartMosquitto(t)
	sub := testkit.NewSubscriber(t, broker.URL(), "dockd/v1/test-site/door-9/#")
	y := stationConfig(dir, pty.Path(), broker.URL(), "virtual")
	y = strings.Replace(y, "  allow_unsigned: true\n", "  allow_unsigned: true\n  max_snapshot_bytes: 8MiB\n  staging_ttl: 1m\n", 1)
	// Reading 64 MiB packets on a loaded machine must not trip the
	// keep-alive or the publish deadline of the test station.
	y = strings.Replace(y, "  keep_alive: 2s\n  ack_timeout: 2s\n", "  keep_alive: 10s\n  ack_timeout: 10s\n", 1)
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(y), 0o600)
	p := startProcBin(t, bin, cfgPath)
	pid := p.cmd.Process.Pid
	sub.WaitFor(t, func(ms []testkit.Message) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/status") {
				return true
			}
		}
		return false
	}, 20*time.Second)

	// Scans stored and delivered before the flood.
	for i := 0; i < 5; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("F%03d", i))))
	}
	waitEvents(t, sub, 5, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	hwm0, rss0 := peakRSS(t, pid)
	disk0 := dirBytes(t, dir)

	c := newPahoPublisher(t, broker.URL(), "central-flood")
	pub := func(topic string, payload []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.Publish(ctx, topic, payload); err != nil {
			t.Fatalf("publishing %d bytes on %s: %v", len(payload), topic, err)
		}
	}
	base := "dockd/v1/test-site/allowlist/"
	const biggest = 64 << 20
	pub(base+"snapshot/5/chunk/0", bytes.Repeat([]byte("z"), biggest)) // no manifest, 64 MiB
	waitAck(t, sub, 5, allowlist.ReasonTooLarge, 60*time.Second)
	hwmA, _ := peakRSS(t, pid)
	pub("dockd/v1/test-site/door-9/cmd/set-direction", bytes.Repeat([]byte("c"), 16<<20))
	inv := waitReply(t, sub, contract.InvalidReplyID, 1)
	if r := replyOf(t, inv[0]); r.Error == nil || r.Error.Code != command.CodeTooLarge {
		t.Fatalf("16 MiB command: %s", inv[0])
	}
	pub(base+"delta/6", bytes.Repeat([]byte("d"), 32<<20))
	waitAck(t, sub, 6, allowlist.ReasonTooLarge, 60*time.Second)
	pub(base+"snapshot/7/manifest", bytes.Repeat([]byte("m"), 8<<20))
	waitAck(t, sub, 7, allowlist.ReasonTooLarge, 60*time.Second)
	hwm1, _ := peakRSS(t, pid)

	// Endless: chunks each within the chunk limit for a snapshot that never
	// gets a manifest (16 MiB against an 8 MiB snapshot limit), and 200
	// commands just under the command limit.
	for n := 0; n < 64; n++ {
		pub(fmt.Sprintf("%ssnapshot/8/chunk/%d", base, n), bytes.Repeat([]byte{byte('a' + n%26)}, 256<<10))
	}
	waitAck(t, sub, 8, allowlist.ReasonTooLarge, 60*time.Second)
	// (In rounds of 20: beyond 64 queued commands the station drops the
	// newest and central resends, which is tested elsewhere.)
	junk := bytes.Repeat([]byte("j"), 60<<10)
	for i := 0; i < 200; i++ {
		pub("dockd/v1/test-site/door-9/cmd/light-test", junk)
		if i%20 == 19 {
			waitReply(t, sub, contract.InvalidReplyID, 2+i)
		}
	}

	// The station still decides and delivers.
	for i := 5; i < 10; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("F%03d", i))))
	}
	evs := waitEvents(t, sub, 10, 30*time.Second)
	seqs := map[uint64]bool{}
	for _, e := range evs {
		seqs[e.Seq] = true
	}
	for s := uint64(1); s <= 10; s++ {
		if !seqs[s] {
			t.Fatalf("event seq %d lost", s)
		}
	}
	hwm2, rss2 := peakRSS(t, pid)
	disk2 := dirBytes(t, dir)
	t.Logf("daemon RSS: before %d MiB (peak %d MiB); after one 64 MiB chunk peak %d MiB (+%.2f× the message); after 120 MiB of oversized messages peak %d MiB; after the endless ones peak %d MiB, now %d MiB",
		rss0>>10, hwm0>>10, hwmA>>10, float64(hwmA-hwm0)/float64(biggest>>10), hwm1>>10, hwm2>>10, rss2>>10)
	t.Logf("state_dir on disk: before %.1f MiB, after %.1f MiB (largest message %d MiB, snapshot limit 8 MiB)",
		float64(disk0)/(1<<20), float64(disk2)/(1<<20), biggest>>20)
	// paho reads each packet whole before the handler sees it, into two
	// buffers (the packet, then the payload copied out of it): 2× the
	// message is unavoidable in the station (the broker's
	// message_size_limit is what bounds it); more would mean the daemon
	// copied, parsed or staged it. Later peaks may add the garbage of the
	// earlier messages not yet collected, so the total is bounded by 2×
	// their sum.
	if grow := (hwmA - hwm0) << 10; grow > 2*biggest+24<<20 {
		t.Errorf("peak RSS grew by %d MiB for one %d MiB message: more than paho's two read buffers", grow>>20, biggest>>20)
	}
	if grow := (hwm2 - hwm0) << 10; grow > 2*(biggest+32<<20+16<<20+8<<20)+24<<20 {
		t.Errorf("peak RSS grew by %d MiB over the whole flood", grow>>20)
	}
	if grow := disk2 - disk0; grow > 3*(8<<20) {
		t.Errorf("state_dir grew by %.1f MiB: staging is bounded at 8 MiB per snapshot", float64(grow)/(1<<20))
	}
}

// Allowlist staging on a small filesystem (a tmpfs) shared with the event
// buffer: chunks of a snapshot that never completes are staged only while
// the buffer's unused budget plus allowlist.disk_reserve stays free; then
// the snapshot is refused (no_space) and dropped. The buffer can still use
// its whole budget afterwards: scans are refused for buffer_full, never for
// a storage fault.
func TestStagingReserveOnSmallDisk(t *testing.T) {
	var disk string
	s := startStationWith(t, func(dir, y string) string {
		disk = mountTmpfs(t, "24m")
		b, err := os.ReadFile(filepath.Join(dir, "allowlist.db"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(disk, "allowlist.db"), b, 0o640)
		y = strings.Replace(y, "state_dir: "+dir, "state_dir: "+disk, 1)
		y = strings.Replace(y, "  allow_unsigned: true\n", "  allow_unsigned: true\n  max_chunk_bytes: 1MiB\n  max_snapshot_bytes: 1GiB\n  disk_reserve: 4MiB\n", 1)
		return y + "buffer:\n  max_bytes: 1MiB\n"
	})
	waitUntil(t, 10*time.Second, "uplink connected", s.d.up.Connected)
	free0, _ := allowlist.FreeBytes(disk)
	c := newPahoPublisher(t, s.broker.URL(), "central-fill")
	chunk := bytes.Repeat([]byte("s"), 1<<20)
	refused := false
	for n := 0; n < 40 && !refused; n++ {
		if err := c.Publish(context.Background(), fmt.Sprintf("dockd/v1/test-site/allowlist/snapshot/9/chunk/%d", n), chunk); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "the chunk staged or refused", func() bool {
			if refused = strings.Contains(s.logs.String(), `"reason":"no_space"`); refused {
				return true
			}
			info, _ := s.d.list.Info()
			return info.Staged != nil && info.Staged.Chunks == n+1
		})
	}
	a := waitAck(t, s.sub, 9, allowlist.ReasonNoSpace, 10*time.Second)
	free1, _ := allowlist.FreeBytes(disk)
	t.Logf("tmpfs of 24 MiB: %.1f MiB free before staging, %.1f MiB after the refusal (%s)", float64(free0)/(1<<20), float64(free1)/(1<<20), a.Detail)
	if free1 < 4<<20 {
		t.Fatalf("staging left %.1f MiB free, below the 4 MiB reserve", float64(free1)/(1<<20))
	}
	if info, _ := s.d.list.Info(); info.Staged != nil {
		t.Fatalf("refused snapshot still staged: %+v", info.Staged)
	}

	// The buffer gets its whole budget: with the broker away, scans are
	// stored until the buffer is full, and refused for that reason.
	s.broker.Stop()
	waitUntil(t, 10*time.Second, "uplink offline", func() bool { return !s.d.up.Connected() })
	var last dock.CustodyEvent
	for i := 0; i < 6000; i += 100 {
		for j := i; j < i+100; j++ {
			s.write(gs1Scan("LOT42", fmt.Sprintf("R%05d", j)))
		}
		evs := s.waitDecisions(i+100, 30*time.Second)
		if last = evs[len(evs)-1]; last.Seq == 0 {
			break
		}
	}
	if last.Seq != 0 || last.Reason != dock.ReasonBufferFull {
		t.Fatalf("last scan after staging: %+v (want refused for buffer_full, not a storage fault)", last)
	}
	free2, _ := allowlist.FreeBytes(disk)
	t.Logf("buffer full at %d events; %.1f MiB still free", s.d.queue.Stats().Depth, float64(free2)/(1<<20))
}
