package testkit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dockd/dockd/internal/pgproc"
)

// PostgresBinDir is where Debian's postgresql-15 package installs the
// server programs (initdb, postgres).
const PostgresBinDir = pgproc.DefaultBinDir

// EnsurePostgres returns the directory of the PostgreSQL 15 server
// programs, failing t (not skipping) when they are not installed
// (scripts/ensure-postgres.sh installs them; `make test-deps` runs it).
func EnsurePostgres(t testing.TB) string {
	t.Helper()
	dir, err := pgproc.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Postgres is one private PostgreSQL 15 server owned by a test (see
// package pgproc: initdb in its own temp dir, a free 127.0.0.1 port, trust
// authentication for "postgres", fsync on, run as the postgres user when
// the test runs as root). The port and data survive Stop/Kill and Start.
// DSN, Addr and Running are safe for concurrent use; the other methods
// must be called from the test goroutine (they may call t.Fatal).
type Postgres struct {
	t   testing.TB
	srv *pgproc.Server
}

// StartPostgres makes and starts a server for t, returns once it accepts
// queries, and stops it and removes its files at t.Cleanup (dumping the
// log tail if the test failed).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	EnsurePostgres(t)
	srv, err := pgproc.Start()
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	p := &Postgres{t: t, srv: srv}
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLog()
		}
		if srv.Stop() {
			t.Logf("postgres: no exit after SIGINT; killed")
		}
		srv.Remove()
	})
	return p
}

// DSN is a pgx/libpq connection URL for the superuser on database
// "postgres": "postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable".
func (p *Postgres) DSN() string { return p.srv.DSN() }

// Addr is "127.0.0.1:PORT".
func (p *Postgres) Addr() string { return p.srv.Addr() }

// Running reports whether the postmaster process is alive.
func (p *Postgres) Running() bool { return p.srv.Running() }

// Output is the tail of the server's log since its last start.
func (p *Postgres) Output() string { return p.srv.Output() }

// Stop shuts the server down the "fast" way and waits (SIGKILL to the
// process group after 15 s). A no-op when it is not running.
func (p *Postgres) Stop() {
	if p.srv.Stop() {
		p.t.Logf("postgres: no exit after SIGINT; killed")
	}
}

// Kill ends the postmaster and every backend with SIGKILL at once, as a
// power loss would; what was committed (fsync on) survives, and Start runs
// crash recovery.
func (p *Postgres) Kill() { p.srv.Kill() }

// Start restarts a stopped or killed server on the same port and data
// directory, returning once it accepts queries (after crash recovery).
func (p *Postgres) Start() {
	p.t.Helper()
	if err := p.srv.Restart(); err != nil {
		p.dumpLog()
		p.t.Fatalf("postgres: %v", err)
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
	n, err := p.queryInt(sql, args...)
	if err != nil {
		p.t.Fatalf("postgres: %s: %v", sql, err)
	}
	return n
}

func (p *Postgres) queryInt(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		return 0, errors.Join(errors.New("connect"), err)
	}
	defer c.Close(context.Background())
	var n int64
	err = c.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

func (p *Postgres) dumpLog() {
	lines := strings.Split(p.Output(), "\n")
	if len(lines) > mosqLogTailLines {
		lines = lines[len(lines)-mosqLogTailLines:]
	}
	p.t.Logf("postgres log tail (%s):\n%s", p.Addr(), strings.Join(lines, "\n"))
}
