package main

// The status page on a whole station: real pty reader, Mosquitto, bbolt,
// recording GPIO pins, and the page checked in headless Chromium.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
)

// chromiumBinary finds headless Chromium or skips the test.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium not installed: .ci/run installs the Debian package chromium (scripts/ensure-chromium.sh); the browser check of the status page must run in CI")
	}
	t.Skip("Chromium not installed (Debian: apt-get install -y chromium, or scripts/ensure-chromium.sh); skipping the browser check of the status page")
	return ""
}

// chromium runs headless Chromium on url with extra flags and returns stdout.
func chromium(t *testing.T, bin, url string, flags ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
	}, flags...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chromium %v: %w\n%s", flags, err, stderr.String())
	}
	return stdout.String(), nil
}

func artefactDir(t *testing.T) string {
	if d := os.Getenv("DOCKD_ARTEFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func getStatus(t *testing.T, base string) statuspage.Snapshot {
	t.Helper()
	resp, err := http.Get(base + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s statuspage.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestStatusPageEndToEnd(t *testing.T) {
	chrome := chromiumBinary(t)
	s := startStation(t)
	// Event streams end after 3 s (the browser reconnects): headless
	// Chromium's virtual time stands still while a request is open.
	srv, _, src, err := openStatusPage(s.d, statuspage.Config{EventInterval: 50 * time.Millisecond, PollInterval: 200 * time.Millisecond, StreamMax: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("status page Serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	// 1. A scan through the serial line shows in the JSON status.
	s.write(gs1Scan("LOT42", "E2E1"))
	s.waitDecisions(1, 10*time.Second)
	// The page's source observes the station after the test's own observer
	// has seen the decision: wait until it has recorded the scan too.
	var snap statuspage.Snapshot
	waitUntil(t, 5*time.Second, "the scan on the status page", func() bool {
		snap = getStatus(t, base)
		return len(snap.Readers) == 1 && !snap.Readers[0].LastScan.IsZero()
	})
	if len(snap.Recent) != 1 || snap.Recent[0].Lot != "LOT42" || snap.Recent[0].Verdict != dock.Accept || snap.Recent[0].Seq == 0 {
		t.Fatalf("recent scans %+v", snap.Recent)
	}
	if len(snap.Readers) != 1 || !snap.Readers[0].Up || snap.Readers[0].LastScan.IsZero() || snap.Allowlist.Version == "" || snap.Door != "door-9" {
		t.Fatalf("status %+v", snap)
	}
	waitUntil(t, 10*time.Second, "broker connected on the status page", func() bool { return getStatus(t, base).Broker.Connected })

	// The daemon's own page (status.addr in the config, opened by
	// openDaemon) serves the same station, and its /metrics counts the scan.
	own := "http://" + s.d.pageLn.Addr().String()
	if snap := getStatus(t, own); len(snap.Recent) != 1 || snap.Recent[0].Lot != "LOT42" {
		t.Fatalf("the daemon's own status page: recent %+v", snap.Recent)
	}
	if m := httpGet(t, own+"/metrics"); !strings.Contains(m, `dockd_scans_total{decision="accept",reason="ok"} 1`) {
		t.Fatalf("the daemon's /metrics lacks the accepted scan:\n%s", m)
	}

	// 2. Metrics on /metrics (counted by an observer of its own, like the page).
	var metrics string
	waitUntil(t, 5*time.Second, "the scan counted in /metrics", func() bool {
		metrics = httpGet(t, base+"/metrics")
		return strings.Contains(metrics, `dockd_scans_total{decision="accept",reason="ok"} 1`)
	})
	for _, want := range []string{
		`dockd_scans_total{decision="accept",reason="ok"} 1`,
		`dockd_reader_up{reader="scanner-1"} 1`,
		`dockd_broker_connected 1`,
		fmt.Sprintf(`dockd_allowlist_info{version=%q} 1`, snap.Allowlist.Version),
		`dockd_buffer_depth `,
		`go_goroutines `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// 3. dockd simulate: the scan is decided and recorded like a real one.
	var out, errb bytes.Buffer
	sock := s.d.ctlLn.Addr().String()
	if err := cmdSimulate(context.Background(), []string{"--socket", sock, "(01)" + demoGTIN + "(10)LOT99(21)SIM1"}, nil, &out, &errb); err != nil {
		t.Fatalf("simulate: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "reject") || !strings.Contains(out.String(), "unknown_lot") {
		t.Fatalf("simulate output %q", out.String())
	}
	evs := waitEvents(t, s.sub, 2, 10*time.Second)
	if last := evs[len(evs)-1]; last.Reader != statuspage.DefaultSimulate || !last.Simulated || last.Lot != "LOT99" || last.Reason != dock.ReasonUnknownLot {
		t.Fatalf("simulated event at central: %+v", last)
	}

	// 4. dockd light test through the API: each output in turn.
	waitUntil(t, 5*time.Second, "light idle", func() bool { return s.d.light.State().Showing == "idle" })
	t0 := time.Now()
	out.Reset()
	if err := cmdLight(context.Background(), []string{"test", "--socket", sock}, &out, &errb); err != nil {
		t.Fatalf("light test: %v", err)
	}
	var prev time.Time
	for _, pin := range []string{"GPIO17", "GPIO27", "GPIO22", "GPIO23"} {
		on := time.Time{}
		for _, e := range s.pins[pin].Edges() {
			if e.Level == gpio.High && !e.At.Before(t0) {
				on = e.At
				break
			}
		}
		if on.IsZero() || !on.After(prev) {
			t.Fatalf("lamp test: %s went on at %v (previous output at %v)", pin, on, prev)
		}
		prev = on
	}

	// 5. The page in a browser follows the station live: Chromium loads it,
	// then a recalled lot is scanned and the reader unplugged; the DOM it
	// dumps must show both.
	type result struct {
		dom string
		err error
	}
	dom := make(chan result, 1)
	go func() {
		// 1.5 s of virtual time: the first stream, one reconnect (1 s), the second.
		// --timeout bounds it in real time should virtual time stall.
		out, err := chromium(t, chrome, base+"/", "--virtual-time-budget=1500", "--timeout=30000", "--dump-dom")
		dom <- result{out, err}
	}()
	waitUntil(t, 60*time.Second, "the page's event stream to connect", func() bool { return src.subscribers() > 0 })
	s.write(gs1Scan("LOT43", "E2E3"))
	s.waitDecisions(3, 10*time.Second)
	s.pty.Unplug()
	waitUntil(t, 10*time.Second, "light shows reader_down", func() bool { return s.d.light.State().Showing == "reader_down" })
	res := <-dom
	if res.err != nil {
		t.Fatal(res.err)
	}
	html := res.dom
	sse := regexp.MustCompile(`data-sse="([0-9]+)"`).FindStringSubmatch(html)
	if sse == nil || sse[1] == "1" {
		t.Errorf("the page got %v server-sent events, want the first and at least one live update", sse)
	}
	checks := []struct{ what, re string }{
		{"the scan typed before the page loaded", `lot LOT42`},
		{"the recalled lot scanned after the page loaded", `data-decision="reject"[^>]*>.*?lot recalled`},
		{"the light state", `<body data-showing="reader_down"`},
		{"the reader down", `data-reader="scanner-1" data-up="false"`},
		{"the door", `id="door">door-9<`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(html) {
			t.Errorf("page in Chromium lacks %s (%s)", c.what, c.re)
		}
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", html)
	}

	// 6. The technician signs in with a one-time link, in the browser, and
	// presses the page's own buttons: the page carries its CSRF token, the
	// station records who pressed them.
	br := startCDP(t, chrome)
	br.navigate(base+srv.LoginLink("local:tech(uid=1000)"), "/")
	var signedIn struct {
		CSRF int    `json:"csrf"`
		Who  string `json:"who"`
	}
	if err := br.eval(`({csrf: document.querySelector('meta[name="csrf-token"]').content.length, who: document.getElementById("who").textContent})`, &signedIn); err != nil {
		t.Fatal(err)
	}
	if signedIn.CSRF != 64 || !strings.Contains(signedIn.Who, "signed in as local:tech(uid=1000)") {
		t.Fatalf("the page after the login link: %+v", signedIn)
	}
	if err := br.eval(`window.confirm = function () { return true; }; document.getElementById("btn-dir").click(); true`, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the page's button to switch the door", func() bool { return s.d.station.Direction() == dock.Shipping })
	waitUntil(t, 10*time.Second, "the page to show the switch", func() bool {
		var msg string
		br.eval(`document.getElementById("msg").textContent`, &msg)
		return strings.Contains(msg, "done")
	})
	rec := waitRecord(t, s, "the page's direction switch", func(e dock.CustodyEvent) bool { return e.Action == "direction" && e.Via == "page" })
	if rec.Actor != "local:tech(uid=1000)" || rec.Direction != dock.Shipping {
		t.Fatalf("the page's switch recorded as %+v", rec)
	}
	// Without its token (as a foreign page would send it) the same request
	// from the same browser is refused.
	var code int
	if err := br.eval(`fetch("api/direction", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"direction":"receiving"}'}).then(r => r.status)`, &code); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden || s.d.station.Direction() != dock.Shipping {
		t.Fatalf("a POST without the CSRF token: %d, direction %s", code, s.d.station.Direction())
	}

	// 7. A screenshot for the record.
	shot := filepath.Join(artefactDir(t), "statuspage.png")
	// The page embeds the current state, so it draws complete at load: no
	// virtual time (which stalls while the page polls), just a bound on the load.
	if _, err := chromium(t, chrome, base+"/", "--timeout=15000", "--window-size=420,900", "--screenshot="+shot); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, len(b))
	}
	t.Logf("status page screenshot: %s (%d bytes)", shot, len(b))
}
