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
	actors    []Actor // of every action, in order
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

func (f *fakeSource) LightTest(ctx context.Context, a Actor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.testErr != nil {
		return f.testErr
	}
	f.tests++
	f.actors = append(f.actors, a)
	return nil
}

func (f *fakeSource) SetDirection(d dock.Direction, a Actor) error {
	if !d.Valid() {
		return errors.New("bad direction")
	}
	f.mu.Lock()
	f.actors = append(f.actors, a)
	f.mu.Unlock()
	f.update(true, func(s *Snapshot) { s.Direction = d })
	return nil
}

// Inject rejects data containing "BAD" and accepts the rest.
func (f *fakeSource) Inject(ctx context.Context, data []byte, tag bool, a Actor) (dock.CustodyEvent, error) {
	f.mu.Lock()
	f.injected = append(f.injected, SimulateRequest{Data: string(data), Tag: tag})
	f.actors = append(f.actors, a)
	f.seq++
	ev := dock.CustodyEvent{Seq: f.seq, Reader: dock.SimulatedReader, Simulated: true, Actor: a.Who, Via: a.Via,
		Raw: string(data), Decision: dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}}
	f.mu.Unlock()
	if strings.Contains(string(data), "BAD") {
		ev.Decision = dock.Decision{Verdict: dock.Reject, Reason: dock.ReasonUnknownLot}
	}
	f.update(true, func(s *Snapshot) { s.Recent = append([]Scan{ScanOf(ev)}, s.Recent...) })
	return ev, nil
}

func (f *fakeSource) ReloadConfig(a Actor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actors = append(f.actors, a)
	return nil
}

func (f *fakeSource) lightTests() int { f.mu.Lock(); defer f.mu.Unlock(); return f.tests }

// changes counts the state changes the source was asked for.
func (f *fakeSource) changes() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.actors) }

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
	newServer(t, Config{}, src).handler(false).ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:8080/", nil))
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
		newServer(t, Config{}, src).handler(false).ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:8080"+p, nil))
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
		peer       string
		user, pass string // basic auth when user != ""
		ctype      string
		origin     string
		want       int
	}{
		{name: "loopback peer, no credentials", peer: "127.0.0.1:5000", want: 401},
		{name: "IPv6 loopback peer, no credentials", peer: "[::1]:5000", want: 401},
		{name: "LAN peer, no credentials", peer: "10.0.0.5:5000", want: 401},
		{name: "password set, none given", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", want: 401},
		{name: "password set, wrong password", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "technician", pass: "nope", want: 401},
		{name: "password set, wrong user", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "root", pass: "s3cret", want: 401},
		{name: "no password configured, basic auth given", peer: "127.0.0.1:5000", user: "technician", pass: "", want: 401},
		{name: "password set, right password from LAN", cfg: Config{PasswordSHA256: hash}, peer: "10.0.0.5:5000", user: "technician", pass: "s3cret", want: 200},
		{name: "password set, right password from loopback", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", user: "technician", pass: "s3cret", want: 200},
		{name: "custom user", cfg: Config{PasswordSHA256: hash, User: "ops"}, peer: "10.0.0.5:5000", user: "ops", pass: "s3cret", want: 200},
		{name: "form post refused", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", user: "technician", pass: "s3cret", ctype: "application/x-www-form-urlencoded", want: 415},
		{name: "cross-origin refused", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", user: "technician", pass: "s3cret", origin: "http://evil.example", want: 403},
		{name: "Origin null refused", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", user: "technician", pass: "s3cret", origin: "null", want: 403},
		{name: "same origin allowed", cfg: Config{PasswordSHA256: hash}, peer: "127.0.0.1:5000", user: "technician", pass: "s3cret", origin: "http://127.0.0.1:8080", want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			h := newServer(t, tc.cfg, src).handler(false)
			req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/light-test", strings.NewReader("{}"))
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
				if a := src.actors[0]; a.Via != ViaAPI || !strings.HasPrefix(a.Who, "user:") {
					t.Fatalf("actor %+v", a)
				}
			}
			if got := src.lightTests(); got != wantTests {
				t.Fatalf("light tests run: %d, want %d", got, wantTests)
			}
			if rec.Header().Get("WWW-Authenticate") != "" {
				t.Fatal("a Basic challenge makes browsers cache credentials (ambient authority): the API must not send one")
			}
		})
	}
}

func TestReadsOpenUnlessAuthReads(t *testing.T) {
	hash := HashPassword("pw")
	for _, tc := range []struct {
		authReads bool
		page, api int
	}{{false, 200, 200}, {true, http.StatusSeeOther, 401}} {
		h := newServer(t, Config{PasswordSHA256: hash, AuthReads: tc.authReads}, newFakeSource()).handler(false)
		for p, want := range map[string]int{"/": tc.page, "/api/status": tc.api} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "http://10.1.1.2:8080"+p, nil)
			req.RemoteAddr = "10.1.1.1:1"
			h.ServeHTTP(rec, req)
			if rec.Code != want {
				t.Fatalf("AuthReads=%v GET %s: %d, want %d", tc.authReads, p, rec.Code, want)
			}
		}
		// The login form signs the browser in and sends it back to the page,
		// which then reads.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "http://10.1.1.2:8080/login", strings.NewReader("user=technician&password=pw"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://10.1.1.2:8080")
		req.RemoteAddr = "10.1.1.1:1"
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) != 1 {
			t.Fatalf("login with password: %d %v", rec.Code, rec.Result().Cookies())
		}
		rec2 := httptest.NewRecorder()
		req = httptest.NewRequest("GET", "http://10.1.1.2:8080/api/status", nil)
		req.AddCookie(rec.Result().Cookies()[0])
		h.ServeHTTP(rec2, req)
		if rec2.Code != 200 {
			t.Fatalf("read with the session: %d", rec2.Code)
		}
	}
}

func TestDirectionAndSimulate(t *testing.T) {
	src := newFakeSource()
	h := newServer(t, Config{PasswordSHA256: HashPassword("pw")}, src).handler(false)
	post := func(path, body string) (int, map[string]any) {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080"+path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:9"
		req.SetBasicAuth(DefaultUser, "pw")
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
			return last.Tag && last.Data == "3034F4" && m["reader"] == DefaultSimulate && m["simulated"] == true
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
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:8080/api/light-test", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET light-test: %d", rec.Code)
	}
}

func TestLightTestFailureIsReported(t *testing.T) {
	src := newFakeSource()
	src.testErr = errors.New("light: stack light is not running")
	req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/light-test", strings.NewReader("{}"))
	req.RemoteAddr = "127.0.0.1:9"
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(DefaultUser, "pw")
	rec := httptest.NewRecorder()
	newServer(t, Config{PasswordSHA256: HashPassword("pw")}, src).handler(false).ServeHTTP(rec, req)
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
	src.Inject(context.Background(), []byte("LOT-BAD"), false, Actor{})
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

// Wrong passwords back a client off exponentially — never a wall, never
// for another client: a flood from one peer leaves another peer's right
// password working at once, and the flooding peer itself signs in with the
// right password once its wait is over.
func TestWrongPasswordsBackOffPerClient(t *testing.T) {
	src := newFakeSource()
	srv := newServer(t, Config{PasswordSHA256: HashPassword("s3cret")}, src)
	now := time.Unix(1_800_000_000, 0)
	srv.now = func() time.Time { return now }
	h := srv.handler(false)
	try := func(peer, pass string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/light-test", strings.NewReader("{}"))
		req.RemoteAddr = peer
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(DefaultUser, pass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := 0; i < freeFailures; i++ {
		if rec := try("10.0.0.9:4000", "guess"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, rec.Code)
		}
	}
	// The next try from that client must wait; the wait doubles per failure.
	var waits []string
	for i := 0; i < 4; i++ {
		rec := try("10.0.0.9:4001", "s3cret")
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("inside the wait, even the right password is not looked at: %d, want 429", rec.Code)
		}
		waits = append(waits, rec.Header().Get("Retry-After"))
		now = now.Add(delayAfter(freeFailures+i) + time.Millisecond)
		if rec := try("10.0.0.9:4002", "guess-again"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("after the wait a wrong password is checked: %d", rec.Code)
		}
	}
	if strings.Join(waits, ",") != "1,2,4,8" {
		t.Fatalf("Retry-After over successive failures: %v, want 1,2,4,8", waits)
	}
	if rec := try("10.0.0.7:4000", "s3cret"); rec.Code != http.StatusOK {
		t.Fatalf("another client's right password: %d", rec.Code)
	}
	now = now.Add(backoffMax)
	if rec := try("10.0.0.9:4003", "s3cret"); rec.Code != http.StatusOK {
		t.Fatalf("the flooding client's right password after its wait: %d", rec.Code)
	}
	if rec := try("10.0.0.9:4004", "guess"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a success clears the count: %d", rec.Code)
	}
	if got := src.lightTests(); got != 2 {
		t.Fatalf("light tests run: %d, want 2", got)
	}
	if d := delayAfter(100); d != backoffMax {
		t.Fatalf("delay after 100 failures %v, want the cap %v", d, backoffMax)
	}
}
