package testkit

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/serverproc"
)

// DeployedRoots are the directories a shipped mosquitto config names files
// under; StartDeployedMosquitto moves exactly these into the test's
// directory.
var DeployedRoots = []string{"/etc/mosquitto/", "/var/lib/mosquitto/"}

// Deployed is a broker running a shipped config file.
type Deployed struct {
	*Mosquitto
	// Root is the test directory standing in for / : a file the config
	// names as /etc/mosquitto/x is Root+"/etc/mosquitto/x".
	Root string
	// Ports maps each listener port of the shipped file to the free
	// loopback port it got.
	Ports map[int]int
}

// StartDeployedMosquitto runs mosquitto on conf, the text of a shipped
// config file, changed in two ways only: every path under DeployedRoots
// moves below a test directory (files gives, by deployed path, the content
// to place there: ACL, password file, certificates), and every "listener
// PORT" line gets a free port on 127.0.0.1. Every other line is used as
// shipped. The harness's own lines (a plain listener it waits on, its log
// file, the user to run as) come first, so the shipped settings override
// them where both set the same option. It fails the test when conf names a
// file outside DeployedRoots that files provides, or when files names a
// path conf does not mention.
func StartDeployedMosquitto(t testing.TB, conf string, files map[string][]byte) *Deployed {
	t.Helper()
	d := &Deployed{Root: t.TempDir(), Ports: map[int]int{}}
	used := map[string]bool{}
	var lines []string
	for _, l := range strings.Split(conf, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "listener" {
			shipped, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("deployed mosquitto: listener line %q", l)
			}
			port, err := serverproc.FreePort(systemBrokerPort)
			if err != nil {
				t.Fatalf("deployed mosquitto: free port: %v", err)
			}
			d.Ports[shipped] = port
			l = fmt.Sprintf("listener %d 127.0.0.1", port)
		}
		for _, root := range DeployedRoots {
			if i := strings.Index(l, root); i >= 0 {
				path := strings.Fields(l[i:])[0]
				used[path] = true
				l = strings.Replace(l, root, filepath.Join(d.Root, root)+"/", 1)
			}
		}
		lines = append(lines, l)
	}
	for path, content := range files {
		if !used[path] {
			t.Fatalf("deployed mosquitto: the config names no file %s", path)
		}
		local := filepath.Join(d.Root, path)
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for path := range used {
		if strings.HasSuffix(path, "/") {
			os.MkdirAll(filepath.Join(d.Root, path), 0o755)
		}
	}
	d.Mosquitto = StartMosquitto(t, WithMosqConfig(lines...))
	// The harness waited for its own listener; the shipped ones open next.
	for shipped, port := range d.Ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(mosqStartTimeout)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployed mosquitto: the shipped listener %d (on %s) does not accept: %v", shipped, addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return d
}

// PortURL is "ssl://127.0.0.1:P" for the listener shipped on port shipped.
func (d *Deployed) PortURL(shipped int) string {
	return "ssl://127.0.0.1:" + strconv.Itoa(d.Ports[shipped])
}
