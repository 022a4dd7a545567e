// Package pgproc runs a private, throw-away PostgreSQL server for tests
// and tools (the test harness in internal/testkit, cmd/fleet): a fresh
// cluster made by initdb in its own temp dir, listening on a free
// 127.0.0.1 port and a Unix socket in that dir only, trust authentication
// for the superuser "postgres", fsync on (so a kill -9 tests what a power
// loss would keep). When the caller is root, initdb runs through runuser
// and the server with the credentials of the "postgres" system user,
// because PostgreSQL refuses to run as root. The server logs to stderr,
// kept in memory (Output).
package pgproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dockd/dockd/internal/serverproc"
)

// DefaultBinDir is where Debian's postgresql-15 package installs the
// server programs (initdb, postgres).
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// ErrNotInstalled: no PostgreSQL server programs were found.
var ErrNotInstalled = errors.New("PostgreSQL server not installed")

const (
	startTimeout = 60 * time.Second // crash recovery after a kill -9 included
	stopTimeout  = 15 * time.Second
)

// avoidPorts are the machine's own services; a private server never takes them.
var avoidPorts = []int{5432, 1883, 4222}

// BinDir returns the directory holding initdb and postgres: $DOCKD_PG_BINDIR
// or DefaultBinDir.
func BinDir() (string, error) {
	for _, dir := range []string{os.Getenv("DOCKD_PG_BINDIR"), DefaultBinDir} {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "postgres")); err == nil && !fi.IsDir() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w in %s: run scripts/ensure-postgres.sh (apt-get install postgresql-15) or set DOCKD_PG_BINDIR", ErrNotInstalled, DefaultBinDir)
}

// Server is one private PostgreSQL server. Its port and data survive
// Stop/Kill and Start. Methods are safe for concurrent use.
type Server struct {
	bin, dir, data string
	cred           *syscall.Credential

	mu   sync.Mutex
	port int
	proc *serverproc.Proc
}

// Start makes a fresh cluster in a new temp dir and starts it, returning
// once it answers queries. Call Remove when done.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	// Not a test's TempDir: its parents are 0700 root-owned, which the
	// postgres user cannot traverse.
	dir, err := os.MkdirTemp("", "dockd-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgproc: temp dir: %w", err)
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	if err := s.init(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = serverproc.FreePort(avoidPorts...); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("pgproc: pick a free port: %w", err)
		}
		if lastErr = s.start(); lastErr == nil || !errors.Is(lastErr, serverproc.ErrExited) {
			break
		}
	}
	if lastErr != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pgproc: start on port %d: %w", s.port, lastErr)
	}
	return s, nil
}

func (s *Server) init() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgproc: running as root needs the system user postgres (made by the postgresql-15 package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return fmt.Errorf("pgproc: chown %s: %w", s.dir, err)
		}
	}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return fmt.Errorf("pgproc: chmod %s: %w", s.dir, err)
	}
	initdb := []string{filepath.Join(s.bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	var cmd *exec.Cmd
	if s.cred != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, initdb...)...)
	} else {
		cmd = exec.Command(initdb[0], initdb[1:]...)
	}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgproc: initdb: %w\n%s", err, out)
	}
	return nil
}

// DSN is a connection URL for the superuser on database "postgres".
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", s.Addr())
}

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Running reports whether the postmaster process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc.Running()
}

// Output is the tail of the server's log since its last start.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return ""
	}
	return s.proc.Output()
}

// Stop shuts the server down the "fast" way (SIGINT: roll back open
// transactions, checkpoint, exit) and waits; SIGKILL to the whole process
// group after 15 s. It reports whether it had to kill. A no-op when it is
// not running.
func (s *Server) Stop() (killed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.proc.Running() {
		return false
	}
	_ = s.proc.Signal(syscall.SIGINT)
	deadline := time.Now().Add(stopTimeout)
	for s.proc.Running() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // bounded by deadline
	}
	killed = s.proc.Running()
	s.proc.KillGroup() // reaps; also ends any backend that outlived the postmaster
	return killed
}

// Kill ends the postmaster and every backend with SIGKILL at once, as a
// power loss would; what was committed survives, and Restart runs crash
// recovery.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc.Running() {
		s.proc.KillGroup()
	}
}

// Restart starts a stopped or killed server on the same port and data,
// returning once it answers queries (after crash recovery), retrying for
// up to a minute while the port or shared memory is still held.
func (s *Server) Restart() error {
	if s.Running() {
		return errors.New("pgproc: Restart while running")
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgproc: restart on %s: %w", s.Addr(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Remove stops the server and deletes its files.
func (s *Server) Remove() {
	s.Stop()
	_ = os.RemoveAll(s.dir)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	cmd := exec.Command(filepath.Join(s.bin, "postgres"),
		"-D", s.data,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
		"-c", "max_connections=50",
		"-c", "shared_buffers=32MB",
	)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	proc, err := serverproc.LaunchCmd(cmd, addr, startTimeout)
	if err != nil {
		return err
	}
	s.proc = proc
	// The port accepts during crash recovery too; wait for a query to work.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var lastErr error
	for ctx.Err() == nil {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=5", addr))
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1")
			_ = c.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		lastErr = err
		if !proc.Running() {
			break
		}
		time.Sleep(50 * time.Millisecond) // bounded by ctx
	}
	proc.KillGroup()
	return fmt.Errorf("postgres on %s never answered a query: %w", addr, errors.Join(lastErr, serverproc.ErrExited))
}
