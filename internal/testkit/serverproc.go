package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serverProc is one server process a test owns (a broker): launched in its
// own process group, reaped by a goroutine, signalled by the harness. It is
// not safe for concurrent use; the owning type's mutex guards it.
type serverProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// errServerExited: the process ended before its port accepted connections
// (typically the port was taken, and a retry on another port or after a
// pause will do).
var errServerExited = errors.New("server exited during start-up")

// launchServer starts bin with args in dir and returns once addr accepts TCP
// connections, within timeout. An early exit returns an error wrapping
// errServerExited with the process's output.
func launchServer(bin string, args []string, dir, addr string, timeout time.Duration) (*serverProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Own process group, so a ^C to `go test` does not race the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s %s: %w", bin, strings.Join(args, " "), err)
	}
	p := &serverProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s: %w (%s): %s", bin, errServerExited, cmd.ProcessState, strings.TrimSpace(out.String()))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("port %s did not accept within %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // bounded poll until the listener is up
	}
}

// running reports whether the process is alive (it may be stopped by
// SIGSTOP). A nil serverProc is not running.
func (p *serverProc) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process.
func (p *serverProc) signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// terminate ends the process with SIGTERM and waits for it, falling back to
// SIGKILL after timeout (logged on t as name's).
func (p *serverProc) terminate(t testing.TB, name string, timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Logf("%s: no exit %v after SIGTERM; sending SIGKILL", name, timeout)
		p.kill()
	}
}

// kill ends the process with SIGKILL and waits until it is reaped.
func (p *serverProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// logTail writes the last lines of a server's log file to t.
func logTail(t testing.TB, name, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s log %s: %v", name, path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > mosqLogTailLines {
		lines = lines[len(lines)-mosqLogTailLines:]
	}
	t.Logf("%s log tail (%s):\n%s", name, path, strings.Join(lines, "\n"))
}
