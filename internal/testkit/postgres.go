package testkit

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dockd/dockd/internal/serverproc"
)

// PostgresBinDir is where Debian's postgresql-15 package installs the
// server programs (initdb, postgres, pg_ctl).
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// systemPostgresPort is the machine's own PostgreSQL; the harness never uses it.
const systemPostgresPort = 5432

const (
	pgStartTimeout = 60 * time.Second // crash recovery after a kill -9 included
	pgStopTimeout  = 15 * time.Second
)

// EnsurePostgres returns the directory of the PostgreSQL 15 server
// programs, failing t (not skipping) when they are not installed
// (scripts/ensure-postgres.sh installs them; `make test-deps` runs it).
func EnsurePostgres(t testing.TB) string {
	t.Helper()
	for _, dir := range []string{PostgresBinDir, os.Getenv("DOCKD_PG_BINDIR")} {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "postgres")); err == nil && !fi.IsDir() {
			return dir
		}
	}
	t.Fatalf("PostgreSQL server not found in %s: run scripts/ensure-postgres.sh (apt-get install postgresql-15) or set DOCKD_PG_BINDIR", PostgresBinDir)
	return ""
}

// Postgres is one private PostgreSQL 15 server owned by a test: a fresh
// cluster made by initdb in its own temp dir, listening on a free
// 127.0.0.1 port (and a Unix socket in that dir only), trust
// authentication for the superuser "postgres", fsync on (so a kill -9
// tests what a power loss would keep), and its log kept in memory (Output; dumped when the test fails). When the
// test runs as root (CI does) initdb runs through runuser and the server
// process with the credentials of the "postgres" system user, because
// PostgreSQL refuses to run as root. The port and data survive Stop/Kill
// and Start. DSN, Port and Running are safe for concurrent use; the other
// methods must be called from the test goroutine.
type Postgres struct {
	t    testing.TB
	bin  string
	dir  string // owned by the server user; removed at cleanup
	data string
	cred *syscall.Credential // nil when not root

	mu   sync.Mutex
	port int
	proc *serverproc.Proc
}

// StartPostgres makes and starts a server for t, returns once it accepts
// queries, and stops it and removes its files at t.Cleanup (dumping the
// log tail if the test failed).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := &Postgres{t: t, bin: EnsurePostgres(t)}
	// Not t.TempDir: its parents are 0700 root-owned, which the postgres
	// user cannot traverse.
	dir, err := os.MkdirTemp("", "dockd-pg-")
	if err != nil {
		t.Fatalf("postgres: temp dir: %v", err)
	}
	p.dir, p.data = dir, filepath.Join(dir, "data")
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLog()
		}
		p.Stop()
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("postgres: running as root needs the system user postgres (made by the postgresql-15 package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("postgres: chown %s: %v", dir, err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("postgres: chmod %s: %v", dir, err)
	}
	initdb := []string{filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	var cmd *exec.Cmd
	if p.cred != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, initdb...)...)
	} else {
		cmd = exec.Command(initdb[0], initdb[1:]...)
	}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postgres: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < mosqBindRetries; attempt++ {
		if p.port, err = serverproc.FreePort(systemPostgresPort, systemBrokerPort, systemNATSPort); err != nil {
			t.Fatalf("postgres: pick a free port: %v", err)
		}
		if lastErr = p.start(); lastErr == nil || !errors.Is(lastErr, serverproc.ErrExited) {
			break
		}
	}
	if lastErr != nil {
		p.dumpLog()
		t.Fatalf("postgres: start on port %d: %v", p.port, lastErr)
	}
	return p
}

// DSN is a pgx/libpq connection URL for the superuser on database
// "postgres": "postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable".
func (p *Postgres) DSN() string { return p.DSNFor("postgres") }

// DSNFor is DSN for another database on the same server.
func (p *Postgres) DSNFor(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr(), db)
}

// Addr is "127.0.0.1:PORT".
func (p *Postgres) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// Running reports whether the postmaster process is alive.
func (p *Postgres) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc.Running()
}

// Stop shuts the server down the "fast" way (SIGINT: roll back open
// transactions, checkpoint, exit) and waits; SIGKILL to the whole process
// group after 15 s. A no-op when it is not running.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.proc.Running() {
		return
	}
	_ = p.proc.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p.proc.Running() {
			time.Sleep(20 * time.Millisecond) // bounded by the timer below
		}
	}()
	select {
	case <-done:
	case <-time.After(pgStopTimeout):
		p.t.Logf("postgres: no exit %v after SIGINT; sending SIGKILL", pgStopTimeout)
	}
	p.proc.KillGroup() // reaps; also ends any backend that outlived the postmaster
}

// Kill ends the postmaster and every backend with SIGKILL at once, as a
// power loss would; what was committed (fsync on) survives, and Start runs
// crash recovery.
func (p *Postgres) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.proc.Running() {
		return
	}
	p.proc.KillGroup()
}

// Start restarts a stopped or killed server on the same port and data
// directory, returning once it accepts queries (after crash recovery).
func (p *Postgres) Start() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("postgres: Start while still running")
	}
	deadline := time.Now().Add(pgStartTimeout)
	for {
		err := p.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.dumpLog()
			p.t.Fatalf("postgres: restart on %s: %v", p.Addr(), err)
		}
		time.Sleep(200 * time.Millisecond) // port or shared memory still held; retry
	}
}

// SetReadOnly turns default_transaction_read_only on or off for the whole
// server (ALTER SYSTEM plus a configuration reload): every later
// transaction of every session, open ones included, is read-only, so
// writes fail with SQLSTATE 25006 while reads work — what a hot standby or
// an operator's emergency switch looks like to a client.
func (p *Postgres) SetReadOnly(on bool) {
	p.t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	p.Exec("ALTER SYSTEM SET default_transaction_read_only = " + v)
	p.Exec("SELECT pg_reload_conf()")
}

// Exec runs one SQL statement as the superuser, failing t on error.
func (p *Postgres) Exec(sql string, args ...any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		p.t.Fatalf("postgres: connect: %v", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		p.t.Fatalf("postgres: %s: %v", sql, err)
	}
}

// QueryInt runs a query returning one integer (e.g. a count), failing t on
// error.
func (p *Postgres) QueryInt(sql string, args ...any) int64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		p.t.Fatalf("postgres: connect: %v", err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		p.t.Fatalf("postgres: %s: %v", sql, err)
	}
	return n
}

func (p *Postgres) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	cmd := exec.Command(filepath.Join(p.bin, "postgres"),
		"-D", p.data,
		"-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
		"-c", "max_connections=50",
		"-c", "shared_buffers=32MB",
	)
	cmd.Dir = p.dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	// The server logs to stderr, which serverproc keeps (Output).
	proc, err := serverproc.LaunchCmd(cmd, addr, pgStartTimeout)
	if err != nil {
		return err
	}
	p.proc = proc
	// The port accepts during crash recovery too; wait for a query to work.
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
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

func (p *Postgres) dumpLog() {
	lines := strings.Split(p.Output(), "\n")
	if len(lines) > mosqLogTailLines {
		lines = lines[len(lines)-mosqLogTailLines:]
	}
	p.t.Logf("postgres log tail (%s):\n%s", p.Addr(), strings.Join(lines, "\n"))
}

// Output is the tail of the server's log (it logs to stderr) since its
// last start.
func (p *Postgres) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return ""
	}
	return strings.TrimSpace(p.proc.Output())
}
