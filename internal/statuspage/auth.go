package statuspage

// Who may do what, and how a request proves it: the Host and Origin checks
// every request passes, browser sessions with their CSRF token, the
// technician password with its per-client backoff, one-time login links,
// and the local control socket's kernel-reported peer.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Actor says who asked for a state change and through which door of the
// station: it goes into the audit record (the operator event) and the log.
type Actor struct {
	// Who names the principal: "user:NAME" (the technician password),
	// "cert:CN" (a client certificate), "local:NAME(uid=N)" (a process on
	// the box, from the kernel's peer credentials).
	Who string
	// Via is how the request came: ViaPage (a signed-in browser), ViaAPI
	// (an HTTP client with its own credentials), ViaCLI (the local control
	// socket: dockd simulate, dockd light test).
	Via string
}

// Ways an action reaches the station through this package (Actor.Via).
const (
	ViaPage = "page"
	ViaAPI  = "api"
	ViaCLI  = "cli"
)

// Limits of the sign-in machinery.
const (
	sessionCookie   = "dockd_session"
	csrfHeader      = "X-CSRF-Token"
	sessionMaxAge   = 12 * time.Hour
	sessionIdle     = 2 * time.Hour
	maxSessions     = 256
	loginLinkMaxAge = 10 * time.Minute
	maxLoginLinks   = 64

	// Backoff after wrong passwords from one client (see backoff).
	freeFailures  = 3
	backoffBase   = time.Second
	backoffMax    = 5 * time.Minute
	backoffForget = 15 * time.Minute
	maxClients    = 4096
)

// Refusal reasons: each refused request is logged once with one of these
// (key "refused") and answered with its text.
var (
	errHostNotAllowed = errors.New("Host is not one of this station's names (status.allowed_hosts): possible DNS rebinding")
	errCrossOrigin    = errors.New("cross-origin request refused")
	errCrossSite      = errors.New("cross-site request refused (Sec-Fetch-Site)")
	errNoOrigin       = errors.New("a browser session's state change must carry an Origin header")
	errNoCSRF         = errors.New("missing or wrong CSRF token (X-CSRF-Token)")
	errSignIn         = errors.New("sign in first: a state change needs a session, a password, a client certificate or the local control socket")
	errWrongPassword  = errors.New("wrong user name or password")
	errBackoff        = errors.New("too many wrong passwords from this client: wait before the next try")
	errNotJSON        = errors.New("actions take Content-Type: application/json")
	errLocalPeer      = errors.New("this local user may not use the control socket (root, the station's user or its group only)")
	errBrowserOnSock  = errors.New("browser requests are refused on the control socket")
	errBadLoginLink   = errors.New("login link unknown, used or expired: ask for a new one (dockd login-link)")
)

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// hostPolicy decides which Host headers the server answers. A name can be
// made to point anywhere (DNS rebinding), an address literal cannot: any
// IP literal and "localhost" are accepted, names only when configured.
type hostPolicy struct {
	names map[string]bool // lower-case host names without port
}

func newHostPolicy(allowed []string, listen string) (hostPolicy, error) {
	p := hostPolicy{names: map[string]bool{}}
	add := func(h string) error {
		h = strings.ToLower(strings.TrimSpace(h))
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.Trim(h, "[]")
		if h == "" || strings.ContainsAny(h, "/ @*") {
			return fmt.Errorf("%w: allowed host %q: want a host name or address", ErrConfig, h)
		}
		p.names[h] = true
		return nil
	}
	for _, h := range allowed {
		if err := add(h); err != nil {
			return p, err
		}
	}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if err := add(h); err != nil {
			return p, err
		}
	}
	return p, nil
}

// allowed reports whether host (a Host header, with or without port) names
// this station.
func (p hostPolicy) allowed(host string) bool {
	if host == "" {
		return false
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	} else if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		// A bare IPv6 literal without brackets or port is not a valid Host.
		if net.ParseIP(host) == nil {
			return false
		}
	}
	h = strings.ToLower(strings.Trim(h, "[]"))
	if net.ParseIP(h) != nil || h == "localhost" {
		return true
	}
	return p.names[h]
}

// sameOrigin reports whether an Origin header names the origin the request
// was sent to (scheme and Host, which the host policy already accepted).
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

// session is a signed-in browser: its cookie id is the key, csrf must come
// back on every state change.
type session struct {
	who, csrf       string
	created, seenAt time.Time
}

// sessions holds the signed-in browsers in memory (a restart signs
// everyone out). Safe for concurrent use.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func (ss *sessions) create(who string, now time.Time) (id string, s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*session{}
	}
	ss.expireLocked(now)
	for len(ss.m) >= maxSessions { // evict the least recently used
		var oldest string
		for k, v := range ss.m {
			if oldest == "" || v.seenAt.Before(ss.m[oldest].seenAt) {
				oldest = k
			}
		}
		delete(ss.m, oldest)
	}
	id = randomToken()
	s = &session{who: who, csrf: randomToken(), created: now, seenAt: now}
	ss.m[sessionKey(id)] = s
	return id, s
}

// sessionKey stores a hash of the cookie, so the map's key comparison
// leaks nothing about a valid id through timing.
func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return string(h[:])
}

func (ss *sessions) expireLocked(now time.Time) {
	for k, v := range ss.m {
		if now.Sub(v.created) > sessionMaxAge || now.Sub(v.seenAt) > sessionIdle {
			delete(ss.m, k)
		}
	}
}

// get returns a copy of the live session for id and marks it used.
func (ss *sessions) get(id string, now time.Time) (session, bool) {
	if id == "" {
		return session{}, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[sessionKey(id)]
	if !ok {
		return session{}, false
	}
	if now.Sub(s.created) > sessionMaxAge || now.Sub(s.seenAt) > sessionIdle {
		delete(ss.m, sessionKey(id))
		return session{}, false
	}
	s.seenAt = now
	return *s, true
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sessionKey(id))
}

// loginLinks are one-time sign-in tokens handed out to a local user on the
// control socket (dockd login-link) or printed by the demo.
type loginLinks struct {
	mu sync.Mutex
	m  map[string]loginLink
}

type loginLink struct {
	who     string
	expires time.Time
}

func (l *loginLinks) issue(who string, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]loginLink{}
	}
	for k, v := range l.m {
		if now.After(v.expires) {
			delete(l.m, k)
		}
	}
	for len(l.m) >= maxLoginLinks {
		for k := range l.m { // any: all are equally fresh enough
			delete(l.m, k)
			break
		}
	}
	tok := randomToken()
	l.m[sessionKey(tok)] = loginLink{who: who, expires: now.Add(loginLinkMaxAge)}
	return tok
}

// redeem uses tok up: it works once, within loginLinkMaxAge.
func (l *loginLinks) redeem(tok string, now time.Time) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sessionKey(tok)
	v, ok := l.m[k]
	delete(l.m, k)
	if !ok || now.After(v.expires) {
		return "", false
	}
	return v.who, true
}

// backoff slows down password guessing per client. A client is what one
// person cannot cheaply change: the peer address off the box (an IPv6
// client by its /64), and on the box the local user owning the
// connecting socket (a loopback address is free to choose, a uid is not;
// see localPeerUID). After freeFailures wrong passwords, each further try
// from that client waits backoffBase·2^k (at most backoffMax) after the
// previous failure; a try inside the wait is refused without looking at
// the password, so a guesser learns nothing from it. A correct password
// from any other client is never delayed, and a correct one from this
// client after its wait signs in and clears the count. Waits are per
// client on purpose: a correct-password bypass inside the wait would let
// a guesser tell right from wrong by timing, and one shared counter would
// let anyone lock the technician out.
type backoff struct {
	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

func delayAfter(n int) time.Duration {
	if n < freeFailures {
		return 0
	}
	k := n - freeFailures
	if k > 20 {
		return backoffMax
	}
	return min(backoffBase<<k, backoffMax)
}

// wait returns how long client must still wait before its next try.
func (b *backoff) wait(client string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.m[client]
	if !ok {
		return 0
	}
	if now.Sub(f.last) > backoffForget {
		delete(b.m, client)
		return 0
	}
	if until := f.last.Add(delayAfter(f.n)); until.After(now) {
		return until.Sub(now)
	}
	return 0
}

func (b *backoff) fail(client string, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*failures{}
	}
	if len(b.m) >= maxClients {
		for k, v := range b.m {
			if now.Sub(v.last) > backoffForget {
				delete(b.m, k)
			}
		}
		for len(b.m) >= maxClients {
			for k := range b.m {
				delete(b.m, k)
				break
			}
		}
	}
	f := b.m[client]
	if f == nil {
		f = &failures{}
		b.m[client] = f
	}
	f.n++
	f.last = now
	return f.n
}

func (b *backoff) succeed(client string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, client)
}

// checkPassword compares user and password with the configured ones in
// constant time.
func (s *Server) checkPassword(user, pass string) bool {
	if s.hash == nil {
		return false
	}
	got := sha256.Sum256([]byte(pass))
	wantUser := sha256.Sum256([]byte(s.cfg.User))
	gotUser := sha256.Sum256([]byte(user))
	return subtle.ConstantTimeCompare(got[:], s.hash)&subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) == 1
}

// passwordLogin checks a password attempt from r's client under the
// backoff. It returns the principal, or errBackoff (with the wait),
// errWrongPassword, or errSignIn when no password is configured.
func (s *Server) passwordLogin(r *http.Request, user, pass string) (string, time.Duration, error) {
	if s.hash == nil {
		return "", 0, errSignIn
	}
	client := s.clientKey(r)
	now := s.now()
	if w := s.fails.wait(client, now); w > 0 {
		return "", w, errBackoff
	}
	if !s.checkPassword(user, pass) {
		n := s.fails.fail(client, now)
		return "", delayAfter(n), fmt.Errorf("%w for user %q (failure %d from %s)", errWrongPassword, user, n, client)
	}
	s.fails.succeed(client)
	return "user:" + user, 0, nil
}

// clientKey names r's client for the backoff (see backoff).
func (s *Server) clientKey(r *http.Request) string {
	host := peerHost(r.RemoteAddr)
	ip := net.ParseIP(host)
	if ip == nil {
		return "addr:" + host
	}
	if ip.IsLoopback() {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if uid, ok := localPeerUID(r.RemoteAddr, la.String()); ok {
				return fmt.Sprintf("uid:%d", uid)
			}
		}
		return "loopback"
	}
	if ip.To4() == nil {
		return "ip6:" + ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return "ip:" + ip.String()
}

func peerHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
