package allowlist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/jsonstrict"
)

// Row is one line of an import file or update: a product, lot, serial,
// pallet (SSCC) or expected-shipment line. CSV columns and JSON Lines
// fields have the same names; see CONTRACT.md.
type Row struct {
	// Kind is product, lot, serial, sscc or shipment; when empty it is
	// inferred: shipment if set, else serial, else sscc, else lot, else
	// product.
	Kind     string   `json:"kind,omitempty"`
	Op       string   `json:"op,omitempty"` // deltas: upsert (default) or delete
	GTIN     string   `json:"gtin,omitempty"`
	Name     string   `json:"name,omitempty"`
	Lot      string   `json:"lot,omitempty"`
	Status   string   `json:"status,omitempty"`
	Expiry   string   `json:"expiry,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	RecallID string   `json:"recall_id,omitempty"`
	Batches  []string `json:"batches,omitempty"`
	Serial   string   `json:"serial,omitempty"`
	SSCC     string   `json:"sscc,omitempty"`
	State    string   `json:"state,omitempty"`
	Door     string   `json:"door,omitempty"`
	Changed  string   `json:"changed,omitempty"` // RFC 3339: when the state last changed
	Shipment string   `json:"shipment,omitempty"`
	// Direction is the shipment's direction (receiving or shipping).
	Direction string `json:"direction,omitempty"`
	Qty       int    `json:"qty,omitempty"`
}

// Columns are the CSV header names, in export order.
var Columns = []string{"kind", "gtin", "name", "lot", "status", "expiry", "reason", "recall_id", "batches",
	"serial", "sscc", "state", "door", "changed", "shipment", "direction", "qty", "op"}

// RowError is a bad row in an import, with its line number in the file.
type RowError struct {
	Line int
	Msg  string
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ImportError is returned when an import found bad rows; unless the import
// was partial the active list was left as it was. Rows holds the first 100
// problems, Bad counts all of them.
type ImportError struct {
	Rows []RowError
	Bad  int
}

func (e *ImportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "allowlist import: %d bad rows, list not changed", e.Bad)
	for _, r := range e.Rows {
		b.WriteString("\n  ")
		b.WriteString(r.Error())
	}
	if e.Bad > len(e.Rows) {
		fmt.Fprintf(&b, "\n  … and %d more", e.Bad-len(e.Rows))
	}
	return b.String()
}

func (e *ImportError) add(r RowError) {
	e.Bad++
	if len(e.Rows) < 100 {
		e.Rows = append(e.Rows, r)
	}
}

// Format is an import file format.
type Format string

// Import formats.
const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// ImportOptions control Import.
type ImportOptions struct {
	Format  Format // default: sniffed (a first byte '{' means JSONL)
	Version string // default: a UTC timestamp
	// Seq is central's ordering number for the version; 0 keeps the
	// current one (a local import does not reorder central's versions).
	Seq uint64
	// Partial imports the good rows and reports the bad ones in an
	// *ImportError alongside the new Info, instead of importing nothing.
	Partial bool
	// Progress, when not nil, is called with the rows read so far.
	Progress func(rows int)
}

// RowSource yields rows with their line numbers; io.EOF ends it. A
// RowError is a bad row; any other error aborts the import.
type RowSource func() (Row, int, error)

// ImportCSV reads a CSV list and makes it the active version (see Import).
func (s *Store) ImportCSV(ctx context.Context, r io.Reader, version string, progress func(rows int)) (Info, error) {
	return s.Import(ctx, r, ImportOptions{Format: CSV, Version: version, Progress: progress})
}

// Import reads a complete list in CSV or JSON Lines and makes it the
// active version. It streams: rows go to a staging version in transactions
// of batchRows, which becomes visible only when every row was good (or
// Partial was asked). Memory use does not grow with the file.
func (s *Store) Import(ctx context.Context, r io.Reader, o ImportOptions) (Info, error) {
	src, err := NewRowSource(r, o.Format)
	if err != nil {
		return Info{}, fmt.Errorf("allowlist import: %w", err)
	}
	return s.importRows(ctx, src, o)
}

// NewRowSource parses r as CSV or JSON Lines (f empty: sniffed).
func NewRowSource(r io.Reader, f Format) (RowSource, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	if f == "" {
		f = CSV
		for {
			b, err := br.Peek(1)
			if err != nil {
				break
			}
			if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
				br.ReadByte()
				continue
			}
			if b[0] == '{' {
				f = JSONL
			}
			break
		}
	}
	switch f {
	case CSV:
		return csvSource(br)
	case JSONL:
		return jsonlSource(br), nil
	}
	return nil, fmt.Errorf("unknown format %q: want csv or jsonl", f)
}

func csvSource(r io.Reader) (RowSource, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading CSV header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !slices.Contains(Columns, h) {
			return nil, fmt.Errorf("CSV header column %q is unknown (columns: %s)", h, strings.Join(Columns, ", "))
		}
		col[h] = i
	}
	if _, ok := col["gtin"]; !ok {
		if _, ok := col["sscc"]; !ok {
			return nil, fmt.Errorf("CSV header %q lacks column %q (columns: %s)", strings.Join(header, ","), "gtin", strings.Join(Columns, ", "))
		}
	}
	// A plain lot list (the original format) must say lot and status.
	if _, ok := col["lot"]; ok {
		if _, ok := col["status"]; !ok {
			if _, k := col["kind"]; !k {
				if _, s := col["serial"]; !s {
					return nil, fmt.Errorf("CSV header %q lacks column %q (columns: %s)", strings.Join(header, ","), "status", strings.Join(Columns, ", "))
				}
			}
		}
	} else if _, ok := col["status"]; ok {
		return nil, fmt.Errorf("CSV header %q lacks column %q (columns: %s)", strings.Join(header, ","), "lot", strings.Join(Columns, ", "))
	}
	return func() (Row, int, error) {
		rec, err := cr.Read()
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Row{}, pe.Line, RowError{Line: pe.Line, Msg: pe.Err.Error()}
			}
			return Row{}, 0, err
		}
		line, _ := cr.FieldPos(0)
		f := func(name string) string {
			i, ok := col[name]
			if !ok || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		row := Row{Kind: f("kind"), Op: f("op"), GTIN: f("gtin"), Name: f("name"), Lot: f("lot"), Status: f("status"),
			Expiry: f("expiry"), Reason: f("reason"), RecallID: f("recall_id"), Serial: f("serial"), SSCC: f("sscc"),
			State: f("state"), Door: f("door"), Changed: f("changed"), Shipment: f("shipment"), Direction: f("direction")}
		if b := f("batches"); b != "" {
			row.Batches = strings.Split(b, "|")
		}
		if q := f("qty"); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 {
				return row, line, RowError{Line: line, Msg: fmt.Sprintf("qty %q: want a whole number ≥ 0", q)}
			}
			row.Qty = n
		}
		return row, line, nil
	}, nil
}

func jsonlSource(br *bufio.Reader) RowSource {
	line := 0
	return func() (Row, int, error) {
		for {
			b, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				return Row{}, line + 1, fmt.Errorf("line %d longer than %d bytes", line+1, br.Size())
			}
			if len(b) == 0 && err != nil {
				return Row{}, line, err
			}
			line++
			b = bytes.TrimSpace(b)
			if len(b) == 0 {
				if err != nil {
					return Row{}, line, err
				}
				continue
			}
			var row Row
			if derr := jsonstrict.Decode(b, &row, true); derr != nil {
				return row, line, RowError{Line: line, Msg: "bad JSON: " + derr.Error()}
			}
			return row, line, nil
		}
	}
}

// entry is a validated row ready to be written: bucket, key, value.
type entry struct {
	sub    []byte
	key    []byte
	val    []byte
	del    bool
	kind   string
	ship   *shipHeader
	shipID string
}

// validate normalises and checks one row and turns it into entries.
func validate(r *Row) ([]entry, string) {
	if r.Kind == "" {
		switch {
		case r.Shipment != "":
			r.Kind = "shipment"
		case r.Serial != "":
			r.Kind = "serial"
		case r.SSCC != "":
			r.Kind = "sscc"
		case r.Lot != "" || r.Status != "":
			r.Kind = "lot"
		default:
			r.Kind = "product"
		}
	}
	switch r.Op {
	case "", "upsert", "delete":
	default:
		return nil, fmt.Sprintf("op %q: want upsert or delete", r.Op)
	}
	del := r.Op == "delete"
	if r.GTIN != "" {
		g, msg := normGTIN(r.GTIN)
		if msg != "" {
			return nil, msg
		}
		r.GTIN = g
	}
	if r.SSCC != "" && !(len(r.SSCC) == 18 && checkDigitOK(r.SSCC)) {
		return nil, fmt.Sprintf("sscc %q: want 18 digits with a valid check digit", r.SSCC)
	}
	if r.Lot != "" && len(r.Lot) > 20 {
		return nil, fmt.Sprintf("lot %q: want 1 to 20 characters (GS1 AI 10)", r.Lot)
	}
	if r.Serial != "" && len(r.Serial) > 20 {
		return nil, fmt.Sprintf("serial %q: want 1 to 20 characters (GS1 AI 21)", r.Serial)
	}
	if r.Expiry != "" {
		if _, err := time.Parse("2006-01-02", r.Expiry); err != nil {
			return nil, fmt.Sprintf("expiry %q: want YYYY-MM-DD", r.Expiry)
		}
	}
	st := custody.State(strings.ToLower(r.State))
	if !st.Valid() {
		return nil, fmt.Sprintf("state %q: want expected, received, shipped or returned", r.State)
	}
	var at time.Time
	if r.Changed != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, r.Changed); err != nil {
			return nil, fmt.Sprintf("changed %q: want an RFC 3339 time", r.Changed)
		}
	}
	switch r.Kind {
	case "product":
		if r.GTIN == "" {
			return nil, "gtin: missing"
		}
		return []entry{{sub: subProducts, key: []byte(r.GTIN), val: []byte(r.Name), del: del, kind: "product"}}, ""
	case "lot":
		if r.GTIN == "" {
			return nil, "gtin: missing"
		}
		if r.Lot == "" {
			return nil, fmt.Sprintf("lot %q: want 1 to 20 characters (GS1 AI 10)", r.Lot)
		}
		status := custody.LotStatus(strings.ToLower(r.Status))
		if del {
			return []entry{{sub: subLots, key: key2(r.GTIN, r.Lot), del: true, kind: "lot"}}, ""
		}
		if !status.Valid() {
			return nil, fmt.Sprintf("status %q: want released, quarantined, blocked or recalled", r.Status)
		}
		l := custody.Lot{GTIN: r.GTIN, Lot: r.Lot, Status: status, Expiry: r.Expiry, Reason: r.Reason, RecallID: r.RecallID}
		out := []entry{{sub: subLots, key: key2(r.GTIN, r.Lot), kind: "lot"}}
		for _, b := range r.Batches {
			b = strings.TrimSpace(b)
			if b == "" || len(b) > 20 || b == r.Lot {
				return nil, fmt.Sprintf("batch %q: want 1 to 20 characters, not the lot itself", b)
			}
			l.Batches = append(l.Batches, b)
			out = append(out, entry{sub: subBatches, key: key2(r.GTIN, b), val: []byte(r.Lot), kind: "batch"})
		}
		out[0].val = encodeLot(&l)
		return out, ""
	case "serial":
		if r.GTIN == "" || r.Serial == "" {
			return nil, "a serial row needs gtin and serial"
		}
		x := custody.Serial{Lot: r.Lot, State: st, Door: r.Door, At: at}
		e := []entry{{sub: subSerials, key: key2(r.GTIN, r.Serial), val: encodeSerial(&x), del: del, kind: "serial"}}
		if r.SSCC != "" { // a serialised item on a known pallet
			p := custody.Serial{GTIN: r.GTIN, Lot: r.Lot, State: st, Door: r.Door, At: at}
			e = append(e, entry{sub: subSSCCs, key: []byte(r.SSCC), val: encodeSerial(&p), del: del, kind: "sscc"})
		}
		return e, ""
	case "sscc":
		if r.SSCC == "" {
			return nil, "an sscc row needs sscc"
		}
		p := custody.Serial{GTIN: r.GTIN, Lot: r.Lot, State: st, Door: r.Door, At: at}
		return []entry{{sub: subSSCCs, key: []byte(r.SSCC), val: encodeSerial(&p), del: del, kind: "sscc"}}, ""
	case "shipment":
		if r.Shipment == "" || strings.ContainsRune(r.Shipment, 0) {
			return nil, "shipment: missing id"
		}
		if del {
			return []entry{{sub: subShipments, shipID: r.Shipment, del: true, kind: "shipment"}}, ""
		}
		dir := dock.Direction(strings.ToLower(r.Direction))
		if !dir.Valid() || r.Door == "" {
			return nil, fmt.Sprintf("shipment %s: needs door and direction receiving or shipping (got door %q direction %q)", r.Shipment, r.Door, r.Direction)
		}
		if r.SSCC == "" && r.GTIN == "" {
			return nil, fmt.Sprintf("shipment %s: a line needs sscc or gtin", r.Shipment)
		}
		if r.Qty < 0 {
			return nil, fmt.Sprintf("qty %d: want ≥ 0", r.Qty)
		}
		l := custody.Line{GTIN: r.GTIN, Lot: r.Lot, Serial: r.Serial, SSCC: r.SSCC, Qty: r.Qty}
		v, _ := json.Marshal(l)
		return []entry{{sub: subShipments, shipID: r.Shipment, val: v, ship: &shipHeader{Door: r.Door, Direction: dir}, kind: "shipment"}}, ""
	}
	return nil, fmt.Sprintf("kind %q: want product, lot, serial, sscc or shipment", r.Kind)
}

func normGTIN(g string) (string, string) {
	switch len(g) {
	case 8, 12, 13:
		g = strings.Repeat("0", 14-len(g)) + g
	case 14:
	default:
		return "", fmt.Sprintf("gtin %q: want 8, 12, 13 or 14 digits", g)
	}
	if !checkDigitOK(g) {
		return "", fmt.Sprintf("gtin %q: bad check digit", g)
	}
	return g, ""
}

// checkDigitOK verifies the GS1 mod-10 check digit of an all-digit key
// (GS1 General Specifications §7.9.1).
func checkDigitOK(s string) bool {
	sum := 0
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if (len(s)-1-i)%2 == 1 {
			d *= 3
		}
		sum += d
	}
	last := s[len(s)-1]
	return last >= '0' && last <= '9' && (10-sum%10)%10 == int(last-'0')
}

// batchRows is how many rows go into one write transaction of an import.
const batchRows = 100_000

// shipLines numbers the lines of each shipment as they arrive.
type shipLines map[string]int

func (s *Store) importRows(ctx context.Context, next RowSource, o ImportOptions) (Info, error) {
	s.importMu.Lock()
	defer s.importMu.Unlock()
	version := o.Version
	if version == "" {
		version = time.Now().UTC().Format("20060102T150405.000Z")
	}
	// Each import writes into a bucket of its own; the active pointer names
	// the bucket, meta "version" the version.
	staging := []byte(fmt.Sprintf("v:%s:%d", version, time.Now().UnixNano()))
	cleanup := func() {
		s.update(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketLists).Bucket(staging) != nil {
				return tx.Bucket(bucketLists).DeleteBucket(staging)
			}
			return nil
		})
	}
	ierr := &ImportError{}
	rows, done := 0, false
	lines := shipLines{}
	batch := make([]entry, 0, batchRows)
	for !done {
		if err := ctx.Err(); err != nil {
			cleanup()
			return Info{}, fmt.Errorf("allowlist import cancelled after %d rows: %w", rows, err)
		}
		batch = batch[:0]
		for n := 0; n < batchRows; n++ {
			row, line, err := next()
			if err == io.EOF {
				done = true
				break
			}
			var re RowError
			if errors.As(err, &re) {
				ierr.add(re)
				continue
			}
			if err != nil {
				cleanup()
				return Info{}, fmt.Errorf("allowlist import: reading row near line %d: %w", line, err)
			}
			rows++
			es, msg := validate(&row)
			if msg == "" && row.Op == "delete" {
				msg = "op delete only belongs in a delta"
			}
			if msg != "" {
				ierr.add(RowError{Line: line, Msg: msg})
				continue
			}
			if ierr.Bad > 0 && !o.Partial {
				continue // keep validating, stop writing
			}
			batch = append(batch, es...)
		}
		if len(batch) > 0 {
			err := s.update(func(tx *bolt.Tx) error {
				if err := s.checkFileLimit(tx, rows); err != nil {
					return err
				}
				b, err := tx.Bucket(bucketLists).CreateBucketIfNotExists(staging)
				if err != nil {
					return err
				}
				return writeEntries(b, batch, lines)
			})
			if errors.Is(err, ErrFileLimit) {
				cleanup()
				return Info{}, err
			}
			if err != nil {
				cleanup()
				return Info{}, fmt.Errorf("allowlist import: writing rows up to %d: %w", rows, err)
			}
		}
		if o.Progress != nil {
			o.Progress(rows)
		}
	}
	if ierr.Bad > 0 && !o.Partial {
		cleanup()
		return Info{}, ierr
	}
	info, err := s.activate(staging, version, o.Seq)
	if err != nil {
		cleanup()
		return Info{}, err
	}
	if ierr.Bad > 0 {
		return info, ierr
	}
	return info, nil
}

var subBuckets = [][]byte{subLots, subBatches, subSerials, subSSCCs, subShipments, subProducts}

// writeEntries puts a batch of new entries into a staging version, sorted
// by bucket and key so each transaction touches each page once.
func writeEntries(b *bolt.Bucket, batch []entry, lines shipLines) error {
	subs := map[string]*bolt.Bucket{}
	for _, name := range subBuckets {
		sb, err := b.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		sb.FillPercent = 0.95
		subs[string(name)] = sb
	}
	// Shipment lines are numbered in file order before sorting.
	for i := range batch {
		e := &batch[i]
		if e.ship != nil {
			n := lines[e.shipID]
			lines[e.shipID] = n + 1
			hv, _ := json.Marshal(e.ship)
			if err := subs[string(subShipments)].Put([]byte(e.shipID), hv); err != nil {
				return err
			}
			e.key = shipLineKey(e.shipID, n)
		}
	}
	// Sort pointers, not the entries; stable, so a later row for the same
	// key still wins.
	order := make([]*entry, len(batch))
	for i := range batch {
		order[i] = &batch[i]
	}
	slices.SortStableFunc(order, func(a, b *entry) int {
		if c := bytes.Compare(a.sub, b.sub); c != 0 {
			return c
		}
		return bytes.Compare(a.key, b.key)
	})
	for _, e := range order {
		if err := subs[string(e.sub)].Put(e.key, e.val); err != nil {
			return fmt.Errorf("writing %s %q: %w", e.kind, e.key, err)
		}
	}
	return nil
}

// activate makes the staging bucket the active version, deletes the old
// one and records the counts, in one transaction.
func (s *Store) activate(staging []byte, version string, seq uint64) (Info, error) {
	var info Info
	err := s.update(func(tx *bolt.Tx) error {
		lists, meta := tx.Bucket(bucketLists), tx.Bucket(bucketMeta)
		st, err := lists.CreateBucketIfNotExists(staging)
		if err != nil {
			return err
		}
		for _, name := range subBuckets {
			if _, err := st.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		old := meta.Get(keyActive)
		if old != nil && !bytes.Equal(old, staging) && lists.Bucket(old) != nil {
			if err := lists.DeleteBucket(old); err != nil {
				return err
			}
		}
		cur := getU64(meta.Get(keySeq))
		if seq == 0 {
			seq = cur
		} else if seq <= cur {
			return fmt.Errorf("seq %d is not newer than the active seq %d: %w", seq, cur, errStale)
		}
		info = Info{Version: version, Seq: seq, Counts: countsOf(st), Updated: time.Now().UTC()}
		info.Lots = info.Counts.Lots
		return writeMeta(meta, staging, info)
	})
	if err != nil {
		return Info{}, fmt.Errorf("allowlist import: activating version %s: %w", version, err)
	}
	return info, nil
}

func writeMeta(meta *bolt.Bucket, active []byte, info Info) error {
	cb, _ := json.Marshal(info.Counts)
	for k, v := range map[string][]byte{string(keyActive): active, string(keyVersion): []byte(info.Version),
		string(keyCounts): cb, string(keyUpdated): []byte(info.Updated.Format(time.RFC3339Nano)), string(keySeq): putU64(info.Seq)} {
		if err := meta.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func countsOf(b *bolt.Bucket) Counts {
	n := func(name []byte) int {
		if sb := b.Bucket(name); sb != nil {
			return sb.Stats().KeyN
		}
		return 0
	}
	c := Counts{Products: n(subProducts), Lots: n(subLots), Batches: n(subBatches), Serials: n(subSerials), SSCCs: n(subSSCCs)}
	if sb := b.Bucket(subShipments); sb != nil {
		sb.ForEach(func(k, _ []byte) error {
			if bytes.IndexByte(k, 0) >= 0 {
				c.Shipments++
			}
			return nil
		})
	}
	return c
}

// dropStale deletes list buckets that are not active: what a crashed or
// killed import left behind.
func (s *Store) dropStale() {
	s.update(func(tx *bolt.Tx) error {
		act := tx.Bucket(bucketMeta).Get(keyActive)
		lists := tx.Bucket(bucketLists)
		var stale [][]byte
		lists.ForEach(func(k, _ []byte) error {
			if !bytes.Equal(k, act) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range stale {
			lists.DeleteBucket(k)
		}
		return nil
	})
}

// Export writes the active list as CSV with the full header (Columns), in
// a form Import reads back. It returns the rows written.
func (s *Store) Export(w io.Writer) (int, error) {
	cw := csv.NewWriter(w)
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		b := activeBucket(tx)
		if b == nil {
			return ErrNoList
		}
		if err := cw.Write(Columns); err != nil {
			return err
		}
		rec := make([]string, len(Columns))
		put := func(r Row) error {
			clear(rec)
			rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7] = r.Kind, r.GTIN, r.Name, r.Lot, r.Status, r.Expiry, r.Reason, r.RecallID
			rec[8] = strings.Join(r.Batches, "|")
			rec[9], rec[10], rec[11], rec[12], rec[13], rec[14], rec[15] = r.Serial, r.SSCC, r.State, r.Door, r.Changed, r.Shipment, r.Direction
			if r.Qty > 0 {
				rec[16] = strconv.Itoa(r.Qty)
			}
			n++
			return cw.Write(rec)
		}
		split := func(k []byte) (string, string) {
			i := bytes.IndexByte(k, 0)
			return string(k[:i]), string(k[i+1:])
		}
		changed := func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Format(time.RFC3339Nano)
		}
		if err := b.Bucket(subProducts).ForEach(func(k, v []byte) error {
			return put(Row{Kind: "product", GTIN: string(k), Name: string(v)})
		}); err != nil {
			return err
		}
		if err := b.Bucket(subLots).ForEach(func(k, v []byte) error {
			g, lot := split(k)
			l, err := decodeLot(g, lot, v)
			if err != nil {
				return err
			}
			return put(Row{Kind: "lot", GTIN: g, Lot: lot, Status: string(l.Status), Expiry: l.Expiry, Reason: l.Reason, RecallID: l.RecallID, Batches: l.Batches})
		}); err != nil {
			return err
		}
		if err := b.Bucket(subSerials).ForEach(func(k, v []byte) error {
			g, ser := split(k)
			x, err := decodeSerial(v)
			if err != nil {
				return err
			}
			return put(Row{Kind: "serial", GTIN: g, Serial: ser, Lot: x.Lot, State: string(x.State), Door: x.Door, Changed: changed(x.At)})
		}); err != nil {
			return err
		}
		if err := b.Bucket(subSSCCs).ForEach(func(k, v []byte) error {
			x, err := decodeSerial(v)
			if err != nil {
				return err
			}
			return put(Row{Kind: "sscc", SSCC: string(k), GTIN: x.GTIN, Lot: x.Lot, State: string(x.State), Door: x.Door, Changed: changed(x.At)})
		}); err != nil {
			return err
		}
		c, err := loadShipments(b.Bucket(subShipments), "")
		if err != nil {
			return err
		}
		var keys []string
		for k := range c.by {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, sh := range c.by[k] {
				for _, l := range sh.Lines {
					if err := put(Row{Kind: "shipment", Shipment: sh.ID, Door: sh.Door, Direction: string(sh.Direction), GTIN: l.GTIN, Lot: l.Lot, Serial: l.Serial, SSCC: l.SSCC, Qty: l.Qty}); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return n, err
}
