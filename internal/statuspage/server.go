package statuspage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dockd/dockd/internal/dock"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddr          = "127.0.0.1:8080"
	DefaultUser          = "technician"
	DefaultEventInterval = 250 * time.Millisecond
	DefaultPollInterval  = time.Second
	DefaultStreamMax     = 5 * time.Minute
	DefaultSimulate      = "simulate" // reader id of injected scans when none is given
	heartbeat            = 15 * time.Second
	actionTimeout        = 30 * time.Second
	maxBody              = 64 << 10
)

// ErrConfig is wrapped by New's errors for an unusable Config.
var ErrConfig = errors.New("statuspage: invalid config")

// Config configures the status page server. The zero value serves on
// DefaultAddr (loopback only) with no password: the page is readable from
// the box itself and the buttons work from the box itself.
type Config struct {
	// Addr is the listen address, host:port. Default DefaultAddr.
	Addr string
	// User is the basic-auth user name (default DefaultUser).
	User string
	// PasswordSHA256 is the hex SHA-256 of the technician password (see
	// HashPassword, LoadPasswordFile). Empty: no password.
	PasswordSHA256 string
	// AuthReads makes the page, the JSON status, the event stream and
	// /metrics require authentication too (default: only actions do).
	AuthReads bool
	// TLSCertFile and TLSKeyFile serve HTTPS. ClientCAFile (which needs
	// them) makes every connection present a client certificate signed by
	// one of its CAs.
	TLSCertFile, TLSKeyFile, ClientCAFile string
	// EventInterval is the least time between two pushes on one event
	// stream (bursts of scans are coalesced). Default DefaultEventInterval.
	EventInterval time.Duration
	// PollInterval is how often an event stream re-reads the snapshot for
	// changes the Source does not signal (light patterns, buffer, broker).
	// Default DefaultPollInterval.
	PollInterval time.Duration
	// StreamMax ends an event stream after this long; the browser
	// reconnects at once (and meanwhile polls). It keeps proxies and
	// headless browsers with virtual time from holding one request
	// forever. Default DefaultStreamMax.
	StreamMax time.Duration
}

// HashPassword returns the hex SHA-256 of password, the form
// Config.PasswordSHA256 takes.
func HashPassword(password string) string {
	h := sha256.Sum256([]byte(password))
	return hex.EncodeToString(h[:])
}

// LoadPasswordFile reads a password file and returns the hex SHA-256 for
// Config.PasswordSHA256. The file holds either "sha256:" followed by the
// 64-digit hex digest, or the password itself; surrounding white space is
// ignored. An empty file is an error.
func LoadPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading status page password file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%w: password file %s is empty", ErrConfig, path)
	}
	if h, ok := strings.CutPrefix(s, "sha256:"); ok {
		if d, err := hex.DecodeString(h); err != nil || len(d) != sha256.Size {
			return "", fmt.Errorf("%w: password file %s: sha256: must be followed by 64 hex digits", ErrConfig, path)
		}
		return strings.ToLower(h), nil
	}
	return HashPassword(s), nil
}

// Server serves the status page, its API and /metrics. Build it with New;
// Run or Serve it. Its handlers are safe for concurrent use.
type Server struct {
	cfg  Config
	src  Source
	reg  *prometheus.Registry
	log  *slog.Logger
	hash []byte // nil: no password
	tls  *tls.Config

	fails failLimiter // wrong passwords per peer

	page    []byte // index.html split around the snapshot placeholder
	pageEnd []byte
	runCtx  atomic.Pointer[context.Context]
}

//go:embed assets
var assets embed.FS

// New checks cfg and builds a Server for src. reg, when not nil, is served on
// /metrics (the caller registers collectors, e.g. with NewMetrics); nil
// serves no metrics. A nil log discards log output.
func New(cfg Config, src Source, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: nil Source", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.EventInterval <= 0 {
		cfg.EventInterval = DefaultEventInterval
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.StreamMax <= 0 {
		cfg.StreamMax = DefaultStreamMax
	}
	s := &Server{cfg: cfg, src: src, reg: reg, log: log}
	if cfg.PasswordSHA256 != "" {
		h, err := hex.DecodeString(cfg.PasswordSHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%w: password hash must be 64 hex digits (a SHA-256)", ErrConfig)
		}
		s.hash = h
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: TLS needs both a certificate file and a key file", ErrConfig)
	}
	if cfg.ClientCAFile != "" && cfg.TLSCertFile == "" {
		return nil, fmt.Errorf("%w: client certificates (client CA %s) need TLS: set a certificate and key", ErrConfig, cfg.ClientCAFile)
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading status page TLS certificate %s: %w", cfg.TLSCertFile, err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("reading status page client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: client CA file %s holds no PEM certificate", ErrConfig, cfg.ClientCAFile)
			}
			s.tls.ClientCAs = pool
			s.tls.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	index, err := assets.ReadFile("assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("statuspage: reading embedded page: %w", err)
	}
	var ok bool
	s.page, s.pageEnd, ok = bytes.Cut(index, []byte("{{SNAPSHOT}}"))
	if !ok {
		return nil, errors.New("statuspage: embedded page lacks its snapshot placeholder")
	}
	return s, nil
}

// Run listens on Config.Addr and serves until ctx ends, then shuts down
// gracefully (open event streams are closed). It returns nil after a
// shutdown caused by ctx, or the error that stopped it.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("status page: listening on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (it is closed on return).
// Whether ln is bound to a loopback address decides whether actions are
// allowed from loopback without a password (see the package doc).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	loop := isLoopbackAddr(ln.Addr())
	if !loop && s.hash == nil && s.cfg.ClientCAFile == "" {
		s.log.Warn("status page reachable beyond this box without a password or client certificate: its buttons are disabled",
			"addr", ln.Addr().String())
	}
	s.runCtx.Store(&ctx)
	hs := &http.Server{
		Handler:           s.handler(loop),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
		scheme = "https"
	}
	s.log.Info("status page listening", "url", scheme+"://"+ln.Addr().String()+"/",
		"password", s.hash != nil, "client_certs", s.cfg.ClientCAFile != "")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("status page: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(shCtx)
	<-errc
	if err != nil {
		return fmt.Errorf("status page: shutting down: %w", err)
	}
	return nil
}

// handler builds the routes. loop says the listener is loopback-only.
func (s *Server) handler(loop bool) http.Handler {
	mux := http.NewServeMux()
	read := func(h http.HandlerFunc) http.Handler {
		if !s.cfg.AuthReads {
			return h
		}
		return s.requireAuth(loop, func(w http.ResponseWriter, r *http.Request, _ string) { h(w, r) })
	}
	mux.Handle("GET /{$}", read(s.handleIndex))
	mux.Handle("GET /app.js", read(s.handleAsset("assets/app.js", "text/javascript; charset=utf-8")))
	mux.Handle("GET /app.css", read(s.handleAsset("assets/app.css", "text/css; charset=utf-8")))
	mux.Handle("GET /api/status", read(s.handleStatus))
	mux.Handle("GET /api/events", read(s.handleEvents))
	if s.reg != nil {
		mux.Handle("GET /metrics", read(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), Registry: s.reg,
		}).ServeHTTP))
	}
	mux.Handle("GET /login", s.requireAuth(loop, func(w http.ResponseWriter, r *http.Request, who string) {
		http.Redirect(w, r, "./", http.StatusSeeOther)
	}))
	mux.Handle("POST /api/light-test", s.action(loop, s.handleLightTest))
	mux.Handle("POST /api/direction", s.action(loop, s.handleDirection))
	mux.Handle("POST /api/simulate", s.action(loop, s.handleSimulate))
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	snap, err := json.Marshal(s.src.Snapshot()) // escapes <, > and &: safe inside <script>
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encoding status: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(s.page)
	w.Write(snap)
	w.Write(s.pageEnd)
}

func (s *Server) handleAsset(name, ctype string) http.HandlerFunc {
	b, err := assets.ReadFile(name)
	return func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Write(b)
	}
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.src.Snapshot())
}

// handleEvents streams the snapshot as server-sent events named "status":
// one at once, then one whenever it changed, at most one per EventInterval,
// a comment line every 15 s so proxies keep the stream open, until
// StreamMax has passed (the browser then reconnects).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	changes, unsubscribe := s.src.Changes()
	defer unsubscribe()
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	gate := time.NewTimer(0) // fires when the next push is allowed
	defer gate.Stop()
	end := time.NewTimer(s.cfg.StreamMax)
	defer end.Stop()
	gateOpen, pending := false, true
	var last []byte
	lastWrite := time.Now()
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-end.C:
			return
		case <-changes:
			pending = true
		case <-poll.C:
			pending = true
			if time.Since(lastWrite) >= heartbeat {
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
					return
				}
				lastWrite = time.Now()
			}
		case <-gate.C:
			gateOpen = true
		}
		if !pending || !gateOpen {
			continue
		}
		pending = false
		snap := s.src.Snapshot()
		full, err := json.Marshal(snap)
		if err != nil {
			s.log.Error("status page: encoding status", "err", err)
			return
		}
		snap.Time = time.Time{}
		key, _ := json.Marshal(snap)
		if bytes.Equal(key, last) {
			continue
		}
		last = key
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", full); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		lastWrite = time.Now()
		gateOpen = false
		gate.Reset(s.cfg.EventInterval)
	}
}

// actionFunc handles an authenticated POST; who names the caller.
type actionFunc func(w http.ResponseWriter, r *http.Request, who string)

// action wraps an action handler: authentication, the JSON content type
// (which a cross-site form cannot send) and a same-origin check.
func (s *Server) action(loop bool, h actionFunc) http.Handler {
	return s.requireAuth(loop, func(w http.ResponseWriter, r *http.Request, who string) {
		mt := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
		if !strings.EqualFold(mt, "application/json") {
			httpError(w, http.StatusUnsupportedMediaType, errors.New("actions take Content-Type: application/json"))
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				s.log.Warn("status page: cross-origin action refused", "origin", o, "host", r.Host, "peer", r.RemoteAddr, "path", r.URL.Path)
				httpError(w, http.StatusForbidden, errors.New("cross-origin request refused"))
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r, who)
	})
}

// errNoAuthPossible: no way to authenticate is configured and the caller is
// not on the box itself.
var errNoAuthPossible = errors.New("buttons are disabled here: configure a status page password or client certificates, or use the page on the station itself (loopback)")

// requireAuth runs h with the caller's identity, or answers 401/403.
func (s *Server) requireAuth(loop bool, h actionFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := peerHost(r.RemoteAddr)
		if s.hash != nil && s.fails.blocked(host, time.Now()) {
			w.Header().Set("Retry-After", fmt.Sprint(int(failWindow.Seconds())))
			s.log.Warn("status page: sign-in refused after repeated wrong passwords", "peer", r.RemoteAddr, "path", r.URL.Path)
			httpError(w, http.StatusTooManyRequests, fmt.Errorf("too many wrong passwords from %s: wait a minute", host))
			return
		}
		who, err := s.authenticate(r, loop)
		if err != nil {
			if errors.Is(err, errWrongPassword) {
				s.fails.fail(host, time.Now())
			}
			if s.hash != nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="dockd", charset="UTF-8"`)
				s.log.Warn("status page: authentication failed", "peer", r.RemoteAddr, "path", r.URL.Path, "err", err)
				httpError(w, http.StatusUnauthorized, err)
				return
			}
			httpError(w, http.StatusForbidden, err)
			return
		}
		h(w, r, who)
	})
}

// errWrongPassword: credentials were given and did not match.
var errWrongPassword = errors.New("wrong user name or password")

// Wrong passwords from one peer: after maxFails within failWindow, its
// sign-ins are refused (429) until the window has passed.
const (
	maxFails   = 5
	failWindow = time.Minute
)

// failLimiter counts recent wrong passwords per peer host. Safe for
// concurrent use; it forgets hosts whose failures are older than the window.
type failLimiter struct {
	mu    sync.Mutex
	fails map[string][]time.Time
}

func (l *failLimiter) recent(host string, now time.Time) []time.Time {
	var keep []time.Time
	for _, t := range l.fails[host] {
		if now.Sub(t) < failWindow {
			keep = append(keep, t)
		}
	}
	if len(keep) == 0 {
		delete(l.fails, host)
	} else {
		l.fails[host] = keep
	}
	return keep
}

func (l *failLimiter) blocked(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(host, now)) >= maxFails
}

func (l *failLimiter) fail(host string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil {
		l.fails = map[string][]time.Time{}
	}
	l.fails[host] = append(l.recent(host, now), now)
}

func peerHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// authenticate names the caller of r: "cert:CN", "user:NAME" or "loopback".
func (s *Server) authenticate(r *http.Request, loop bool) (string, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return "cert:" + r.TLS.VerifiedChains[0][0].Subject.CommonName, nil
	}
	if s.hash != nil {
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", errors.New("sign in with the technician password")
		}
		got := sha256.Sum256([]byte(pass))
		wantUser := sha256.Sum256([]byte(s.cfg.User))
		gotUser := sha256.Sum256([]byte(user))
		if subtle.ConstantTimeCompare(got[:], s.hash)&subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) != 1 {
			return "", fmt.Errorf("%w for user %q", errWrongPassword, user)
		}
		return "user:" + user, nil
	}
	if s.cfg.ClientCAFile == "" && loop && isLoopbackPeer(r.RemoteAddr) {
		return "loopback", nil
	}
	return "", errNoAuthPossible
}

func (s *Server) actionCtx() (context.Context, context.CancelFunc) {
	base := context.Background()
	if p := s.runCtx.Load(); p != nil {
		base = *p
	}
	return context.WithTimeout(base, actionTimeout)
}

func (s *Server) handleLightTest(w http.ResponseWriter, r *http.Request, who string) {
	s.log.Info("status page action", "action", "light_test", "who", who, "peer", r.RemoteAddr)
	// The test runs to its end even if the phone navigates away.
	ctx, cancel := s.actionCtx()
	defer cancel()
	start := time.Now()
	if err := s.src.LightTest(ctx); err != nil {
		s.log.Error("status page action failed", "action", "light_test", "who", who, "err", err)
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("lamp test: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "by": who, "took_s": time.Since(start).Seconds()})
}

// DirectionRequest is the body of POST /api/direction.
type DirectionRequest struct {
	Direction dock.Direction `json:"direction"`
}

func (s *Server) handleDirection(w http.ResponseWriter, r *http.Request, who string) {
	var req DirectionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("reading direction request: %w", err))
		return
	}
	if !req.Direction.Valid() {
		httpError(w, http.StatusBadRequest, fmt.Errorf("direction %q: want receiving or shipping", req.Direction))
		return
	}
	old := s.src.Snapshot().Direction
	if err := s.src.SetDirection(req.Direction); err != nil {
		s.log.Error("status page action failed", "action", "set_direction", "who", who, "to", req.Direction, "err", err)
		httpError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("status page action", "action", "set_direction", "who", who, "peer", r.RemoteAddr, "from", old, "to", req.Direction)
	writeJSON(w, http.StatusOK, map[string]any{"direction": req.Direction, "previous": old, "by": who})
}

// SimulateRequest is the body of POST /api/simulate: one scan as a reader
// would deliver it. Data starting with "epc:" is an RFID EPC in hex (as if
// Tag were true). Reader defaults to "simulate".
type SimulateRequest struct {
	Reader string `json:"reader,omitempty"`
	Data   string `json:"data"`
	Tag    bool   `json:"tag,omitempty"`
}

func (s *Server) handleSimulate(w http.ResponseWriter, r *http.Request, who string) {
	var req SimulateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("reading simulate request: %w", err))
		return
	}
	if req.Reader == "" {
		req.Reader = DefaultSimulate
	}
	data := req.Data
	if len(data) > 4 && strings.EqualFold(data[:4], "epc:") {
		data, req.Tag = data[4:], true
	}
	if data == "" {
		httpError(w, http.StatusBadRequest, errors.New("simulate: empty scan"))
		return
	}
	ctx, cancel := s.actionCtx()
	defer cancel()
	ev, err := s.src.Inject(ctx, req.Reader, []byte(data), req.Tag)
	s.log.Info("status page action", "action", "simulate", "who", who, "peer", r.RemoteAddr, "reader", req.Reader,
		"tag", req.Tag, "raw", data, "seq", ev.Seq, "decision", ev.Verdict, "reason", ev.Reason, "err", err)
	if err != nil && ev.Verdict == "" {
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("simulate %q: %w", data, err))
		return
	}
	// A refused scan (buffer full, storage fault) still has a decision:
	// the reject the operator saw. Report it with the error.
	resp := struct {
		dock.CustodyEvent
		Error string `json:"error,omitempty"`
	}{CustodyEvent: ev}
	if err != nil {
		resp.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func httpError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func isLoopbackAddr(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

func isLoopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
