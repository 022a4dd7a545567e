package collector

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Error kinds Baseline returns.
var (
	// ErrUnknownStation: no event of the station was ever stored, so there
	// is nothing to anchor a baseline to.
	ErrUnknownStation = errors.New("collector: station never seen")
	// ErrBaselineAhead: the baseline would cover sequence numbers above the
	// highest one stored for the station, i.e. events it may still send.
	ErrBaselineAhead = errors.New("collector: baseline above the highest stored sequence number")
)

// Baseline marks a station's sequence numbers 1..upto as released without
// their events: the station forgot them before it delivered by receipt —
// typically it ran with mqtt.delivery: broker, or before this collector
// existed — so no receipt could ever pass the hole they leave. The station's
// high-water mark moves past them; events among them that are stored stay
// stored, and one that arrives later is still stored. The change is
// recorded in station_baselines with actor and reason, in the same
// transaction, under the station's row lock (the one every collector
// takes). It is durable on return and idempotent: a baseline at or below
// the station's confirmed seq changes nothing but the record. It returns
// the station's confirmed seq afterwards. A running collector publishes
// the receipt with the next event or resend from the station.
func Baseline(ctx context.Context, db *pgxpool.Pool, station string, upto uint64, actor, reason string) (uint64, error) {
	if upto == 0 || reason == "" || actor == "" {
		return 0, fmt.Errorf("collector: baseline of %q: upto, actor and reason are required", station)
	}
	var confirmed uint64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var p Progress
		var cur, max int64
		err := tx.QueryRow(ctx, `SELECT upto, max_seq FROM stations WHERE station = $1 FOR UPDATE`, station).Scan(&cur, &max)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrUnknownStation, station)
		}
		if err != nil {
			return fmt.Errorf("lock station %q: %w", station, err)
		}
		p.Upto, p.Max = uint64(cur), uint64(max)
		if upto > p.Max {
			return fmt.Errorf("%w: %q: baseline %d, highest stored %d", ErrBaselineAhead, station, upto, p.Max)
		}
		rows, err := tx.Query(ctx, `SELECT lo, hi FROM station_holes WHERE station = $1 ORDER BY lo`, station)
		if err != nil {
			return fmt.Errorf("read holes of %q: %w", station, err)
		}
		for rows.Next() {
			var lo, hi int64
			if err := rows.Scan(&lo, &hi); err != nil {
				rows.Close()
				return fmt.Errorf("read holes of %q: %w", station, err)
			}
			p.Holes = append(p.Holes, Range{uint64(lo), uint64(hi)})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read holes of %q: %w", station, err)
		}
		before := p.Upto
		p.Fill(1, upto)
		confirmed = p.Upto
		if _, err := tx.Exec(ctx, `INSERT INTO station_baselines (station, upto, confirmed_before, confirmed_after, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6)`, station, int64(upto), int64(before), int64(p.Upto), validText(actor), validText(reason)); err != nil {
			return fmt.Errorf("record baseline of %q: %w", station, err)
		}
		if p.Upto == before {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE stations SET upto = $2 WHERE station = $1`, station, int64(p.Upto)); err != nil {
			return fmt.Errorf("update progress of %q: %w", station, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM station_holes WHERE station = $1`, station); err != nil {
			return fmt.Errorf("update holes of %q: %w", station, err)
		}
		for _, h := range p.Holes {
			if _, err := tx.Exec(ctx, `INSERT INTO station_holes (station, lo, hi) VALUES ($1, $2, $3)`, station, int64(h.Lo), int64(h.Hi)); err != nil {
				return fmt.Errorf("update holes of %q: %w", station, err)
			}
		}
		return nil
	})
	return confirmed, err
}
