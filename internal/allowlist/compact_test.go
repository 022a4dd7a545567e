package allowlist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/custody"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
)

const compactGTIN = "09506000134352"

// replacedStore is a store whose list was replaced once (v1 by v2, rows
// each), so about half its file is free pages.
func replacedStore(t *testing.T, rows int, opt ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path, opt...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(rows, v)), v, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s, path
}

// While the station runs, a replaced list's file is compacted with look-ups
// and custody records going on: no look-up fails or sees another list, the
// file shrinks, and what is written after the swap lands in the file that
// is now at the path (it is there after a reopen).
func TestCompactWhileDeciding(t *testing.T) {
	const rows = batchRows
	s, path := replacedStore(t, rows, WithCompactFree(1), WithFlush(time.Hour, 1<<30))
	worth := s.Use()
	if worth.FreeBytes*3 < worth.FileBytes {
		t.Fatalf("after a replacement %d of %d bytes are free; the test needs a third", worth.FreeBytes, worth.FileBytes)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var looks, seq atomic.Int64
	errs := make(chan error, 4)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				lot := fmt.Sprintf("v2%d", i%rows)
				if _, ok, err := s.Lot(compactGTIN, lot); err != nil || !ok {
					errs <- fmt.Errorf("look-up of lot %s during compaction: found %v, err %v", lot, ok, err)
					return
				}
				if _, ok, _ := s.Lot(compactGTIN, fmt.Sprintf("v1%d", i%rows)); ok {
					errs <- errors.New("a lot of the replaced list was found during compaction")
					return
				}
				looks.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // the pipeline recording custody as scans are decided
		defer wg.Done()
		for ctx.Err() == nil {
			n := uint64(seq.Add(1))
			s.Record(dock.CustodyEvent{Seq: n, Door: "d1", Direction: dock.Receiving, Time: time.Now(),
				GTIN: compactGTIN, Lot: "v21", Serial: fmt.Sprintf("S%d", n), Decision: dock.Decision{Verdict: dock.Accept, Reason: dock.ReasonOK}})
			time.Sleep(100 * time.Microsecond)
		}
	}()

	done, before, after, err := s.CompactIfWorth(context.Background())
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err != nil || !done {
		t.Fatalf("CompactIfWorth: done %v, err %v", done, err)
	}
	t.Logf("allowlist.db %d KiB → %d KiB with %d look-ups and %d custody records during the compaction", before>>10, after>>10, looks.Load(), seq.Load())
	if after*10 > before*7 {
		t.Fatalf("compaction took the file from %d to %d bytes only", before, after)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != after {
		t.Fatalf("the file at the path: %v, %v; Compact said %d bytes", fi, err, after)
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}

	// Writes after the swap go to the file at the path.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.OpenShipment(custody.Shipment{ID: "ASN1", Door: "d1", Direction: dock.Receiving, Lines: []custody.Line{{GTIN: compactGTIN, Qty: 2}}}); err != nil {
		t.Fatal(err)
	}
	last := uint64(seq.Load())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Checkpoint(); got != last {
		t.Fatalf("custody checkpoint after reopen is %d, want %d (written after the swap)", got, last)
	}
	if tr, err := s2.Trace(TraceQuery{Serial: fmt.Sprintf("S%d", last)}); err != nil || len(tr) != 1 {
		t.Fatalf("trace of the last recorded serial after reopen: %d records, %v", len(tr), err)
	}
	if err := s2.View(func(l custody.List) error {
		sh, err := l.Shipments("d1", dock.Receiving)
		if err != nil || len(sh) != 1 || sh[0].ID != "ASN1" {
			return fmt.Errorf("shipments after reopen: %v, %v", sh, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if in, _ := s2.Info(); in.Version != "v2" {
		t.Fatalf("version %q after reopen, want v2", in.Version)
	}
}

// A foreground write that arrives during the copy makes it give way: the
// write goes through at once (not after the copy), nothing changes, and no
// temporary file is left. A background write (the custody flush) waits.
func TestCompactGivesWayToWrites(t *testing.T) {
	s, path := replacedStore(t, batchRows, WithCompactFree(1))
	before := s.Use().FileBytes
	var once sync.Once
	wrote := make(chan error, 1)
	s.onCompactCheck = func() {
		once.Do(func() {
			go func() {
				wrote <- s.OpenShipment(custody.Shipment{ID: "ASN9", Door: "d1", Direction: dock.Shipping, Lines: []custody.Line{{GTIN: compactGTIN}}})
			}()
			for s.waiters.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
		})
	}
	done, _, _, err := s.CompactIfWorth(context.Background())
	if done || !errors.Is(err, ErrCompactYielded) {
		t.Fatalf("CompactIfWorth with a write waiting: done %v, err %v; want ErrCompactYielded", done, err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != before {
		t.Fatalf("file went from %d to %d bytes although the compaction gave way", before, fi.Size())
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	s.onCompactCheck = nil
	if done, _, after, err := s.CompactIfWorth(context.Background()); err != nil || !done || after >= before {
		t.Fatalf("the retry: done %v, %d → %d bytes, err %v", done, before, after, err)
	}
	if err := s.View(func(l custody.List) error {
		if sh, _ := l.Shipments("d1", dock.Shipping); len(sh) != 1 {
			return fmt.Errorf("%d shipments after the retry, want the one written while it gave way", len(sh))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A file without much free space is left alone.
func TestCompactIfWorthLeavesATightFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path) // default threshold
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ImportCSV(context.Background(), strings.NewReader(lotsCSV(1000, "v")), "v1", nil); err != nil {
		t.Fatal(err)
	}
	if done, before, after, err := s.CompactIfWorth(context.Background()); done || err != nil || before != after {
		t.Fatalf("CompactIfWorth on a tight file: done %v, %d → %d, err %v", done, before, after, err)
	}
}

// A full replacement sent down over MQTT is followed by a compaction on the
// updater's goroutine, after the applied ack went out: the file is back
// near its live size without a restart, and the new list is in force.
func TestUpdaterCompactsAfterReplacement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path, WithCompactFree(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var logs testkit.LogBuffer
	acks := make(chan Ack, 256)
	u := NewUpdater(s, func(a Ack) { acks <- a }, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	send := func(seq uint64, version string) {
		man, chunks := central{}.snapshot(seq, version, listBody(version, batchRows), DefaultMaxChunkBytes)
		u.Handle(man.topic, man.payload)
		for _, ch := range chunks {
			u.Handle(ch.topic, ch.payload)
		}
		for a := range acks {
			if a.Status == StatusRejected {
				t.Fatalf("ack %+v", a)
			}
			if a.Status == StatusApplied {
				return
			}
		}
	}
	send(1, "A")
	send(2, "B")
	// Each applied snapshot frees its staged chunks, a replacement also the
	// old list: the updater logs a compaction after each.
	var line string
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines := strings.Split(logs.String(), "\n")
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "allowlist.db compacted") {
				n, line = n+1, l
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d compactions after two snapshots; log:\n%s", n, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var before, after int64
	for _, f := range strings.Fields(line) {
		fmt.Sscanf(f, "before_bytes=%d", &before)
		fmt.Sscanf(f, "after_bytes=%d", &after)
	}
	fi, _ := os.Stat(path)
	t.Logf("after the replacement: allowlist.db %d KiB → %d KiB", before>>10, after>>10)
	if after == 0 || after*10 > before*7 || fi.Size() != after {
		t.Fatalf("compaction after the replacement: %d → %d bytes, file now %d; log line %q", before, after, fi.Size(), line)
	}
	if !hasLot(t, s, "B99999") || hasLot(t, s, "A5") {
		t.Fatal("after compaction the list in force is not B")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A compaction that would eat into the room kept for events (or has no
// room at all) is refused with the figures, and nothing changes.
func TestCompactRefusesWithoutRoom(t *testing.T) {
	free := int64(1 << 40)
	s, path := replacedStore(t, batchRows, WithCompactFree(1), WithLimits(Limits{
		Free:    func() (int64, error) { return free, nil },
		Reserve: func() int64 { return 32 << 20 },
	}))
	before := s.Use()
	free = 40 << 20 // less than the live data + growth + the reserve
	done, _, _, err := s.CompactIfWorth(context.Background())
	if done || err == nil || !strings.Contains(err.Error(), "kept for events") {
		t.Fatalf("CompactIfWorth short of room: done %v, err %v", done, err)
	}
	t.Log(err)
	if fi, _ := os.Stat(path); fi.Size() != before.FileBytes {
		t.Fatalf("file changed from %d to %d bytes", before.FileBytes, fi.Size())
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("temporary file: %v", err)
	}
	free = 1 << 40
	if done, _, _, err := s.CompactIfWorth(context.Background()); !done || err != nil {
		t.Fatalf("with room again: done %v, err %v", done, err)
	}
}
