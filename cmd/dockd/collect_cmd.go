package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/fsma204"
	"github.com/dockd/dockd/uplink"
)

const collectUsage = `usage: dockd collect run --broker URL [--broker URL2 …] --db postgres://… [--name N]
                         [--share | --partition k/n] [--http 127.0.0.1:PORT]
                         [--username central --password-file F] [--ca-file CA [--cert-file C --key-file K]]
       dockd collect trace --db postgres://… --lot L | --serial S | --sscc X [--gtin G] [--json]
       dockd collect baseline --db postgres://… --station ID --upto N --reason TEXT
       dockd collect export --fsma204 --db postgres://… --lot L [--from T] [--to T] [--format csv|xlsx] [--out FILE]

Central's collector. run: subscribe (persistent session, QoS 1) to dockd/v1/+/+/events,
store each event once in PostgreSQL, acknowledge it to the broker after the commit, then
publish the station's receipt on dockd/v1/SITE/DOOR/receipts; --http serves
GET /trace?lot=…|serial=…|sscc=… as JSON and GET /epcis/events (an EPCIS 2.0 query
subset). trace: where a lot, serial or SSCC crossed —
every door, which way, when, what decision. baseline: accept that a station's seqs
1..N will never arrive (it ran with delivery: broker, or before this collector existed),
so its receipts can pass them; recorded with who and why. export --fsma204: the
receiving and shipping events of a lot or time range as FDA's sortable spreadsheet
(CSV or XLSX). The database URL may also come from $DOCKD_COLLECT_DB.`

// collectSynopses is the usage line of each collect subcommand.
var collectSynopses = map[string]string{
	"run":      "dockd collect run --broker URL [--broker URL2 …] --db postgres://… [flags]",
	"trace":    "dockd collect trace --db postgres://… --lot L | --serial S | --sscc X [--gtin G] [--json]",
	"baseline": "dockd collect baseline --db postgres://… --station ID --upto N --reason TEXT",
	"export":   "dockd collect export --fsma204 --db postgres://… --lot L | --from T [--to T] [--gtin G] [--tz ZONE] [--format csv|xlsx] [--out FILE]",
}

// cmdCollect dispatches dockd collect SUBCOMMAND.
func cmdCollect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := commandWord(args, collectUsage, stdout, stderr)
	if err != nil {
		return err
	}
	switch sub {
	case "run":
		return cmdCollectRun(ctx, args, stdout, stderr)
	case "trace":
		return cmdCollectTrace(ctx, args, stdout, stderr)
	case "baseline":
		return cmdCollectBaseline(ctx, args, stdout, stderr)
	case "export":
		return cmdCollectExport(ctx, args, stdout, stderr)
	}
	fmt.Fprintln(stderr, collectUsage)
	return &exitError{2, fmt.Errorf("collect: unknown subcommand %q", sub)}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdCollectRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("collect run", flag.ContinueOnError)
	var brokers listFlag
	fs.Var(&brokers, "broker", "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (repeat for failover)")
	db := fs.String("db", os.Getenv("DOCKD_COLLECT_DB"), "PostgreSQL URL, e.g. postgres://dockd@127.0.0.1/dockd")
	name := fs.String("name", "", "collector name: its MQTT session and the receipts' collector field (default: host name)")
	prefix := fs.String("prefix", collector.DefaultPrefix, "topic root")
	share := fs.Bool("share", false, "subscribe through $share/dockd-collect/… (only on brokers that keep shared subscriptions in persistent sessions)")
	part := fs.String("partition", "", "k/n: store only the doors hashing to partition k of n (scale out on Mosquitto)")
	user := fs.String("username", "", "MQTT user name (e.g. central, see firmware-config/mosquitto-acl.example)")
	pwFile := fs.String("password-file", "", "file holding the MQTT password")
	caFile := fs.String("ca-file", "", "CA certificate (PEM) to verify an ssl:// broker")
	certFile := fs.String("cert-file", "", "client certificate (PEM) for mutual TLS")
	keyFile := fs.String("key-file", "", "client key (PEM) for mutual TLS")
	httpAddr := fs.String("http", "", "serve GET /trace and GET /epcis/events on this address, e.g. 127.0.0.1:8080")
	batch := fs.Int("batch", 1000, "most events per transaction")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := parseArgs(fs, collectSynopses["run"], args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError(fs, collectSynopses["run"], stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if len(brokers) == 0 || *db == "" {
		return &exitError{2, errors.New("collect run: --broker and --db are required")}
	}
	cfg := collector.Config{Brokers: brokers, DB: *db, Name: *name, Prefix: *prefix, Share: *share, MaxBatch: *batch, Username: *user}
	if *pwFile != "" {
		pw, err := os.ReadFile(*pwFile)
		if err != nil {
			return fmt.Errorf("collect run: --password-file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(pw), "\r\n")
	}
	if *caFile != "" || *certFile != "" {
		tc, err := uplink.TLSConfig(*caFile, *certFile, *keyFile, "")
		if err != nil {
			return fmt.Errorf("collect run: TLS: %w", err)
		}
		cfg.TLS = tc
	}
	if *part != "" {
		k, n, ok := strings.Cut(*part, "/")
		var err1, err2 error
		cfg.Partition, err1 = strconv.Atoi(k)
		cfg.Partitions, err2 = strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil {
			return &exitError{2, fmt.Errorf("collect run: --partition %q: want k/n, e.g. 0/2", *part)}
		}
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logFormat == "json" {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	cfg.Logger = log
	cfg.Hook = crashHookFromEnv()
	c, err := collector.New(cfg)
	if err != nil {
		return &exitError{2, err}
	}
	if *httpAddr != "" {
		pool, err := pgxpool.New(ctx, *db)
		if err != nil {
			return fmt.Errorf("collect run: database URL: %w", err)
		}
		defer pool.Close()
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("collect run: --http %s: %w", *httpAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/trace", collector.TraceHandler(pool))
		mux.Handle("/epcis/events", collector.EPCISHandler(pool))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("collect: trace and EPCIS query over HTTP", "addr", ln.Addr().String())
	}
	log.Info("collect: starting", "client_id", c.ClientID(), "filter", c.Filter(), "brokers", strings.Join(brokers, ","))
	err = c.Run(ctx)
	st := c.Stats()
	log.Info("collect: stopped", "received", st.Received.Load(), "inserted", st.Inserted.Load(),
		"duplicates", st.Duplicates.Load(), "dead_letters", st.DeadLetters.Load(), "receipts", st.Receipts.Load())
	return err
}

// crashHookFromEnv makes the process exit (code 86, like a crash: no
// cleanup) at a pipeline point for crash tests:
// DOCKD_COLLECT_EXIT_AT=received|committed[:N] exits the Nth time (default
// 1st) the point is reached. Unset: no hook.
func crashHookFromEnv() func(collector.Point) {
	spec := os.Getenv("DOCKD_COLLECT_EXIT_AT")
	if spec == "" {
		return nil
	}
	point, nth, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(nth)
	if err != nil || n < 1 {
		n = 1
	}
	var seen atomic.Int64
	return func(p collector.Point) {
		if string(p) == point && seen.Add(1) == int64(n) {
			fmt.Fprintf(os.Stderr, "dockd collect: DOCKD_COLLECT_EXIT_AT=%s: exiting at %s\n", spec, p)
			os.Exit(86)
		}
	}
}

func cmdCollectTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("collect trace", flag.ContinueOnError)
	db := fs.String("db", os.Getenv("DOCKD_COLLECT_DB"), "PostgreSQL URL")
	var q collector.TraceQuery
	fs.StringVar(&q.Lot, "lot", "", "lot (AI 10)")
	fs.StringVar(&q.Serial, "serial", "", "serial (AI 21)")
	fs.StringVar(&q.SSCC, "sscc", "", "pallet SSCC (AI 00)")
	fs.StringVar(&q.GTIN, "gtin", "", "narrow a lot or serial to one GTIN")
	asJSON := fs.Bool("json", false, "print JSON (the same body as GET /trace)")
	if err := parseArgs(fs, collectSynopses["trace"], args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError(fs, collectSynopses["trace"], stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	n := 0
	for _, v := range []string{q.Lot, q.Serial, q.SSCC} {
		if v != "" {
			n++
		}
	}
	if n != 1 || *db == "" {
		return &exitError{2, errors.New("usage: dockd collect trace --db URL --lot L | --serial S | --sscc X [--gtin G] [--json]")}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		return fmt.Errorf("collect trace: database URL: %w", err)
	}
	defer pool.Close()
	cs, err := collector.Trace(ctx, pool, q)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(collector.TraceResponse{Query: q, Crossings: cs})
	}
	if len(cs) == 0 {
		return &exitError{1, errors.New("nothing stored for that")}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSITE\tDOOR\tSTATION\tSEQ\tDIRECTION\tDECISION\tREASON\tGTIN\tLOT\tSERIAL\tSSCC\tQTY")
	for _, c := range cs {
		qty := ""
		if c.Qty > 0 {
			qty = strconv.FormatInt(c.Qty, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Time.Format(time.RFC3339), c.Site, c.Door, c.Station,
			c.Seq, c.Direction, c.Decision, c.Reason, c.GTIN, c.Lot, c.Serial, c.SSCC, qty)
	}
	return tw.Flush()
}

// cmdCollectBaseline is dockd collect baseline: an operator's declaration,
// recorded with the local user as actor, that a station's seqs 1..N will
// never reach this database (see collector.Baseline).
func cmdCollectBaseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	syn := collectSynopses["baseline"]
	fs := flag.NewFlagSet("collect baseline", flag.ContinueOnError)
	db := fs.String("db", os.Getenv("DOCKD_COLLECT_DB"), "PostgreSQL URL")
	station := fs.String("station", "", "station id (the events' station field)")
	upto := fs.Uint64("upto", 0, "the highest seq to release (every seq from 1 up to it)")
	reason := fs.String("reason", "", "why, for the record (e.g. \"ran with delivery: broker until 2026-12-01\")")
	if err := parseArgs(fs, syn, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError(fs, syn, stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *db == "" || *station == "" || *upto == 0 || *reason == "" {
		return usageError(fs, syn, stderr, errors.New("--db, --station, --upto and --reason are required"))
	}
	actor := "unknown"
	if u, err := user.Current(); err == nil {
		actor = "local:" + u.Username
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		return fmt.Errorf("collect baseline: database URL: %w", err)
	}
	defer pool.Close()
	if err := collector.Migrate(ctx, pool); err != nil {
		return err
	}
	confirmed, err := collector.Baseline(ctx, pool, *station, *upto, actor, *reason)
	if err != nil {
		return fmt.Errorf("collect baseline: %w", err)
	}
	fmt.Fprintf(stdout, "station %s: seqs 1..%d released; confirmed up to %d (the receipt goes out with the station's next event or resend)\n", *station, *upto, confirmed)
	return nil
}

func cmdCollectExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	syn := collectSynopses["export"]
	fs := flag.NewFlagSet("collect export", flag.ContinueOnError)
	db := fs.String("db", os.Getenv("DOCKD_COLLECT_DB"), "PostgreSQL URL")
	fsma := fs.Bool("fsma204", false, "FDA Food Traceability Rule (FSMA 204) sortable spreadsheet of receiving and shipping events (the one export there is; required)")
	lot := fs.String("lot", "", "the lot (AI 10, the stored lot)")
	gtin := fs.String("gtin", "", "narrow to one GTIN")
	from := fs.String("from", "", "first time included: RFC 3339 or a date YYYY-MM-DD")
	to := fs.String("to", "", "end: an RFC 3339 time (excluded) or a date YYYY-MM-DD (that whole day included)")
	tz := fs.String("tz", "UTC", "IANA time zone of dates given and of the Event Date/Time columns, e.g. America/Chicago")
	format := fs.String("format", "", "csv or xlsx (default: from the --out file name, else csv)")
	out := fs.String("out", "", "write to this file (written aside and renamed when complete); default stdout")
	if err := parseArgs(fs, syn, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError(fs, syn, stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if !*fsma {
		return usageError(fs, syn, stderr, errors.New("say --fsma204 (the only export format)"))
	}
	if *db == "" {
		return usageError(fs, syn, stderr, errors.New("--db is required"))
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return usageError(fs, syn, stderr, fmt.Errorf("--tz %q: %w", *tz, err))
	}
	q := collector.ExportQuery{Lot: *lot, GTIN: *gtin, Location: loc}
	if *from != "" {
		if q.From, err = collector.ParseExportTime(*from, loc, false); err != nil {
			return usageError(fs, syn, stderr, fmt.Errorf("--from: %w", err))
		}
	}
	if *to != "" {
		if q.To, err = collector.ParseExportTime(*to, loc, true); err != nil {
			return usageError(fs, syn, stderr, fmt.Errorf("--to: %w", err))
		}
	}
	if q.Lot == "" && *from == "" && *to == "" {
		return usageError(fs, syn, stderr, errors.New("give --lot, --from/--to or both"))
	}
	if *format == "" {
		*format = fsma204.FormatCSV
		if strings.HasSuffix(strings.ToLower(*out), ".xlsx") {
			*format = fsma204.FormatXLSX
		}
	}
	var dst io.Writer = stdout
	var tmp *os.File
	if *out != "" {
		tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
		if err != nil {
			return fmt.Errorf("collect export: --out %s: %w", *out, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = tmp
	}
	w, err := fsma204.NewWriter(*format, dst)
	if err != nil {
		return usageError(fs, syn, stderr, fmt.Errorf("--format: %w", err))
	}
	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		return fmt.Errorf("collect export: database URL: %w", err)
	}
	defer pool.Close()
	n, err := collector.ExportFSMA204(ctx, pool, q, w)
	if err != nil {
		return fmt.Errorf("collect export: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("collect export: %w", err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("collect export: --out %s: %w", *out, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("collect export: --out %s: %w", *out, err)
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return fmt.Errorf("collect export: --out %s: %w", *out, err)
		}
		tmp = nil
	}
	fmt.Fprintf(stderr, "dockd collect export: %d receiving/shipping events (%s)\n", n, q)
	return nil
}
