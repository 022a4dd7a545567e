//go:build linux

package testkit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ErrUnplugged is returned by PTY.Write and PTY.Read while the PTY is
// unplugged (between Unplug and the next Plug, or after the test ended).
var ErrUnplugged = errors.New("testkit: pty is unplugged")

// ptySeq makes the by-id names of PTYs in one test binary distinct.
var ptySeq atomic.Uint64

// PTY is a pseudo-terminal pair standing in for a USB serial scanner. The
// daemon under test opens the slave side through the stable path returned by
// Path (a symlink shaped like /dev/serial/by-id/...); the test plays the
// scanner on the master side with Write and Read.
//
// The slave is put in raw mode (no echo, no canonical line editing, no CR/LF
// translation, 8 data bits) as soon as it is created, before any byte can be
// written, so what Write sends is exactly what the daemon reads.
//
// The harness keeps its own descriptor on the slave open while plugged.
// Bytes written to the master while nobody else has the slave open are
// therefore queued by the kernel (up to its tty buffer limit, after which
// Write blocks) and delivered to whoever opens the port next. A real USB
// scanner behaves differently: what it sends while the port is closed is
// lost. Tests that care about "data only after open" should wait until the
// reader reports up before writing.
//
// All methods are safe for concurrent use. NewPTY, Plug and Unplug report
// setup failures with t.Fatalf and must therefore be called from the test's
// goroutine; Write, Read and Master may be called from any goroutine.
type PTY struct {
	t    testing.TB
	path string

	mu     sync.Mutex
	master *os.File // nil while unplugged
	slave  *os.File // harness-held slave descriptor; nil while unplugged
	tty    string   // current slave device, e.g. /dev/pts/3
	closed bool     // the test has ended; Plug is refused
}

// NewPTY creates a plugged PTY whose stable path lives in t.TempDir(). The
// pair is unplugged (closed, symlink removed) when the test ends.
func NewPTY(t testing.TB) *PTY {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "serial", "by-id")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testkit: creating by-id directory: %v", err)
	}
	name := fmt.Sprintf("usb-Dockd_Test_Scanner_%04d-if00-port0", ptySeq.Add(1))
	p := &PTY{t: t, path: filepath.Join(dir, name)}
	t.Cleanup(func() {
		p.Unplug()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
	})
	p.Plug()
	return p
}

// Path returns the stable symlink path of the port. It stays the same across
// Unplug and Plug; it does not exist while unplugged.
func (p *PTY) Path() string { return p.path }

// TTY returns the slave device the symlink currently points at (for example
// /dev/pts/3), or "" while unplugged.
func (p *PTY) TTY() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tty
}

// Plugged reports whether the PTY is currently plugged.
func (p *PTY) Plugged() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.master != nil
}

// Write sends b to the daemon, as the scanner would: all of b is written to
// the master or an error is returned. It blocks while the kernel's tty
// buffer is full (nobody reading the slave); Unplug unblocks it with an
// error. Writes from several goroutines are not interleaved within one call
// only if each is no larger than the kernel's atomic write size; callers that
// need ordering should write from one goroutine.
func (p *PTY) Write(b []byte) error {
	m := p.currentMaster()
	if m == nil {
		return ErrUnplugged
	}
	if _, err := m.Write(b); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("testkit: writing %d bytes to %s: %w", len(b), p.path, ErrUnplugged)
		}
		return fmt.Errorf("testkit: writing %d bytes to %s: %w", len(b), p.path, err)
	}
	return nil
}

// Read reads what the daemon wrote to the port (for protocols that talk both
// ways). It blocks until data arrives; Unplug unblocks it with an error.
func (p *PTY) Read(b []byte) (int, error) {
	m := p.currentMaster()
	if m == nil {
		return 0, ErrUnplugged
	}
	n, err := m.Read(b)
	if err != nil && errors.Is(err, os.ErrClosed) {
		return n, fmt.Errorf("testkit: reading from %s: %w", p.path, ErrUnplugged)
	}
	return n, err
}

// Master returns the master side of the current pair for direct use (for
// example with SetReadDeadline via a type assertion to *os.File). It is nil
// while unplugged and becomes stale (closed) at the next Unplug; prefer
// Write and Read, which always use the current pair.
func (p *PTY) Master() io.ReadWriter {
	m := p.currentMaster()
	if m == nil {
		return nil
	}
	return m
}

func (p *PTY) currentMaster() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.master
}

// Unplug behaves like yanking the scanner's USB cable: the symlink is
// removed and the master and the harness's slave descriptor are closed, so
// the kernel hangs up the slave and a daemon blocked reading it gets an
// error. Unplugging an unplugged PTY does nothing.
func (p *PTY) Unplug() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.master == nil {
		return
	}
	if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.t.Errorf("testkit: removing %s: %v", p.path, err)
	}
	if err := p.master.Close(); err != nil {
		p.t.Errorf("testkit: closing pty master: %v", err)
	}
	if err := p.slave.Close(); err != nil {
		p.t.Errorf("testkit: closing pty slave %s: %v", p.tty, err)
	}
	p.master, p.slave, p.tty = nil, nil, ""
}

// Plug behaves like plugging the scanner back in: a new pseudo-terminal pair
// is created, its slave made raw, and the stable path re-pointed at it
// atomically (the same by-id name comes back, usually for a different
// /dev/pts/N). Plugging a plugged PTY does nothing.
func (p *PTY) Plug() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.master != nil {
		return
	}
	if p.closed {
		p.t.Errorf("testkit: Plug after the test ended")
		return
	}
	master, slave, err := openRawPair()
	if err != nil {
		p.t.Fatalf("testkit: creating pty: %v", err)
	}
	tmp := p.path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(slave.Name(), tmp); err != nil {
		master.Close()
		slave.Close()
		p.t.Fatalf("testkit: linking %s to %s: %v", tmp, slave.Name(), err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		master.Close()
		slave.Close()
		p.t.Fatalf("testkit: renaming %s to %s: %v", tmp, p.path, err)
	}
	p.master, p.slave, p.tty = master, slave, slave.Name()
}

// openRawPair opens a pty pair, puts the slave in raw mode before anything
// can be written, and returns a master that is registered with Go's poller
// (so Close unblocks a pending Read or Write).
func openRawPair() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := makeRaw(s); err != nil {
		m.Close()
		s.Close()
		return nil, nil, fmt.Errorf("making %s raw: %w", s.Name(), err)
	}
	// pty.Open has called Fd() on the master, which put it in blocking mode
	// and out of the poller: a blocked Write would then survive Close.
	// Re-open the same file description non-blocking so os.NewFile
	// registers it with the poller.
	fd, err := unix.Dup(int(m.Fd()))
	if err != nil {
		m.Close()
		s.Close()
		return nil, nil, fmt.Errorf("duplicating pty master: %w", err)
	}
	m.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.Close()
		return nil, nil, fmt.Errorf("setting pty master non-blocking: %w", err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "/dev/ptmx"), s, nil
}

// makeRaw applies the cfmakeraw(3) settings to a terminal.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			opErr = err
			return
		}
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP |
			unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
		tio.Cc[unix.VMIN] = 1
		tio.Cc[unix.VTIME] = 0
		// TCSETSF: apply and discard anything already queued.
		opErr = unix.IoctlSetTermios(int(fd), unix.TCSETSF, tio)
	})
	if err != nil {
		return err
	}
	return opErr
}
