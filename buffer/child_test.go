package buffer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

// Child-process modes: the test binary re-executes itself with these
// environment variables set, and TestMain runs the child instead of tests.
const (
	envChild = "BUFFER_TEST_CHILD" // "crash" or "fsize"
	envPath  = "BUFFER_TEST_PATH"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "crash":
		crashChild(os.Getenv(envPath))
	case "fsize":
		fsizeChild(os.Getenv(envPath))
	case "gap", "gap-die":
		gapChild(os.Getenv(envPath), os.Getenv(envChild) == "gap")
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", os.Getenv(envChild))
		os.Exit(2)
	}
}

// say writes one line to stdout with a single write, so lines from
// concurrent goroutines never interleave and a kill never leaves half a line.
func say(format string, a ...any) {
	if _, err := os.Stdout.WriteString(fmt.Sprintf(format, a...) + "\n"); err != nil {
		os.Exit(3)
	}
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}

func crashPayload(seq uint64) []byte {
	return []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, seq, strings.Repeat("p", int(seq%300))))
}

// crashChild appends from 8 goroutines and acks from one, forever, printing
// "A seq" after each Append returned, "K seq" before an Ack and "k seq"
// after it returned. The parent kills it with SIGKILL.
func crashChild(path string) {
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		die("open: %v", err)
	}
	say("ready")
	for w := 0; w < 8; w++ {
		go func() {
			for {
				seq, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return crashPayload(s), nil })
				if err != nil {
					die("append: %v", err)
				}
				say("A %d", seq)
			}
		}()
	}
	for {
		time.Sleep(3 * time.Millisecond)
		st := q.Stats()
		if st.NewestSeq > st.LastAckSeq+50 {
			target := st.NewestSeq - 25
			say("K %d", target)
			if err := q.Ack(target); err != nil {
				die("ack: %v", err)
			}
			say("k %d", target)
		}
	}
}

type childRun struct {
	appended  []uint64
	ackTried  uint64 // highest ack started
	ackDone   uint64 // highest ack that returned
	stderr    string
	exitState *os.ProcessState
}

// runChild starts a child in mode, calls kill once the child has said
// "ready", and collects everything it printed until it exited.
func runChild(t *testing.T, mode, path string, kill func(p *os.Process)) childRun {
	t.Helper()
	cmd := testkit.SelfCommand("-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envPath+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res childRun
	ready := make(chan struct{})
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		seenReady := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 1 && f[0] == "ready" && !seenReady {
				seenReady = true
				close(ready)
				continue
			}
			if len(f) != 2 {
				readDone <- fmt.Errorf("bad child line %q", sc.Text())
				return
			}
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				readDone <- fmt.Errorf("bad child line %q", sc.Text())
				return
			}
			switch f[0] {
			case "A":
				res.appended = append(res.appended, n)
			case "K":
				res.ackTried = max(res.ackTried, n)
			case "k":
				res.ackDone = max(res.ackDone, n)
			default:
				readDone <- fmt.Errorf("bad child line %q", sc.Text())
				return
			}
		}
		readDone <- sc.Err()
	}()
	if kill != nil {
		select {
		case <-ready:
			kill(cmd.Process)
		case err := <-readDone:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child exited before ready (read err %v): %s", err, stderr.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-readDone
			_ = cmd.Wait()
			t.Fatalf("child not ready within 30s: %s", stderr.String())
		}
	}
	rerr := <-readDone
	werr := cmd.Wait()
	if rerr != nil {
		t.Fatalf("reading child output: %v", rerr)
	}
	res.stderr = stderr.String()
	res.exitState = cmd.ProcessState
	if kill == nil && werr != nil {
		t.Fatalf("child failed: %v\n%s", werr, res.stderr)
	}
	return res
}

func TestCrashSafetyKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary 20 times; skipped with -short")
	}
	path := filepath.Join(t.TempDir(), "q.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var prevNewest, prevAckSeq uint64
	const rounds = 20
	total := 0
	for round := 0; round < rounds; round++ {
		delay := time.Duration(rng.IntN(150)) * time.Millisecond
		res := runChild(t, "crash", path, func(p *os.Process) {
			time.Sleep(delay) // the random moment of the crash, not synchronisation
			if err := p.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill: %v", err)
			}
		})
		if ws, ok := res.exitState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die by SIGKILL: %v\n%s", round, res.exitState, res.stderr)
		}

		q, err := Open(path, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("round %d (killed after %v, %d appends reported): reopen: %v", round, delay, len(res.appended), err)
		}
		st := q.Stats()
		if st.LastAckSeq < max(res.ackDone, prevAckSeq) || st.LastAckSeq > max(res.ackTried, prevAckSeq) {
			t.Fatalf("round %d: LastAckSeq %d, child acked %d and tried %d", round, st.LastAckSeq, res.ackDone, res.ackTried)
		}
		recs := pendingAll(t, q)
		present := make(map[uint64]bool, len(recs))
		for i, r := range recs {
			present[r.Seq] = true
			if string(r.Payload) != string(crashPayload(r.Seq)) {
				t.Fatalf("round %d: record %d has payload %q", round, r.Seq, r.Payload)
			}
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("round %d: records out of order", round)
			}
		}
		if len(recs) != st.Depth {
			t.Fatalf("round %d: Stats().Depth %d but %d records", round, st.Depth, len(recs))
		}
		for _, s := range res.appended {
			if s <= prevNewest {
				t.Fatalf("round %d: seq %d reused (previous run reached %d)", round, s, prevNewest)
			}
			if s > st.LastAckSeq && !present[s] {
				t.Fatalf("round %d: seq %d was reported appended but is missing after kill -9", round, s)
			}
			if s > st.NewestSeq {
				t.Fatalf("round %d: seq %d reported but NewestSeq is %d", round, s, st.NewestSeq)
			}
		}
		total += len(res.appended)
		prevNewest, prevAckSeq = st.NewestSeq, st.LastAckSeq
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %v: %d appends reported, depth %d, newest %d, last ack %d",
			round, delay, len(res.appended), st.Depth, st.NewestSeq, st.LastAckSeq)
	}
	if total == 0 {
		t.Fatal("children reported no appends at all; the test proved nothing")
	}
}

// fsizeChild runs the disk-full scenario under RLIMIT_FSIZE. It prints
// "A seq" for each stored record, "F id" for each refused one (payload
// {"id":id,...}) and fails with a message on stderr if anything is off.
func fsizeChild(path string) {
	signal.Ignore(syscall.SIGXFSZ) // writes past the limit must fail with EFBIG, not kill us
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		die("open: %v", err)
	}
	id := 0
	payload := func() []byte {
		id++
		return []byte(fmt.Sprintf(`{"id":%d,"pad":"%s"}`, id, strings.Repeat("d", 3000)))
	}
	appendOne := func() error {
		p := payload()
		myID := id
		seq, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return p, nil })
		if err != nil {
			if !errors.Is(err, ErrCommit) {
				die("append %d failed without ErrCommit: %v", myID, err)
			}
			say("F %d", myID)
			return err
		}
		say("A %d", seq)
		say("I %d", myID)
		return nil
	}
	for i := 0; i < 5; i++ {
		if err := appendOne(); err != nil {
			die("append before limit: %v", err)
		}
	}
	limit, restore := capFileSize(path)
	failures := 0
	for i := 0; i < 2000 && failures == 0; i++ {
		if appendOne() != nil {
			failures++
		}
	}
	if failures == 0 {
		die("no append failed with the file limited to %d bytes", limit)
	}
	// A group of concurrent appends while still limited: each must either
	// be stored or fail with ErrCommit (checked in appendOne via the parent).
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			p := payload()
			myID := id
			mu.Unlock()
			seq, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return p, nil })
			if err != nil {
				if !errors.Is(err, ErrCommit) {
					die("append %d failed without ErrCommit: %v", myID, err)
				}
				say("F %d", myID)
				return
			}
			say("A %d", seq)
			say("I %d", myID)
		}()
	}
	wg.Wait()
	st := q.Stats()
	restore()
	for i := 0; i < 50; i++ {
		if err := appendOne(); err != nil {
			die("append after raising the limit: %v", err)
		}
	}
	if st2 := q.Stats(); st2.Depth != st.Depth+50 {
		die("depth %d after 50 appends, was %d", st2.Depth, st.Depth)
	}
	if err := q.Close(); err != nil {
		die("close: %v", err)
	}
}

func TestDiskFullRLIMIT(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	cmd := testkit.SelfCommand("-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=fsize", envPath+"="+path)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("fsize child failed: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	storedIDs := map[string]bool{}
	failedIDs := map[string]bool{}
	seqs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("bad child line %q", line)
		}
		switch f[0] {
		case "A":
			seqs++
		case "I":
			storedIDs[f[1]] = true
		case "F":
			failedIDs[f[1]] = true
		}
	}
	if len(failedIDs) == 0 {
		t.Fatal("child reported no failed append")
	}
	q := openT(t, path, Options{})
	recs := pendingAll(t, q)
	got := map[string]bool{}
	for _, r := range recs {
		var id string
		if _, err := fmt.Sscanf(string(r.Payload), `{"id":%s`, &id); err != nil {
			t.Fatalf("record %d payload %.40q", r.Seq, r.Payload)
		}
		id = strings.TrimSuffix(strings.SplitN(id, ",", 2)[0], ",")
		if got[id] {
			t.Fatalf("id %s stored twice", id)
		}
		got[id] = true
	}
	for id := range storedIDs {
		if !got[id] {
			t.Fatalf("append id %s returned success but is missing", id)
		}
	}
	for id := range failedIDs {
		if got[id] {
			t.Fatalf("append id %s returned an error but is stored (half-stored group)", id)
		}
	}
	if len(got) != len(storedIDs) || seqs != len(storedIDs) {
		t.Fatalf("%d records in file, %d reported stored", len(got), len(storedIDs))
	}
	t.Logf("disk-full child: %d stored, %d refused with ErrCommit", len(storedIDs), len(failedIDs))
}

// capFileSize limits this (child) process's file size to what path has
// now (RLIMIT_FSIZE), so the next write that grows it fails with EFBIG the
// way a full disk fails a write; it returns the limit and a func that
// restores the previous one.
func capFileSize(path string) (int64, func()) {
	fi, err := os.Stat(path)
	if err != nil {
		die("stat: %v", err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		die("getrlimit: %v", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size()), Max: old.Max}); err != nil {
		die("setrlimit: %v", err)
	}
	return fi.Size(), func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			die("restoring rlimit: %v", err)
		}
	}
}
