package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

// writeBytes is /proc/PID/io write_bytes: bytes the process caused to be
// written to storage.
func writeBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			var n int64
			_, err := fmt.Sscan(strings.TrimSpace(v), &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no write_bytes in /proc/%d/io", pid)
}

// flashRun runs the real daemon (no race detector) as a child process in
// the given delivery mode, scans n labels at one per interval, waits until
// all were delivered (and, in receipt mode, receipted by a central that
// receipts every 500 ms) and the writes settled, and returns the bytes the
// daemon wrote to storage per event.
func flashRun(b *testing.B, mode string, n int, interval time.Duration) float64 {
	dir := b.TempDir() // on the test machine's disk (ext4), not tmpfs
	importSample(b, dir)
	pty := testkit.NewPTY(b)
	broker := testkit.StartMosquitto(b)
	central := testkit.NewCentral(b, []string{broker.URL()}, e2eEvents, e2eReceipts, e2eStation)
	y := stationConfig(dir, pty.Path(), broker.URL(), "virtual")
	if mode == "receipt" {
		y = receiptYAML(y, "30s", "5m")
		central.AutoReceipt(b, 500*time.Millisecond)
	}
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(y), 0o600)
	p := startProcBin(b, dockdPlainBinary(b), cfgPath)
	pid := p.cmd.Process.Pid
	settle := func() int64 {
		last, _ := writeBytes(pid)
		for stable := 0; stable < 3; {
			time.Sleep(time.Second)
			v, err := writeBytes(pid)
			if err != nil {
				b.Fatal(err)
			}
			if v == last {
				stable++
			} else {
				stable, last = 0, v
			}
		}
		return last
	}
	before := settle()
	for i := 0; i < n; i++ {
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("F%s%05d", mode[:1], i))))
		time.Sleep(interval)
	}
	waitUntil(b, 60*time.Second, "every event at central", func() bool { return central.Prefix(b) >= uint64(n) })
	after := settle()
	return float64(after-before) / float64(n)
}

// BenchmarkFlashPerEvent measures the storage bytes the whole daemon writes
// per event with broker delivery and with receipt delivery, in the same
// run (DOCKD_FLASH_EVENTS events, default 500, 50 scans/s).
func BenchmarkFlashPerEvent(b *testing.B) {
	n := 500
	if s := os.Getenv("DOCKD_FLASH_EVENTS"); s != "" {
		fmt.Sscan(s, &n)
	}
	for i := 0; i < b.N; i++ {
		brk := flashRun(b, "broker", n, 20*time.Millisecond)
		rcp := flashRun(b, "receipt", n, 20*time.Millisecond)
		b.ReportMetric(brk, "broker-B/event")
		b.ReportMetric(rcp, "receipt-B/event")
		b.ReportMetric(rcp-brk, "extra-B/event")
		b.ReportMetric(rcp/brk, "ratio")
	}
}
