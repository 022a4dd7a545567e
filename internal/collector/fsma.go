package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/fsma204"
)

// ExportQuery selects the CTEs of an FSMA 204 export: a lot, a time
// range, or both. Lot matches the events' lot column (the allowlist's lot
// name, which is the label's AI 10 unless the list maps batch codes to
// it); GTIN narrows a lot to one product. From is inclusive, To exclusive;
// a zero time is open.
type ExportQuery struct {
	Lot, GTIN string
	From, To  time.Time
	// Location is the zone of the Event Date and Event Time columns
	// (nil: UTC).
	Location *time.Location
}

// ErrNoExportKey: an ExportQuery with neither a lot nor a time bound.
var ErrNoExportKey = errors.New("fsma204 export needs a lot, a time range or both")

// cteSQL is the selection of stored events that are receiving or shipping
// CTEs; fsma204.FromEvent decides the rest (simulated scans).
const cteSQL = `kind = 'custody' AND verdict IN ('accept', 'warn') AND direction IN ('receiving', 'shipping')`

// ExportFSMA204 streams the receiving and shipping CTEs q selects, oldest
// first (event time, then station and seq), into w, one row per event,
// and returns how many rows it wrote. Rows come from the database as it
// reads them; nothing holds the whole result. w is not closed.
func ExportFSMA204(ctx context.Context, db Querier, q ExportQuery, w fsma204.Writer) (int, error) {
	if q.Lot == "" && q.From.IsZero() && q.To.IsZero() {
		return 0, ErrNoExportKey
	}
	where := []string{cteSQL}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Lot != "" {
		where = append(where, "lot = "+arg(q.Lot))
	}
	if q.GTIN != "" {
		where = append(where, "gtin = "+arg(q.GTIN))
	}
	if !q.From.IsZero() {
		where = append(where, "time >= "+arg(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "time < "+arg(q.To))
	}
	sql := `SELECT id::text, station, seq, site, door, kind, direction, verdict, coalesce(reason, ''), time,
  coalesce(gtin, ''), coalesce(lot, ''), coalesce(serial, ''), coalesce(sscc, ''), coalesce(qty, 0),
  coalesce(doc->>'shipment', ''), coalesce(doc->>'batch', ''), coalesce(doc->>'simulated', '') = 'true',
  (doc->'ais')::text, raw
FROM events WHERE ` + strings.Join(where, " AND ") + `
ORDER BY time, station, seq`
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("fsma204 export %s: %w", q, err)
	}
	defer rows.Close()
	n := 0
	var row fsma204.Row
	for rows.Next() {
		var e fsma204.Event
		var seq int64
		var ais *string
		var raw []byte
		if err := rows.Scan(&e.ID, &e.Station, &seq, &e.Site, &e.Door, &e.Kind, &e.Direction, &e.Decision, &e.Reason, &e.Time,
			&e.GTIN, &e.Lot, &e.Serial, &e.SSCC, &e.Qty, &e.Shipment, &e.Batch, &e.Simulated, &ais, &raw); err != nil {
			return n, fmt.Errorf("fsma204 export %s: row %d: %w", q, n+1, err)
		}
		e.Seq = uint64(seq)
		switch {
		case raw != nil: // stored as bytes (jsonb refused it): read the members here
			var p struct {
				Shipment  string       `json:"shipment"`
				Batch     string       `json:"batch"`
				Simulated bool         `json:"simulated"`
				AIs       []fsma204.AI `json:"ais"`
			}
			if err := json.Unmarshal(raw, &p); err == nil {
				e.Shipment, e.Batch, e.Simulated, e.AIs = p.Shipment, p.Batch, p.Simulated, p.AIs
			}
		case ais != nil:
			if err := json.Unmarshal([]byte(*ais), &e.AIs); err != nil {
				e.AIs = nil // not the contract's shape: no measures, the count column still holds
			}
		}
		r, err := fsma204.FromEvent(e, q.Location)
		if errors.Is(err, fsma204.ErrNotCTE) {
			continue
		}
		if err != nil {
			return n, err
		}
		row = r
		if err := w.Write(&row); err != nil {
			return n, fmt.Errorf("fsma204 export %s: %w", q, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("fsma204 export %s: %w", q, err)
	}
	return n, nil
}

// String describes q for messages.
func (q ExportQuery) String() string {
	var parts []string
	if q.Lot != "" {
		parts = append(parts, "lot "+strconv.Quote(q.Lot))
	}
	if q.GTIN != "" {
		parts = append(parts, "gtin "+q.GTIN)
	}
	if !q.From.IsZero() {
		parts = append(parts, "from "+q.From.Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		parts = append(parts, "to "+q.To.Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// ParseExportTime reads a --from or --to bound: RFC 3339 (with offset),
// or a date YYYY-MM-DD meaning that day's midnight in loc (nil: UTC). For
// an upper bound (end true) a date means the end of that day, so
// --from 2026-03-01 --to 2026-03-01 is the whole day.
func ParseExportTime(s string, loc *time.Location, end bool) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-03-01T08:00:00Z) or a date (2026-03-01)", s)
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}
