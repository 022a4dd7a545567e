package allowlist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

func openLimited(t *testing.T, l Limits, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"), append(opts, WithLimits(l))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantRejected(t *testing.T, s *Store, m msg, reason string) Ack {
	t.Helper()
	ack, err := s.ApplyUpdate(m.topic, m.payload)
	var ue *UpdateError
	if !errors.As(err, &ue) || ue.Reason != reason || ack.Status != StatusRejected || ack.Reason != reason {
		t.Fatalf("%s: got %v, ack %+v; want rejected %s", m.topic, err, ack, reason)
	}
	contracttest.Require(t, contract.AllowlistAckSchemaFile, mustJSON(t, ack))
	return ack
}

// Oversized parts are refused before anything is stored; a snapshot whose
// staged parts outgrow the snapshot limit is dropped whole; what is active
// stays.
func TestSnapshotStagingIsBounded(t *testing.T) {
	s := openLimited(t, Limits{MaxChunkBytes: 4 << 10, MaxSnapshotBytes: 16 << 10, MaxDeltaBytes: 2 << 10})
	applySnapshot(t, s, central{}, 1, "v1", listBody("A", 5))

	// One chunk over the chunk limit, and a manifest announcing too much.
	wantRejected(t, s, msg{topicBase + "snapshot/2/chunk/0", bytes.Repeat([]byte("x"), 5<<10)}, ReasonTooLarge)
	big, _ := central{}.snapshot(2, "v2", bytes.Repeat([]byte("y"), 20<<10), 4<<10)
	wantRejected(t, s, big, ReasonTooLarge)
	// Chunks with no manifest, each within the chunk limit, until the
	// snapshot limit: refused, and the whole staged snapshot is gone.
	var ack Ack
	for n := 0; ; n++ {
		m := msg{fmt.Sprintf("%ssnapshot/3/chunk/%d", topicBase, n), bytes.Repeat([]byte("z"), 4<<10)}
		a, err := s.ApplyUpdate(m.topic, m.payload)
		if err != nil {
			ack = a
			break
		}
		if n > 10 {
			t.Fatal("16 KiB of snapshot limit never reached")
		}
	}
	if ack.Reason != ReasonTooLarge || s.stagedBytes(3) != 0 {
		t.Fatalf("ack %+v, still staged %d", ack, s.stagedBytes(3))
	}
	if info, _ := s.Info(); info.Staged != nil {
		t.Fatalf("staging not freed: %+v", info.Staged)
	}
	// A chunk beyond the manifest's count.
	man, _ := central{}.snapshot(4, "v4", listBody("B", 3), 1<<10)
	apply(t, s, man)
	wantRejected(t, s, msg{topicBase + "snapshot/4/chunk/7", []byte("x")}, ReasonMalformed)
	// A delta over its limit.
	wantRejected(t, s, central{}.delta(5, 1, "v5", strings.Repeat(`{"gtin":"`+g1+`","lot":"L","status":"released"}`+"\n", 60)), ReasonTooLarge)
	if info, _ := s.Info(); info.Version != "v1" || !hasLot(t, s, "A4") {
		t.Fatalf("list changed: %+v", info)
	}
}

// Staging stops before it would eat into the free space kept for events,
// and drops what it had staged of that snapshot.
func TestStagingKeepsReserve(t *testing.T) {
	free := int64(10 << 20)
	s := openLimited(t, Limits{MaxChunkBytes: 1 << 20, MaxSnapshotBytes: 64 << 20,
		Free: func() (int64, error) { return free, nil }, Reserve: func() int64 { return 8 << 20 }})
	// A manifest announcing more than fits is refused at once.
	man, _ := central{}.snapshot(2, "v2", bytes.Repeat([]byte("y"), 3<<20), 1<<20)
	a := wantRejected(t, s, man, ReasonNoSpace)
	if !strings.Contains(a.Detail, "kept for events") {
		t.Fatalf("detail %q", a.Detail)
	}
	// Chunks without a manifest: staged while the space lasts.
	apply(t, s, msg{topicBase + "snapshot/3/chunk/0", bytes.Repeat([]byte("z"), 256<<10)})
	free = 8<<20 + 256<<10
	wantRejected(t, s, msg{topicBase + "snapshot/3/chunk/1", bytes.Repeat([]byte("z"), 256<<10)}, ReasonNoSpace)
	if s.stagedBytes(3) != 0 {
		t.Fatal("refused snapshot still staged")
	}
}

// An unfinished snapshot expires after the staging TTL and its staging is
// freed; a newer part restarts nothing of the old one.
func TestStagedSnapshotExpires(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := openLimited(t, Limits{StagingTTL: time.Hour, Now: func() time.Time { return now }})
	apply(t, s, msg{topicBase + "snapshot/5/chunk/0", []byte("part")})
	now = now.Add(59 * time.Minute)
	if acks, err := s.ExpireStaged(); err != nil || len(acks) != 0 {
		t.Fatalf("expired early: %v %+v", err, acks)
	}
	now = now.Add(2 * time.Minute)
	acks, err := s.ExpireStaged()
	if err != nil || len(acks) != 1 || acks[0].Seq != 5 || acks[0].Reason != ReasonExpired {
		t.Fatalf("expiry: %v %+v", err, acks)
	}
	contracttest.Require(t, contract.AllowlistAckSchemaFile, mustJSON(t, acks[0]))
	if info, _ := s.Info(); info.Staged != nil {
		t.Fatalf("still staged: %+v", info.Staged)
	}
}

// With neither a key nor permission for unsigned lists, nothing from
// central is accepted.
func TestRequireSignatureWithoutKey(t *testing.T) {
	s := openLimited(t, Limits{}, WithRequireSignature())
	man, _ := central{}.snapshot(2, "v2", listBody("B", 3), 1<<10)
	wantRejected(t, s, man, ReasonBadSignature)
}

// Repeated member names and trailing data are malformed in manifests and
// delta headers, and a bad row in a delta body.
func TestUpdatesRefuseDuplicateMembers(t *testing.T) {
	s := openStore(t)
	applySnapshot(t, s, central{}, 1, "v1", listBody("A", 2))
	man, _ := central{}.snapshot(2, "v2", listBody("B", 3), 1<<10)
	dup := bytes.Replace(man.payload, []byte(`"seq":2`), []byte(`"seq":2,"seq":2`), 1)
	wantRejected(t, s, msg{man.topic, dup}, ReasonMalformed)
	wantRejected(t, s, msg{man.topic, append(append([]byte(nil), man.payload...), []byte(` {"x":1}`)...)}, ReasonMalformed)
	d := central{}.delta(3, 1, "v3", `{"gtin":"`+g1+`","lot":"C","lot":"D","status":"released"}`+"\n")
	wantRejected(t, s, d, ReasonBadRows)
}

// The updater refuses an oversized message before copying it, with a
// rejected ack, and keeps working.
func TestUpdaterRefusesOversizedUnread(t *testing.T) {
	s := openLimited(t, Limits{MaxChunkBytes: 1 << 10})
	acks := make(chan Ack, 16)
	u := NewUpdater(s, func(a Ack) { acks <- a }, quietLog)
	ctx, cancel := testContext(t)
	defer cancel()
	go u.Run(ctx)
	u.Handle(topicBase+"snapshot/9/chunk/0", make([]byte, 200<<20))
	a := <-acks
	if a.Status != StatusRejected || a.Reason != ReasonTooLarge || a.Kind != "chunk" || a.Seq != 9 {
		t.Fatalf("ack %+v", a)
	}
	contracttest.Require(t, contract.AllowlistAckSchemaFile, mustJSON(t, a))
	man, chunks := central{}.snapshot(3, "v3", listBody("U", 3), 1<<10)
	u.Handle(man.topic, man.payload)
	u.Handle(chunks[0].topic, chunks[0].payload)
	for a = <-acks; a.Status == StatusStaged; a = <-acks {
	}
	if a.Status != StatusApplied {
		t.Fatalf("after the refusal: %+v", a)
	}
}

var quietLog = slog.New(slog.DiscardHandler)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The updater expires unfinished snapshots on its own, acknowledging each.
func TestUpdaterExpiresStaging(t *testing.T) {
	s := openLimited(t, Limits{StagingTTL: 200 * time.Millisecond})
	acks := make(chan Ack, 16)
	u := NewUpdater(s, func(a Ack) { acks <- a }, quietLog)
	ctx, cancel := testContext(t)
	defer cancel()
	go u.Run(ctx)
	u.Handle(topicBase+"snapshot/4/chunk/0", []byte("part"))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case a := <-acks:
			if a.Reason != ReasonExpired {
				continue
			}
			if a.Seq != 4 || a.Status != StatusRejected {
				t.Fatalf("ack %+v", a)
			}
			if info, _ := s.Info(); info.Staged != nil {
				t.Fatalf("still staged: %+v", info.Staged)
			}
			return
		case <-deadline:
			t.Fatal("no expiry within 10s of a 200ms staging TTL")
		}
	}
}
