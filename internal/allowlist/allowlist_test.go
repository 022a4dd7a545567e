package allowlist

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/custody"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestImportSampleAndLookUp(t *testing.T) {
	s := openStore(t)
	if ok, err := s.Product("09506000134352"); ok || err != nil {
		t.Fatalf("empty store: Product = %v, %v", ok, err)
	}
	info, err := s.ImportCSV(context.Background(), strings.NewReader(string(firmwareconfig.SampleAllowlist)), "sample-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "sample-1" || info.Lots != 5 {
		t.Fatalf("info %+v", info)
	}
	l, ok, err := s.Lot("09506000134352", "LOT43")
	if err != nil || !ok || l.Status != custody.Recalled || l.Reason != "RC-2026-118 contamination" {
		t.Fatalf("LOT43 = %+v %v %v", l, ok, err)
	}
	if _, ok, _ := s.Lot("09506000134352", "LOT99"); ok {
		t.Fatal("unknown lot found")
	}
	if ok, _ := s.Product("04012345000016"); !ok {
		t.Fatal("product of B2026-11 not found")
	}
	if ok, _ := s.Product("0401234500001"); ok {
		t.Fatal("a GTIN prefix must not match")
	}
	got, _ := s.Info()
	if got.Version != "sample-1" || got.Lots != 5 || got.Updated.IsZero() {
		t.Fatalf("Info after reopen %+v", got)
	}
	var sb strings.Builder
	n, err := s.Export(&sb)
	if err != nil || n != 5 || !strings.HasPrefix(sb.String(), strings.Join(Columns, ",")+"\n") {
		t.Fatalf("export %d %v\n%s", n, err, sb.String())
	}
}

func TestBadRowsLeaveListInForce(t *testing.T) {
	s := openStore(t)
	if _, err := s.ImportCSV(context.Background(), strings.NewReader("gtin,lot,status\n09506000134352,A,released\n"), "v1", nil); err != nil {
		t.Fatal(err)
	}
	bad := "gtin,lot,status,expiry\n" +
		"09506000134352,B,released,\n" + // line 2 good
		"09506000134353,C,released,\n" + // line 3 check digit
		"09506000134352,D,lost,\n" + // line 4 status
		"09506000134352,E,released,2026-13-01\n" + // line 5 date
		"09506000134352,,released,\n" // line 6 lot
	_, err := s.ImportCSV(context.Background(), strings.NewReader(bad), "v2", nil)
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Bad != 4 {
		t.Fatalf("want 4 bad rows, got %v", err)
	}
	for i, want := range []string{"line 3: gtin", "line 4: status", "line 5: expiry", "line 6: lot"} {
		if !strings.HasPrefix(ie.Rows[i].Error(), want) {
			t.Errorf("row %d: %q, want prefix %q", i, ie.Rows[i].Error(), want)
		}
	}
	info, _ := s.Info()
	if info.Version != "v1" {
		t.Fatalf("active version %q after failed import", info.Version)
	}
	if _, ok, _ := s.Lot("09506000134352", "B"); ok {
		t.Fatal("a row of the failed import became visible")
	}
	if _, ok, _ := s.Lot("09506000134352", "A"); !ok {
		t.Fatal("old list lost")
	}
	if _, err := s.ImportCSV(context.Background(), strings.NewReader("gtin,status\n1,released\n"), "v3", nil); err == nil || !strings.Contains(err.Error(), `lacks column "lot"`) {
		t.Fatalf("missing column: %v", err)
	}
}

// TestSwapIsAtomic reads continuously while a large import replaces the
// list: every read sees the old version's lot or the new one's, never
// neither, and the old version is gone afterwards.
func TestSwapIsAtomic(t *testing.T) {
	s := openStore(t)
	if _, err := s.ImportCSV(context.Background(), strings.NewReader("gtin,lot,status\n09506000134352,OLD,released\n"), "v1", nil); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("gtin,lot,status\n")
	for i := 0; i < (2*batchRows + 1); i++ {
		fmt.Fprintf(&b, "09506000134352,N%d,released\n", i)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sawNew atomic.Bool
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			var old, last bool
			s.View(func(l custody.List) error { // one snapshot
				_, old, _ = l.Lot("09506000134352", "OLD")
				_, last, _ = l.Lot("09506000134352", fmt.Sprintf("N%d", (2*batchRows+1)-1))
				return nil
			})
			if old == last {
				select {
				case errc <- fmt.Errorf("read saw old=%v new=%v", old, last):
				default:
				}
				return
			}
			if last {
				sawNew.Store(true)
			}
		}
	}()
	rowsSeen := 0
	info, err := s.ImportCSV(context.Background(), strings.NewReader(b.String()), "v2", func(n int) { rowsSeen = n })
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-errc:
		t.Fatal(e)
	default:
	}
	if info.Lots != (2*batchRows+1) || rowsSeen != (2*batchRows+1) {
		t.Fatalf("info %+v, progress %d", info, rowsSeen)
	}
	if _, ok, _ := s.Lot("09506000134352", "OLD"); ok {
		t.Fatal("old version still visible")
	}
	s.view(func(tx *bolt.Tx) error {
		n := 0
		tx.Bucket(bucketLists).ForEach(func(_, _ []byte) error { n++; return nil })
		if n != 1 {
			t.Errorf("want one list version left, have %d", n)
		}
		return nil
	})
}
