package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// toolSource is a statuspage.Source that records what the tools asked for.
type toolSource struct {
	mu        sync.Mutex
	tests     int
	injected  []string
	actors    []statuspage.Actor
	tagged    []bool
	direction dock.Direction
}

func (s *toolSource) Snapshot() statuspage.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return statuspage.Snapshot{Station: "t", Direction: s.direction}
}
func (s *toolSource) Changes() (<-chan struct{}, func()) { return nil, func() {} }
func (s *toolSource) LightTest(ctx context.Context, a statuspage.Actor) error {
	s.mu.Lock()
	s.tests++
	s.actors = append(s.actors, a)
	s.mu.Unlock()
	return nil
}
func (s *toolSource) SetDirection(d dock.Direction, a statuspage.Actor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.direction = d
	s.actors = append(s.actors, a)
	return nil
}

func (s *toolSource) ReloadConfig(a statuspage.Actor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actors = append(s.actors, a)
	return nil
}

// Inject rejects anything mentioning LOT99 and refuses (not recorded) "FULL".
func (s *toolSource) Inject(ctx context.Context, data []byte, tag bool, a statuspage.Actor) (dock.CustodyEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected = append(s.injected, string(data))
	s.actors = append(s.actors, a)
	s.tagged = append(s.tagged, tag)
	ev := dock.CustodyEvent{Seq: uint64(len(s.injected)), Reader: dock.SimulatedReader, Simulated: true, Raw: string(data), Decision: dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}}
	switch {
	case strings.Contains(string(data), "LOT99"):
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot, Detail: "lot LOT99 is not on the allowlist"}
	case string(data) == "FULL":
		ev.Seq = 0
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonBufferFull}
		return ev, dock.ErrBufferFull
	}
	return ev, nil
}

// serveTools runs a status page for src on loopback and its control
// socket, and returns the page's URL and the socket's path.
func serveTools(t *testing.T, cfg statuspage.Config, src statuspage.Source) (url, sock string) {
	t.Helper()
	srv, err := statuspage.New(cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "control.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ctx, ln) }()
	go func() { done <- srv.ServeLocal(ctx, uln) }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return "http://" + ln.Addr().String(), sock
}

// closedPort returns a loopback URL where nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestLightTestThroughAPI(t *testing.T) {
	src := &toolSource{}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("open sesame\n"), 0o600)
	open, sock := serveTools(t, statuspage.Config{}, src)
	locked, _ := serveTools(t, statuspage.Config{PasswordSHA256: statuspage.HashPassword("open sesame")}, src)
	t.Setenv("DOCKD_SOCKET", "")
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for success
		tests   int    // light tests run afterwards
	}{
		{"control socket", []string{"test", "--socket", sock}, "", 1},
		{"loopback TCP without credentials", []string{"test", "--url", open}, "sign in", 1},
		{"password needed, none given", []string{"test", "--url", locked}, "--password-file", 1},
		{"password given", []string{"test", "--url", locked, "--password-file", pwFile}, "", 2},
		{"not running", []string{"test", "--url", closedPort(t)}, "--direct", 2},
		{"no socket", []string{"test", "--socket", filepath.Join(t.TempDir(), "none.sock")}, "--direct", 2},
		{"no subcommand", []string{"--url", open}, "usage", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := cmdLight(context.Background(), tc.args, &out, &errb)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("cmdLight: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("cmdLight error %v, want one mentioning %q", err, tc.wantErr)
			}
			if tc.wantErr == "" && !strings.Contains(out.String(), "lamp test done") {
				t.Fatalf("output %q", out.String())
			}
			src.mu.Lock()
			n := src.tests
			src.mu.Unlock()
			if n != tc.tests {
				t.Fatalf("light tests run: %d, want %d", n, tc.tests)
			}
		})
	}
	var out, errb bytes.Buffer
	err := cmdLight(context.Background(), []string{"test", "--url", closedPort(t)}, &out, &errb)
	if !errors.Is(err, errStationNotRunning) || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("not running: %v", err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if a := src.actors[0]; a.Via != statuspage.ViaCLI || a.Who != statuspage.LocalName(uint32(os.Getuid())) {
		t.Fatalf("the control socket named the caller %+v", a)
	}
	if a := src.actors[1]; a.Via != statuspage.ViaAPI || a.Who != "user:technician" {
		t.Fatalf("the password caller is %+v", a)
	}
}

// --direct drives the configured pins itself: each output on alone, in the
// order green, amber, red, buzzer, and all off at the end.
func TestLightTestDirect(t *testing.T) {
	pins := testkit.RegisterPins(t, "GPIO17", "GPIO27", "GPIO22", "GPIO23")
	dir := t.TempDir()
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(stationConfig(dir, "/dev/null", "", "gpio")), 0o600)
	var out, errb bytes.Buffer
	if err := cmdLight(context.Background(), []string{"test", "--direct", "--config", path, "--step", "30ms"}, &out, &errb); err != nil {
		t.Fatalf("cmdLight --direct: %v\n%s", err, errb.String())
	}
	var prev time.Time
	for _, name := range []string{"GPIO17", "GPIO27", "GPIO22", "GPIO23"} {
		var on time.Time
		for _, e := range pins[name].Edges() {
			if e.Level == gpio.High {
				on = e.At
				break
			}
		}
		if on.IsZero() {
			t.Fatalf("%s never went on", name)
		}
		if !on.After(prev) {
			t.Fatalf("%s went on at %v, not after the previous output (%v)", name, on, prev)
		}
		prev = on
		if pins[name].Level() != gpio.Low {
			t.Fatalf("%s left on after the test", name)
		}
	}
	if !strings.Contains(out.String(), "lamp test done") {
		t.Fatalf("output %q", out.String())
	}
	// On the audit trail: one operator record in the stopped station's buffer.
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	recs, err := q.Pending(0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records in the buffer after --direct (%v), want 1 operator record", len(recs), err)
	}
	var ev dock.CustodyEvent
	if err := json.Unmarshal(recs[0].Payload, &ev); err != nil || ev.Kind != "operator" || ev.Action != actLightTest || ev.Via != statuspage.ViaCLI || ev.Actor == "" {
		t.Fatalf("record %s (%v): want a light_test operator record via cli with an actor", recs[0].Payload, err)
	}
	contracttest.Require(t, contract.OperatorEventSchemaFile, recs[0].Payload)
}

func TestSimulate(t *testing.T) {
	src := &toolSource{}
	_, sock := serveTools(t, statuspage.Config{}, src)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantErr  bool
		wantOut  []string
		injected []string
		tags     string // "f,t": tag flag per injected scan, when checked
	}{
		{
			name:     "arguments",
			args:     []string{"--socket", sock, "(01)09506000134352(10)LOT42(21)S1", "(01)09506000134352(10)LOT99(21)S2"},
			wantOut:  []string{"accept  ok", "reject  unknown_lot", "not on the allowlist"},
			injected: []string{"(01)09506000134352(10)LOT42(21)S1", "(01)09506000134352(10)LOT99(21)S2"},
		},
		{
			name:     "stdin lines, comments, GS notation and EPC",
			args:     []string{"--socket", sock},
			stdin:    "# a comment\n]C10109506000134352{GS}10LOT42\r\n\nepc:3034257BF400B7800004CB2F\n",
			wantOut:  []string{"seq="},
			injected: []string{"]C10109506000134352\x1d10LOT42", "3034257BF400B7800004CB2F"},
			tags:     "f,t",
		},
		{
			name:     "refused scan is an error",
			args:     []string{"--socket", sock, "FULL"},
			wantErr:  true,
			wantOut:  []string{"buffer_full"},
			injected: []string{"FULL"},
		},
		{name: "station not running", args: []string{"--url", closedPort(t), "x"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src.mu.Lock()
			src.injected, src.actors, src.tagged = nil, nil, nil
			src.mu.Unlock()
			var out, errb bytes.Buffer
			err := cmdSimulate(context.Background(), tc.args, strings.NewReader(tc.stdin), &out, &errb)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v\nstdout %s\nstderr %s", err, tc.wantErr, out.String(), errb.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, out.String())
				}
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			if strings.Join(src.injected, "|") != strings.Join(tc.injected, "|") {
				t.Fatalf("injected %q, want %q", src.injected, tc.injected)
			}
			if tc.tags != "" {
				var tags []string
				for i, tag := range src.tagged {
					tags = append(tags, map[bool]string{false: "f", true: "t"}[tag])
					if a := src.actors[i]; a.Via != statuspage.ViaCLI || !strings.HasPrefix(a.Who, "local:") {
						t.Fatalf("scan %d injected by %+v, want the local user on the control socket", i, a)
					}
				}
				if got := strings.Join(tags, ","); got != tc.tags {
					t.Fatalf("tag flags %s, want %s", got, tc.tags)
				}
			}
		})
	}
}
