package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/statuspage"
)

const allowlistUsage = `usage: dockd allowlist import [--partial] [--format csv|jsonl] [--version V] FILE
       dockd allowlist export [FILE]
       dockd allowlist stats
       dockd allowlist lookup GTIN LOT|SERIAL | lookup SSCC
       dockd allowlist trace --lot L | --serial S | --sscc X [--gtin G]`

// allowlistSynopses is the usage line of each allowlist subcommand but
// trace (which is `dockd trace`).
var allowlistSynopses = map[string]string{
	"import": "dockd allowlist import [--partial] [--format csv|jsonl] [--version V] FILE [--config FILE | --state-dir DIR]",
	"export": "dockd allowlist export [FILE] [--config FILE | --state-dir DIR]",
	"stats":  "dockd allowlist stats [--config FILE | --state-dir DIR]",
	"lookup": "dockd allowlist lookup GTIN LOT|SERIAL | lookup SSCC [--config FILE | --state-dir DIR]",
}

func cmdAllowlist(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := commandWord(args, allowlistUsage, stdout, stderr)
	if err != nil {
		return err
	}
	if sub == "trace" {
		return cmdTrace(ctx, args, stdout, stderr)
	}
	synopsis, ok := allowlistSynopses[sub]
	if !ok {
		return &exitError{2, fmt.Errorf("unknown allowlist command %q\n%s", sub, allowlistUsage)}
	}
	fs := flag.NewFlagSet("allowlist "+sub, flag.ContinueOnError)
	dirOf := stateFlags(fs)
	ver := fs.String("version", "", "import: version name (default: the file name and time)")
	partial := fs.Bool("partial", false, "import: import the good rows even when some rows are bad (they are listed)")
	format := fs.String("format", "", "import: csv or jsonl (default: by file name, else sniffed)")
	if err := parseArgs(fs, synopsis, args, stdout, stderr); err != nil {
		return err
	}
	dir, err := dirOf()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	list, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		return fmt.Errorf("%w (is the station running? stop it first: the file is locked while it runs)", err)
	}
	defer list.Close()
	switch sub {
	case "import":
		if fs.NArg() != 1 {
			return &exitError{2, errors.New(allowlistUsage)}
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		var total int64
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		v := *ver
		if v == "" {
			v = filepath.Base(fs.Arg(0)) + "@" + time.Now().UTC().Format("20060102T150405Z")
		}
		fm := allowlist.Format(*format)
		if fm == "" {
			switch strings.ToLower(filepath.Ext(fs.Arg(0))) {
			case ".csv":
				fm = allowlist.CSV
			case ".jsonl", ".ndjson":
				fm = allowlist.JSONL
			}
		}
		cr := &countingReader{r: f}
		p := newProgress(stderr, "import", total)
		info, err := list.Import(ctx, cr, allowlist.ImportOptions{Format: fm, Version: v, Partial: *partial,
			Progress: func(rows int) { p.update(cr.n, rows) }})
		p.done()
		var ie *allowlist.ImportError
		if errors.As(err, &ie) && *partial && info.Version != "" {
			fmt.Fprintf(stderr, "%d bad rows skipped:\n%s\n", ie.Bad, strings.TrimPrefix(ie.Error(), strings.SplitN(ie.Error(), "\n", 2)[0]+"\n"))
		} else if err != nil {
			return &exitError{1, err}
		}
		c := info.Counts
		fmt.Fprintf(stdout, "imported version %s: %d products, %d lots (%d batch codes), %d serials, %d SSCCs, %d shipment lines\n",
			info.Version, c.Products, c.Lots, c.Batches, c.Serials, c.SSCCs, c.Shipments)
		// The activation goes on the audit trail: an operator record in the
		// stopped station's buffer, delivered when it runs again.
		cfgPath := fs.Lookup("config").Value.String()
		if cfg, err := loadConfig(cfgPath); err != nil || filepath.Clean(cfg.StateDir) != filepath.Clean(dir) {
			fmt.Fprintf(stderr, "not recorded on the event stream: the station's config (%s) is not readable or names another state_dir; pass --config\n", cfgPath)
		} else if seq, err := recordOffline(ctx, cfg, auditRecord{Action: actAllowlistActivate, Actor: statuspage.LocalName(uint32(os.Getuid())),
			Via: statuspage.ViaCLI, AllowlistVersion: info.Version, Detail: "dockd allowlist import " + filepath.Base(fs.Arg(0))}); err != nil {
			fmt.Fprintf(stderr, "warning: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "recorded as operator event seq %d (delivered when the station runs)\n", seq)
		}
		// The replaced version's pages are free but still in the file:
		// shrink it back to its live size (README: storage wear).
		if before, after, err := list.Compact(); err != nil {
			fmt.Fprintf(stderr, "allowlist imported, but compacting the file failed (it stays larger than needed): %v\n", err)
		} else if before > after {
			fmt.Fprintf(stderr, "allowlist.db compacted: %s → %s\n", humanBytes(before), humanBytes(after))
		}
	case "export":
		w := stdout
		if fs.NArg() == 1 {
			f, err := os.Create(fs.Arg(0))
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		n, err := list.Export(w)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "exported %d rows\n", n)
	case "stats":
		info, err := list.Info()
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(info)
	case "lookup":
		return lookup(list, fs.Args(), stdout)
	default:
		return &exitError{2, fmt.Errorf("unknown allowlist command %q\n%s", sub, allowlistUsage)}
	}
	return nil
}

// lookup prints what the list says about GTIN+LOT, GTIN+SERIAL or an SSCC.
func lookup(list *allowlist.Store, args []string, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	switch len(args) {
	case 1:
		p, ok, err := list.SSCC(args[0])
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{1, fmt.Errorf("SSCC %s is not on the list", args[0])}
		}
		return enc.Encode(map[string]any{"sscc": p})
	case 2:
		g, key := args[0], args[1]
		l, lok, err := list.Lot(g, key)
		if err != nil {
			return err
		}
		s, sok, err := list.Serial(g, key)
		if err != nil {
			return err
		}
		if !lok && !sok {
			return &exitError{1, fmt.Errorf("GTIN %s has no lot or serial %q on the list", g, key)}
		}
		out := map[string]any{}
		if lok {
			out["lot"] = l
		}
		if sok {
			out["serial"] = s
		}
		return enc.Encode(out)
	}
	return &exitError{2, errors.New("usage: dockd allowlist lookup GTIN LOT|SERIAL | lookup SSCC")}
}
