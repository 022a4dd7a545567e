package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/buffer"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// mountTmpfs mounts a tmpfs of size bytes at a new directory, unmounted at
// cleanup. It skips the test where mounting is not allowed (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small-disk")
	os.Mkdir(dir, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// The buffer on a filesystem that fills up (the broker away): scans are
// refused with storage_fault and the light shows the fault; nothing already
// stored is lost or damaged; once space is freed, scans are recorded again
// and every stored event is delivered when the broker is back.
func TestDiskFullFilesystem(t *testing.T) {
	var disk string
	s := startStationWith(t, func(dir, y string) string {
		disk = mountTmpfs(t, "4m")
		b, err := os.ReadFile(filepath.Join(dir, "allowlist.db"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(disk, "allowlist.db"), b, 0o640)
		// Ballast to free later, as a technician would delete old logs.
		os.WriteFile(filepath.Join(disk, "ballast"), bytes.Repeat([]byte{1}, 1<<20), 0o600)
		return strings.Replace(y, "state_dir: "+dir, "state_dir: "+disk, 1) + "buffer:\n  max_bytes: 1GiB\n"
	})
	s.broker.Stop()
	waitUntil(t, 10*time.Second, "uplink offline", func() bool { return !s.d.up.Connected() })

	var refused *dock.CustodyEvent
	stored := 0
	for i := 0; i < 20000 && refused == nil; i += 100 {
		for j := i; j < i+100; j++ {
			s.write(gs1Scan("LOT42", fmt.Sprintf("D%05d", j)))
		}
		evs := s.waitDecisions(i+100, 30*time.Second)
		for k := i; k < len(evs); k++ {
			if evs[k].Seq == 0 {
				refused = &evs[k]
				break
			}
			stored++
		}
	}
	if refused == nil {
		t.Fatal("20000 scans onto a 4 MiB filesystem and none was refused")
	}
	if refused.Reason != dock.ReasonStorageFault || refused.Verdict != dock.Reject {
		t.Fatalf("refused scan: %+v", refused)
	}
	waitUntil(t, 3*time.Second, "storage fault on the light", func() bool {
		for _, c := range s.d.light.State().Conditions {
			if c == dock.ConditionStorageFault {
				return true
			}
		}
		return false
	})
	if d := s.d.queue.Stats().Depth; d != stored {
		t.Fatalf("buffer holds %d events, %d were stored before the disk filled", d, stored)
	}
	t.Logf("%d events stored before the filesystem filled", stored)

	// Free space: the next scan is recorded and the fault clears.
	os.Remove(filepath.Join(disk, "ballast"))
	n := len(s.waitDecisions(0, time.Second))
	s.write(gs1Scan("LOT42", "after-space"))
	evs := s.waitDecisions(n+1, 10*time.Second)
	if last := evs[len(evs)-1]; last.Seq == 0 || last.Verdict != dock.Accept {
		t.Fatalf("after space was freed: %+v", last)
	}
	stored++
	s.broker.Start()
	got := waitEvents(t, s.sub, stored+1, 60*time.Second) // and the gap record
	if len(got) < stored {
		t.Fatalf("delivered %d of %d", len(got), stored)
	}
	checkGapDeclared(t, s.sub.Messages(), evs[len(evs)-1].Seq)
	// The file is sound: a read-only check after the daemon stops.
	s.stop()
	if _, err := buffer.Check(filepath.Join(disk, "buffer.db"), buffer.Options{}); err != nil {
		t.Fatalf("buffer file after the disk filled: %v", err)
	}
}

// checkGapDeclared: the failed commits' seqs are declared by exactly one
// dockd.seq-gap/1 record, stored with the first successful commit, so that
// every seq 1..newest is an event, the gap record or inside its range.
func checkGapDeclared(t *testing.T, msgs []testkit.Message, newest uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	var gaps []seqGap
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/events") {
			continue
		}
		var g seqGap
		if err := json.Unmarshal(m.Payload, &g); err != nil {
			t.Fatalf("event payload %s: %v", m.Payload, err)
		}
		seen[g.Seq] = true
		if g.Schema == contract.SeqGapSchema {
			if err := contracttest.Validate(contract.SeqGapSchemaFile, m.Payload); err != nil {
				t.Fatalf("gap record %s: %v", m.Payload, err)
			}
			gaps = append(gaps, g)
		}
	}
	if len(gaps) == 0 || gaps[0].To < gaps[0].From || gaps[0].Seq != gaps[0].To+1 || !strings.Contains(gaps[0].Reason, "no space left") {
		t.Fatalf("gap records %+v, want one declaring the skipped seqs, stored right after them", gaps)
	}
	for _, g := range gaps[1:] {
		if g.ID != gaps[0].ID {
			t.Fatalf("two different gap records: %+v", gaps)
		}
	}
	for q := gaps[0].From; q <= gaps[0].To; q++ {
		if seen[q] {
			t.Fatalf("seq %d delivered but declared never stored by %+v", q, gaps[0])
		}
		seen[q] = true
	}
	for q := uint64(1); q <= newest; q++ {
		if !seen[q] {
			t.Fatalf("seq %d neither delivered nor declared skipped (newest %d, gap %d..%d)", q, newest, gaps[0].From, gaps[0].To)
		}
	}
	t.Logf("gap %d..%d declared by record %d: %s", gaps[0].From, gaps[0].To, gaps[0].Seq, gaps[0].Reason)
}
