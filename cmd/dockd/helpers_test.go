package main

// Test helpers for whole-daemon tests: a station wired exactly as `dockd run`
// wires it, on a real pty, a real Mosquitto process, real bbolt files and
// periph recording pins; and the same daemon as a separate process for
// kill -9 tests.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

const (
	gs       = "\x1d"
	demoGTIN = "09506000134352"
)

// gs1Scan is what a GS1-128 scanner with AIM ids and CR suffix sends.
func gs1Scan(lot, serial string) string {
	return "]C101" + demoGTIN + "10" + lot + gs + "21" + serial + "\r"
}

// stationConfig is a YAML config for a test station.
// lightDriver is gpio (in-process, with recording pins) or virtual (a child
// process, which has no test pins).
func stationConfig(stateDir, port, broker, lightDriver string) string {
	return fmt.Sprintf(`station:
  site: test-site
  door: door-9
  direction: receiving
state_dir: %s
readers:
  - id: scanner-1
    port: %s
    baud: 115200
    suffix: CR
light:
  driver: %s
  pins: {green: GPIO17, amber: GPIO27, red: GPIO22, buzzer: GPIO23}
  decision_hold: 300ms
mqtt:
  broker: %q
  in_flight: 16
  keep_alive: 2s
  ack_timeout: 2s
allowlist:
  allow_unsigned: true
status:
  addr: 127.0.0.1:0
log:
  level: info
  format: json
`, stateDir, port, lightDriver, broker)
}

// importSample loads the shipped sample allowlist into dir/allowlist.db.
func importSample(t testing.TB, dir string) {
	t.Helper()
	list, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer list.Close()
	if _, err := list.ImportCSV(context.Background(), bytes.NewReader(firmwareconfig.SampleAllowlist), "sample", nil); err != nil {
		t.Fatal(err)
	}
}

// testStation is an in-process daemon on real parts.
type testStation struct {
	t      testing.TB
	dir    string
	pty    *testkit.PTY
	broker *testkit.Mosquitto
	// brokerDir holds the broker's persistence file.
	brokerDir string
	sub       *testkit.Subscriber
	pins      map[string]*testkit.RecordingPin
	d         *daemon
	cancel    context.CancelFunc
	done      chan error

	logs *syncBuffer // the daemon's log, for assertions

	mu     sync.Mutex
	events []dock.CustodyEvent // as decided, in order
	seen   chan struct{}
}

// persistentBroker keeps subscriptions across a graceful broker restart,
// so the test subscriber does not race the daemon to resubscribe.
func persistentBroker(t testing.TB) *testkit.Mosquitto {
	b, _ := persistentBrokerDir(t)
	return b
}

// persistentBrokerDir also returns where the broker saves its database.
func persistentBrokerDir(t testing.TB) (*testkit.Mosquitto, string) {
	dir := t.TempDir()
	return testkit.StartMosquitto(t, testkit.WithMosqConfig("persistence true", "persistence_location "+dir+"/", "autosave_interval 1")), dir
}

// waitBrokerSaved waits until the broker has written its database after
// since, so sessions that existed at since survive a kill -9.
func waitBrokerSaved(t testing.TB, dir string, since time.Time) {
	t.Helper()
	waitUntil(t, 15*time.Second, "the broker to save its session database", func() bool {
		fi, err := os.Stat(filepath.Join(dir, "mosquitto.db"))
		return err == nil && fi.ModTime().After(since)
	})
}

func startStation(t testing.TB) *testStation {
	t.Helper()
	return startStationWith(t, nil)
}

// startStationWith is startStation with a hook that may edit the config
// text and prepare the state directory before the daemon opens it.
func startStationWith(t testing.TB, prepare func(dir, yaml string) string) *testStation {
	t.Helper()
	return startStationOpts(t, prepare, daemonOptions{})
}

// startStationOpts is startStationWith with daemon options (ConfigPath is
// set by it).
func startStationOpts(t testing.TB, prepare func(dir, yaml string) string, opts daemonOptions) *testStation {
	t.Helper()
	s := &testStation{t: t, dir: t.TempDir(), seen: make(chan struct{}, 1)}
	s.pty = testkit.NewPTY(t)
	s.broker, s.brokerDir = persistentBrokerDir(t)
	s.sub = testkit.NewSubscriber(t, s.broker.URL(), "dockd/v1/test-site/door-9/#")
	s.pins = testkit.RegisterPins(t, "GPIO17", "GPIO27", "GPIO22", "GPIO23")
	importSample(t, s.dir)
	path := filepath.Join(s.dir, "dockd.yaml")
	yaml := stationConfig(s.dir, s.pty.Path(), s.broker.URL(), "gpio")
	if prepare != nil {
		yaml = prepare(s.dir, yaml)
	}
	os.WriteFile(path, []byte(yaml), 0o600)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelInfo
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelWarn // a log line per decision would be measured too
	}
	s.logs = &syncBuffer{}
	// JSON, as the daemon logs under systemd, and every line checked: one
	// object, no key twice (testkit.StrictJSONLog fails the test otherwise).
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(testWriter{t}, s.logs, testkit.NewStrictJSONLog(t)), &slog.HandlerOptions{Level: level}))
	opts.ConfigPath = path
	s.d, err = openDaemon(cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.d.station.Observe(func(ev dock.CustodyEvent) {
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.mu.Unlock()
		select {
		case s.seen <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.d.Run(ctx) }()
	t.Cleanup(s.stop)
	s.waitReaderUp()
	return s
}

func (s *testStation) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("daemon returned %v", err)
		}
	case <-time.After(10 * time.Second):
		s.t.Errorf("daemon did not shut down within 10s")
	}
}

func (s *testStation) waitReaderUp() {
	s.t.Helper()
	waitUntil(s.t, 5*time.Second, "reader up", func() bool {
		for _, r := range s.d.station.Readers() {
			if r.Up {
				return true
			}
		}
		return false
	})
}

// write sends bytes down the serial line, as the scanner would.
func (s *testStation) write(data string) {
	s.t.Helper()
	if err := s.pty.Write([]byte(data)); err != nil {
		s.t.Fatalf("writing to the pty: %v", err)
	}
}

// waitDecisions waits until n events have been decided and returns them.
func (s *testStation) waitDecisions(n int, timeout time.Duration) []dock.CustodyEvent {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		got := append([]dock.CustodyEvent(nil), s.events...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.seen:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			s.t.Fatalf("waited %s for %d decisions, have %d", timeout, n, len(got))
		}
	}
}

// receivedEvents decodes the custody events the subscriber got, in arrival order.
func receivedEvents(t testing.TB, msgs []testkit.Message) []dock.CustodyEvent {
	t.Helper()
	var out []dock.CustodyEvent
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/events") {
			continue
		}
		var ev dock.CustodyEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatalf("event payload is not JSON: %v: %s", err, m.Payload)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until the subscriber holds n distinct events.
func waitEvents(t testing.TB, sub *testkit.Subscriber, n int, timeout time.Duration) []dock.CustodyEvent {
	t.Helper()
	var evs []dock.CustodyEvent
	sub.WaitFor(t, func(msgs []testkit.Message) bool {
		evs = receivedEvents(t, msgs)
		ids := map[string]bool{}
		for _, e := range evs {
			ids[e.ID] = true
		}
		return len(ids) >= n
	}, timeout)
	return evs
}

// checkDelivery asserts that got holds every event of want exactly by id and
// sequence, first arrivals in sequence order, and duplicates only as resends
// of the same event (same id and seq). It returns the number of duplicates.
func checkDelivery(t testing.TB, want []uint64, got []dock.CustodyEvent) int {
	t.Helper()
	bySeq := map[uint64]string{}
	var order []uint64
	dups := 0
	for _, e := range got {
		if id, ok := bySeq[e.Seq]; ok {
			if id != e.ID {
				t.Fatalf("seq %d delivered with two ids %s and %s", e.Seq, id, e.ID)
			}
			dups++
			continue
		}
		bySeq[e.Seq] = e.ID
		order = append(order, e.Seq)
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("out of order: seq %d arrived after %d", order[i], order[i-1])
		}
	}
	for _, s := range want {
		if _, ok := bySeq[s]; !ok {
			t.Fatalf("event seq %d never arrived (got %d distinct)", s, len(bySeq))
		}
	}
	if len(bySeq) != len(want) {
		t.Fatalf("got %d distinct events, want %d", len(bySeq), len(want))
	}
	return dups
}

func waitUntil(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wentHigh reports whether pin was driven high at or after since.
func wentHigh(p *testkit.RecordingPin, since time.Time) bool {
	for _, e := range p.Edges() {
		if e.Level == gpio.High && !e.At.Before(since) {
			return true
		}
	}
	return false
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ---- the daemon as a separate process ----

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

var raceBinary, plainBinary builtBinary

// dockdBinary builds cmd/dockd with the race detector once per test run.
func dockdBinary(t testing.TB) string { return raceBinary.build(t, "-race") }

// dockdPlainBinary builds cmd/dockd without the race detector, for
// measurements (the race runtime multiplies memory use).
func dockdPlainBinary(t testing.TB) string { return plainBinary.build(t) }

func (b *builtBinary) build(t testing.TB, flags ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "dockd-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "dockd")
		args := append(append([]string{"build"}, flags...), "-o", b.path, ".")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %v: %v\n%s", flags, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// proc is `dockd run` as a child process whose JSON log is parsed.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	mu   sync.Mutex
	seqs []uint64 // seqs of decisions logged (logged after the light was set)
	up   bool
	done chan struct{}
	tail []string
}

func startProc(t testing.TB, configPath string) *proc {
	t.Helper()
	return startProcBin(t, dockdBinary(t), configPath)
}

func startProcBin(t testing.TB, bin, configPath string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "--config", configPath)
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, _ := p.cmd.StderrPipe()
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		strict := testkit.NewStrictJSONLog(t)
		for sc.Scan() {
			strict.Write(append(sc.Bytes(), '\n'))
			var rec struct {
				Msg      string `json:"msg"`
				Seq      uint64 `json:"seq"`
				FirstSeq uint64 `json:"first_seq"`
				LastSeq  uint64 `json:"last_seq"`
			}
			json.Unmarshal(sc.Bytes(), &rec)
			p.mu.Lock()
			switch rec.Msg {
			case "decision":
				p.seqs = append(p.seqs, rec.Seq)
			case "decisions": // a burst's summary: every seq stored in it (scans only here)
				for s := rec.FirstSeq; s != 0 && s <= rec.LastSeq; s++ {
					p.seqs = append(p.seqs, s)
				}
			case "reader up":
				p.up = true
			}
			p.tail = append(p.tail, sc.Text())
			if len(p.tail) > 40 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			p.mu.Lock()
			t.Logf("dockd log tail:\n%s", strings.Join(p.tail, "\n"))
			p.mu.Unlock()
		}
	})
	waitUntil(t, 20*time.Second, "child dockd reader up", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.up })
	return p
}

func (p *proc) decided() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.seqs...)
}

// kill9 kills the daemon the way a power cut would.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// syncBuffer is the shared concurrency-safe log sink.
type syncBuffer = testkit.LogBuffer
