package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Benchmarks write real, fsync'd files. Set BUFFER_BENCH_DIR to put them
// on the disk you want to measure (default: the test temp dir); numbers on
// tmpfs are meaningless because fsync is free there.

const benchPayloadSize = 300

var benchPayload = bytes.Repeat([]byte("e"), benchPayloadSize)

func benchDir(b *testing.B) string {
	if d := os.Getenv("BUFFER_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

func benchQueue(b *testing.B) *Queue {
	q, err := Open(filepath.Join(benchDir(b), "q.db"), Options{MaxBytes: 1 << 40, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

func build300(uint64) ([]byte, error) { return benchPayload, nil }

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
}

func reportRate(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "events/s")
}

// BenchmarkAppendSingle: one appender, each Append waits for its own fsync.
func BenchmarkAppendSingle(b *testing.B) {
	q := benchQueue(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := q.Append(ctx, build300); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat)
	reportRate(b, b.N, elapsed)
}

// BenchmarkAppendConcurrent: 64 goroutines (and, to show how group commit
// scales with offered load, 512) append at once and share group commits.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, g := range []int{64, 512} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			q := benchQueue(b)
			ctx := context.Background()
			b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
			c0 := q.commits.Load()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := q.Append(ctx, build300); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			reportRate(b, b.N, elapsed)
			if c := q.commits.Load() - c0; c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "appends/commit")
				b.ReportMetric(elapsed.Seconds()*1e3/float64(c), "ms/commit")
			}
		})
	}
}

// BenchmarkAppendConcurrentWithAcks: as above, with an uplink-like reader
// acking behind the writers, so commits also delete.
func BenchmarkAppendConcurrentWithAcks(b *testing.B) {
	q := benchQueue(b)
	ctx := context.Background()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 goroutines in all
	stop := make(chan struct{})
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for {
			select {
			case <-stop:
				return
			case <-q.Notify():
			}
			st := q.Stats()
			if st.Depth > 1000 {
				if err := q.Ack(st.NewestSeq - 500); err != nil {
					b.Error(err)
					return
				}
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Append(ctx, build300); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	<-acked
	reportRate(b, b.N, elapsed)
}

func benchBolt(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(benchDir(b), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("r")); return err }); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkBoltOnePerTx: raw bbolt baseline, one 300-byte value per Update
// (default options, so fsync on).
func BenchmarkBoltOnePerTx(b *testing.B) {
	db := benchBolt(b)
	lat := make([]time.Duration, 0, b.N)
	var k [8]byte
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		binary.BigEndian.PutUint64(k[:], uint64(i))
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("r")).Put(k[:], benchPayload) }); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat)
	reportRate(b, b.N, elapsed)
}

// BenchmarkBoltBatch100: raw bbolt baseline, 100 values of 300 bytes per
// Update; b.N counts values.
func BenchmarkBoltBatch100(b *testing.B) {
	db := benchBolt(b)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += 100 {
		n := min(100, b.N-i)
		if err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket([]byte("r"))
			for j := 0; j < n; j++ {
				var k [8]byte
				binary.BigEndian.PutUint64(k[:], uint64(i+j))
				if err := bk.Put(k[:], benchPayload); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, b.N, elapsed)
}

// BenchmarkOpen100k measures Open (read-only validation walk, bbolt's
// freelist rebuild, the stats scan and tx.Check) on a queue holding 100,000
// undelivered 300-byte records (about 30 MB of payload).
func BenchmarkOpen100k(b *testing.B) {
	path := filepath.Join(benchDir(b), "q.db")
	q, err := Open(path, Options{MaxBytes: 1 << 40, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 500; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := q.Append(context.Background(), build300); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q, err := Open(path, Options{MaxBytes: 1 << 40, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if d := q.Stats().Depth; d != 100000 {
			b.Fatalf("depth %d", d)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
