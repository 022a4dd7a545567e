package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/dockd/dockd/internal/allowlist"
)

const traceSynopsis = "dockd trace --lot L | --serial S | --sscc X [--gtin G] [--config FILE | --state-dir DIR]"

// cmdTrace lists what crossed this door for a lot, serial or SSCC, from the
// trace records the station keeps for its retention period.
func cmdTrace(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	dirOf := stateFlags(fs)
	var q allowlist.TraceQuery
	fs.StringVar(&q.Lot, "lot", "", "lot (AI 10)")
	fs.StringVar(&q.Serial, "serial", "", "serial (AI 21)")
	fs.StringVar(&q.SSCC, "sscc", "", "pallet SSCC (AI 00)")
	fs.StringVar(&q.GTIN, "gtin", "", "narrow a lot or serial to one GTIN")
	if err := parseArgs(fs, traceSynopsis, args, stdout, stderr); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{q.Lot, q.Serial, q.SSCC} {
		if v != "" {
			n++
		}
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("trace: unexpected argument %q\nusage: %s", fs.Arg(0), traceSynopsis)}
	}
	if n != 1 {
		return &exitError{2, errors.New("usage: " + traceSynopsis)}
	}
	dir, err := dirOf()
	if err != nil {
		return err
	}
	list, err := allowlist.Open(filepath.Join(dir, "allowlist.db"))
	if err != nil {
		return fmt.Errorf("%w (is the station running? stop it first: the file is locked while it runs)", err)
	}
	defer list.Close()
	recs, err := list.Trace(q)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return &exitError{1, errors.New("nothing recorded for that at this door")}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tDOOR\tDIRECTION\tDECISION\tREASON\tGTIN\tLOT\tSERIAL\tSSCC")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Door, r.Direction,
			r.Verdict, r.Reason, r.GTIN, r.Lot, r.Serial, r.SSCC)
	}
	return tw.Flush()
}
