package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
)

// fakeSource is a Source whose state the test sets.
type fakeSource struct {
	mu        sync.Mutex
	snap      Snapshot
	subs      map[chan struct{}]bool
	tests     int
	testErr   error
	injected  []SimulateRequest
	seq       uint64
	subscribe chan struct{} // receives on every Changes call
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		snap: Snapshot{
			Station: "site-door-1", Site: "site", Door: "door-1", Direction: dock.Receiving,
			Readers:   []Reader{{ID: "scanner-1", Up: true, Port: "/dev/ttyUSB0"}},
			Allowlist: Allowlist{Version: "v7", Lots: 3},
			Broker:    Broker{Configured: true, URL: "tcp://127.0.0.1:1", Connected: true},
			Light:     Light{Showing: "idle", Running: true},
		},
		subs:      map[chan struct{}]bool{},
		subscribe: make(chan struct{}, 16),
	}
}

func (f *fakeSource) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Time = time.Now()
	s.Recent = append([]Scan(nil), f.snap.Recent...)
	s.Readers = append([]Reader(nil), f.snap.Readers...)
	return s
}

func (f *fakeSource) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	select {
	case f.subscribe <- struct{}{}:
	default:
	}
	return ch, func() { f.mu.Lock(); delete(f.subs, ch); f.mu.Unlock() }
}

// update changes the snapshot and, when notify, signals subscribers.
func (f *fakeSource) update(notify bool, fn func(*Snapshot)) {
	f.mu.Lock()
	fn(&f.snap)
	var subs []chan struct{}
	for ch := range f.subs {
		subs = append(subs, ch)
	}
	f.mu.Unlock()
	if notify {
		for _, ch := range subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (f *fakeSource) LightTest(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.testErr != nil {
		return f.testErr
	}
	f.tests++
	return nil
}

func (f *fakeSource) SetDirection(d dock.Direction) error {
	if !d.Valid() {
		return errors.New("bad direction")
	}
	f.update(true, func(s *Snapshot) { s.Direction = d })
	return nil
}

// Inject rejects data containing "BAD" and accepts the rest.
func (f *fakeSource) Inject(ctx context.Context, reader string, data []byte, tag bool) (dock.CustodyEvent, error) {
	f.mu.Lock()
	f.injected = append(f.injected, SimulateRequest{Reader: reader, Data: string(data), Tag: tag})
	f.seq++
	ev := dock.CustodyEvent{Seq: f.seq, Reader: reader, Raw: string(data), Decision: dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}}
	f.mu.Unlock()
	if strings.Contains(string(data), "BAD") {
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot}
	}
	f.update(true, func(s *Snapshot) { s.Recent = append([]Scan{ScanOf(ev)}, s.Recent...) })
	return ev, nil
}

func (f *fakeSource) lightTests() int { f.mu.Lock(); defer f.mu.Unlock(); return f.tests }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newServer(t *testing.T, cfg Config, src Source) *Server {
	t.Helper()
	s, err := New(cfg, src, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs s on a loopback listener until the test ends and returns its base URL.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestStatusJSONIsTheSnapshot(t *testing.T) {
	src := newFakeSource()
	src.update(false, func(s *Snapshot) {
		s.Recent = []Scan{{Seq: 4, Reader: "scanner-1", Raw: "x", Verdict: dock.Reject, Reason: dock.ReasonLotRecalled}}
	})
	base := serve(t, newServer(t, Config{}, src))
	resp, err := http.Get(base + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Station != "site-door-1" || got.Allowlist.Version != "v7" || len(got.Recent) != 1 || got.Recent[0].Reason != dock.ReasonLotRecalled || got.Time.IsZero() {
		t.Fatalf("snapshot %+v", got)
	}
}

// A scan's raw text is attacker-controlled (anyone can print a barcode): it
// must not be able to close the page's script block.
func TestPageEmbedsSnapshotSafely(t *testing.T) {
	src := newFakeSource()
	evil := `</script><script>alert(1)</script>`
	src.update(false, func(s *Snapshot) { s.Recent = []Scan{{Raw: evil, Verdict: dock.Reject, Reason: dock.ReasonBadScan}} })
	rec := httptest.NewRecorder()
	newServer(t, Config{}, src).handler(true).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `<svg id="stack"`) {
		t.Fatalf("page %d: %.200s", rec.Code, body)
	}
	if strings.Contains(body, evil) {
		t.Fatal("raw scan text closed the script block")
	}
	if !strings.Contains(body, `\u003c/script\u003e`) {
		t.Fatal("snapshot not embedded (escaped) in the page")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	for _, p := range []string{"/app.js", "/app.css"} {
		rec := httptest.NewRecorder()
		newServer(t, Config{}, src).handler(true).ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 || rec.Body.Len() < 500 {
			t.Fatalf("%s: %d, %d bytes", p, rec.Code, rec.Body.Len())
		}
	}
}

func TestActionAuthentication(t *testing.T) {
	hash := HashPassword("s3cret")
	tests := []struct {
		name       string
		cfg        Config
		loop       bool // listener on loopback
		peer       string
		user, pass string // basic auth when user != ""
		ctype      string
		origin     string
		want       int
	}{
		{name: "loopback listener, loopback peer, no password", loop: true, peer: "127.0.0.1:5000", want: 200},
		{name: "loopback listener, IPv6 loopback peer", loop: true, peer: "[::1]:5000", want: 200},
		{name: "LAN listener without password disables buttons", loop: false, peer: "127.0.0.1:5000", want: 403},
		{name: "LAN listener, LAN peer, no password", loop: false, peer: "10.0.0.5:5000", want: 403},
		{name: "password set, none given", cfg: Config{PasswordSHA256: hash}, loop: true, peer: "127.0.0.1:5000", want: 401},
		{name: "password set, wrong password", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "technician", pass: "nope", want: 401},
		{name: "password set, wrong user", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "root", pass: "s3cret", want: 401},
		{name: "password set, right password from LAN", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "technician", pass: "s3cret", want: 200},
		{name: "custom user", cfg: Config{PasswordSHA256: hash, User: "ops"}, peer: "10.0.0.5:5000", user: "ops", pass: "s3cret", want: 200},
		{name: "form post refused", loop: true, peer: "127.0.0.1:5000", ctype: "application/x-www-form-urlencoded", want: 415},
		{name: "cross-origin refused", loop: true, peer: "127.0.0.1:5000", origin: "http://evil.example", want: 403},
		{name: "same origin allowed", loop: true, peer: "127.0.0.1:5000", origin: "http://example.com", want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			h := newServer(t, tc.cfg, src).handler(tc.loop)
			req := httptest.NewRequest("POST", "http://example.com/api/light-test", strings.NewReader("{}"))
			req.RemoteAddr = tc.peer
			req.Header.Set("Content-Type", "application/json")
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("got %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			wantTests := 0
			if tc.want == 200 {
				wantTests = 1
			}
			if got := src.lightTests(); got != wantTests {
				t.Fatalf("light tests run: %d, want %d", got, wantTests)
			}
			if tc.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
				t.Fatal("401 without a Basic challenge")
			}
		})
	}
}

func TestReadsOpenUnlessAuthReads(t *testing.T) {
	hash := HashPassword("pw")
	for _, tc := range []struct {
		authReads bool
		want      int
	}{{false, 200}, {true, 401}} {
		h := newServer(t, Config{PasswordSHA256: hash, AuthReads: tc.authReads}, newFakeSource()).handler(false)
		for _, p := range []string{"/", "/api/status"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", p, nil)
			req.RemoteAddr = "10.1.1.1:1"
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("AuthReads=%v GET %s: %d, want %d", tc.authReads, p, rec.Code, tc.want)
			}
		}
		// /login asks for the password and sends the browser back to the page.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/login", nil)
		req.SetBasicAuth(DefaultUser, "pw")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("login with password: %d", rec.Code)
		}
	}
}

func TestDirectionAndSimulate(t *testing.T) {
	src := newFakeSource()
	h := newServer(t, Config{}, src).handler(true)
	post := func(path, body string) (int, map[string]any) {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:9"
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	tests := []struct {
		path, body string
		want       int
		check      func(m map[string]any) bool
	}{
		{"/api/direction", `{"direction":"shipping"}`, 200, func(m map[string]any) bool {
			return m["direction"] == "shipping" && m["previous"] == "receiving" && src.Snapshot().Direction == dock.Shipping
		}},
		{"/api/direction", `{"direction":"sideways"}`, 400, func(map[string]any) bool { return src.Snapshot().Direction == dock.Shipping }},
		{"/api/direction", `not json`, 400, nil},
		{"/api/simulate", `{"data":"(01)09506000134352(10)LOT42"}`, 200, func(m map[string]any) bool {
			return m["decision"] == "accept" && m["reader"] == DefaultSimulate && m["seq"] == 1.0
		}},
		{"/api/simulate", `{"reader":"rfid-1","data":"epc:3034F4"}`, 200, func(m map[string]any) bool {
			last := src.injected[len(src.injected)-1]
			return last.Tag && last.Data == "3034F4" && last.Reader == "rfid-1"
		}},
		{"/api/simulate", `{"data":"LOT-BAD"}`, 200, func(m map[string]any) bool { return m["decision"] == "reject" && m["reason"] == "unknown_lot" }},
		{"/api/simulate", `{"data":""}`, 400, nil},
		{"/api/simulate", `{"data":"` + strings.Repeat("x", maxBody) + `"}`, 400, nil},
	}
	for _, tc := range tests {
		code, m := post(tc.path, tc.body)
		if code != tc.want {
			t.Fatalf("POST %s %.60s: %d, want %d (%v)", tc.path, tc.body, code, tc.want, m)
		}
		if tc.check != nil && !tc.check(m) {
			t.Fatalf("POST %s %.60s: unexpected result %v", tc.path, tc.body, m)
		}
	}
	// GET on an action is not allowed.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/light-test", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET light-test: %d", rec.Code)
	}
}

func TestLightTestFailureIsReported(t *testing.T) {
	src := newFakeSource()
	src.testErr = errors.New("light: stack light is not running")
	req := httptest.NewRequest("POST", "/api/light-test", strings.NewReader("{}"))
	req.RemoteAddr = "127.0.0.1:9"
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	newServer(t, Config{}, src).handler(true).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not running") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// sseReader reads "status" events from an event stream.
type sseReader struct {
	t  *testing.T
	sc *bufio.Scanner
}

func (r *sseReader) next() Snapshot {
	r.t.Helper()
	for r.sc.Scan() {
		line := r.sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var s Snapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				r.t.Fatalf("event data: %v", err)
			}
			return s
		}
	}
	r.t.Fatalf("event stream ended: %v", r.sc.Err())
	return Snapshot{}
}

func TestEventStreamFollowsChanges(t *testing.T) {
	src := newFakeSource()
	s := newServer(t, Config{EventInterval: 10 * time.Millisecond, PollInterval: 50 * time.Millisecond}, src)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := &sseReader{t: t, sc: bufio.NewScanner(resp.Body)}
	r.sc.Buffer(make([]byte, 1<<20), 1<<20)
	if first := r.next(); first.Door != "door-1" || len(first.Recent) != 0 {
		t.Fatalf("first event %+v", first)
	}
	// A notified change (a scan) is pushed.
	src.Inject(context.Background(), "scanner-1", []byte("LOT-BAD"), false)
	if got := r.next(); len(got.Recent) != 1 || got.Recent[0].Verdict != dock.Reject {
		t.Fatalf("after scan: %+v", got.Recent)
	}
	// A change without notification (the light's pattern) arrives by polling.
	src.update(false, func(s *Snapshot) { s.Light.Red, s.Light.Showing = true, "reject" })
	if got := r.next(); !got.Light.Red || got.Light.Showing != "reject" {
		t.Fatalf("after light change: %+v", got.Light)
	}
	// Shutting the server down ends the stream and Serve returns nil.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	done <- nil
	if _, err := io.Copy(io.Discard, resp.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("stream ended with %v", err)
	}
}

func TestLoadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		content string
		want    string
		wantErr bool
	}{
		{"hunter2\n", HashPassword("hunter2"), false},
		{"sha256:" + strings.ToUpper(HashPassword("x")), HashPassword("x"), false},
		{"sha256:abcd", "", true},
		{"  \n", "", true},
	}
	for i, tc := range tests {
		p := filepath.Join(dir, "pw"+string(rune('a'+i)))
		os.WriteFile(p, []byte(tc.content), 0o600)
		got, err := LoadPasswordFile(p)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Fatalf("%q: got %q, %v", tc.content, got, err)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("%q: error %v does not wrap ErrConfig", tc.content, err)
		}
	}
	if _, err := LoadPasswordFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{PasswordSHA256: "abc"},
		{TLSCertFile: "x.pem"},
		{ClientCAFile: "ca.pem"},
	} {
		if _, err := New(cfg, newFakeSource(), nil, nil); !errors.Is(err, ErrConfig) {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
	if _, err := New(Config{}, nil, nil, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("nil source: %v", err)
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = newServer(t, Config{Addr: ln.Addr().String()}, newFakeSource()).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Run on a busy address: %v", err)
	}
}

// Five wrong passwords from one peer within a minute lock that peer out
// (429, even with the right password) while another peer still signs in;
// the lock lapses with the window.
func TestWrongPasswordsLockThePeerOut(t *testing.T) {
	src := newFakeSource()
	srv := newServer(t, Config{PasswordSHA256: HashPassword("s3cret")}, src)
	h := srv.handler(false)
	try := func(peer, pass string) int {
		req := httptest.NewRequest("POST", "http://example.com/api/light-test", strings.NewReader("{}"))
		req.RemoteAddr = peer
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(DefaultUser, pass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for i := 0; i < maxFails; i++ {
		if code := try("10.0.0.9:4000", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, code)
		}
	}
	if code := try("10.0.0.9:4001", "s3cret"); code != http.StatusTooManyRequests {
		t.Fatalf("locked-out peer with the right password: %d, want 429", code)
	}
	if code := try("10.0.0.7:4000", "s3cret"); code != http.StatusOK {
		t.Fatalf("another peer: %d", code)
	}
	if got := src.lightTests(); got != 1 {
		t.Fatalf("light tests run: %d, want only the other peer's", got)
	}
	later := time.Now().Add(failWindow + time.Second)
	if srv.fails.blocked("10.0.0.9", later) {
		t.Fatal("the lock did not lapse after the window")
	}
}
