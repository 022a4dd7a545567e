package allowlist

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/custody"
)

// lotRows streams n synthetic rows without holding them in memory: 1000
// products with n/1000 lots each.
func lotRows(n int) func() (custody.Lot, int, error) {
	i := 0
	return func() (custody.Lot, int, error) {
		if i >= n {
			return custody.Lot{}, i, io.EOF
		}
		i++
		return custody.Lot{GTIN: gtinOf(i % 1000), Lot: fmt.Sprintf("L%09d", i), Status: custody.Released, Expiry: "2030-01-01"}, i + 1, nil
	}
}

// gtinOf returns a valid GTIN-14 for product number p.
func gtinOf(p int) string {
	body := fmt.Sprintf("0950600%06d", p)
	sum := 0
	for i := 0; i < 13; i++ {
		d := int(body[i] - '0')
		if (13-i)%2 == 1 {
			d *= 3
		}
		sum += d
	}
	return body + fmt.Sprint((10-sum%10)%10)
}

// BenchmarkLookup measures a rule's look-ups (Product + Lot, as Decide does)
// on a list of 1M lots; reports p50/p99 per scan.
func BenchmarkLookup(b *testing.B) {
	const n = 1_000_000
	s, err := Open(filepath.Join(b.TempDir(), "allowlist.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	if _, err := s.importRows(context.Background(), "bench", lotRows(n), nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("imported %d lots in %s (%.0f rows/s)", n, time.Since(t0).Round(time.Millisecond), n/time.Since(t0).Seconds())
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := (i*7919)%n + 1
		t := time.Now()
		ok1, _ := s.Product(gtinOf(k % 1000))
		_, ok2, _ := s.Lot(gtinOf(k%1000), fmt.Sprintf("L%09d", k))
		lat = append(lat, time.Since(t))
		if !ok1 || !ok2 {
			b.Fatalf("lot %d not found", k)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
