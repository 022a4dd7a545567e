package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

// The daemon speaks systemd's notify protocol on a real unixgram socket:
// READY=1 once the station runs, WATCHDOG=1 keep-alives answered by the
// pipeline's own loop, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	importSample(t, dir)
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	pty := testkit.NewPTY(t)
	cfg := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfg, []byte(stationConfig(dir, pty.Path(), "", "virtual")), 0o600)
	p := startProcBin(t, dockdBinary(t), cfg, "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=300000")

	seen := map[string]int{}
	wait := func(what string, n int) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for seen[what] < n {
			select {
			case m := <-msgs:
				for _, line := range strings.Split(m, "\n") {
					k, _, _ := strings.Cut(line, "=")
					if k != "" {
						seen[line]++
						seen[k+"="]++
					}
				}
			case <-deadline:
				t.Fatalf("waited for %d × %q; saw %v", n, what, seen)
			}
		}
	}
	wait("READY=1", 1)
	wait("WATCHDOG=1", 3) // 100 ms apart at WATCHDOG_USEC=300ms
	p.cmd.Process.Signal(syscall.SIGTERM)
	wait("STOPPING=1", 1)
	<-p.done
}
