package collector

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order, each once, recorded in
// schema_migrations. Never edit one that shipped: append a new one.
var migrations = []struct {
	version int
	name    string
	sql     string
}{
	{1, "events, stations, holes, dead letters", `
CREATE TABLE events (
  id          uuid PRIMARY KEY,
  station     text NOT NULL,
  seq         bigint NOT NULL,
  site        text NOT NULL,
  door        text NOT NULL,
  schema      text NOT NULL,
  kind        text NOT NULL,
  time        timestamptz NOT NULL,
  direction   text,
  verdict     text,
  reason      text,
  gtin        text,
  lot         text,
  serial      text,
  sscc        text,
  qty         integer,
  gap_from    bigint,
  gap_to      bigint,
  doc         jsonb,
  raw         bytea,
  collector   text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT events_station_seq UNIQUE (station, seq),
  CONSTRAINT events_has_payload CHECK (doc IS NOT NULL OR raw IS NOT NULL)
);
CREATE INDEX events_lot    ON events (lot, time)    WHERE lot IS NOT NULL;
CREATE INDEX events_serial ON events (serial, time) WHERE serial IS NOT NULL;
CREATE INDEX events_sscc   ON events (sscc, time)   WHERE sscc IS NOT NULL;
CREATE INDEX events_gtin   ON events (gtin, time)   WHERE gtin IS NOT NULL;
CREATE INDEX events_time   ON events (time);
CREATE INDEX events_site_door_time ON events (site, door, time);

CREATE TABLE stations (
  station    text PRIMARY KEY,
  site       text NOT NULL,
  door       text NOT NULL,
  upto       bigint NOT NULL DEFAULT 0,
  max_seq    bigint NOT NULL DEFAULT 0,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE station_holes (
  station text NOT NULL REFERENCES stations ON DELETE CASCADE,
  lo      bigint NOT NULL,
  hi      bigint NOT NULL,
  PRIMARY KEY (station, lo),
  CHECK (lo <= hi)
);

CREATE TABLE dead_letter (
  id          bigserial PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now(),
  collector   text NOT NULL,
  topic       text NOT NULL,
  reason      text NOT NULL,
  payload     bytea NOT NULL
);
CREATE INDEX dead_letter_received ON dead_letter (received_at);
`},
	{2, "station baselines", `
CREATE TABLE station_baselines (
  id               bigserial PRIMARY KEY,
  station          text NOT NULL REFERENCES stations ON DELETE CASCADE,
  upto             bigint NOT NULL,
  confirmed_before bigint NOT NULL,
  confirmed_after  bigint NOT NULL,
  actor            text NOT NULL,
  reason           text NOT NULL,
  at               timestamptz NOT NULL DEFAULT now()
);
`},
	// The FSMA 204 export and the EPCIS query read receiving and shipping
	// CTEs in (time, station, seq) order, by lot or by time range; these
	// partial indexes hold only those events, already in that order.
	{3, "CTE indexes for the FSMA 204 export", `
CREATE INDEX events_cte_lot  ON events (lot, time, station, seq)
  WHERE kind = 'custody' AND verdict IN ('accept', 'warn') AND lot IS NOT NULL;
CREATE INDEX events_cte_time ON events (time, station, seq)
  WHERE kind = 'custody' AND verdict IN ('accept', 'warn');
`},
}

// migrationLock is the advisory lock key collectors take while migrating,
// so several starting at once apply each migration exactly once.
const migrationLock = 0x646f636b64 // "dockd"

// Migrate brings the database schema up to date: it creates
// schema_migrations when missing and applies, each in its own transaction
// under an advisory lock, every migration not yet recorded there. It is
// safe to run from several collectors at once and a no-op when up to date.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock))
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	for _, m := range migrations {
		if m.version <= have {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: apply %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// SchemaVersion is the newest migration this build knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// ErrUnavailable wraps a database error that says nothing about the
// data: the server is down, unreachable, read-only, shutting down, out of
// disk, a table is missing, or the transaction lost a race. The same batch
// is retried later, unchanged, for as long as it takes: nothing is
// acknowledged or receipted meanwhile.
var ErrUnavailable = errors.New("database unavailable")

// classify returns err unchanged when the server refused the statements
// because of the data (SQLSTATE class 22, data exception, or 23, integrity
// constraint violation: one record is at fault and is set aside), and
// wrapped in ErrUnavailable for everything else.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code[:2] == "22" || pe.Code[:2] == "23") {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// item is one message in a batch: a parsed record, or a message to
// dead-letter (bad != ""), or one to acknowledge without storing (skip:
// another partition's).
type item struct {
	rec     Record
	topic   string
	payload []byte
	bad     string
	skip    bool
	probe   *Probe // a receipt probe: answered after the batch, never stored
	ack     func()
}

// stationReceipt is what a batch's commit lets the collector receipt.
type stationReceipt struct {
	Station, Site, Door string
	Upto                uint64
}

// batchResult counts what one committed batch did.
type batchResult struct {
	Inserted, Duplicates, DeadLetters int
	Receipts                          []stationReceipt
}

// writeBatch stores items in one transaction: new records are inserted,
// records already stored (same id, station and seq) are counted as
// duplicates, conflicting ones (an id or a (station, seq) stored with other
// values, a station arriving on another door's topic) and bad messages go
// to dead_letter, and each touched station's progress (upto, holes) is
// updated under its row lock. With rawOnly the payloads are stored as bytes
// only (the fallback for a record jsonb refuses). Errors are classified
// (ErrUnavailable or a data error); on any error nothing was committed.
func writeBatch(ctx context.Context, db *pgxpool.Pool, collector string, items []*item, rawOnly bool) (batchResult, error) {
	var res batchResult
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		res, err = writeTx(ctx, tx, collector, items, rawOnly)
		return err
	})
	if err != nil {
		return batchResult{}, classify(err)
	}
	return res, nil
}

type deadLetter struct {
	topic, reason string
	payload       []byte
}

type stationRow struct {
	site, door string
	prog       Progress
	touched    bool // a record of this station was stored or found duplicate
}

func writeTx(ctx context.Context, tx pgx.Tx, collector string, items []*item, rawOnly bool) (batchResult, error) {
	var res batchResult
	var dead []deadLetter
	var recs []*Record
	for _, it := range items {
		switch {
		case it.skip, it.probe != nil:
		case it.bad != "":
			dead = append(dead, deadLetter{it.topic, it.bad, it.payload})
		default:
			recs = append(recs, &it.rec)
		}
	}

	// Lock the stations, in name order (every collector does, so two never
	// wait on each other in a cycle), creating the rows of new ones.
	first := map[string]*Record{}
	var names []string
	for _, r := range recs {
		if _, ok := first[r.Station]; !ok {
			first[r.Station] = r
			names = append(names, r.Station)
		}
	}
	sort.Strings(names)
	stations := map[string]*stationRow{}
	if len(names) > 0 {
		sites, doors := make([]string, len(names)), make([]string, len(names))
		for i, n := range names {
			sites[i], doors[i] = first[n].Site, first[n].Door
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stations (station, site, door)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (station) DO NOTHING`, names, sites, doors); err != nil {
			return res, fmt.Errorf("register stations: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT station, site, door, upto, max_seq FROM stations
WHERE station = ANY($1::text[]) ORDER BY station FOR UPDATE`, names)
		if err != nil {
			return res, fmt.Errorf("lock stations: %w", err)
		}
		for rows.Next() {
			var name string
			var upto, max int64
			s := &stationRow{}
			if err := rows.Scan(&name, &s.site, &s.door, &upto, &max); err != nil {
				rows.Close()
				return res, fmt.Errorf("read stations: %w", err)
			}
			s.prog.Upto, s.prog.Max = uint64(upto), uint64(max)
			stations[name] = s
		}
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("read stations: %w", err)
		}
		rows, err = tx.Query(ctx, `SELECT station, lo, hi FROM station_holes WHERE station = ANY($1::text[]) ORDER BY station, lo`, names)
		if err != nil {
			return res, fmt.Errorf("read holes: %w", err)
		}
		for rows.Next() {
			var name string
			var lo, hi int64
			if err := rows.Scan(&name, &lo, &hi); err != nil {
				rows.Close()
				return res, fmt.Errorf("read holes: %w", err)
			}
			if s := stations[name]; s != nil {
				s.prog.Holes = append(s.prog.Holes, Range{uint64(lo), uint64(hi)})
			}
		}
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("read holes: %w", err)
		}
	}

	// Copies within the batch, and records arriving on another door's
	// topic, are settled before the insert.
	type key struct {
		station string
		seq     uint64
	}
	seenID := map[string]key{}
	seenKey := map[key]string{}
	var cand []*Record
	for _, r := range recs {
		s := stations[r.Station]
		k := key{r.Station, r.Seq}
		switch {
		case s == nil:
			return res, fmt.Errorf("station %q has no row after registering it", r.Station)
		case s.site != r.Site || s.door != r.Door:
			dead = append(dead, deadLetter{r.Topic, fmt.Sprintf("station %q is registered at %s/%s, not %s/%s", r.Station, s.site, s.door, r.Site, r.Door), r.Payload})
			continue
		}
		if got, ok := seenID[r.ID]; ok {
			if got == k {
				res.Duplicates++
				s.touched = true
				continue
			}
			dead = append(dead, deadLetter{r.Topic, fmt.Sprintf("id %s is already stored as station %q seq %d", r.ID, got.station, got.seq), r.Payload})
			continue
		}
		if id, ok := seenKey[k]; ok {
			dead = append(dead, deadLetter{r.Topic, fmt.Sprintf("station %q seq %d is already stored with id %s", r.Station, r.Seq, id), r.Payload})
			continue
		}
		seenID[r.ID], seenKey[k] = k, r.ID
		cand = append(cand, r)
	}

	// Insert every candidate; the server skips those whose id or (station,
	// seq) is stored already, and RETURNING says which went in. Only the
	// skipped ones (redeliveries, conflicts) are looked up afterwards, so
	// the common path is one statement.
	inserted := map[string]bool{}
	if len(cand) > 0 {
		n := len(cand)
		var (
			ids, sts, sites, doors, schemas, kinds            = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			seqs                                              = make([]int64, n)
			times                                             = make([]time.Time, n)
			dirs, verdicts, reasons, gtins, lots, sers, ssccs = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
			qtys                                              = make([]*int32, n)
			gfrom, gto                                        = make([]*int64, n), make([]*int64, n)
			docs                                              = make([]*string, n)
			raws                                              = make([][]byte, n)
			colls                                             = make([]string, n)
		)
		opt := func(s string) *string {
			if s == "" {
				return nil
			}
			return &s
		}
		for i, r := range cand {
			ids[i], sts[i], sites[i], doors[i], schemas[i], kinds[i] = r.ID, r.Station, r.Site, r.Door, r.Schema, r.Kind
			seqs[i], times[i], colls[i] = int64(r.Seq), r.Time, collector
			dirs[i], verdicts[i], reasons[i] = opt(r.Direction), opt(r.Decision), opt(r.Reason)
			gtins[i], lots[i], sers[i], ssccs[i] = opt(r.GTIN), opt(r.Lot), opt(r.Serial), opt(r.SSCC)
			if r.Qty > 0 {
				q := int32(r.Qty)
				qtys[i] = &q
			}
			if r.Kind == KindGap {
				f, t := int64(r.GapFrom), int64(r.GapTo)
				gfrom[i], gto[i] = &f, &t
			}
			if r.JSONB && !rawOnly {
				d := string(r.Payload)
				docs[i] = &d
			} else {
				raws[i] = r.Payload
			}
		}
		rows, err := tx.Query(ctx, `INSERT INTO events (id, station, seq, site, door, schema, kind, time, direction, verdict, reason,
  gtin, lot, serial, sscc, qty, gap_from, gap_to, doc, raw, collector)
SELECT u.id::uuid, u.station, u.seq, u.site, u.door, u.schema, u.kind, u.time, u.direction, u.verdict, u.reason,
  u.gtin, u.lot, u.serial, u.sscc, u.qty, u.gap_from, u.gap_to, u.doc::jsonb, u.raw, u.collector
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
  $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::int[], $17::bigint[],
  $18::bigint[], $19::text[], $20::bytea[], $21::text[])
  AS u(id, station, seq, site, door, schema, kind, time, direction, verdict, reason, gtin, lot, serial, sscc, qty,
       gap_from, gap_to, doc, raw, collector)
ON CONFLICT DO NOTHING
RETURNING id::text`,
			ids, sts, seqs, sites, doors, schemas, kinds, times, dirs, verdicts, reasons, gtins, lots, sers, ssccs, qtys, gfrom, gto, docs, raws, colls)
		if err != nil {
			return res, fmt.Errorf("insert %d events: %w", n, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return res, fmt.Errorf("insert %d events: %w", n, err)
			}
			inserted[id] = true
		}
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("insert %d events: %w", n, err)
		}
	}

	var rest []*Record
	for _, r := range cand {
		if inserted[r.ID] {
			res.Inserted++
			s := stations[r.Station]
			s.touched = true
			s.prog.Fill(r.Seq, r.Seq)
			if r.Kind == KindGap {
				s.prog.Fill(r.GapFrom, r.GapTo)
			}
		} else {
			rest = append(rest, r)
		}
	}
	if len(rest) > 0 {
		byID := map[string]key{}
		byKey := map[key]string{}
		ids := make([]string, len(rest))
		sts := make([]string, len(rest))
		seqs := make([]int64, len(rest))
		for i, r := range rest {
			ids[i], sts[i], seqs[i] = r.ID, r.Station, int64(r.Seq)
		}
		rows, err := tx.Query(ctx, `SELECT id::text, station, seq FROM events WHERE id = ANY($1::uuid[])
UNION
SELECT e.id::text, e.station, e.seq FROM unnest($2::text[], $3::bigint[]) AS u(station, seq)
  CROSS JOIN LATERAL (SELECT id, station, seq FROM events WHERE station = u.station AND seq = u.seq) AS e`, ids, sts, seqs)
		if err != nil {
			return res, fmt.Errorf("look up stored events: %w", err)
		}
		for rows.Next() {
			var id, st string
			var seq int64
			if err := rows.Scan(&id, &st, &seq); err != nil {
				rows.Close()
				return res, fmt.Errorf("look up stored events: %w", err)
			}
			k := key{st, uint64(seq)}
			byID[id], byKey[k] = k, id
		}
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("look up stored events: %w", err)
		}
		for _, r := range rest {
			k := key{r.Station, r.Seq}
			if got, ok := byID[r.ID]; ok {
				if got == k {
					res.Duplicates++
					stations[r.Station].touched = true
					continue
				}
				dead = append(dead, deadLetter{r.Topic, fmt.Sprintf("id %s is already stored as station %q seq %d", r.ID, got.station, got.seq), r.Payload})
				continue
			}
			if id, ok := byKey[k]; ok {
				dead = append(dead, deadLetter{r.Topic, fmt.Sprintf("station %q seq %d is already stored with id %s", r.Station, r.Seq, id), r.Payload})
				continue
			}
			// Skipped by the server, yet not found: a concurrent writer's
			// row we cannot see yet. Retry the batch.
			return res, fmt.Errorf("%w: event %s was neither inserted nor found stored", ErrUnavailable, r.ID)
		}
	}

	// Progress: stations, then their holes.
	if len(names) > 0 {
		var upd, hst []string
		var upto, maxs, hlo, hhi []int64
		for _, name := range names {
			s := stations[name]
			if !s.touched {
				continue
			}
			upd = append(upd, name)
			upto = append(upto, int64(s.prog.Upto))
			maxs = append(maxs, int64(s.prog.Max))
			for _, h := range s.prog.Holes {
				hst, hlo, hhi = append(hst, name), append(hlo, int64(h.Lo)), append(hhi, int64(h.Hi))
			}
			if s.prog.Upto > 0 {
				res.Receipts = append(res.Receipts, stationReceipt{Station: name, Site: s.site, Door: s.door, Upto: s.prog.Upto})
			}
		}
		if len(upd) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE stations s SET upto = u.upto, max_seq = u.max_seq, last_seen = now()
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(station, upto, max_seq) WHERE s.station = u.station`, upd, upto, maxs); err != nil {
				return res, fmt.Errorf("update station progress: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM station_holes WHERE station = ANY($1::text[])`, upd); err != nil {
				return res, fmt.Errorf("update station holes: %w", err)
			}
			if len(hst) > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO station_holes (station, lo, hi)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])`, hst, hlo, hhi); err != nil {
					return res, fmt.Errorf("update station holes: %w", err)
				}
			}
		}
	}

	if len(dead) > 0 {
		topics, reasons, payloads, colls := make([]string, len(dead)), make([]string, len(dead)), make([][]byte, len(dead)), make([]string, len(dead))
		for i, d := range dead {
			topics[i], reasons[i], payloads[i], colls[i] = validText(d.topic), validText(d.reason), d.payload, collector
			if payloads[i] == nil {
				payloads[i] = []byte{}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dead_letter (topic, reason, payload, collector)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])`, topics, reasons, payloads, colls); err != nil {
			return res, fmt.Errorf("insert %d dead letters: %w", len(dead), err)
		}
		res.DeadLetters = len(dead)
	}
	return res, nil
}

// validText makes s storable as PostgreSQL text: valid UTF-8 without NUL.
func validText(s string) string {
	b := []rune{}
	clean := true
	for _, r := range s {
		if r == 0 || r == 0xFFFD {
			clean = false
		}
	}
	if clean {
		return s
	}
	for _, r := range s {
		if r == 0 {
			r = 0xFFFD
		}
		b = append(b, r)
	}
	return string(b)
}

// probeAnswers returns, for each probe, the receipt to answer it with: the
// station's upto when the station is registered at the probe's site/door,
// else 0 (nothing of it can be confirmed there).
func probeAnswers(ctx context.Context, db *pgxpool.Pool, probes []*Probe) ([]stationReceipt, error) {
	names := make([]string, len(probes))
	for i, p := range probes {
		names[i] = p.Station
	}
	rows, err := db.Query(ctx, `SELECT station, site, door, upto FROM stations WHERE station = ANY($1::text[])`, names)
	if err != nil {
		return nil, classify(err)
	}
	type row struct {
		site, door string
		upto       int64
	}
	got := map[string]row{}
	for rows.Next() {
		var name string
		var r row
		if err := rows.Scan(&name, &r.site, &r.door, &r.upto); err != nil {
			rows.Close()
			return nil, classify(err)
		}
		got[name] = r
	}
	if err := rows.Err(); err != nil {
		return nil, classify(err)
	}
	out := make([]stationReceipt, len(probes))
	for i, p := range probes {
		out[i] = stationReceipt{Station: p.Station, Site: p.Site, Door: p.Door}
		if r, ok := got[p.Station]; ok && r.site == p.Site && r.door == p.Door {
			out[i].Upto = uint64(r.upto)
		}
	}
	return out, nil
}
