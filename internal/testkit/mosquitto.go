package testkit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/serverproc"
)

// MosquittoPath is where the Debian package mosquitto installs the broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// systemBrokerPort is the machine's own broker; the harness never uses it.
const systemBrokerPort = 1883

// How long the harness waits for the broker to accept connections or to exit.
const (
	mosqStartTimeout = 10 * time.Second
	mosqStopTimeout  = 5 * time.Second
	mosqBindRetries  = 5
	mosqLogTailLines = 60
)

// EnsureMosquitto returns the path of the mosquitto binary. It fails the test
// (it does not skip) when the broker is not installed: the Makefile installs
// it before tests run.
func EnsureMosquitto(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat(MosquittoPath); err == nil && !fi.IsDir() {
		return MosquittoPath
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	t.Fatalf("mosquitto broker not found at %s or in PATH: install the Debian package mosquitto (apt-get install mosquitto)", MosquittoPath)
	return ""
}

// MosqOption adjusts the broker a test starts.
type MosqOption func(*mosqConfig)

type mosqConfig struct {
	extra []string
	tls   *MosqTLS
	auth  *mosqAuth
}

type mosqAuth struct{ passwordFile, aclFile string }

// MosqTLS is a TLS listener the harness adds beside the plain one, on its
// own free 127.0.0.1 port (see Mosquitto.TLSURL).
type MosqTLS struct {
	CAFile, CertFile, KeyFile string // PEM files (see PKI)
	// RequireCertificate makes it mutual TLS: clients must present a
	// certificate signed by CAFile.
	RequireCertificate bool
	// UseIdentityAsUsername makes the client certificate's CN the MQTT
	// username (for ACLs); the password file is then not consulted on
	// this listener.
	UseIdentityAsUsername bool
}

// WithMosqTLS adds a TLS listener configured by l.
func WithMosqTLS(l MosqTLS) MosqOption {
	return func(c *mosqConfig) { c.tls = &l }
}

// WithMosqAuth turns anonymous access off (on every listener) and uses the
// given mosquitto password file and ACL file; either may be empty.
func WithMosqAuth(passwordFile, aclFile string) MosqOption {
	return func(c *mosqConfig) { c.auth = &mosqAuth{passwordFile: passwordFile, aclFile: aclFile} }
}

// WithMosqConfig appends raw lines to the generated mosquitto.conf (for
// example "max_inflight_messages 5"). The harness still owns the listener,
// persistence and logging lines.
func WithMosqConfig(lines ...string) MosqOption {
	return func(c *mosqConfig) { c.extra = append(c.extra, lines...) }
}

// Mosquitto is one real mosquitto process owned by a test, listening on a
// free 127.0.0.1 port with its own config, anonymous access, no persistence,
// no limit on messages queued for a slow subscriber, and a log file in the
// test's temp dir. The port stays the same across Stop/Kill and Start.
// Methods other than URL and Port must be called from the test goroutine
// (they may call t.Fatal); they are serialised by an internal mutex.
type Mosquitto struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	logPath string
	cfg     mosqConfig

	mu      sync.Mutex
	port    int
	tlsPort int // 0 without a TLS listener
	proc    *serverproc.Proc
	paused  bool
}

// StartMosquitto starts a broker for t and stops it at t.Cleanup. It picks a
// free loopback port (listen on 127.0.0.1:0, close, let mosquitto bind it),
// retrying with a new port if another process wins the race for it, and
// returns once the port accepts TCP connections. When the test fails the tail
// of the broker's log is written to the test log.
func StartMosquitto(t testing.TB, opts ...MosqOption) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: EnsureMosquitto(t), dir: t.TempDir()}
	for _, o := range opts {
		o(&m.cfg)
	}
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	m.logPath = filepath.Join(m.dir, "mosquitto.log")

	var lastErr error
	for attempt := 0; attempt < mosqBindRetries; attempt++ {
		port, err := serverproc.FreePort(systemBrokerPort)
		if err != nil {
			t.Fatalf("mosquitto: pick a free port: %v", err)
		}
		m.port = port
		if m.cfg.tls != nil {
			if m.tlsPort, err = serverproc.FreePort(systemBrokerPort); err != nil {
				t.Fatalf("mosquitto: pick a free TLS port: %v", err)
			}
		}
		if err := m.writeConfig(); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		if lastErr = m.start(); lastErr == nil {
			break
		}
		if !errors.Is(lastErr, serverproc.ErrExited) {
			break
		}
	}
	if lastErr != nil {
		m.dumpLog()
		t.Fatalf("mosquitto: start on 127.0.0.1:%d: %v", m.port, lastErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			m.dumpLog()
		}
		m.Stop()
	})
	return m
}

// URL is the broker address for MQTT clients, "tcp://127.0.0.1:PORT".
// Safe for concurrent use.
func (m *Mosquitto) URL() string {
	return "tcp://" + m.Addr()
}

// Addr is "127.0.0.1:PORT". Safe for concurrent use.
func (m *Mosquitto) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port))
}

// TLSURL is the TLS listener's address for MQTT clients,
// "ssl://127.0.0.1:PORT", or "" when the broker has none (WithMosqTLS).
// Safe for concurrent use.
func (m *Mosquitto) TLSURL() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tlsPort == 0 {
		return ""
	}
	return "ssl://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.tlsPort))
}

// LogPath is the broker's log file.
func (m *Mosquitto) LogPath() string { return m.logPath }

// Running reports whether the broker process is alive (it may be paused).
func (m *Mosquitto) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runningLocked()
}

func (m *Mosquitto) runningLocked() bool { return m.proc.Running() }

// Stop ends the broker with SIGTERM (a clean shutdown: mosquitto closes
// client connections without publishing their wills) and waits for it to
// exit, falling back to SIGKILL after 5 s. Stopping a stopped broker is a
// no-op.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return
	}
	m.resumeLocked() // a SIGSTOPped process would not act on SIGTERM
	if m.proc.Terminate(mosqStopTimeout) {
		m.t.Logf("mosquitto: no exit %v after SIGTERM; sent SIGKILL", mosqStopTimeout)
	}
}

// Kill ends the broker with SIGKILL, as a crash or power loss would: no
// state is saved and client sockets are reset by the kernel. It waits for
// the process to be reaped. Killing a stopped broker is a no-op.
func (m *Mosquitto) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return
	}
	m.proc.Kill()
	m.paused = false
}

// Start restarts a stopped or killed broker on the same port and returns
// once it accepts connections. The broker starts empty (no persistence): no
// sessions, subscriptions or retained messages survive a restart. It fails
// the test if the port cannot be bound again within a few seconds.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	if m.runningLocked() {
		m.mu.Unlock()
		m.t.Fatalf("mosquitto: Start on 127.0.0.1:%d while still running", m.port)
		return
	}
	m.mu.Unlock()
	deadline := time.Now().Add(mosqStartTimeout)
	for {
		err := m.start()
		if err == nil {
			return
		}
		if !errors.Is(err, serverproc.ErrExited) || time.Now().After(deadline) {
			m.dumpLog()
			m.t.Fatalf("mosquitto: restart on 127.0.0.1:%d: %v", m.port, err)
			return
		}
		time.Sleep(100 * time.Millisecond) // port still held (e.g. by a late close); retry
	}
}

// Pause freezes the broker with SIGSTOP. The kernel still completes TCP
// handshakes and buffers data, so clients see a peer that accepts
// connections and writes but never answers (no CONNACK, PUBACK or PINGRESP).
func (m *Mosquitto) Pause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() || m.paused {
		return
	}
	if err := m.proc.Signal(syscall.SIGSTOP); err != nil {
		m.t.Errorf("mosquitto: SIGSTOP: %v", err)
		return
	}
	m.paused = true
}

// Resume continues a paused broker with SIGCONT.
func (m *Mosquitto) Resume() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resumeLocked()
}

func (m *Mosquitto) resumeLocked() {
	if !m.paused || !m.runningLocked() {
		m.paused = false
		return
	}
	if err := m.proc.Signal(syscall.SIGCONT); err != nil {
		m.t.Errorf("mosquitto: SIGCONT: %v", err)
	}
	m.paused = false
}

// start launches the process and waits until the port accepts.
func (m *Mosquitto) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port))
	p, err := serverproc.Launch(m.bin, []string{"-c", m.conf}, m.dir, addr, mosqStartTimeout)
	if err != nil {
		return err
	}
	m.proc, m.paused = p, false
	return nil
}

func (m *Mosquitto) writeConfig() error {
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.port)
	if a := m.cfg.auth; a != nil {
		b.WriteString("allow_anonymous false\n")
		if a.passwordFile != "" {
			fmt.Fprintf(&b, "password_file %s\n", a.passwordFile)
		}
		if a.aclFile != "" {
			fmt.Fprintf(&b, "acl_file %s\n", a.aclFile)
		}
	} else {
		b.WriteString("allow_anonymous true\n")
	}
	b.WriteString("persistence false\n")
	// No per-client queue limit: a slow test subscriber must not have
	// messages dropped by the broker (the default limit is 1000).
	b.WriteString("max_queued_messages 0\n")
	fmt.Fprintf(&b, "log_dest file %s\n", m.logPath)
	for _, lt := range []string{"error", "warning", "notice", "information"} {
		fmt.Fprintf(&b, "log_type %s\n", lt)
	}
	b.WriteString("connection_messages true\n")
	b.WriteString("log_timestamp true\n")
	b.WriteString("log_timestamp_format %H:%M:%S\n")
	if os.Geteuid() == 0 {
		// As root mosquitto would switch to user "mosquitto", which cannot
		// write into the test's temp dir.
		name := "root"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		fmt.Fprintf(&b, "user %s\n", name)
	}
	for _, l := range m.cfg.extra {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if l := m.cfg.tls; l != nil { // last: listener options bind to the latest listener line
		fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.tlsPort)
		fmt.Fprintf(&b, "cafile %s\ncertfile %s\nkeyfile %s\n", l.CAFile, l.CertFile, l.KeyFile)
		fmt.Fprintf(&b, "require_certificate %t\n", l.RequireCertificate)
		fmt.Fprintf(&b, "use_identity_as_username %t\n", l.UseIdentityAsUsername)
	}
	if err := os.WriteFile(m.conf, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", m.conf, err)
	}
	return nil
}

func (m *Mosquitto) dumpLog() { logTail(m.t, "mosquitto", m.logPath) }
