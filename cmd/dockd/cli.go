package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// The one argument rule of every dockd command, implemented here once:
//
//   - Command words come first (`dockd allowlist import`); after them flags
//     and positional arguments may come in any order, so
//     `dockd allowlist import FILE --state-dir X` imports into X.
//   - `--` ends the flags: what follows is positional even if it starts
//     with a dash (a lot named "-7", say).
//   - An unknown flag, or a flag missing its value, is refused by name with
//     the usage on stderr and exit code 2, before anything is done.
//   - -h, -help and --help print the usage to stdout and exit 0.
//
// A command adopts it by building its flag.FlagSet as usual and calling
// parseArgs instead of fs.Parse; afterwards fs.Args() holds the positional
// arguments in order. A command family (`dockd collect ...`) first calls
// commandWord to take its subcommand and answer help for the family.

// errHelpShown is returned after a help request was answered on stdout; run
// turns it into exit code 0.
var errHelpShown = fmt.Errorf("help shown: %w", flag.ErrHelp)

// isHelpArg reports whether a is one of the help flags.
func isHelpArg(a string) bool {
	switch a {
	case "-h", "--h", "-help", "--help", "help":
		return true
	}
	return false
}

// parseArgs parses args into fs under the rule above. synopsis is the usage
// line without "usage: " (e.g. "dockd allowlist import [flags] FILE"); the
// flags' defaults are printed below it. On success fs.Args() holds the
// positional arguments. Errors are errHelpShown or an *exitError with code 2.
func parseArgs(fs *flag.FlagSet, synopsis string, args []string, stdout, stderr io.Writer) error {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) {
			continue // an unknown flag is refused by fs.Parse below
		}
		if i+1 == len(args) {
			return usageError(fs, synopsis, stderr, fmt.Errorf("flag needs an argument: %s", a))
		}
		i++
		flags = append(flags, args[i])
	}
	fs.SetOutput(io.Discard) // the messages below replace the flag package's
	fs.Usage = func() {}
	err := fs.Parse(append(append(flags, "--"), positional...))
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, fs, synopsis)
		return errHelpShown
	case err != nil:
		return usageError(fs, synopsis, stderr, err)
	}
	return nil
}

// isBoolFlag reports whether f takes no value (-json, not -json VALUE).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// usageError prints the usage to stderr and returns err, prefixed with the
// command's name, with exit code 2 (main prints it last, where it is seen).
func usageError(fs *flag.FlagSet, synopsis string, stderr io.Writer, err error) error {
	printUsage(stderr, fs, synopsis)
	return &exitError{2, fmt.Errorf("%s: %w", fs.Name(), err)}
}

// printUsage writes "usage: SYNOPSIS" and the flags with their defaults.
func printUsage(w io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintf(w, "usage: %s\n", synopsis)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nflags (before or after the arguments; -- ends them):")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// commandWord takes the subcommand word of a command family (allowlist,
// buffer, light, collect, ...). usage lists the family's subcommands. With no
// word it prints usage to stderr and returns exit code 2; with a help flag
// or "help" it prints usage to stdout and returns errHelpShown. Otherwise it
// returns the word and the arguments after it, which the subcommand parses
// with parseArgs (so `dockd allowlist import --help` shows that one's flags).
func commandWord(args []string, usage string, stdout, stderr io.Writer) (string, []string, error) {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return "", nil, &exitError{2, errors.New("no subcommand given")}
	}
	if isHelpArg(args[0]) {
		fmt.Fprintln(stdout, usage)
		return "", nil, errHelpShown
	}
	return args[0], args[1:], nil
}
