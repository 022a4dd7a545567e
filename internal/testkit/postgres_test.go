package testkit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPostgresLifecycle: a private server answers on a free port (never
// 5432), keeps a committed row across a kill -9 of every server process and
// a clean stop, refuses writes while read-only and takes them again after.
func TestPostgresLifecycle(t *testing.T) {
	pg := StartPostgres(t)
	if strings.HasSuffix(pg.Addr(), ":5432") {
		t.Fatalf("harness uses the system port: %s", pg.Addr())
	}
	if got := pg.QueryInt("SELECT CASE WHEN current_setting('fsync') = 'on' THEN 1 ELSE 0 END"); got != 1 {
		t.Fatal("fsync is off")
	}
	pg.Exec("CREATE TABLE t (v int)")
	pg.Exec("INSERT INTO t VALUES (1)")
	pg.Kill()
	if pg.Running() {
		t.Fatal("running after Kill")
	}
	pg.Start()
	pg.Exec("INSERT INTO t VALUES (2)")
	pg.Stop()
	pg.Start()
	if n := pg.QueryInt("SELECT count(*) FROM t"); n != 2 {
		t.Fatalf("rows after kill -9 and restart: %d, want 2", n)
	}

	pg.SetReadOnly(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "INSERT INTO t VALUES (3)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("insert on a read-only server: %v, want SQLSTATE 25006", err)
	}
	pg.SetReadOnly(false)
	// The open session picks the reload up before its next statement.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err = c.Exec(ctx, "INSERT INTO t VALUES (3)"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("insert after read-only off: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
