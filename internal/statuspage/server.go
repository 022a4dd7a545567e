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
	"html"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
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
	DefaultSimulate      = dock.SimulatedReader // the reader id every injected scan carries
	heartbeat            = 15 * time.Second
	actionTimeout        = 30 * time.Second
	maxBody              = 64 << 10
)

// ErrConfig is wrapped by New's errors for an unusable Config.
var ErrConfig = errors.New("statuspage: invalid config")

// Config configures the status page server. The zero value serves on
// DefaultAddr (loopback only) with no password: the page is readable from
// the box itself; its buttons need a session from a one-time login link
// (LoginLink, `dockd login-link` on the control socket).
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
	// AllowedHosts are the host names (or addresses) browsers may use to
	// reach the page, beside any IP address literal, "localhost" and the
	// listen address's host. A request whose Host header names anything
	// else is refused (DNS rebinding defence). Ports are not compared.
	AllowedHosts []string
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
// Run or Serve it on TCP, ServeLocal it on the control socket. Its
// handlers are safe for concurrent use.
type Server struct {
	cfg   Config
	src   Source
	reg   *prometheus.Registry
	log   *slog.Logger
	hash  []byte // nil: no password
	tls   *tls.Config
	hosts hostPolicy
	now   func() time.Time

	fails backoff    // wrong passwords per client
	sess  sessions   // signed-in browsers
	links loginLinks // one-time sign-in links

	index     string // index.html with its placeholders
	loginPage string
	runCtx    atomic.Pointer[context.Context]
	publicURL atomic.Pointer[string] // scheme://host:port of the TCP listener
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
	s := &Server{cfg: cfg, src: src, reg: reg, log: log, now: time.Now}
	var err error
	if s.hosts, err = newHostPolicy(cfg.AllowedHosts, cfg.Addr); err != nil {
		return nil, err
	}
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
	for _, ph := range []string{"{{SNAPSHOT}}", "{{CSRF}}", "{{USER}}"} {
		if !bytes.Contains(index, []byte(ph)) {
			return nil, fmt.Errorf("statuspage: embedded page lacks its %s placeholder", ph)
		}
	}
	s.index = string(index)
	login, err := assets.ReadFile("assets/login.html")
	if err != nil {
		return nil, fmt.Errorf("statuspage: reading embedded login page: %w", err)
	}
	s.loginPage = string(login)
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

// Serve is Run on a TCP listener the caller opened (it is closed on
// return). Every request passes the Host and Origin checks; state changes
// need a signed-in session with its CSRF token, the password, or a client
// certificate, wherever the caller is (see the package doc).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.runCtx.Store(&ctx)
	scheme := "http"
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
		scheme = "https"
	}
	base := scheme + "://" + publicHost(ln.Addr())
	s.publicURL.Store(&base)
	if !isLoopbackAddr(ln.Addr()) && !s.cfg.AuthReads {
		s.log.Warn("status page readable beyond this box without signing in (status.auth_reads is off)", "addr", ln.Addr().String())
	}
	s.log.Info("status page listening", "url", base+"/",
		"password", s.hash != nil, "client_certs", s.cfg.ClientCAFile != "")
	return s.serve(ctx, ln, s.handler(false), nil)
}

// ServeLocal serves the API on the control socket ln (a Unix socket the
// caller opened and protected with file permissions; it is closed on
// return) until ctx ends. Each connection is identified by the kernel
// (SO_PEERCRED): root, the station's own user and members of its group may
// use every endpoint, including POST /api/login-link; anyone else is
// refused. Browser requests (with an Origin header) are refused.
func (s *Server) ServeLocal(ctx context.Context, ln net.Listener) error {
	s.runCtx.CompareAndSwap(nil, &ctx)
	s.log.Info("control socket listening", "path", ln.Addr().String())
	return s.serve(ctx, ln, s.handler(true), withPeerCred)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, h http.Handler, connCtx func(context.Context, net.Conn) context.Context) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext:       connCtx,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
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

// publicHost is the host:port a login link names: the listen address, with
// 127.0.0.1 for a wildcard one (reached through an SSH tunnel).
func publicHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ta.IP == nil || ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return ta.String()
}

// LoginLink issues a one-time sign-in link for who (e.g.
// "local:alice(uid=1000)"): the returned path, "/login?token=…", signs a
// browser in once, within ten minutes, as who. Prefix it with the page's
// base URL (PublicURL).
func (s *Server) LoginLink(who string) string {
	return "/login?token=" + s.links.issue(who, s.now())
}

// PublicURL is scheme://host:port of the TCP listener once Serve runs
// (empty before).
func (s *Server) PublicURL() string {
	if p := s.publicURL.Load(); p != nil {
		return *p
	}
	return ""
}

// handler builds the routes: for the TCP listener (local false) or the
// control socket (local true).
func (s *Server) handler(local bool) http.Handler {
	mux := http.NewServeMux()
	read := func(h http.HandlerFunc) http.Handler {
		if !s.cfg.AuthReads || local {
			return h
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := s.readIdentity(w, r); ok {
				h(w, r)
			}
		})
	}
	mux.Handle("GET /{$}", read(s.handleIndex))
	mux.Handle("GET /app.js", read(s.handleAsset("assets/app.js", "text/javascript; charset=utf-8")))
	mux.Handle("GET /app.css", s.handleAsset("assets/app.css", "text/css; charset=utf-8"))
	mux.Handle("GET /api/status", read(s.handleStatus))
	mux.Handle("GET /api/events", read(s.handleEvents))
	if s.reg != nil {
		mux.Handle("GET /metrics", read(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), Registry: s.reg,
		}).ServeHTTP))
	}
	mux.Handle("POST /api/light-test", s.action(s.handleLightTest))
	mux.Handle("POST /api/direction", s.action(s.handleDirection))
	mux.Handle("POST /api/reload", s.action(s.handleReload))
	mux.Handle("POST /api/simulate", s.action(s.handleSimulate))
	if local {
		mux.Handle("POST /api/login-link", s.action(s.handleLoginLink))
		return securityHeaders(s.localGuard(mux))
	}
	mux.HandleFunc("GET /login", s.handleLoginPage)
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.Handle("POST /logout", s.action(s.handleLogout))
	return securityHeaders(s.guard(mux))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer a browser sends
		// "Origin: null" on the page's own POSTs, which the Origin check
		// must refuse.
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// refuse answers a refused request and logs why, in one line.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, err error) {
	s.log.Warn("status page: request refused", "refused", err.Error(), "method", r.Method, "path", r.URL.Path,
		"peer", r.RemoteAddr, "host", r.Host, "origin", r.Header.Get("Origin"), "status", code)
	httpError(w, code, err)
}

// guard checks every request on the TCP listener: its Host must name this
// station, an Origin must be this very origin, and a browser's
// Sec-Fetch-Site must not be cross-site (except a plain navigation to the
// page or the login, e.g. following a bookmark or a login link).
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hosts.allowed(r.Host) {
			s.refuse(w, r, http.StatusForbidden, errHostNotAllowed)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
			s.refuse(w, r, http.StatusForbidden, errCrossOrigin)
			return
		}
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
		default: // cross-site, same-site (another port or subdomain)
			nav := r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate" &&
				(r.URL.Path == "/" || r.URL.Path == "/login")
			if !nav {
				s.refuse(w, r, http.StatusForbidden, errCrossSite)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// localGuard checks every request on the control socket: the peer must be
// allowed, and no browser may be behind it.
func (s *Server) localGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
			s.refuse(w, r, http.StatusForbidden, errBrowserOnSock)
			return
		}
		pc, ok := r.Context().Value(peerCredKey{}).(peerCred)
		if !ok {
			pc.err = errors.New("no peer credentials on this connection")
		}
		if pc.err != nil || !localAllowed(pc) {
			s.log.Warn("status page: request refused", "refused", errLocalPeer.Error(), "method", r.Method, "path", r.URL.Path,
				"uid", pc.UID, "gid", pc.GID, "pid", pc.PID, "err", pc.err, "status", http.StatusForbidden)
			httpError(w, http.StatusForbidden, errLocalPeer)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// actionFunc handles an authenticated POST on behalf of a.
type actionFunc func(w http.ResponseWriter, r *http.Request, a Actor)

// action wraps a state-changing handler: the JSON content type (which a
// cross-site HTML form cannot send), then authentication (authAction).
func (s *Server) action(h actionFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
		if !strings.EqualFold(mt, "application/json") {
			s.refuse(w, r, http.StatusUnsupportedMediaType, errNotJSON)
			return
		}
		a, wait, err := s.authAction(r)
		if err != nil {
			code := http.StatusUnauthorized
			switch {
			case errors.Is(err, errBackoff):
				code = http.StatusTooManyRequests
				w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+0.999)))
			case errors.Is(err, errNoCSRF), errors.Is(err, errNoOrigin), errors.Is(err, errLocalPeer):
				code = http.StatusForbidden
			}
			s.refuse(w, r, code, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r, a)
	})
}

// authAction names who makes the state change r asks for:
//
//   - on the control socket, the kernel's peer (localGuard admitted it);
//   - a session cookie: the session's principal, when the request also
//     carries an Origin (the guard checked it is this origin) and the
//     session's CSRF token in X-CSRF-Token;
//   - HTTP basic auth with the technician password (per-client backoff);
//   - a verified client certificate, from a client that is not a browser
//     (no Origin); a browser with a certificate signs in by loading the
//     page, which gives it a session and its CSRF token.
//
// Nothing else, and nothing for being on loopback.
func (s *Server) authAction(r *http.Request) (Actor, time.Duration, error) {
	if pc, ok := r.Context().Value(peerCredKey{}).(peerCred); ok {
		if pc.err != nil || !localAllowed(pc) {
			return Actor{}, 0, errLocalPeer
		}
		return Actor{Who: LocalName(pc.UID), Via: ViaCLI}, 0, nil
	}
	origin := r.Header.Get("Origin")
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ss, ok := s.sess.get(c.Value, s.now()); ok {
			if origin == "" {
				return Actor{}, 0, errNoOrigin
			}
			tok := r.Header.Get(csrfHeader)
			if subtle.ConstantTimeCompare([]byte(tok), []byte(ss.csrf)) != 1 {
				return Actor{}, 0, errNoCSRF
			}
			return Actor{Who: ss.who, Via: ViaPage}, 0, nil
		}
	}
	if user, pass, ok := r.BasicAuth(); ok {
		who, wait, err := s.passwordLogin(r, user, pass)
		if err != nil {
			return Actor{}, wait, err
		}
		return Actor{Who: who, Via: ViaAPI}, 0, nil
	}
	if cn, ok := certName(r); ok {
		if origin != "" {
			return Actor{}, 0, errNoCSRF
		}
		return Actor{Who: cn, Via: ViaAPI}, 0, nil
	}
	return Actor{}, 0, errSignIn
}

func certName(r *http.Request) (string, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return "cert:" + r.TLS.VerifiedChains[0][0].Subject.CommonName, true
	}
	return "", false
}

// readIdentity admits a read when Config.AuthReads asks for sign-in: a
// session, the password or a client certificate. It answers the request
// itself when it returns false.
func (s *Server) readIdentity(w http.ResponseWriter, r *http.Request) (string, bool) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ss, ok := s.sess.get(c.Value, s.now()); ok {
			return ss.who, true
		}
	}
	if cn, ok := certName(r); ok {
		return cn, true
	}
	if user, pass, ok := r.BasicAuth(); ok {
		who, wait, err := s.passwordLogin(r, user, pass)
		if err == nil {
			return who, true
		}
		if errors.Is(err, errBackoff) {
			w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+0.999)))
			s.refuse(w, r, http.StatusTooManyRequests, err)
			return "", false
		}
		s.refuse(w, r, http.StatusUnauthorized, err)
		return "", false
	}
	if r.URL.Path == "/" {
		http.Redirect(w, r, "login", http.StatusSeeOther)
		return "", false
	}
	s.refuse(w, r, http.StatusUnauthorized, errSignIn)
	return "", false
}

// setSession signs the browser in as who.
func (s *Server) setSession(w http.ResponseWriter, r *http.Request, who string) session {
	id, ss := s.sess.create(who, s.now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: int(sessionMaxAge.Seconds())})
	s.log.Info("status page: signed in", "who", who, "peer", r.RemoteAddr)
	return *ss
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	snap, err := json.Marshal(s.src.Snapshot()) // escapes <, > and &: safe inside <script>
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encoding status: %w", err))
		return
	}
	var who, csrf string
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ss, ok := s.sess.get(c.Value, s.now()); ok {
			who, csrf = ss.who, ss.csrf
		}
	}
	if who == "" {
		if cn, ok := certName(r); ok { // a certificate signs the browser in
			ss := s.setSession(w, r, cn)
			who, csrf = ss.who, ss.csrf
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	strings.NewReplacer("{{SNAPSHOT}}", string(snap), "{{CSRF}}", html.EscapeString(csrf),
		"{{USER}}", html.EscapeString(who)).WriteString(w, s.index)
}

// handleLoginPage redeems a one-time link (?token=…) into a session, or
// shows the password form.
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if tok := r.URL.Query().Get("token"); tok != "" {
		who, ok := s.links.redeem(tok, s.now())
		if !ok {
			s.refuse(w, r, http.StatusForbidden, errBadLoginLink)
			return
		}
		s.setSession(w, r, who)
		http.Redirect(w, r, "./", http.StatusSeeOther)
		return
	}
	s.writeLogin(w, http.StatusOK, "")
}

func (s *Server) writeLogin(w http.ResponseWriter, code int, msg string) {
	form := "hidden"
	note := "No password is set for this page. On the station run <code>dockd login-link</code> and open the link it prints."
	if s.hash != nil {
		form, note = "", "Or run <code>dockd login-link</code> on the station and open the link it prints."
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	strings.NewReplacer("{{USER}}", html.EscapeString(s.cfg.User), "{{MSG}}", html.EscapeString(msg),
		"{{FORM}}", form, "{{NOTE}}", note).WriteString(w, s.loginPage)
}

// handleLogin signs a browser in with the technician password (the login
// form). The guard has checked Host and any Origin; a browser always sends
// one on a POST, so a POST without one is refused here.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") == "" {
		s.refuse(w, r, http.StatusForbidden, errNoOrigin)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("reading the login form: %w", err))
		return
	}
	who, wait, err := s.passwordLogin(r, r.PostForm.Get("user"), r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBackoff):
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+0.999)))
		s.log.Warn("status page: request refused", "refused", err.Error(), "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr, "status", http.StatusTooManyRequests)
		s.writeLogin(w, http.StatusTooManyRequests, fmt.Sprintf("Too many wrong passwords: wait %d s.", int(wait.Seconds()+0.999)))
	case err != nil:
		s.log.Warn("status page: request refused", "refused", err.Error(), "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr, "status", http.StatusUnauthorized)
		s.writeLogin(w, http.StatusUnauthorized, "Wrong user name or password.")
	default:
		s.setSession(w, r, who)
		http.Redirect(w, r, "./", http.StatusSeeOther)
	}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, a Actor) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sess.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	s.log.Info("status page: signed out", "who", a.Who)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// handleLoginLink (control socket only) issues a one-time sign-in link for
// the local user asking.
func (s *Server) handleLoginLink(w http.ResponseWriter, r *http.Request, a Actor) {
	path := s.LoginLink(a.Who)
	s.log.Info("status page: login link issued", "who", a.Who, "via", a.Via)
	writeJSON(w, http.StatusOK, map[string]any{"url": s.PublicURL() + path, "path": path, "for": a.Who,
		"expires_s": int(loginLinkMaxAge.Seconds())})
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

func (s *Server) actionCtx() (context.Context, context.CancelFunc) {
	base := context.Background()
	if p := s.runCtx.Load(); p != nil {
		base = *p
	}
	return context.WithTimeout(base, actionTimeout)
}

func (s *Server) handleLightTest(w http.ResponseWriter, r *http.Request, a Actor) {
	s.log.Info("status page action", "action", "light_test", "who", a.Who, "via", a.Via, "peer", r.RemoteAddr)
	// The test runs to its end even if the phone navigates away.
	ctx, cancel := s.actionCtx()
	defer cancel()
	start := time.Now()
	if err := s.src.LightTest(ctx, a); err != nil {
		s.log.Error("status page action failed", "action", "light_test", "who", a.Who, "err", err)
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("lamp test: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "by": a.Who, "took_s": time.Since(start).Seconds()})
}

// DirectionRequest is the body of POST /api/direction.
type DirectionRequest struct {
	Direction dock.Direction `json:"direction"`
}

func (s *Server) handleDirection(w http.ResponseWriter, r *http.Request, a Actor) {
	var req DirectionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("reading direction request: %w", err))
		return
	}
	if !req.Direction.Valid() {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("direction %q: want receiving or shipping", req.Direction))
		return
	}
	old := s.src.Snapshot().Direction
	if err := s.src.SetDirection(req.Direction, a); err != nil {
		s.log.Error("status page action failed", "action", "set_direction", "who", a.Who, "to", req.Direction, "err", err)
		httpError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("status page action", "action", "set_direction", "who", a.Who, "via", a.Via, "peer", r.RemoteAddr, "from", old, "to", req.Direction)
	writeJSON(w, http.StatusOK, map[string]any{"direction": req.Direction, "previous": old, "by": a.Who})
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request, a Actor) {
	if err := s.src.ReloadConfig(a); err != nil {
		s.log.Error("status page action failed", "action", "reload_config", "who", a.Who, "err", err)
		httpError(w, http.StatusConflict, fmt.Errorf("reload: %w", err))
		return
	}
	s.log.Info("status page action", "action", "reload_config", "who", a.Who, "via", a.Via, "peer", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "by": a.Who, "direction": s.src.Snapshot().Direction})
}

// SimulateRequest is the body of POST /api/simulate: one scan as a reader
// would deliver it. Data starting with "epc:" is an RFID EPC in hex (as if
// Tag were true). Reader is ignored: a simulated scan is always recorded
// under reader DefaultSimulate and marked simulated, whatever the caller
// names (it is accepted only so older clients keep working).
type SimulateRequest struct {
	Reader string `json:"reader,omitempty"`
	Data   string `json:"data"`
	Tag    bool   `json:"tag,omitempty"`
}

func (s *Server) handleSimulate(w http.ResponseWriter, r *http.Request, a Actor) {
	var req SimulateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("reading simulate request: %w", err))
		return
	}
	if req.Reader != "" && req.Reader != DefaultSimulate {
		s.log.Warn("status page: simulate names a reader; recorded as reader simulate instead", "asked", req.Reader, "who", a.Who)
	}
	data := req.Data
	if len(data) > 4 && strings.EqualFold(data[:4], "epc:") {
		data, req.Tag = data[4:], true
	}
	if data == "" {
		s.refuse(w, r, http.StatusBadRequest, errors.New("simulate: empty scan"))
		return
	}
	ctx, cancel := s.actionCtx()
	defer cancel()
	ev, err := s.src.Inject(ctx, []byte(data), req.Tag, a)
	s.log.Info("status page action", "action", "simulate", "who", a.Who, "via", a.Via, "peer", r.RemoteAddr,
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
