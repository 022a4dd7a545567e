package main

import (
	"bufio"
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

	"golang.org/x/term"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/scan"
)

// cmdDecode reads scans from stdin, one per line, and prints one JSON object
// per line in order. Input bytes are decoded as they are: "<GS>" is label
// data (a valid lot, for one). Only with --escapes are the typed escapes
// \x1d, <GS> and {GS} turned into the GS byte.
func cmdDecode(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	rfid := fs.Bool("rfid", false, "input lines are EPC hex strings from an RFID reader")
	noAIM := fs.String("no-aim", "gs1", "how to read scans without an AIM symbology id: gs1 | plain")
	digitalLink := fs.String("digital-link", scan.DigitalLinkStrict, "how to judge GS1 Digital Link URIs: strict | lenient (as decode.digital_link)")
	escapes := fs.Bool("escapes", false, `typed input: turn \x1d, <GS> and {GS} into the GS (FNC1) byte`)
	if err := parseArgs(fs, "dockd decode [--rfid] [--no-aim gs1|plain] [--digital-link strict|lenient] [--escapes] < SCANS   (one scan per line)", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("decode: unexpected argument %q (scans are read from stdin)", fs.Arg(0))}
	}
	dec, err := scan.NewDecoder(scan.Config{NoAIM: *noAIM, DigitalLink: *digitalLink})
	if err != nil {
		return &exitError{2, err}
	}
	br := bufio.NewReaderSize(stdin, 64<<10)
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			in := strings.TrimRight(line, "\r\n")
			var s *scan.Scan
			var derr error
			if *rfid {
				s, derr = dec.DecodeEPC(strings.TrimSpace(in))
			} else {
				data := in
				if *escapes {
					data = gsEscapes.Replace(in)
				}
				s, derr = dec.Decode([]byte(data))
			}
			w.Write(scan.JSONLine(in, s, derr))
			w.WriteByte('\n')
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
}

// stateFlags are the flags every state-file tool takes to find the files.
func stateFlags(fs *flag.FlagSet) func() (string, error) {
	cfgPath := fs.String("config", "/etc/dockd/dockd.yaml", "config file naming state_dir")
	dir := fs.String("state-dir", "", "state directory (overrides the config's state_dir)")
	return func() (string, error) {
		if *dir != "" {
			return *dir, nil
		}
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return "", fmt.Errorf("finding the state directory (or pass --state-dir): %w", err)
		}
		return cfg.StateDir, nil
	}
}

// bufferSynopses is the usage line of each buffer subcommand.
var bufferSynopses = map[string]string{
	"stats":  "dockd buffer stats [--config FILE | --state-dir DIR]",
	"peek":   "dockd buffer peek [N] [--config FILE | --state-dir DIR]",
	"export": "dockd buffer export FILE [--config FILE | --state-dir DIR]",
	"import": "dockd buffer import FILE [--config FILE | --state-dir DIR]",
}

const bufferUsage = `usage: dockd buffer stats | peek [N] | export FILE | import FILE   [--config FILE | --state-dir DIR]`

func cmdBuffer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	sub, args, err := commandWord(args, bufferUsage, stdout, stderr)
	if err != nil {
		return err
	}
	synopsis, ok := bufferSynopses[sub]
	if !ok {
		return &exitError{2, fmt.Errorf("unknown buffer command %q\n%s", sub, bufferUsage)}
	}
	fs := flag.NewFlagSet("buffer "+sub, flag.ContinueOnError)
	dirOf := stateFlags(fs)
	if err := parseArgs(fs, synopsis, args, stdout, stderr); err != nil {
		return err
	}
	dir, err := dirOf()
	if err != nil {
		return err
	}
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		return fmt.Errorf("%w (is the station running? stop it first: the file is locked while it runs)", err)
	}
	defer q.Close()
	switch sub {
	case "stats":
		return json.NewEncoder(stdout).Encode(q.Stats())
	case "peek":
		n := 10
		if fs.NArg() > 0 {
			fmt.Sscan(fs.Arg(0), &n)
		}
		rs, err := q.Pending(0, n)
		if err != nil {
			return err
		}
		for _, r := range rs {
			fmt.Fprintf(stdout, "%d\t%s\t%s\n", r.Seq, r.At.UTC().Format(time.RFC3339Nano), r.Payload)
		}
	case "export":
		if fs.NArg() != 1 {
			return &exitError{2, errors.New("usage: dockd buffer export FILE")}
		}
		f, err := os.Create(fs.Arg(0))
		if err != nil {
			return err
		}
		p := newProgress(stderr, "export", 0)
		err = q.Export(f, func(done, total int) { p.total = int64(total); p.update(int64(done), done) })
		p.done()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "exported %d events to %s\n", q.Stats().Depth, fs.Arg(0))
	case "import":
		if fs.NArg() != 1 {
			return &exitError{2, errors.New("usage: dockd buffer import FILE")}
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		p := newProgress(stderr, "import", 0)
		n, err := q.Import(f, func(done int) { p.update(int64(done), done) })
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d events; they will be delivered when the station runs\n", n)
	default:
		return &exitError{2, fmt.Errorf("unknown buffer command %q", sub)}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// progress prints how a long job goes: a bar with rate and ETA redrawn in
// place on a terminal, a plain line every few seconds otherwise.
type progress struct {
	w      io.Writer
	what   string
	total  int64 // bytes or items; 0 when unknown
	tty    bool
	start  time.Time
	last   time.Time
	n      int64
	items  int
	plainE time.Duration
}

func newProgress(w io.Writer, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now(), plainE: 2 * time.Second}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progress) update(n int64, items int) {
	p.n, p.items = n, items
	now := time.Now()
	every := p.plainE
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.print(false)
}

func (p *progress) print(final bool) {
	el := time.Since(p.start).Seconds()
	rate := float64(p.items) / max(el, 1e-3)
	line := fmt.Sprintf("%s: %d rows, %.0f rows/s", p.what, p.items, rate)
	if p.total > 0 {
		frac := min(float64(p.n)/float64(p.total), 1)
		eta := time.Duration(0)
		if frac > 0 {
			eta = time.Duration(el/frac*(1-frac)) * time.Second
		}
		if p.tty {
			const width = 30
			fill := int(frac * width)
			line = fmt.Sprintf("%s [%s%s] %3.0f%% %s ETA %s", p.what, strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100, line[len(p.what)+2:], eta.Round(time.Second))
		} else {
			line += fmt.Sprintf(", %.0f%%, ETA %s", frac*100, eta.Round(time.Second))
		}
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s", line)
		if final {
			fmt.Fprintln(p.w)
		}
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() { p.print(true) }
