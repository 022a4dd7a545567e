// Command aigen regenerates internal/scan/ai_table_gen.go from the GS1
// Barcode Syntax Dictionary and internal/scan/codes_gen.go from the code
// lists. It is run by go generate in internal/scan:
//
//	go run ./internal/aigen/cmd/aigen -out ai_table_gen.go -codes-out codes_gen.go
//
// Both inputs are kept in the repository, in internal/scan/gs1data (the
// dictionary unchanged, Apache-2.0, with its LICENSE), so this works on a
// fresh clone; -dict and -codes override them. Linters named by the
// dictionary that the scan package does not implement are printed as
// warnings on stderr.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dockd/dockd/internal/scan/internal/aigen"
)

func main() {
	dict := flag.String("dict", filepath.Join("gs1data", "gs1-syntax-dictionary.txt"), "path of the Syntax Dictionary")
	out := flag.String("out", "ai_table_gen.go", "AI table output file")
	codes := flag.String("codes", filepath.Join("gs1data", "codelists.txt"), "path of the code-list file")
	codesOut := flag.String("codes-out", "codes_gen.go", "code-list output file")
	commit := flag.String("commit", aigen.DefaultCommit, "dictionary commit recorded in the generated header")
	flag.Parse()
	if err := run(*dict, *out, *codes, *codesOut, *commit); err != nil {
		fmt.Fprintln(os.Stderr, "aigen:", err)
		os.Exit(1)
	}
}

func run(dict, out, codes, codesOut, commit string) error {
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
	csrc, err := os.ReadFile(codes)
	if err != nil {
		return fmt.Errorf("reading code lists: %w", err)
	}
	ccode, err := aigen.GenerateCodes(csrc)
	if err != nil {
		return fmt.Errorf("generating from %s: %w", codes, err)
	}
	if err := os.WriteFile(codesOut, ccode, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", codesOut, err)
	}
	return nil
}
