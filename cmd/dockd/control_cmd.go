package main

// Technician tools that drive a running station through its status page
// API: `dockd light test` and `dockd simulate`.
//
//	dockd light test [--socket PATH | --url URL --password-file F] [--direct --config FILE]
//	dockd simulate [--socket PATH | --url URL ...] [--json] [SCAN ...]   (no SCAN: one per stdin line)
//	dockd login-link [--socket PATH]
//
// By default they use the station's control socket (the station asks the
// kernel who is calling: root, user dockd or group dockd may); --url talks
// to the status page over TCP instead, with a password or client
// certificate. Simulated scans are always recorded under reader
// "simulate", marked simulated, with who asked.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/dockd/dockd/device/light"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
)

// errStationNotRunning means nothing answered at the station's control
// socket or status page address.
var errStationNotRunning = errors.New("station is not running")

// defaultConfigPath is the installed config file.
const defaultConfigPath = "/etc/dockd/dockd.yaml"

// apiClient talks to a station's API: on the control socket (the default:
// the kernel tells the station who is asking) or, with --url, on the status
// page over TCP with a password or a client certificate.
type apiClient struct {
	base       string // http://control-socket or the --url
	where      string // what to name in messages: the socket path or the URL
	user, pass string
	http       *http.Client
}

// controlSocketPath finds the running station's control socket: $DOCKD_SOCKET,
// else status.socket / state_dir from the config file when it is readable,
// else the packaged default.
func controlSocketPath(cfgPath string) string {
	if p := os.Getenv("DOCKD_SOCKET"); p != "" {
		return p
	}
	if cfg, err := loadConfig(cfgPath); err == nil {
		if p := cfg.Status.ControlSocket(cfg.StateDir); p != "" {
			return p
		}
	}
	return "/var/lib/dockd/control.sock"
}

// apiFlags registers the flags every API tool takes and returns a
// constructor for the client they describe.
func apiFlags(fs *flag.FlagSet) func() (*apiClient, error) {
	sock := fs.String("socket", "", "the running station's control socket (default: from --config, $DOCKD_SOCKET)")
	cfgPath := fs.String("config", defaultConfigPath, "config file naming the control socket (status.socket, state_dir)")
	url := fs.String("url", os.Getenv("DOCKD_STATUS_URL"), "use the status page at this URL instead of the control socket ($DOCKD_STATUS_URL); needs --password-file or a client certificate")
	user := fs.String("user", statuspage.DefaultUser, "status page user name (with --url)")
	pwFile := fs.String("password-file", "", "file holding the status page password, with --url ($DOCKD_STATUS_PASSWORD also works)")
	caFile := fs.String("cacert", "", "CA certificate (PEM) to verify an https status page")
	cert := fs.String("cert", "", "client certificate (PEM) for a status page that requires one")
	key := fs.String("key", "", "key of the client certificate (PEM)")
	return func() (*apiClient, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // the station is on this box or this LAN
		if *url == "" || *sock != "" {
			path := *sock
			if path == "" {
				path = controlSocketPath(*cfgPath)
			}
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}
			return &apiClient{base: "http://control-socket", where: path, http: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
		}
		c := &apiClient{base: strings.TrimRight(*url, "/"), user: *user, pass: os.Getenv("DOCKD_STATUS_PASSWORD")}
		c.where = c.base
		if *pwFile != "" {
			b, err := os.ReadFile(*pwFile)
			if err != nil {
				return nil, fmt.Errorf("reading status page password: %w", err)
			}
			c.pass = strings.TrimSpace(string(b))
			if strings.HasPrefix(c.pass, "sha256:") {
				return nil, fmt.Errorf("password file %s holds a hash; the tools need the password itself", *pwFile)
			}
		}
		if *caFile != "" || *cert != "" {
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if *caFile != "" {
				pem, err := os.ReadFile(*caFile)
				if err != nil {
					return nil, fmt.Errorf("reading --cacert: %w", err)
				}
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("--cacert %s holds no PEM certificate", *caFile)
				}
			}
			if *cert != "" {
				kp, err := tls.LoadX509KeyPair(*cert, *key)
				if err != nil {
					return nil, fmt.Errorf("loading client certificate %s: %w", *cert, err)
				}
				tc.Certificates = []tls.Certificate{kp}
			}
			tr.TLSClientConfig = tc
		}
		c.http = &http.Client{Transport: tr, Timeout: time.Minute}
		return c, nil
	}
}

// post sends body as JSON to path and decodes a 2xx answer into out.
func (c *apiClient) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("status page URL %q: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.pass != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w: nothing answers at %s (%v)", errStationNotRunning, c.where, err)
		}
		if errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("control socket %s: %w (run as root, or as a member of group dockd)", c.where, err)
		}
		return fmt.Errorf("POST %s%s: %w", c.where, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			hint = " (give the status page password with --password-file or $DOCKD_STATUS_PASSWORD, or leave out --url to use the control socket on the station)"
		case http.StatusForbidden:
			hint = " (on the station, run the tool as root or as a member of group dockd)"
		}
		return fmt.Errorf("POST %s%s: %s: %s%s", c.where, path, resp.Status, e.Error, hint)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("POST %s%s: reading answer: %w", c.where, path, err)
		}
	}
	return nil
}

// cmdLight is `dockd light test`: every lamp and the buzzer in turn, through
// the running station, or straight on the pins with --direct.
func cmdLight(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = "dockd light test [--socket PATH] | [--url URL --password-file F] | [--direct --config FILE]"
	sub, args, err := commandWord(args, "usage: "+synopsis, stdout, stderr)
	if err != nil {
		return err
	}
	if sub != "test" {
		return &exitError{2, fmt.Errorf("unknown light command %q\nusage: %s", sub, synopsis)}
	}
	fs := flag.NewFlagSet("light test", flag.ContinueOnError)
	client := apiFlags(fs)
	direct := fs.Bool("direct", false, "drive the pins from the config here, without the daemon (stop dockd first)")
	step := fs.Duration("step", light.DefaultTestStep, "how long each output stays on (with --direct)")
	if err := parseArgs(fs, synopsis, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("light test: unexpected argument %q", fs.Arg(0))}
	}
	start := time.Now()
	if *direct {
		cfgPath := fs.Lookup("config").Value.String()
		if err := directLightTest(ctx, cfgPath, *step, stderr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lamp test done on the pins of %s: green, amber, red, buzzer (%.1fs)\n", cfgPath, time.Since(start).Seconds())
		return nil
	}
	c, err := client()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lamp test through %s: green, amber, red, buzzer…\n", c.where)
	var res struct {
		By string `json:"by"`
	}
	if err := c.post(ctx, "/api/light-test", struct{}{}, &res); err != nil {
		if errors.Is(err, errStationNotRunning) {
			return fmt.Errorf("%w (%w); to test the light without the daemon, run: dockd light test --direct --config FILE", errStationNotRunning, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "lamp test done (%.1fs, as %s)\n", time.Since(start).Seconds(), res.By)
	return nil
}

// directLightTest opens the configured light, runs its lamp test and turns
// it off again.
func directLightTest(ctx context.Context, cfgPath string, step time.Duration, stderr io.Writer) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var pins light.Pins
	if cfg.Light.Driver == "virtual" {
		pins = light.VirtualPins(slog.New(slog.NewTextHandler(stderr, nil)))
	} else {
		p := cfg.Light.Pins
		pins, err = light.OpenGPIO(light.PinNames{Green: p.Green, Amber: p.Amber, Red: p.Red, Buzzer: p.Buzzer, ActiveLow: cfg.Light.ActiveLow})
		if err != nil {
			return fmt.Errorf("lamp test: %w (is dockd running and holding the pins? then run without --direct)", err)
		}
	}
	l := light.New(pins, light.Options{ActiveLow: cfg.Light.ActiveLow, TestStep: step}, log)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx) }()
	testErr := l.Test(ctx)
	stop()
	runErr := <-done
	if testErr != nil {
		return fmt.Errorf("lamp test: %w", testErr)
	}
	if runErr != nil {
		return fmt.Errorf("lamp test: driving the light: %w", runErr)
	}
	// The audit trail: an operator record in the stopped station's buffer,
	// delivered when it runs again, as for an offline allowlist import.
	rec := auditRecord{Action: actLightTest, Actor: statuspage.LocalName(uint32(os.Getuid())), Via: statuspage.ViaCLI,
		Detail: "dockd light test --direct"}
	if seq, err := recordOffline(ctx, cfg, rec); err != nil {
		fmt.Fprintf(stderr, "warning: the lamp test is not recorded on the event stream: %v\n", err)
	} else {
		fmt.Fprintf(stderr, "recorded as operator event seq %d (delivered when the station runs)\n", seq)
	}
	return nil
}

// simulateAnswer is POST /api/simulate's answer.
type simulateAnswer struct {
	dock.CustodyEvent
	Error string `json:"error,omitempty"`
}

// cmdSimulate is `dockd simulate`: inject scans into the running station,
// one per argument or, without arguments, one per stdin line (empty lines
// and lines starting with # are skipped; {GS} stands for the FNC1
// separator). Prints the decision for each. Rejections are not errors;
// scans the station could not take are.
func cmdSimulate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	client := apiFlags(fs)
	asJSON := fs.Bool("json", false, "print each answer as a JSON line (the whole custody event)")
	if err := parseArgs(fs, "dockd simulate [flags] [SCAN ...]   (no SCAN: one per stdin line; {GS} is the FNC1 separator)", args, stdout, stderr); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	next := func() (string, bool) { return "", false }
	if fs.NArg() > 0 {
		rest := fs.Args()
		next = func() (string, bool) {
			if len(rest) == 0 {
				return "", false
			}
			s := rest[0]
			rest = rest[1:]
			return s, true
		}
	} else {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		next = func() (string, bool) {
			for sc.Scan() {
				line := strings.TrimRight(sc.Text(), "\r")
				if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
					continue
				}
				return line, true
			}
			return "", false
		}
	}
	failed := 0
	for {
		line, ok := next()
		if !ok {
			break
		}
		data := strings.ReplaceAll(line, "{GS}", "\x1d")
		var ans simulateAnswer
		err := c.post(ctx, "/api/simulate", statuspage.SimulateRequest{Data: data}, &ans)
		if errors.Is(err, errStationNotRunning) {
			return fmt.Errorf("%w (%w); start it (dockd run) before simulating scans", errStationNotRunning, err)
		}
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: %v\n", line, err)
			continue
		}
		if ans.Error != "" {
			failed++
		}
		if *asJSON {
			b, _ := json.Marshal(ans)
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		fmt.Fprintf(stdout, "%-7s %-20s seq=%-6d %s", ans.Verdict, ans.Reason, ans.Seq, line)
		if ans.Detail != "" {
			fmt.Fprintf(stdout, " — %s", ans.Detail)
		}
		fmt.Fprintln(stdout)
	}
	if failed > 0 {
		return fmt.Errorf("simulate: %d scan(s) not recorded", failed)
	}
	return nil
}

// cmdLoginLink is `dockd login-link`: ask the running station, on its
// control socket, for a one-time link that signs a browser in to the status
// page as the local user running the command.
func cmdLoginLink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login-link", flag.ContinueOnError)
	client := apiFlags(fs)
	if err := parseArgs(fs, "dockd login-link [--socket PATH]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("login-link: unexpected argument %q", fs.Arg(0))}
	}
	c, err := client()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(c.base, "http://control-socket") {
		return &exitError{2, errors.New("login-link works on the control socket only (leave out --url)")}
	}
	var res struct {
		URL     string `json:"url"`
		For     string `json:"for"`
		Expires int    `json:"expires_s"`
	}
	if err := c.post(ctx, "/api/login-link", struct{}{}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", res.URL)
	fmt.Fprintf(stderr, "one-time link for %s, valid %d s; through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT) open it on your side\n", res.For, res.Expires)
	return nil
}

// cmdDirection is `dockd direction [receiving|shipping]`: switch the
// running station's door (recorded with who ran it), or print the
// direction without an argument.
func cmdDirection(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("direction", flag.ContinueOnError)
	client := apiFlags(fs)
	if err := parseArgs(fs, "dockd direction receiving|shipping [--socket PATH]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 || !dock.Direction(fs.Arg(0)).Valid() {
		return &exitError{2, errors.New("usage: dockd direction receiving|shipping [--socket PATH]")}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var res struct {
		Direction dock.Direction `json:"direction"`
		Previous  dock.Direction `json:"previous"`
		By        string         `json:"by"`
	}
	if err := c.post(ctx, "/api/direction", statuspage.DirectionRequest{Direction: dock.Direction(fs.Arg(0))}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "door %s (was %s), by %s\n", res.Direction, res.Previous, res.By)
	return nil
}

// cmdReload is `dockd reload`: the running station re-reads its config
// file and applies what can change without a restart (recorded with who
// ran it); it says what needs a restart instead.
func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	client := apiFlags(fs)
	if err := parseArgs(fs, "dockd reload [--socket PATH]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("reload: unexpected argument %q", fs.Arg(0))}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var res struct {
		Direction dock.Direction `json:"direction"`
		By        string         `json:"by"`
	}
	if err := c.post(ctx, "/api/reload", struct{}{}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "config reloaded (door %s), by %s\n", res.Direction, res.By)
	return nil
}
