// Package serverproc runs a local server process (a broker) on behalf of
// tests and tools that need a real one: started in its own process group,
// ready once its port accepts connections, stopped cleanly or killed, and
// always reaped. It knows nothing about the server; callers write its
// config and choose its ports (FreePort).
package serverproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrExited: the process ended before its port accepted connections,
// typically because the port was taken; a retry on another port, or after a
// pause on the same one, usually succeeds.
var ErrExited = errors.New("server exited during start-up")

// Proc is one running server process. It is not safe for concurrent use;
// its owner serialises calls.
type Proc struct {
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{} // closed when cmd has been waited for
}

// outputCap bounds how much of a server's output a Proc keeps (the tail).
const outputCap = 256 << 10

// tailBuffer keeps the last outputCap bytes written to it; safe for
// concurrent use (exec copies the output on its own goroutine).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - outputCap; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Launch starts bin with args in dir and returns once addr accepts TCP
// connections, within timeout. An early exit returns an error wrapping
// ErrExited with the process's output; a timeout kills the process.
func Launch(bin string, args []string, dir, addr string, timeout time.Duration) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	return LaunchCmd(cmd, addr, timeout)
}

// LaunchCmd is Launch for a command the caller prepared (for example with
// SysProcAttr.Credential set, to run a server that refuses to run as root
// under another user). It must not have been started; its Stdout and
// Stderr are replaced, and Setpgid is set in its SysProcAttr so the server
// and any children it forks form their own process group (see KillGroup).
func LaunchCmd(cmd *exec.Cmd, addr string, timeout time.Duration) (*Proc, error) {
	bin := cmd.Path
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so a ^C to the parent does not race our stop.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s %s: %w", bin, strings.Join(cmd.Args[1:], " "), err)
	}
	p := &Proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s on %s: %w (%s): %s", bin, addr, ErrExited, cmd.ProcessState, strings.TrimSpace(out.String()))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("%s: port %s did not accept within %v: %w", bin, addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // bounded poll until the listener is up
	}
}

// Running reports whether the process is alive (it may be stopped by
// SIGSTOP). A nil Proc is not running.
func (p *Proc) Running() bool {
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

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Terminate ends the process with SIGTERM and waits for it; after timeout
// it sends SIGKILL and reports killed. A process that already exited is
// only reaped.
func (p *Proc) Terminate(timeout time.Duration) (killed bool) {
	if !p.Running() {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(timeout):
		p.Kill()
		return true
	}
}

// Kill ends the process with SIGKILL and waits until it is reaped.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// KillGroup sends SIGKILL to the process's whole process group (a server
// that forks workers, such as PostgreSQL, dies at once with all of them, as
// on a power loss) and waits until the process itself is reaped. Children
// that were already orphaned are killed too but not waited for (they are
// not ours to reap).
func (p *Proc) KillGroup() {
	if p.Running() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.exited
	// The leader is gone; its children may outlive it by a moment. Send the
	// group one more SIGKILL so none is left holding the server's resources.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// Output is the tail (up to 256 KiB) of what the process wrote to stdout
// and stderr so far. Safe for concurrent use.
func (p *Proc) Output() string { return p.out.String() }

// Pid is the process id (also the process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// FreePort asks the kernel for an unused 127.0.0.1 port that is none of
// avoid (e.g. the machine's own broker ports). Another process may take it
// before the caller binds it; Launch's ErrExited then says to try again.
func FreePort(avoid ...int) (int, error) {
	for i := 0; i < 10; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen 127.0.0.1:0: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("close probe listener on %d: %w", port, err)
		}
		taken := false
		for _, a := range avoid {
			taken = taken || port == a
		}
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("the kernel keeps handing out ports in %v", avoid)
}
