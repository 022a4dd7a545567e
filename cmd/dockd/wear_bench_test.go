package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/scan"
	"github.com/dockd/dockd/internal/testkit"
)

// benchBinary is the daemon the whole-daemon benchmarks run:
// DOCKD_BENCH_BIN (e.g. an older build, for a before/after ratio on the same
// machine) or this tree built without the race detector.
func benchBinary(b *testing.B) string {
	if p := os.Getenv("DOCKD_BENCH_BIN"); p != "" {
		return p
	}
	return dockdPlainBinary(b)
}

// wearChild is `dockd run` (no race detector) as a child process, with its
// JSON log parsed for decisions and a burst summary's counts.
type wearChild struct {
	cmd     *exec.Cmd
	decided atomic.Int64
	readers atomic.Int64
	done    chan struct{}
	cpu0    time.Duration
}

func startWearChild(b *testing.B, bin, cfgPath string, readers int) *wearChild {
	b.Helper()
	c := &wearChild{done: make(chan struct{})}
	c.cmd = exec.Command(bin, "run", "--config", cfgPath)
	stderr, _ := c.cmd.StderrPipe()
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec struct {
				Msg     string `json:"msg"`
				Decided int64  `json:"decided"`
			}
			json.Unmarshal(sc.Bytes(), &rec)
			switch rec.Msg {
			case "decision":
				c.decided.Add(1)
			case "decisions":
				c.decided.Add(rec.Decided)
			case "reader up":
				c.readers.Add(1)
			}
		}
	}()
	b.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	waitUntil(b, 20*time.Second, "child dockd readers up", func() bool { return c.readers.Load() >= int64(readers) })
	return c
}

// stop ends the daemon with SIGTERM (an orderly shutdown: lazy writes are
// flushed) and returns its write_bytes at exit.
func (c *wearChild) stop(b *testing.B) int64 {
	b.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	var info unix.Siginfo
	// Wait for the exit without reaping, so /proc/PID/io is still there.
	if err := unix.Waitid(unix.P_PID, c.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		b.Fatal(err)
	}
	wb, err := writeBytes(c.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	c.cmd.Wait()
	<-c.done
	return wb
}

// cpu is the child's user+system CPU time so far (/proc/PID/stat).
func (c *wearChild) cpu(b *testing.B) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ut, st int64
	fmt.Sscan(fields[11], &ut)
	fmt.Sscan(fields[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// pwriteTrace counts the bytes a running process hands the kernel with
// pwrite64, by file, from strace attached to it: what bbolt writes (whole
// pages), before the file system adds its own journal and metadata. It is
// the figure the ≤ 16 KiB-a-lone-scan budget is stated in; write_bytes adds
// what the file system does with it.
type pwriteTrace struct {
	cmd *exec.Cmd
	out string
}

// tracePwrites attaches strace to pid (all threads), or returns nil when
// strace is missing or DOCKD_WEAR_STRACE=0.
func tracePwrites(b *testing.B, pid int) *pwriteTrace {
	path, err := exec.LookPath("strace")
	if err != nil || os.Getenv("DOCKD_WEAR_STRACE") == "0" {
		return nil
	}
	t := &pwriteTrace{out: filepath.Join(b.TempDir(), "pwrite.trace")}
	t.cmd = exec.Command(path, "-f", "-qq", "-y", "-s", "0", "-e", "trace=pwrite64", "-e", "signal=none", "-o", t.out, "-p", fmt.Sprint(pid))
	if err := t.cmd.Start(); err != nil {
		b.Logf("strace: %v; no pwrite figures", err)
		return nil
	}
	waitUntil(b, 10*time.Second, "strace attached", func() bool {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		return strings.Contains(string(st), "TracerPid:\t"+fmt.Sprint(t.cmd.Process.Pid))
	})
	time.Sleep(200 * time.Millisecond) // -f attaches the other threads after the first
	return t
}

// bytes waits for strace to end (its tracee exited) and returns the bytes
// written by file name (base name).
func (t *pwriteTrace) bytes(b *testing.B) map[string]int64 {
	t.cmd.Wait()
	raw, err := os.ReadFile(t.out)
	if err != nil {
		b.Fatal(err)
	}
	per := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		i, j := strings.Index(line, "pwrite64("), strings.LastIndex(line, ") = ")
		if i < 0 || j < 0 {
			continue
		}
		fd := line[i+len("pwrite64("):]
		a, c := strings.IndexByte(fd, '<'), strings.IndexByte(fd, '>')
		var n int64
		if a < 0 || c < a || func() bool { _, err := fmt.Sscan(line[j+4:], &n); return err != nil }() {
			continue
		}
		per[filepath.Base(fd[a+1:c])] += n
	}
	return per
}

// wearRun starts a fresh station, writes n scans into its pty, rate scans/s
// (in bursts of burst scans back to back when burst > 1), waits for every
// decision, stops the daemon and returns the bytes it wrote per scan from
// the end of its warm-up to its exit (every lazy flush included): write_bytes
// and, when strace is there, pwrite bytes by file.
func wearRun(b *testing.B, bin string, rate float64, n, burst int, withBroker bool) (float64, map[string]float64) {
	dir := b.TempDir()
	importSample(b, dir)
	pty := testkit.NewPTY(b)
	url := "tcp://127.0.0.1:1"
	if withBroker {
		url = testkit.StartMosquitto(b).URL()
	}
	cfg := stationConfig(dir, pty.Path(), url, "virtual")
	if !withBroker {
		cfg = strings.Replace(cfg, fmt.Sprintf("  broker: %q\n", url), "  broker: \"\"\n", 1)
	}
	cfgPath := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	c := startWearChild(b, bin, cfgPath, 1)
	for i := 0; i < 3; i++ { // warm-up: first commits, page allocations
		pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("W%d", i))))
	}
	waitUntil(b, 10*time.Second, "warm-up decided", func() bool { return c.decided.Load() >= 3 })
	time.Sleep(time.Second)
	tr := tracePwrites(b, c.cmd.Process.Pid)
	w0, err := writeBytes(c.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	gap := time.Duration(float64(burst) / rate * float64(time.Second))
	next := time.Now()
	for i := 0; i < n; {
		time.Sleep(time.Until(next))
		for j := 0; j < burst && i < n; j++ {
			pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("S%06d", i))))
			i++
		}
		next = next.Add(gap)
	}
	waitUntil(b, 60*time.Second, "every scan decided", func() bool { return c.decided.Load() >= int64(3+n) })
	w1 := c.stop(b)
	var pw map[string]float64
	if tr != nil {
		pw = map[string]float64{}
		for f, v := range tr.bytes(b) {
			pw[f] = float64(v) / float64(n)
		}
	}
	return float64(w1-w0) / float64(n), pw
}

// boltFloor is the physical floor of a lone durable record with bbolt on
// this machine: bytes written per one-record, fsync'd commit (a ~430-byte
// value into one bucket that holds a handful of records), from this
// process's own /proc/self/io, and the bytes bbolt handed the kernel for it
// (its root, the bucket's leaf and the meta page).
func boltFloor(b *testing.B, n int) (written, pwritten float64) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := []byte(eventLike(1))
	put := func(i int) {
		if err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("records"))
			if err != nil {
				return err
			}
			if i > 4 {
				bk.Delete(binary.BigEndian.AppendUint64(nil, uint64(i-4)))
			}
			return bk.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), val)
		}); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		put(i)
	}
	w0, _ := writeBytes(os.Getpid())
	s0 := db.Stats().TxStats
	for i := 10; i < 10+n; i++ {
		put(i)
	}
	w1, _ := writeBytes(os.Getpid())
	s1 := db.Stats().TxStats
	// bbolt counts one write per page (none of these spans pages): the
	// pwrite bytes of a commit, meta page included.
	pages := float64(s1.GetWrite()-s0.GetWrite()) / float64(n)
	return float64(w1-w0) / float64(n), pages * float64(db.Info().PageSize)
}

// BenchmarkWriteBytes measures what the whole daemon (a child process, no
// race detector) writes to storage per scan, from /proc/PID/io write_bytes,
// at 0.1, 0.5, 2 and 10 lone scans/s with the broker up, at 2/s without a
// broker, and in bursts of 100 scans; everything included (append, acks,
// custody checkpoint, trace), logs excluded (they go to a pipe here, to
// journald on a box). The raw bbolt floor — one fsync'd one-record commit —
// is measured in the same run for the ratio. DOCKD_WEAR_SCANS scales the
// lone-scan runs (default 24; the 0.1/s and 0.5/s rows take half as many,
// at 10 s and 2 s a scan); DOCKD_WEAR_ROWS (e.g. "0.1/s,2/s") picks rows.
// With strace installed, each row also reports the bytes bbolt handed the
// kernel (pwrite64) per scan, by file, against bbolt's own floor.
func BenchmarkWriteBytes(b *testing.B) {
	n := 24
	if s := os.Getenv("DOCKD_WEAR_SCANS"); s != "" {
		fmt.Sscan(s, &n)
	}
	bin := benchBinary(b)
	for i := 0; i < b.N; i++ {
		floor, pfloor := boltFloor(b, 200)
		b.ReportMetric(floor, "floor-B/commit")
		b.ReportMetric(pfloor, "floor-pwrite-B/commit")
		for _, r := range []struct {
			name   string
			rate   float64
			n      int
			burst  int
			broker bool
		}{
			{"0.1/s", 0.1, n / 2, 1, true},
			{"0.5/s", 0.5, n / 2, 1, true},
			{"2/s", 2, n, 1, true},
			{"2/s-nobroker", 2, n, 1, false},
			{"10/s", 10, 5 * n, 1, true},
			{"burst100", 200, 1000, 100, true},
		} {
			if only := os.Getenv("DOCKD_WEAR_ROWS"); only != "" && !slices.Contains(strings.Split(only, ","), r.name) {
				continue
			}
			per, pw := wearRun(b, bin, r.rate, r.n, r.burst, r.broker)
			b.ReportMetric(per, r.name+"-B/scan")
			b.ReportMetric(per/floor, r.name+"-x-floor")
			if pw != nil {
				total := 0.0
				for _, v := range pw {
					total += v
				}
				b.ReportMetric(total, r.name+"-pwrite-B/scan")
				b.ReportMetric(total/pfloor, r.name+"-pwrite-x-floor")
				b.ReportMetric(pw["buffer.db"], r.name+"-pwrite-buffer-B/scan")
				b.ReportMetric(pw["allowlist.db"], r.name+"-pwrite-allowlist-B/scan")
			}
		}
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkRFIDBurst drives the whole daemon (child process, no race
// detector) with two ASCII-protocol RFID readers on ptys, each fed distinct
// SGTIN-96 EPCs at the line rate of 921600 baud (~3,500 lines/s each) for
// DOCKD_BURST_S seconds (default 20). It reports events/s decided and
// delivered to a QoS 1 subscriber, how late the last event arrived after the
// burst ended, the daemon's CPU per event (/proc/PID/stat) and bytes
// written per event.
func BenchmarkRFIDBurst(b *testing.B) {
	secs := 20
	if s := os.Getenv("DOCKD_BURST_S"); s != "" {
		fmt.Sscan(s, &secs)
	}
	bin := benchBinary(b)
	for it := 0; it < b.N; it++ {
		dir := b.TempDir()
		importSample(b, dir)
		broker := testkit.StartMosquitto(b)
		got, stopCount := counter(b, broker.URL(), "dockd/v1/test-site/door-9/events")
		ptys := []*testkit.PTY{testkit.NewPTY(b), testkit.NewPTY(b)}
		scanPTY := testkit.NewPTY(b)
		cfg := stationConfig(dir, scanPTY.Path(), broker.URL(), "virtual")
		var extra strings.Builder
		for i, p := range ptys {
			fmt.Fprintf(&extra, "  - id: uhf-%d\n    type: rfid\n    protocol: ascii\n    baud: 921600\n    port: %s\n", i+1, p.Path())
		}
		cfg = strings.Replace(cfg, "readers:\n", "readers:\n"+extra.String(), 1)
		cfg = strings.Replace(cfg, "  in_flight: 16\n", "  in_flight: 128\n", 1)
		cfgPath := filepath.Join(dir, "dockd.yaml")
		os.WriteFile(cfgPath, []byte(cfg), 0o600)
		c := startWearChild(b, bin, cfgPath, 3)
		time.Sleep(500 * time.Millisecond)
		cpu0 := c.cpu(b)
		w0, _ := writeBytes(c.cmd.Process.Pid)

		// 921600 baud, 8N1: 92,160 bytes/s; a line is 24 hex digits + LF.
		const lineLen = 25
		perSec := 92160 / lineLen
		var wg sync.WaitGroup
		var written atomic.Int64
		start := time.Now()
		end := start.Add(time.Duration(secs) * time.Second)
		for r, p := range ptys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				serial := uint64(r) << 32
				tick := 10 * time.Millisecond
				chunk := perSec / 100
				for t := start; t.Before(end); t = t.Add(tick) {
					time.Sleep(time.Until(t))
					var buf []byte
					for k := 0; k < chunk; k++ {
						serial++
						hex, err := scan.EncodeSGTIN96(1, "9506000", "013435", serial)
						if err != nil {
							b.Error(err)
							return
						}
						buf = append(append(buf, hex...), '\n')
					}
					if p.Write(buf) == nil {
						written.Add(int64(chunk))
					}
				}
			}()
		}
		wg.Wait()
		burstEnd := time.Now()
		total := written.Load()
		arrived, elapsed := waitArrivals(got, total, start, 10*time.Second)
		lag := start.Add(elapsed).Sub(burstEnd)
		// A slow station may still be deciding: give it a minute, then
		// report what it managed (decided-% below 100 is the finding).
		for deadline := time.Now().Add(time.Minute); c.decided.Load() < total && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		decidedAt := time.Since(start)
		cpu := c.cpu(b) - cpu0
		w1 := c.stop(b)
		stopCount()
		b.ReportMetric(float64(total)/time.Duration(secs*int(time.Second)).Seconds(), "lines/s")
		b.ReportMetric(float64(c.decided.Load())/decidedAt.Seconds(), "decided/s")
		b.ReportMetric(float64(arrived)/elapsed.Seconds(), "delivered/s")
		b.ReportMetric(float64(arrived)/float64(total)*100, "delivered-%")
		b.ReportMetric(float64(c.decided.Load())/float64(total)*100, "decided-%")
		b.ReportMetric(max(lag, 0).Seconds(), "lag-s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/event")
		b.ReportMetric(float64(w1-w0)/float64(total), "B/event")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkIdleWrites starts the whole daemon with the broker up, records
// three scans, lets every lazy write happen (the custody checkpoint's
// allowlist.DefaultFlushEvery, the buffer's AckDelay), then reports what it
// writes per second over the next DOCKD_IDLE_S seconds (default 20): an
// idle station must write nothing.
func BenchmarkIdleWrites(b *testing.B) {
	secs := 20
	if s := os.Getenv("DOCKD_IDLE_S"); s != "" {
		fmt.Sscan(s, &secs)
	}
	bin := benchBinary(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		importSample(b, dir)
		pty := testkit.NewPTY(b)
		cfgPath := filepath.Join(dir, "dockd.yaml")
		os.WriteFile(cfgPath, []byte(stationConfig(dir, pty.Path(), testkit.StartMosquitto(b).URL(), "virtual")), 0o600)
		c := startWearChild(b, bin, cfgPath, 1)
		for j := 0; j < 3; j++ {
			pty.Write([]byte(gs1Scan("LOT42", fmt.Sprintf("I%d", j))))
		}
		waitUntil(b, 10*time.Second, "scans decided", func() bool { return c.decided.Load() >= 3 })
		time.Sleep(allowlist.DefaultFlushEvery + 2*buffer.DefaultAckDelay)
		w0, _ := writeBytes(c.cmd.Process.Pid)
		time.Sleep(time.Duration(secs) * time.Second)
		w1, _ := writeBytes(c.cmd.Process.Pid)
		c.stop(b)
		b.ReportMetric(float64(w1-w0)/float64(secs), "idle-B/s")
		b.ReportMetric(0, "ns/op")
	}
}
