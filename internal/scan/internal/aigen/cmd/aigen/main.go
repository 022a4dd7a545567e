// Command aigen regenerates internal/scan/ai_table_gen.go from the GS1
// Barcode Syntax Dictionary. It is run by go generate in internal/scan:
//
//	go run ./internal/aigen/cmd/aigen -out ai_table_gen.go
//
// By default the dictionary is read from ../shared/gs1/gs1-syntax-dictionary.txt
// relative to the repository root (the directory holding go.mod); -dict
// overrides it. Linters named by the dictionary that the scan package does not
// implement are printed as warnings on stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dockd/dockd/internal/scan/internal/aigen"
)

func main() {
	dict := flag.String("dict", "", "path of gs1-syntax-dictionary.txt (default: <repo root>/../shared/gs1/gs1-syntax-dictionary.txt)")
	out := flag.String("out", "ai_table_gen.go", "output file")
	commit := flag.String("commit", aigen.DefaultCommit, "dictionary commit recorded in the generated header")
	flag.Parse()
	if err := run(*dict, *out, *commit); err != nil {
		fmt.Fprintln(os.Stderr, "aigen:", err)
		os.Exit(1)
	}
}

func run(dict, out, commit string) error {
	if dict == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		dict = filepath.Join(root, "..", "shared", "gs1", "gs1-syntax-dictionary.txt")
	}
	src, err := os.ReadFile(dict)
	if err != nil {
		return fmt.Errorf("reading dictionary: %w", err)
	}
	code, warnings, err := aigen.Generate(src, commit)
	if err != nil {
		return fmt.Errorf("generating from %s: %w", dict, err)
	}
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "aigen: warning:", w)
	}
	if err := os.WriteFile(out, code, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}
