package main

// The local API under attack, on a whole running daemon (real TCP, the
// real control socket, real buffer and broker): cross-origin and DNS
// rebinding requests, unauthenticated state changes from loopback, forged
// reader names, a wrong-password flood against the technician's login, a
// missing CSRF token, a stranger on the control socket. Every attack must
// change nothing and leave one log line saying why it was refused.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

const techPassword = "correct horse battery staple"

// startSecuredStation is a test station whose status page has the
// technician password set.
func startSecuredStation(t *testing.T) *testStation {
	t.Helper()
	return startStationWith(t, func(dir, y string) string {
		pw := filepath.Join(dir, "status-password")
		if err := os.WriteFile(pw, []byte(techPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return strings.Replace(y, "  addr: 127.0.0.1:0\n", "  addr: 127.0.0.1:0\n  password_file: "+pw+"\n", 1)
	})
}

func pageBase(s *testStation) string { return "http://" + s.d.pageLn.Addr().String() }

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{Proxy: nil},
}

// browserSession signs in with a one-time login link (as the page would
// after `dockd login-link`) and returns the session cookie and the CSRF
// token the page embeds.
func browserSession(t *testing.T, s *testStation, client *http.Client) (*http.Cookie, string) {
	t.Helper()
	base := pageBase(s)
	resp, err := client.Get(base + s.d.page.LoginLink("local:tester(uid=0)"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite == http.SameSiteNoneMode {
		t.Fatalf("session cookie %+v: want HttpOnly and SameSite", cookie)
	}
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.AddCookie(cookie)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`<meta name="csrf-token" content="([0-9a-f]{64})">`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the signed-in page embeds no CSRF token:\n%.400s", page)
	}
	return cookie, string(m[1])
}

type apiReq struct {
	method, path, body string
	host, origin       string
	csrf               string
	cookie             *http.Cookie
	user, pass         string
	ctype              string
}

func doAPI(t *testing.T, client *http.Client, base string, r apiReq) (int, string) {
	t.Helper()
	if r.method == "" {
		r.method = "POST"
	}
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.host != "" {
		req.Host = r.host
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	if r.csrf != "" {
		req.Header.Set("X-CSRF-Token", r.csrf)
	}
	if r.cookie != nil {
		req.AddCookie(r.cookie)
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stationState is what an attack must not change.
type stationState struct {
	direction dock.Direction
	newest    uint64
	decided   int
}

func (s *testStation) state() stationState {
	s.mu.Lock()
	n := len(s.events)
	s.mu.Unlock()
	return stationState{s.d.station.Direction(), s.d.queue.Stats().NewestSeq, n}
}

// refusals counts the log lines that refused a request for reason.
func refusals(s *testStation, reason string) int {
	n := 0
	for _, line := range strings.Split(s.logs.String(), "\n") {
		// The test station logs JSON (helpers_test.go), as under systemd.
		if strings.Contains(line, `"msg":"status page: request refused"`) && strings.Contains(line, reason) {
			n++
		}
	}
	return n
}

func TestSecurityLocalAPIUnderAttack(t *testing.T) {
	s := startSecuredStation(t)
	base := pageBase(s)
	port := s.d.pageLn.Addr().(*net.TCPAddr).Port
	own := base // the page's own origin
	cookie, csrf := browserSession(t, s, noRedirect)
	before := s.state()
	lampsBefore := len(s.pins["GPIO17"].Edges())

	attacks := []struct {
		name   string
		req    apiReq
		code   int
		reason string // in the refusal's log line
	}{
		// Anyone on the box (or at the end of an SSH tunnel) used to be trusted.
		{"loopback, no credentials: direction", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`}, 401, "sign in first"},
		{"loopback, no credentials: simulate", apiReq{path: "/api/simulate", body: `{"data":"(01)09506000134352(10)LOT42","reader":"scanner-1"}`}, 401, "sign in first"},
		{"loopback, no credentials: light test", apiReq{path: "/api/light-test", body: `{}`}, 401, "sign in first"},
		{"loopback, no credentials: reload", apiReq{path: "/api/reload", body: `{}`}, 401, "sign in first"},
		// DNS rebinding: a page on attacker.example whose name now resolves
		// to 127.0.0.1 (directly or through ssh -L) sends its own Host and Origin.
		{"DNS rebinding with a session", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`,
			host: fmt.Sprintf("attacker.example:%d", port), origin: fmt.Sprintf("http://attacker.example:%d", port), cookie: cookie, csrf: csrf}, 403, "DNS rebinding"},
		{"DNS rebinding with the password", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`,
			host: fmt.Sprintf("attacker.example:%d", port), user: statuspage.DefaultUser, pass: techPassword}, 403, "DNS rebinding"},
		{"DNS rebinding read", apiReq{method: "GET", path: "/api/status", host: fmt.Sprintf("attacker.example:%d", port)}, 403, "DNS rebinding"},
		// Cross-site: the browser sends the session cookie along.
		{"foreign Origin", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: "http://evil.example", cookie: cookie, csrf: csrf}, 403, "cross-origin"},
		{"Origin null", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: "null", cookie: cookie, csrf: csrf}, 403, "cross-origin"},
		{"other port on this host", apiReq{path: "/api/light-test", body: `{}`, origin: fmt.Sprintf("http://127.0.0.1:%d", port+1), cookie: cookie, csrf: csrf}, 403, "cross-origin"},
		{"session, no Origin on POST", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, cookie: cookie, csrf: csrf}, 403, "Origin header"},
		{"session, no CSRF token", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: own, cookie: cookie}, 403, "CSRF"},
		{"session, wrong CSRF token", apiReq{path: "/api/simulate", body: `{"data":"x"}`, origin: own, cookie: cookie, csrf: strings.Repeat("0", 64)}, 403, "CSRF"},
		{"session, form post", apiReq{path: "/api/light-test", body: `a=b`, ctype: "text/plain", origin: own, cookie: cookie, csrf: csrf}, 415, "Content-Type"},
		{"forged session cookie", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: own, cookie: &http.Cookie{Name: "dockd_session", Value: strings.Repeat("a", 64)}, csrf: csrf}, 401, "sign in first"},
		{"used login link", apiReq{method: "GET", path: "/login?token=" + strings.Repeat("b", 64)}, 403, "login link"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			n := refusals(s, a.reason)
			code, body := doAPI(t, noRedirect, base, a.req)
			if code != a.code {
				t.Fatalf("got %d, want %d: %s", code, a.code, body)
			}
			if got := refusals(s, a.reason); got != n+1 {
				t.Fatalf("%d new log lines refusing for %q, want exactly 1:\n%s", got-n, a.reason, s.logs.String())
			}
		})
	}
	if after := s.state(); after != before {
		t.Fatalf("attacks changed the station: before %+v, after %+v", before, after)
	}
	if n := len(s.pins["GPIO17"].Edges()); n != lampsBefore {
		t.Fatalf("attacks ran the lamp test (%d edges, were %d)", n, lampsBefore)
	}

	// The same requests, properly signed in, work: the refusals above were
	// for the attack, not for the request.
	code, body := doAPI(t, noRedirect, base, apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: own, cookie: cookie, csrf: csrf})
	if code != 200 || s.d.station.Direction() != dock.Shipping {
		t.Fatalf("signed-in direction change: %d %s", code, body)
	}

	// Security headers on every answer, including API errors.
	for _, p := range []string{"/", "/api/status", "/login"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") == "" || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s headers %v", p, h)
		}
	}
}

// Whatever reader name the caller sends, a simulated scan is recorded under
// reader "simulate", marked simulated, with who asked — at central too.
func TestSecuritySimulatedScansCannotForgeAReader(t *testing.T) {
	s := startSecuredStation(t)
	base := pageBase(s)
	cookie, csrf := browserSession(t, s, noRedirect)
	code, body := doAPI(t, noRedirect, base, apiReq{path: "/api/simulate", origin: base, cookie: cookie, csrf: csrf,
		body: `{"data":"(01)09506000134352(10)LOT42(21)FORGED1","reader":"scanner-1"}`})
	if code != 200 {
		t.Fatalf("simulate: %d %s", code, body)
	}
	code, body = doAPI(t, noRedirect, base, apiReq{path: "/api/simulate", user: statuspage.DefaultUser, pass: techPassword,
		body: `{"data":"(01)09506000134352(10)LOT42(21)FORGED2","reader":"scanner-1","simulated":false}`})
	if code != 200 {
		t.Fatalf("simulate with the password: %d %s", code, body)
	}
	evs := waitEvents(t, s.sub, 2, 15*time.Second)
	for _, m := range s.sub.Messages() {
		if strings.HasSuffix(m.Topic, "/events") {
			contracttest.Require(t, contract.EventSchemaFile, m.Payload)
		}
	}
	want := map[string]string{"FORGED1": statuspage.ViaPage, "FORGED2": statuspage.ViaAPI}
	for _, e := range evs {
		via, ok := want[e.Serial]
		if !ok {
			continue
		}
		if e.Reader != dock.SimulatedReader || !e.Simulated || e.Via != via || e.Actor == "" {
			t.Fatalf("simulated scan %s at central: reader %q simulated %v actor %q via %q", e.Serial, e.Reader, e.Simulated, e.Actor, e.Via)
		}
		delete(want, e.Serial)
	}
	if len(want) > 0 {
		t.Fatalf("not delivered: %v", want)
	}
	// A real scan is not marked, and its reader keeps its name.
	s.write(gs1Scan("LOT42", "REAL1"))
	for _, e := range waitEvents(t, s.sub, 3, 15*time.Second) {
		if e.Serial == "REAL1" && (e.Reader != "scanner-1" || e.Simulated || e.Actor != "") {
			t.Fatalf("real scan %+v", e)
		}
	}
	// The schema refuses a "simulated" event under a real reader's name.
	forged := []byte(`{"schema":"dockd.custody-event/1","id":"7009f1ad-00e9-455e-959d-e8fae654471e","seq":3,"site":"s","station":"s-d","door":"d","direction":"receiving","time":"2026-11-25T14:23:16Z","clock_synced":true,"reader":"scanner-1","raw":"x","decision":"reject","reason":"bad_scan","error_kind":"bad_value","simulated":true,"actor":"user:x","via":"page"}`)
	if contracttest.Validate(contract.EventSchemaFile, forged) == nil {
		t.Fatal("the event schema accepts a simulated scan under a real reader")
	}
}

// dialAs connects as another local user: a locked OS thread takes that
// user's effective uid and gid (thread-local raw system calls; the thread
// is discarded afterwards), so the kernel's socket table and SO_PEERCRED
// name that user. Needs root, as CI has.
func dialAs(t *testing.T, uid, gid int, network, addr string, groups ...uint32) (net.Conn, error) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var list uintptr
		if len(groups) > 0 {
			list = uintptr(unsafe.Pointer(&groups[0]))
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), list, 0); e != 0 {
			ch <- res{err: fmt.Errorf("setgroups: %w", e)}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
			ch <- res{err: fmt.Errorf("setresgid: %w", e)}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			ch <- res{err: fmt.Errorf("setresuid: %w", e)}
			return
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func clientAs(t *testing.T, uid, gid int) *http.Client {
	return &http.Client{Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialAs(t, uid, gid, network, addr)
		}}}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test acts as two local users and needs root, which CI has")
		}
		t.Skip("acting as another local user needs root (CI runs as root)")
	}
}

// A wrong-password flood from one local user backs that user off, and
// only that user: the technician's right password, from their own login
// (another uid, as an SSH tunnel's is), signs in at once.
func TestSecurityPasswordFloodDoesNotLockOutTheTechnician(t *testing.T) {
	needRoot(t)
	s := startSecuredStation(t)
	base := pageBase(s)
	attacker := clientAs(t, 65534, 65534) // nobody
	login := func(c *http.Client, pass string) (int, []*http.Cookie) {
		req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"user": {statuspage.DefaultUser}, "password": {pass}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Cookies()
	}
	var codes []int
	for i := 0; i < 30; i++ {
		code, _ := login(attacker, fmt.Sprintf("guess-%d", i))
		codes = append(codes, code)
		if code == http.StatusOK || code == http.StatusSeeOther {
			t.Fatalf("a guess signed in: %d", code)
		}
	}
	if codes[0] != 401 || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("the flood's answers %v: want 401 first, then 429 once backed off", codes)
	}
	if n := refusals(s, "failure 3 from uid:65534"); n != 1 {
		t.Fatalf("the flood is not keyed by the attacker's uid (%d lines):\n%s", n, s.logs.String())
	}
	// The attacker's own right password is not even looked at now.
	if code, _ := login(attacker, techPassword); code != http.StatusTooManyRequests {
		t.Fatalf("attacker inside its wait: %d, want 429", code)
	}
	// The technician signs in immediately.
	start := time.Now()
	code, cookies := login(noRedirect, techPassword)
	if code != http.StatusSeeOther || len(cookies) != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("technician's login during the flood: %d %v after %v", code, cookies, time.Since(start))
	}
	// Basic auth for scripts shares the same per-client backoff.
	if code, _ := doAPI(t, attacker, base, apiReq{path: "/api/light-test", body: "{}", user: statuspage.DefaultUser, pass: "guess"}); code != http.StatusTooManyRequests {
		t.Fatalf("attacker's basic auth during its wait: %d", code)
	}
	if code, body := doAPI(t, noRedirect, base, apiReq{path: "/api/light-test", body: "{}", user: statuspage.DefaultUser, pass: techPassword}); code != 200 {
		t.Fatalf("technician's basic auth: %d %s", code, body)
	}
}

// The control socket admits root, the station's user and its group; the
// kernel names the caller. Anyone else does not even get to connect (file
// mode), and if the mode were loosened the peer check still refuses.
func TestSecurityControlSocket(t *testing.T) {
	needRoot(t)
	s := startStation(t)
	sock := s.d.ctlLn.Addr().String()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("control socket %s: %v %v, want a socket of mode 0660", sock, fi.Mode(), err)
	}
	if _, err := dialAs(t, 65534, 65534, "unix", sock); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("nobody connecting to the control socket: %v, want EACCES", err)
	}
	// As if someone loosened the modes (the test's temporary directories
	// are private too).
	os.Chmod(sock, 0o666)
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(sock)), 0o755)
	before := s.state()
	stranger := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialAs(t, 65534, 65534, "unix", sock)
	}}}
	n := refusals(s, "may not use the control socket")
	code, body := doAPI(t, stranger, "http://control-socket", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`})
	if code != http.StatusForbidden || refusals(s, "may not use the control socket") != n+1 {
		t.Fatalf("stranger on the control socket: %d %s", code, body)
	}
	// A browser request forwarded to the socket (socat, a proxy) is refused.
	var out bytes.Buffer
	root := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	code, body = doAPI(t, root, "http://control-socket", apiReq{path: "/api/direction", body: `{"direction":"shipping"}`, origin: "http://evil.example"})
	if code != http.StatusForbidden {
		t.Fatalf("browser request on the control socket: %d %s", code, body)
	}
	// A member of the station's group (supplementary, as a technician added
	// to group dockd is) is admitted, and named.
	member := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialAs(t, 65534, 65534, "unix", sock, uint32(os.Getegid()))
	}}}
	code, body = doAPI(t, member, "http://control-socket", apiReq{path: "/api/direction", body: `{"direction":"receiving"}`})
	if code != http.StatusOK || !strings.Contains(body, "uid=65534") {
		t.Fatalf("group member on the control socket: %d %s", code, body)
	}
	if after := s.state(); after != before {
		t.Fatalf("refused socket requests changed the station: %+v → %+v", before, after)
	}
	// Root on the socket: the tools work, and the station knows who ran them.
	if err := cmdLight(context.Background(), []string{"test", "--socket", sock}, &out, &out); err != nil {
		t.Fatalf("dockd light test on the control socket: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := cmdLoginLink(context.Background(), []string{"--socket", sock}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	link := strings.TrimSpace(out.String())
	if !strings.HasPrefix(link, pageBase(s)+"/login?token=") {
		t.Fatalf("login link %q", link)
	}
	for i, want := range []int{http.StatusSeeOther, http.StatusForbidden} { // one time only
		resp, err := noRedirect.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("login link use %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
