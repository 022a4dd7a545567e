package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	central "github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/pgproc"
)

// centralRun is central's real collector writing into PostgreSQL for one
// fleet run: a private server (pgproc) unless a database URL was given.
type centralRun struct {
	pg     *pgproc.Server // nil with an external database
	pool   *pgxpool.Pool
	c      *central.Collector
	cancel context.CancelFunc
	done   chan error
}

func startCentral(ctx context.Context, db, brokerURL string, log *slog.Logger) (*centralRun, error) {
	r := &centralRun{done: make(chan error, 1)}
	if db == "" {
		pg, err := pgproc.Start()
		if err != nil {
			return nil, fmt.Errorf("private PostgreSQL: %w", err)
		}
		r.pg, db = pg, pg.DSN()
		log.Info("private PostgreSQL started", "dsn", db)
	}
	c, err := central.New(central.Config{Brokers: []string{brokerURL}, DB: db, Name: "fleet", Logger: log})
	if err != nil {
		r.stop()
		return nil, err
	}
	r.c = c
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go func() { r.done <- c.Run(cctx) }()
	select {
	case <-c.Subscribed():
	case <-time.After(60 * time.Second):
		r.stop()
		return nil, errors.New("collector not subscribed within 60 s")
	case <-ctx.Done():
		r.stop()
		return nil, ctx.Err()
	}
	if r.pool, err = pgxpool.New(ctx, db); err != nil {
		r.stop()
		return nil, fmt.Errorf("database URL: %w", err)
	}
	return r, nil
}

func (r *centralRun) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.pg != nil {
		r.pg.Remove()
	}
}

// stored returns, per station, the set of seqs PostgreSQL holds.
func (r *centralRun) stored(ctx context.Context) (map[string]map[uint64]bool, error) {
	rows, err := r.pool.Query(ctx, `SELECT station, seq FROM events WHERE kind = 'custody'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[uint64]bool{}
	for rows.Next() {
		var st string
		var seq int64
		if err := rows.Scan(&st, &seq); err != nil {
			return nil, err
		}
		if out[st] == nil {
			out[st] = map[uint64]bool{}
		}
		out[st][uint64(seq)] = true
	}
	return out, rows.Err()
}

// missing counts appended events not yet in PostgreSQL (all of them when
// it cannot be read).
func (r *centralRun) missing(ctx context.Context, sims []*sim) uint64 {
	have, err := r.stored(ctx)
	var n uint64
	for _, s := range sims {
		for _, seq := range s.appended {
			if err != nil || !have[s.id][seq] {
				n++
			}
		}
	}
	return n
}

// report fills the PostgreSQL half of rep.
func (r *centralRun) report(ctx context.Context, sims []*sim, rep *Report) error {
	have, err := r.stored(ctx)
	if err != nil {
		return err
	}
	var rows int64
	for _, m := range have {
		rows += int64(len(m))
	}
	var offered int64
	for _, s := range sims {
		for _, seq := range s.appended {
			if have[s.id][seq] {
				rep.Stored++
			} else {
				rep.StoreLost++
			}
		}
		offered += int64(len(s.appended))
	}
	rep.Unseen = rows - int64(rep.Stored)
	// Scan → row in PostgreSQL: the event's own time to received_at, the
	// start of the transaction that wrote the row (it commits within the
	// same batch, before the receipt goes out).
	var p50, p99 float64
	if err := r.pool.QueryRow(ctx, `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - time)), 0),
  coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - time)), 0)
FROM events WHERE kind = 'custody'`).Scan(&p50, &p99); err != nil {
		return fmt.Errorf("scan → row latency: %w", err)
	}
	rep.RowP50, rep.RowP99 = time.Duration(p50*float64(time.Second)), time.Duration(p99*float64(time.Second))
	st := r.c.Stats()
	rep.DuplicatesSuppressed = st.Duplicates.Load()
	rep.CollectorInserted = st.Inserted.Load()
	return nil
}
