package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/serverproc"
)

// NATSPath is where the Debian package nats-server installs the server.
const NATSPath = "/usr/sbin/nats-server"

// systemNATSPort is the machine's own NATS; the harness never uses it.
const systemNATSPort = 4222

const natsStartTimeout = 15 * time.Second

// EnsureNATS returns the path of the nats-server binary, failing t (not
// skipping) when it is not installed.
func EnsureNATS(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat(NATSPath); err == nil && !fi.IsDir() {
		return NATSPath
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	t.Fatalf("nats-server not found at %s or in PATH: install the Debian package nats-server", NATSPath)
	return ""
}

// NATS is one real nats-server process owned by a test with its MQTT
// interface enabled: a server name (MQTT requires one), JetStream with its
// store in the test's temp dir (MQTT sessions, QoS 1 and retained messages
// live in JetStream), the NATS client port and the MQTT port on free
// 127.0.0.1 ports, and a log file in the temp dir. Unlike the Mosquitto
// harness, the JetStream store survives Stop/Kill and Start, so retained
// messages and persistent sessions survive a restart. Ports stay the same
// across restarts. URL and Addr are safe for concurrent use; the other
// methods must be called from the test goroutine.
type NATS struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	logPath string

	mu       sync.Mutex
	port     int // NATS client port
	mqttPort int
	proc     *serverproc.Proc
}

// StartNATS starts a nats-server for t, returns once its MQTT port accepts
// connections, and stops it at t.Cleanup (dumping its log tail if the test
// failed).
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, bin: EnsureNATS(t), dir: t.TempDir()}
	n.conf = filepath.Join(n.dir, "nats.conf")
	n.logPath = filepath.Join(n.dir, "nats.log")
	var lastErr error
	for attempt := 0; attempt < mosqBindRetries; attempt++ {
		var err error
		if n.port, err = serverproc.FreePort(systemBrokerPort, systemNATSPort); err != nil {
			t.Fatalf("nats: pick a free port: %v", err)
		}
		if n.mqttPort, err = serverproc.FreePort(systemBrokerPort, systemNATSPort); err != nil {
			t.Fatalf("nats: pick a free MQTT port: %v", err)
		}
		if err := n.writeConfig(); err != nil {
			t.Fatalf("nats: %v", err)
		}
		if lastErr = n.start(); lastErr == nil || !errors.Is(lastErr, serverproc.ErrExited) {
			break
		}
	}
	if lastErr != nil {
		n.dumpLog()
		t.Fatalf("nats: start (client port %d, mqtt port %d): %v", n.port, n.mqttPort, lastErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			n.dumpLog()
		}
		n.Stop()
	})
	return n
}

// URL is the MQTT address, "tcp://127.0.0.1:PORT".
func (n *NATS) URL() string { return "tcp://" + n.Addr() }

// Addr is the MQTT listener, "127.0.0.1:PORT".
func (n *NATS) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.mqttPort))
}

// NATSURL is the NATS protocol address, "nats://127.0.0.1:PORT".
func (n *NATS) NATSURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// LogPath is the server's log file.
func (n *NATS) LogPath() string { return n.logPath }

// Running reports whether the server process is alive.
func (n *NATS) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *NATS) runningLocked() bool { return n.proc.Running() }

// Stop ends the server with SIGTERM and waits (SIGKILL after 5 s). A no-op
// when it is not running.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return
	}
	if n.proc.Terminate(mosqStopTimeout) {
		n.t.Logf("nats: no exit %v after SIGTERM; sent SIGKILL", mosqStopTimeout)
	}
}

// Kill ends the server with SIGKILL and waits for it to be reaped.
func (n *NATS) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return
	}
	n.proc.Kill()
}

// Start restarts a stopped or killed server on the same ports with the same
// JetStream store, failing t if it does not come up.
func (n *NATS) Start() {
	n.t.Helper()
	if n.Running() {
		n.t.Fatalf("nats: Start while still running")
	}
	deadline := time.Now().Add(natsStartTimeout)
	for {
		err := n.start()
		if err == nil {
			return
		}
		if !errors.Is(err, serverproc.ErrExited) || time.Now().After(deadline) {
			n.dumpLog()
			n.t.Fatalf("nats: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // port still held; retry
	}
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.mqttPort))
	p, err := serverproc.Launch(n.bin, []string{"-c", n.conf}, n.dir, addr, natsStartTimeout)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (n *NATS) writeConfig() error {
	var id [4]byte
	_, _ = rand.Read(id[:])
	conf := fmt.Sprintf(`server_name: "dockd-test-%s"
listen: "127.0.0.1:%d"
log_file: %q
logtime: true
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
mqtt {
  listen: "127.0.0.1:%d"
}
`, hex.EncodeToString(id[:]), n.port, n.logPath, filepath.Join(n.dir, "jetstream"), n.mqttPort)
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", n.conf, err)
	}
	return nil
}

func (n *NATS) dumpLog() { logTail(n.t, "nats", n.logPath) }
