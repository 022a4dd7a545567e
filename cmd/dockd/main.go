// Command dockd is the dock-door station daemon and its technician tools.
//
//	dockd run --config /etc/dockd/dockd.yaml   run a station
//	dockd demo                                 a demo station on embedded defaults
//	dockd check-config FILE                    validate a config (file:line: reason)
//	dockd provision / dockd doctor             set a box up; diagnose it
//	dockd decode [--rfid] [--escapes] [--digital-link strict|lenient]  decode scans from stdin, one JSON line each
//	dockd allowlist import|export|stats|lookup manage the local allowlist
//	dockd buffer stats|peek|export|import      inspect and carry the event backlog
//	dockd collect run|trace                    central: events into PostgreSQL, receipts back
//	dockd version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/dockd/dockd/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitError carries a process exit code through run's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "dockd:", err)
		}
		os.Exit(code)
	}
}

const usage = `dockd — dock-door station daemon

Usage:
  dockd run --config FILE            run a station (default FILE /etc/dockd/dockd.yaml)
  dockd demo                         a demo station: type scans, watch the light and what central receives
  dockd check-config FILE            validate a config; exits 1 with file:line: reason on error
  dockd provision [--site … --door … --yes]   write /etc/dockd/dockd.yaml (interactive on a terminal)
  dockd doctor [--json] [--wait-scan N]      check config, readers, GPIO, broker, clock, disk, buffer, allowlist
  dockd light test [--direct]        cycle every lamp and the buzzer (through the running station)
  dockd simulate [SCAN …]            inject scans into the running station (args or stdin), print each decision
  dockd login-link                   print a one-time link that signs a browser in to the status page
  dockd direction receiving|shipping switch the running station's door (recorded with who did it)
  dockd reload                       the running station re-reads its config file (what needs no restart)
  dockd decode [--rfid] [--escapes] [--digital-link strict|lenient]
                                     decode scans from stdin (one per line), print one JSON object per line
  dockd allowlist import|export|stats|lookup ...
  dockd trace --lot L | --serial S | --sscc X   what crossed this door, when, which way, with what decision
  dockd buffer stats|peek|export|import ...
  dockd collect run|trace ...        central's collector: events into PostgreSQL, receipts to stations, traces
  dockd version
`

// run dispatches a subcommand. It is main without os.Exit, for tests. A help
// request answered on stdout (errHelpShown) is success.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

// dispatch runs the command args[0] names. Every command parses what follows
// its command words with parseArgs (cli.go).
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{2, errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdin, stdout, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "provision":
		return cmdProvision(ctx, rest, stdin, stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, rest, stdout, stderr)
	case "trace":
		return cmdTrace(ctx, rest, stdout, stderr)
	case "light":
		return cmdLight(ctx, rest, stdout, stderr)
	case "direction":
		return cmdDirection(ctx, rest, stdout, stderr)
	case "reload":
		return cmdReload(ctx, rest, stdout, stderr)
	case "login-link":
		return cmdLoginLink(ctx, rest, stdout, stderr)
	case "simulate":
		return cmdSimulate(ctx, rest, stdin, stdout, stderr)
	case "decode":
		return cmdDecode(rest, stdin, stdout, stderr)
	case "allowlist":
		return cmdAllowlist(ctx, rest, stdout, stderr)
	case "buffer":
		return cmdBuffer(ctx, rest, stdin, stdout, stderr)
	case "collect":
		return cmdCollect(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		if err := parseArgs(flag.NewFlagSet("version", flag.ContinueOnError), "dockd version", rest, stdout, stderr); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "dockd", version)
		return nil
	case "help", "--help", "-h", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{2, fmt.Errorf("unknown command %q", cmd)}
}

// loadConfig reads and validates a config file.
func loadConfig(path string) (config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Config{}, fmt.Errorf("reading config: %w", err)
	}
	return config.Parse(path, data)
}

// newLogger builds the slog logger the config asks for: text on a terminal,
// JSON otherwise (journald), unless the format is forced.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "/etc/dockd/dockd.yaml", "config file")
	if err := parseArgs(fs, "dockd run [--config FILE]", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{2, fmt.Errorf("run: unexpected argument %q (the config is given with --config FILE)", fs.Arg(0))}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	d, err := openDaemon(cfg, log, daemonOptions{ConfigPath: *path})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	if err := parseArgs(fs, "dockd check-config FILE", args, stdout, stderr); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) != 1 {
		return &exitError{2, errors.New("usage: dockd check-config FILE")}
	}
	cfg, err := loadConfig(args[0])
	if err == nil {
		err = checkDevices(args[0], cfg)
	}
	if err != nil {
		return &exitError{1, err}
	}
	fmt.Fprintf(stdout, "%s: OK (station %s, door %s, %s, %d reader(s), light %s)\n",
		args[0], cfg.Station.ID, cfg.Station.Door, cfg.Station.Direction, len(cfg.Readers), cfg.Light.Driver)
	return nil
}
