package reader

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

const waitLimit = 5 * time.Second // generous bound for things that should happen "soon"

// startRun runs r until the test ends (testkit.RunReader), failing if Run
// does not return context.Canceled.
func startRun(t *testing.T, r *Serial) *testkit.ReaderRun {
	t.Helper()
	return testkit.RunReader(t, r, 64)
}

func newSerial(t *testing.T, cfg Config) *Serial {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "door1-scanner"
	}
	if cfg.Baud == 0 {
		cfg.Baud = 115200
	}
	r, err := NewSerial(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestSerialFramesEachSuffix(t *testing.T) {
	const gs1 = "0109501101530003\x1d10LOT-7\x1d17271231"
	tests := []struct {
		suffix string
		term   string
	}{
		{"CR", "\r"},
		{"LF", "\n"},
		{"CRLF", "\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.suffix, func(t *testing.T) {
			p := testkit.NewPTY(t)
			r := newSerial(t, Config{Port: p.Path(), Suffix: tc.suffix})
			rn := startRun(t, r)
			st := rn.State(t, true)
			if st.Port != p.TTY() || st.Reader != r.ID() || st.Err != nil || st.At.IsZero() {
				t.Errorf("up state %+v, want Port %s", st, p.TTY())
			}
			before := time.Now()
			// The second code's terminator is split across writes (for
			// CRLF, between CR and LF): framing must not depend on read
			// boundaries.
			if err := p.Write([]byte(gs1 + tc.term + "]C1" + "00" + tc.term[:1])); err != nil {
				t.Fatal(err)
			}
			if err := p.Write([]byte(tc.term[1:] + "SECOND" + tc.term)); err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{gs1, "]C100", "SECOND"} {
				f := rn.Frame(t)
				if string(f.Data) != w || f.Err != nil || f.Reader != "door1-scanner" {
					t.Errorf("frame %q (err %v, reader %q), want %q", f.Data, f.Err, f.Reader, w)
				}
				if f.At.Before(before) || f.At.After(time.Now()) {
					t.Errorf("frame At %v outside the test's window", f.At)
				}
			}
			rn.NoFrame(t)
		})
	}
}

func TestSerialPrefixStripped(t *testing.T) {
	p := testkit.NewPTY(t)
	rn := startRun(t, newSerial(t, Config{Port: p.Path(), Suffix: "CR", Prefix: "\x02"}))
	rn.State(t, true)
	if err := p.Write([]byte("\x02ABC123\rNOPREFIX\r\x02\r")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ABC123", "NOPREFIX"} {
		if f := rn.Frame(t); string(f.Data) != want {
			t.Errorf("frame %q, want %q", f.Data, want)
		}
	}
	// The prefix-only frame is empty after stripping and dropped; a
	// following frame proves nothing else was emitted in between.
	if err := p.Write([]byte("LAST\r")); err != nil {
		t.Fatal(err)
	}
	if f := rn.Frame(t); string(f.Data) != "LAST" {
		t.Errorf("frame %q, want LAST", f.Data)
	}
}

// A 1 MiB line is reported once as too long, the next line comes through,
// and the reader does not allocate anything like the line's size.
func TestSerialHugeLineThenGood(t *testing.T) {
	p := testkit.NewPTY(t)
	rn := startRun(t, newSerial(t, Config{Port: p.Path(), Suffix: "CR", MaxFrame: 4096}))
	rn.State(t, true)

	huge := bytes.Repeat([]byte("0123456789ABCDEF"), (1<<20)/16)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	writeErr := make(chan error, 1)
	go func() {
		if err := p.Write(huge); err != nil {
			writeErr <- err
			return
		}
		writeErr <- p.Write([]byte("\rGOOD\r"))
	}()
	f := rn.Frame(t)
	if !errors.Is(f.Err, dock.ErrFrameTooLong) {
		t.Fatalf("first frame err %v, want ErrFrameTooLong", f.Err)
	}
	if !bytes.Equal(f.Data, huge[:TooLongKeep]) {
		t.Errorf("too-long frame data %q, want the first %d bytes", f.Data, TooLongKeep)
	}
	if !strings.Contains(f.Err.Error(), "1048576 bytes") {
		t.Errorf("too-long error %q should count all 1048576 bytes", f.Err)
	}
	if g := rn.Frame(t); string(g.Data) != "GOOD" || g.Err != nil {
		t.Errorf("second frame %q (err %v), want GOOD", g.Data, g.Err)
	}
	runtime.ReadMemStats(&after)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB while reading the 1 MiB line", alloc>>10)
	if alloc > 512<<10 {
		t.Errorf("allocated %d KiB while reading a 1 MiB line; want well under the line size", alloc>>10)
	}
	rn.NoFrame(t)
}

// Random binary (NULs, high bytes, control codes) passes through as frames;
// the frames joined equal what was sent minus terminators.
func TestSerialRandomBytes(t *testing.T) {
	p := testkit.NewPTY(t)
	rn := startRun(t, newSerial(t, Config{Port: p.Path(), Suffix: "LF", MaxFrame: 1 << 16}))
	rn.State(t, true)

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var sent []byte
	var lines [][]byte
	for range 200 {
		line := make([]byte, 1+rng.IntN(300))
		for i := range line {
			line[i] = byte(rng.UintN(256))
			if line[i] == '\n' {
				line[i] = 0
			}
		}
		lines = append(lines, line)
		sent = append(append(sent, line...), '\n')
	}
	sizes := make([]int, 0, len(sent))
	for total := 0; total < len(sent); {
		n := min(len(sent)-total, 1+rng.IntN(777))
		sizes = append(sizes, n)
		total += n
	}
	writeErr := make(chan error, 1)
	go func() {
		// Odd-sized writes so frames straddle reads.
		rest := sent
		for _, n := range sizes {
			if err := p.Write(rest[:n]); err != nil {
				writeErr <- err
				return
			}
			rest = rest[n:]
		}
		writeErr <- nil
	}()
	t.Cleanup(func() { <-writeErr })
	for i, want := range lines {
		f := rn.Frame(t)
		if !bytes.Equal(f.Data, want) || f.Err != nil {
			t.Fatalf("frame %d: got %d bytes %q (err %v), want %d bytes", i, len(f.Data), f.Data, f.Err, len(want))
		}
	}
	rn.NoFrame(t)
}

func TestSerialUnplugReplug(t *testing.T) {
	p := testkit.NewPTY(t)
	rn := startRun(t, newSerial(t, Config{Port: p.Path()}))
	first := rn.State(t, true)
	if err := p.Write([]byte("BEFORE\r")); err != nil {
		t.Fatal(err)
	}
	if f := rn.Frame(t); string(f.Data) != "BEFORE" {
		t.Fatalf("frame %q", f.Data)
	}

	// A partial frame in flight at the unplug must not be glued to the
	// first frame after the replug.
	if err := p.Write([]byte("PART")); err != nil {
		t.Fatal(err)
	}
	unplugged := time.Now()
	p.Unplug()
	down := rn.State(t, false)
	t.Logf("down reported %v after unplug: %v", down.At.Sub(unplugged), down.Err)
	if !errors.Is(down.Err, ErrDisconnected) {
		t.Errorf("down state err %v, want ErrDisconnected", down.Err)
	}

	// Another device grabs the freed /dev/pts number, so the scanner comes
	// back under the same by-id name but a different tty, as USB
	// re-enumeration may do: the reader must re-resolve the symlink.
	other := testkit.NewPTY(t)
	p.Plug()
	plugged := time.Now()
	up := rn.State(t, true)
	t.Logf("up again %v after plug, %s -> %s (other device on %s)", up.At.Sub(plugged), first.Port, up.Port, other.TTY())
	if up.Port != p.TTY() || up.Port == first.Port {
		t.Errorf("up state port %q, want the new tty %q (was %q)", up.Port, p.TTY(), first.Port)
	}
	if err := p.Write([]byte("AFTER\r")); err != nil {
		t.Fatal(err)
	}
	if f := rn.Frame(t); string(f.Data) != "AFTER" {
		t.Errorf("frame after replug %q, want AFTER", f.Data)
	}
	rn.NoState(t, "no more changes after the replug")
}

// logCounter counts log records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Message]++
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }
func (c *logCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[msg]
}

func TestSerialMissingPortRetriesUntilCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial", "by-id", "usb-never-there")
	logs := &logCounter{counts: map[string]int{}}
	r, err := NewSerial(Config{ID: "ghost", Port: path, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan dock.ReaderState, 4)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, make(chan dock.Frame), states) }()

	select {
	case st := <-states:
		if st.Up || !errors.Is(st.Err, ErrPortMissing) || !errors.Is(st.Err, os.ErrNotExist) {
			t.Fatalf("state %+v, want down with ErrPortMissing", st)
		}
	case <-time.After(waitLimit):
		t.Fatal("no down state for a missing port")
	}
	// Keep retrying: several attempts, bounded polling with a deadline.
	deadline := time.Now().Add(waitLimit)
	for logs.count("reader port unavailable") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d open attempts logged", logs.count("reader port unavailable"))
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v while the port is missing", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case st := <-states:
		t.Errorf("repeated failures sent another state %+v; want one per change", st)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after cancel")
	}
}

func TestSerialNotATerminal(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{plain, "/dev/null"} {
		t.Run(path, func(t *testing.T) {
			rn := startRun(t, newSerial(t, Config{Port: path}))
			if st := rn.State(t, false); !errors.Is(st.Err, ErrNotSerial) {
				t.Errorf("state err %v, want ErrNotSerial", st.Err)
			}
		})
	}
}

// fdsOn counts this process's descriptors open on the device path.
func fdsOn(t *testing.T, dev string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == dev {
			n++
		}
	}
	return n
}

func TestSerialCancelWhileBlockedReading(t *testing.T) {
	p := testkit.NewPTY(t)
	r := newSerial(t, Config{Port: p.Path()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan dock.ReaderState, 4)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, make(chan dock.Frame, 1), states) }()
	select {
	case st := <-states:
		if !st.Up {
			t.Fatalf("state %+v, want up", st)
		}
	case <-time.After(waitLimit):
		t.Fatal("reader never came up")
	}
	held := fdsOn(t, p.TTY()) // the harness's own slave fd plus the reader's
	if held < 2 {
		t.Fatalf("%d descriptors on %s while running, want the reader's too", held, p.TTY())
	}
	// Run is now blocked in Read: nothing is being sent.
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run still blocked 1s after cancel")
	}
	if after := fdsOn(t, p.TTY()); after != held-1 {
		t.Errorf("%d descriptors on %s after Run returned, want %d (port closed)", after, p.TTY(), held-1)
	}
}

// Run must return on cancel while blocked handing a frame to a consumer
// that does not read.
func TestSerialCancelWhileBlockedSending(t *testing.T) {
	p := testkit.NewPTY(t)
	r := newSerial(t, Config{Port: p.Path()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan dock.ReaderState, 4)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, make(chan dock.Frame), states) }()
	if st := <-states; !st.Up {
		t.Fatalf("state %+v", st)
	}
	if err := p.Write([]byte("NOBODY-LISTENS\r")); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after cancel")
	}
}

func TestSerialRunMisuse(t *testing.T) {
	p := testkit.NewPTY(t)
	r := newSerial(t, Config{Port: p.Path()})
	if err := r.Run(context.Background(), nil, nil); err == nil {
		t.Error("Run with nil frames returned nil")
	}
	rn := startRun(t, r)
	rn.State(t, true)
	if err := r.Run(context.Background(), make(chan dock.Frame), nil); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	wantCeil := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, ceil := range wantCeil {
		ceil *= time.Millisecond
		d := b.Next()
		if d < ceil/2 || d > ceil {
			t.Errorf("attempt %d: wait %v outside [%v, %v]", i, d, ceil/2, ceil)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after reset wait %v, want <= 100ms", d)
	}
}
