package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
)

// TraceQuery selects custody events by what was scanned. At least one of
// Lot, Serial and SSCC must be set; set fields must all match (GTIN
// narrows a serial or lot to one product).
type TraceQuery struct {
	Lot    string `json:"lot,omitempty"`
	Serial string `json:"serial,omitempty"`
	SSCC   string `json:"sscc,omitempty"`
	GTIN   string `json:"gtin,omitempty"`
	// Limit caps the rows returned (default and maximum 10000).
	Limit int `json:"-"`
}

// ErrNoTraceKey: a TraceQuery with none of lot, serial, sscc.
var ErrNoTraceKey = errors.New("trace needs a lot, a serial or an sscc")

// Crossing is one custody event in a trace: where it crossed (site, door,
// station), which way, when, and what was decided.
type Crossing struct {
	Time      time.Time `json:"time"`
	Site      string    `json:"site"`
	Door      string    `json:"door"`
	Station   string    `json:"station"`
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Direction string    `json:"direction"`
	Decision  string    `json:"decision"`
	Reason    string    `json:"reason"`
	GTIN      string    `json:"gtin,omitempty"`
	Lot       string    `json:"lot,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	SSCC      string    `json:"sscc,omitempty"`
	Qty       int64     `json:"qty,omitempty"`
}

// Querier is what Trace reads through (a *pgxpool.Pool, *pgx.Conn or Tx).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Trace returns every stored custody event matching q across every door,
// oldest first (by event time, then station and seq).
func Trace(ctx context.Context, db Querier, q TraceQuery) ([]Crossing, error) {
	if q.Lot == "" && q.Serial == "" && q.SSCC == "" {
		return nil, ErrNoTraceKey
	}
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 10000
	}
	rows, err := db.Query(ctx, `SELECT time, site, door, station, seq, id::text, coalesce(direction, ''), coalesce(verdict, ''),
  coalesce(reason, ''), coalesce(gtin, ''), coalesce(lot, ''), coalesce(serial, ''), coalesce(sscc, ''), coalesce(qty, 0)
FROM events
WHERE kind = 'custody'
  AND ($1 = '' OR lot = $1) AND ($2 = '' OR serial = $2) AND ($3 = '' OR sscc = $3) AND ($4 = '' OR gtin = $4)
ORDER BY time, station, seq
LIMIT $5`, q.Lot, q.Serial, q.SSCC, q.GTIN, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("trace %+v: %w", q, err)
	}
	out := []Crossing{}
	for rows.Next() {
		var c Crossing
		var seq, qty int64
		if err := rows.Scan(&c.Time, &c.Site, &c.Door, &c.Station, &seq, &c.ID, &c.Direction, &c.Decision,
			&c.Reason, &c.GTIN, &c.Lot, &c.Serial, &c.SSCC, &qty); err != nil {
			rows.Close()
			return nil, fmt.Errorf("trace %+v: %w", q, err)
		}
		c.Time, c.Seq, c.Qty = c.Time.UTC(), uint64(seq), qty
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trace %+v: %w", q, err)
	}
	return out, nil
}

// TraceResponse is the JSON body of GET /trace.
type TraceResponse struct {
	Query     TraceQuery `json:"query"`
	Crossings []Crossing `json:"crossings"`
}

// TraceHandler serves GET /trace?lot=L | serial=S | sscc=X [&gtin=G] as a
// TraceResponse. A request without a key is answered 400, a database
// failure 503, both with a JSON {"error": ...}.
func TraceHandler(db Querier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
			return
		}
		v := r.URL.Query()
		q := TraceQuery{Lot: v.Get("lot"), Serial: v.Get("serial"), SSCC: v.Get("sscc"), GTIN: v.Get("gtin")}
		cs, err := Trace(r.Context(), db, q)
		switch {
		case errors.Is(err, ErrNoTraceKey):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, TraceResponse{Query: q, Crossings: cs})
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
