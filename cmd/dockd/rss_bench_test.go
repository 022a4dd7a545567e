package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/testkit"
)

// rss is a process's resident memory in KiB: anonymous (heap, stacks:
// what the daemon itself holds) and file-backed (bbolt's memory-mapped
// file: page cache the kernel can reclaim).
type rss struct{ anon, file int }

func readRSS(pid int) (rss, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return rss{}, err
	}
	defer f.Close()
	var r rss
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for key, dst := range map[string]*int{"RssAnon:": &r.anon, "RssFile:": &r.file} {
			if v, ok := strings.CutPrefix(sc.Text(), key); ok {
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), dst)
			}
		}
	}
	return r, sc.Err()
}

// BenchmarkRSSWithBacklog fills the buffer with DOCKD_BACKLOG events
// (default 1,000,000, ~420 bytes each), starts the real daemon (no race
// detector) against a broker, and reports its RSS while idle with the
// backlog and at the peak while it drains: anonymous memory (what must stay
// bounded) and the file-backed part (the mapped bbolt file).
func BenchmarkRSSWithBacklog(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("DOCKD_BACKLOG"); s != "" {
		fmt.Sscan(s, &n)
	}
	bin := dockdPlainBinary(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		importSample(b, dir)
		q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{MaxBytes: 4 << 30})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		const workers = 512
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < n; j += workers {
					if _, err := q.Append(context.Background(), func(seq uint64) ([]byte, error) { return []byte(eventLike(j)), nil }); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		fill := time.Since(t0)
		st := q.Stats()
		q.Close()
		b.Logf("backlog of %d events (%d MiB payload, file %d MiB) written in %s", st.Depth, st.Bytes>>20, st.FileBytes>>20, fill.Round(time.Millisecond))

		pty := testkit.NewPTY(b)
		broker := testkit.StartMosquitto(b)
		broker.Stop() // idle first: the broker is away
		cfg := filepath.Join(dir, "dockd.yaml")
		os.WriteFile(cfg, []byte(stationConfig(dir, pty.Path(), broker.URL(), "virtual")+"buffer:\n  max_bytes: 4GiB\n"), 0o600)
		p := startProcBin(b, bin, cfg)
		time.Sleep(2 * time.Second)
		idle, err := readRSS(p.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		broker.Start()
		peak := idle
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if r, err := readRSS(p.cmd.Process.Pid); err == nil {
				peak.anon, peak.file = max(peak.anon, r.anon), max(peak.file, r.file)
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.ReportMetric(float64(idle.anon)/1024, "idle-anon-MiB")
		b.ReportMetric(float64(peak.anon)/1024, "draining-anon-MiB")
		b.ReportMetric(float64(peak.file)/1024, "mapped-file-MiB")
		b.ReportMetric(0, "ns/op")
	}
}
