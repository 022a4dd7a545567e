package allowlist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func lotsCSV(n int, prefix string) string {
	var b strings.Builder
	b.WriteString("gtin,lot,status\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "09506000134352,%s%d,released\n", prefix, i)
	}
	return b.String()
}

// An import that would grow the file past the limit stops with
// ErrFileLimit naming the limit, and the list in force stays.
func TestImportRefusedPastFileLimit(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"), WithMaxFileBytes(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(10, "OLD")), "v1", nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(2*batchRows+1, "N")), "v2", nil)
	if !errors.Is(err, ErrFileLimit) || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "2 MiB") {
		t.Fatalf("import past the limit: %v", err)
	}
	if in, _ := s.Info(); in.Version != "v1" {
		t.Fatalf("version %q in force after a refused import, want v1", in.Version)
	}
	if _, ok, _ := s.Lot("09506000134352", "OLD3"); !ok {
		t.Fatal("the old list's lot is gone")
	}
}

// Replacing a list leaves the file about twice its live size; Compact
// brings it back and the list, custody state and later imports still work.
func TestCompactAfterReplacement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(batchRows, v)), v, nil); err != nil {
			t.Fatal(err)
		}
	}
	before, after, err := s.Compact()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("allowlist.db %d KiB before, %d KiB after compaction", before>>10, after>>10)
	if after*10 > before*7 {
		t.Fatalf("compaction took the file from %d to %d bytes only", before, after)
	}
	if fi, _ := os.Stat(path); fi.Size() != after {
		t.Fatalf("file is %d bytes, Compact said %d", fi.Size(), after)
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if _, ok, _ := s.Lot("09506000134352", "v2123"); !ok {
		t.Fatal("a lot of the active version is gone after compaction")
	}
	if _, ok, _ := s.Lot("09506000134352", "v1123"); ok {
		t.Fatal("the replaced version came back")
	}
	if _, err := s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(10, "v3")), "v3", nil); err != nil {
		t.Fatalf("import after compaction: %v", err)
	}
}
