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
	"time"

	"github.com/dockd/dockd/internal/allowlist"
)

func cmdAllowlist(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &exitError{2, errors.New("usage: dockd allowlist import FILE | export [FILE] | stats | lookup GTIN LOT")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("allowlist "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dirOf := stateFlags(fs)
	ver := fs.String("version", "", "import: version name (default: the file name and time)")
	if err := fs.Parse(args[1:]); err != nil {
		return &exitError{2, err}
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
			return &exitError{2, errors.New("usage: dockd allowlist import FILE")}
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
		cr := &countingReader{r: f}
		p := newProgress(stderr, "import", total)
		info, err := list.ImportCSV(ctx, cr, v, func(rows int) { p.update(cr.n, rows) })
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d lots as version %s\n", info.Lots, info.Version)
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
		fmt.Fprintf(stderr, "exported %d lots\n", n)
	case "stats":
		info, err := list.Info()
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(info)
	case "lookup":
		if fs.NArg() != 2 {
			return &exitError{2, errors.New("usage: dockd allowlist lookup GTIN LOT")}
		}
		l, ok, err := list.Lot(fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{1, fmt.Errorf("GTIN %s lot %s is not on the list", fs.Arg(0), fs.Arg(1))}
		}
		return json.NewEncoder(stdout).Encode(l)
	default:
		return &exitError{2, fmt.Errorf("unknown allowlist command %q", sub)}
	}
	return nil
}

