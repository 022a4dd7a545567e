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
	"strings"
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

	// Cluster membership (NATSCluster); zero for a single server.
	name        string // server_name
	clusterPort int    // route listener
	routes      []int  // the other members' route ports
}

// StartNATS starts a nats-server for t, returns once its MQTT port accepts
// connections, and stops it at t.Cleanup (dumping its log tail if the test
// failed).
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := newNATS(t)
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

func newNATS(t testing.TB) *NATS {
	n := &NATS{t: t, bin: EnsureNATS(t), dir: t.TempDir()}
	n.conf = filepath.Join(n.dir, "nats.conf")
	n.logPath = filepath.Join(n.dir, "nats.log")
	var id [4]byte
	_, _ = rand.Read(id[:])
	n.name = "dockd-test-" + hex.EncodeToString(id[:])
	return n
}

// NATSCluster is a cluster of real nats-server processes on loopback, each
// with the MQTT interface and JetStream (clustered: MQTT sessions,
// retained messages and QoS 1 queues are replicated across the members),
// joined by routes to each other. Each member is a *NATS with its own
// ports, store and log; kill or restart one with its own methods. Members
// must be used from the test goroutine like a single NATS.
type NATSCluster struct {
	Nodes []*NATS
}

// StartNATSCluster starts size (≥ 2) clustered servers for t, returns once
// every member's MQTT port accepts connections and the JetStream cluster
// has a leader (so MQTT sessions can be made), and stops them at cleanup.
func StartNATSCluster(t testing.TB, size int) *NATSCluster {
	t.Helper()
	if size < 2 {
		t.Fatalf("nats cluster: size %d, want at least 2", size)
	}
	c := &NATSCluster{}
	avoid := []int{systemBrokerPort, systemNATSPort, 6222}
	taken := map[int]bool{}
	free := func() int {
		for {
			p, err := serverproc.FreePort(avoid...)
			if err != nil {
				t.Fatalf("nats cluster: pick a free port: %v", err)
			}
			if !taken[p] {
				taken[p] = true
				return p
			}
		}
	}
	for i := 0; i < size; i++ {
		n := newNATS(t)
		n.name = fmt.Sprintf("%s-n%d", n.name, i)
		n.port, n.mqttPort, n.clusterPort = free(), free(), free()
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		for _, o := range c.Nodes {
			if o != n {
				n.routes = append(n.routes, o.clusterPort)
			}
		}
		if err := n.writeConfig(); err != nil {
			t.Fatalf("nats cluster: %v", err)
		}
	}
	// A JetStream cluster needs a quorum before it serves MQTT: start the
	// members together.
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.start()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			if t.Failed() {
				n.dumpLog()
			}
			n.Stop()
		}
	})
	for i, err := range errs {
		if err != nil {
			c.Nodes[i].dumpLog()
			t.Fatalf("nats cluster: start member %d: %v", i, err)
		}
	}
	return c
}

// URLs are the members' MQTT addresses, in member order.
func (c *NATSCluster) URLs() []string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, n.URL())
	}
	return u
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
	conf := fmt.Sprintf(`server_name: %q
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
`, n.name, n.port, n.logPath, filepath.Join(n.dir, "jetstream"), n.mqttPort)
	if n.clusterPort != 0 {
		var routes []string
		for _, p := range n.routes {
			routes = append(routes, fmt.Sprintf("    nats-route://127.0.0.1:%d", p))
		}
		// Every member holds a replica of the MQTT streams (sessions,
		// retained, QoS 1 queues; capped at 3 by NATS), so losing one
		// member keeps a quorum. Without it NATS picks the replica count
		// from the members it sees at first use, which may be fewer.
		replicas := min(len(n.routes)+1, 3)
		conf = strings.Replace(conf, "mqtt {\n", fmt.Sprintf("mqtt {\n  stream_replicas: %d\n", replicas), 1)
		conf += fmt.Sprintf(`cluster {
  name: "dockd-test"
  listen: "127.0.0.1:%d"
  routes: [
%s
  ]
}
`, n.clusterPort, strings.Join(routes, "\n"))
	}
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", n.conf, err)
	}
	return nil
}

func (n *NATS) dumpLog() { logTail(n.t, "nats", n.logPath) }
