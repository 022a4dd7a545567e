package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// cliCall runs dockd with args and an empty stdin.
func cliCall(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	code = 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errOut.WriteString("dockd: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), code
}

// topCommands are the command words the top-level usage lists ("dockd WORD
// ..."), so a command added to the usage is covered by the tests below
// without editing them.
func topCommands(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+dockd ([a-z][a-z-]*)`).FindAllStringSubmatch(usage, -1) {
		seen[m[1]] = true
	}
	var words []string
	for w := range seen {
		words = append(words, w)
	}
	sort.Strings(words)
	if len(words) < 10 {
		t.Fatalf("found only %v in the usage text", words)
	}
	return words
}

// cliCase is one runnable command: its command words and example
// positional arguments.
type cliCase struct{ words, positional []string }

func (c cliCase) args() []string { return append(slices.Clone(c.words), c.positional...) }

// cliCommands is every runnable command: each top-level word, and for each
// command family every subcommand, with example positional arguments.
func cliCommands(t *testing.T) []cliCase {
	families := map[string][]string{"light": {"test"}, "collect": {"run", "trace", "baseline", "export"}}
	for sub := range allowlistSynopses {
		families["allowlist"] = append(families["allowlist"], sub)
	}
	families["allowlist"] = append(families["allowlist"], "trace")
	for sub := range bufferSynopses {
		families["buffer"] = append(families["buffer"], sub)
	}
	positional := map[string][]string{
		"check-config":     {"dockd.yaml"},
		"direction":        {"receiving"},
		"simulate":         {"]C10109506000134352"},
		"allowlist import": {"list.csv"},
		"allowlist export": {"out.csv"},
		"allowlist lookup": {"09506000134352", "LOT1"},
		"buffer peek":      {"5"},
		"buffer export":    {"out.jsonl"},
		"buffer import":    {"in.jsonl"},
	}
	var cases []cliCase
	for _, w := range topCommands(t) {
		subs, ok := families[w]
		if !ok {
			cases = append(cases, cliCase{[]string{w}, positional[w]})
			continue
		}
		slices.Sort(subs)
		for _, s := range subs {
			cases = append(cases, cliCase{[]string{w, s}, positional[w+" "+s]})
		}
	}
	return cases
}

// Every command and command family answers -h and --help with its usage on
// stdout, nothing on stderr, and exit code 0, before doing anything else;
// also when the help flag comes after the arguments.
func TestCLIHelpEverywhere(t *testing.T) {
	cases := []cliCase{{}} // dockd itself
	families := map[string]bool{}
	for _, c := range cliCommands(t) {
		if len(c.words) == 2 && !families[c.words[0]] {
			families[c.words[0]] = true
			cases = append(cases, cliCase{words: c.words[:1]}) // dockd allowlist --help
		}
		cases = append(cases, c)
	}
	for _, c := range cases {
		for _, h := range []string{"-h", "--help"} {
			args := append(c.args(), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, errOut, code := cliCall(t, args...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr:\n%s", code, errOut)
				}
				if !strings.HasPrefix(out, "usage: dockd ") && !strings.HasPrefix(out, "dockd — ") ||
					len(c.words) > 0 && !strings.Contains(out, c.words[len(c.words)-1]) {
					t.Errorf("stdout is not a usage of dockd %s:\n%s", strings.Join(c.words, " "), out)
				}
			})
		}
	}
}

// A flag after the positional arguments is parsed as a flag, not taken as
// an argument: an unknown one is refused by name with exit code 2 before
// the command does anything.
func TestCLIUnknownFlagAfterArgumentsRefused(t *testing.T) {
	for _, c := range cliCommands(t) {
		args := append(c.args(), "--no-such-flag")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, code := cliCall(t, args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if !strings.Contains(errOut, "-no-such-flag") {
				t.Errorf("stderr does not name the flag:\n%s", errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty:\n%s", out)
			}
		})
	}
}

// Flags after positional arguments take effect: the import goes into the
// state directory named after the file, with the version named after it,
// not into the default state directory.
func TestCLIFlagsAfterArguments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	csv := filepath.Join(t.TempDir(), "list.csv")
	if err := os.WriteFile(csv, []byte("gtin,lot,status\n09506000134352,LOT42,released\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cliCall(t, "allowlist", "import", csv, "--state-dir", dir, "--version", "v-after")
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "imported version v-after") {
		t.Errorf("import said %q, want version v-after", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "allowlist.db")); err != nil {
		t.Fatalf("the import did not go into --state-dir: %v", err)
	}
	// Flags between the arguments, and -- before an argument that starts with a dash.
	out, errOut, code = cliCall(t, "allowlist", "lookup", "09506000134352", "--state-dir="+dir, "LOT42")
	if code != 0 || !strings.Contains(out, "LOT42") {
		t.Fatalf("lookup with a flag between the arguments: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = cliCall(t, "allowlist", "lookup", "--state-dir", dir, "--", "09506000134352", "-LOT")
	if code != 1 || !strings.Contains(errOut, `"-LOT"`) {
		t.Fatalf("lookup of lot -LOT after --: exit %d (want 1, not on the list)\n%s", code, errOut)
	}
	// A value flag at the very end without its value is refused by name.
	_, errOut, code = cliCall(t, "buffer", "stats", "--state-dir")
	if code != 2 || !strings.Contains(errOut, "flag needs an argument: --state-dir") {
		t.Fatalf("--state-dir without a value: exit %d\n%s", code, errOut)
	}
	out, errOut, code = cliCall(t, "buffer", "export", filepath.Join(dir, "backlog.jsonl"), "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "exported 0 events") {
		t.Fatalf("buffer export FILE --state-dir: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "buffer.db")); err != nil {
		t.Fatalf("buffer export did not use --state-dir: %v", err)
	}
}

// A command that takes no positional arguments refuses one by name instead
// of ignoring it.
func TestCLIStrayArgumentRefused(t *testing.T) {
	for _, c := range [][]string{{"run", "dockd.yaml"}, {"demo", "stray"}, {"provision", "stray"}, {"doctor", "stray"},
		{"decode", "stray"}, {"light", "test", "stray"}, {"trace", "--lot", "L", "stray"}, {"login-link", "stray"}, {"reload", "stray"}} {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			_, errOut, code := cliCall(t, c...)
			if want := strconv.Quote(c[len(c)-1]); code != 2 || !strings.Contains(errOut, "unexpected argument "+want) {
				t.Fatalf("exit %d, want 2 naming the argument %s\n%s", code, want, errOut)
			}
		})
	}
}
