package allowlist

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

const topicBase = "dockd/v1/site-1/allowlist/"

// central builds update messages the way central would.
type central struct {
	key ed25519.PrivateKey
}

type msg struct {
	topic   string
	payload []byte
}

func (c central) sign(b []byte) string {
	if c.key == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(c.key, b))
}

// snapshot splits body into chunks of size and returns the manifest and the chunks.
func (c central) snapshot(seq uint64, version string, body []byte, size int) (msg, []msg) {
	sum := sha256.Sum256(body)
	var chunks []msg
	for i := 0; i*size < len(body); i++ {
		end := min((i+1)*size, len(body))
		chunks = append(chunks, msg{fmt.Sprintf("%ssnapshot/%d/chunk/%d", topicBase, seq, i), body[i*size : end]})
	}
	m := Manifest{Schema: SnapshotSchema, Version: version, Seq: seq, Format: JSONL, Chunks: len(chunks), Bytes: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	m.Sig = c.sign(m.SigningBytes())
	mb, _ := json.Marshal(m)
	return msg{fmt.Sprintf("%ssnapshot/%d/manifest", topicBase, seq), mb}, chunks
}

func (c central) delta(seq, base uint64, version string, rows string) msg {
	sum := sha256.Sum256([]byte(rows))
	h := DeltaHeader{Schema: DeltaSchema, Version: version, Seq: seq, BaseSeq: base, SHA256: hex.EncodeToString(sum[:])}
	h.Sig = c.sign(h.SigningBytes())
	hb, _ := json.Marshal(h)
	return msg{fmt.Sprintf("%sdelta/%d", topicBase, seq), append(append(hb, '\n'), rows...)}
}

const g1 = "09506000134352"

// listBody is a JSONL list with n lots of g1 named <prefix>0..n-1.
func listBody(prefix string, n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"gtin":%q,"lot":"%s%d","status":"released"}`+"\n", g1, prefix, i)
	}
	return b.Bytes()
}

func apply(t *testing.T, s *Store, m msg) Ack {
	t.Helper()
	ack, err := s.ApplyUpdate(m.topic, m.payload)
	if err != nil {
		t.Fatalf("%s: %v (ack %+v)", m.topic, err, ack)
	}
	return ack
}

func applySnapshot(t *testing.T, s *Store, c central, seq uint64, version string, body []byte) {
	t.Helper()
	man, chunks := c.snapshot(seq, version, body, 1000)
	apply(t, s, man)
	var ack Ack
	for _, ch := range chunks {
		ack = apply(t, s, ch)
	}
	if ack.Status != StatusApplied || ack.ActiveVer != version || ack.ActiveSeq != seq {
		t.Fatalf("last chunk ack %+v", ack)
	}
}

func hasLot(t *testing.T, s *Store, lot string) bool {
	t.Helper()
	_, ok, err := s.Lot(g1, lot)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A snapshot whose last chunk never arrives leaves the old list in force,
// across a restart; when the chunk finally comes the new list is active.
func TestHalfDeliveredSnapshotSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := central{}
	applySnapshot(t, s, c, 1, "v1", listBody("OLD", 10))
	man, chunks := c.snapshot(2, "v2", listBody("NEW", 200), 1000)
	if len(chunks) < 3 {
		t.Fatalf("want several chunks, have %d", len(chunks))
	}
	// Chunks before the manifest, out of order, one duplicated.
	for _, m := range []msg{chunks[1], chunks[0], chunks[0], man} {
		if ack := apply(t, s, m); ack.Status != StatusStaged || ack.ActiveVer != "v1" {
			t.Fatalf("ack %+v", ack)
		}
	}
	for _, m := range chunks[2 : len(chunks)-1] {
		apply(t, s, m)
	}
	if !hasLot(t, s, "OLD3") || hasLot(t, s, "NEW3") {
		t.Fatal("a half-delivered snapshot became visible")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, _ := s.Info()
	if info.Version != "v1" || info.Staged == nil || info.Staged.Seq != 2 || info.Staged.Chunks != len(chunks)-1 || info.Staged.Total != len(chunks) {
		t.Fatalf("after restart: %+v staged %+v", info, info.Staged)
	}
	ack := apply(t, s, chunks[len(chunks)-1])
	if ack.Status != StatusApplied || ack.ActiveVer != "v2" {
		t.Fatalf("final chunk: %+v", ack)
	}
	if hasLot(t, s, "OLD3") || !hasLot(t, s, "NEW199") {
		t.Fatal("new list not in force")
	}
	if info, _ := s.Info(); info.Staged != nil || info.Counts.Lots != 200 {
		t.Fatalf("after apply: %+v", info)
	}
	// The same snapshot again is a duplicate; an older one is stale.
	if ack := apply(t, s, man); ack.Status != StatusIgnored || ack.Reason != ReasonDuplicate {
		t.Fatalf("duplicate: %+v", ack)
	}
	old, _ := c.snapshot(1, "v1", listBody("OLD", 10), 1000)
	if ack := apply(t, s, old); ack.Status != StatusIgnored || ack.Reason != ReasonStale {
		t.Fatalf("stale: %+v", ack)
	}
}

func TestRejectedUpdatesKeepList(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	signed := central{key: priv}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	s, err := Open(filepath.Join(t.TempDir(), "allowlist.db"), WithPublicKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	applySnapshot(t, s, signed, 5, "v5", listBody("A", 5))

	tamperedMan, tamperedChunks := signed.snapshot(6, "v6", listBody("B", 5), 1<<20)
	tamperedChunks[0].payload = bytes.Replace(tamperedChunks[0].payload, []byte("B1"), []byte("X1"), 1)
	badSum := sha256.Sum256(tamperedChunks[0].payload)
	var m Manifest
	json.Unmarshal(tamperedMan.payload, &m)
	m.SHA256 = hex.EncodeToString(badSum[:]) // attacker fixes the checksum but cannot re-sign
	forged, _ := json.Marshal(m)

	unsignedMan, _ := central{}.snapshot(6, "v6", listBody("B", 5), 1<<20)
	wrongKeyMan, _ := central{key: otherPriv}.snapshot(6, "v6", listBody("B", 5), 1<<20)
	cases := []struct {
		name   string
		msgs   []msg
		reason string
	}{
		{"tampered chunk, checksum no longer matches", []msg{tamperedMan, tamperedChunks[0]}, ReasonChecksum},
		{"tampered manifest", []msg{{tamperedMan.topic, forged}}, ReasonBadSignature},
		{"unsigned manifest", []msg{unsignedMan}, ReasonBadSignature},
		{"signed by another key", []msg{wrongKeyMan}, ReasonBadSignature},
		{"delta on a stale version", []msg{signed.delta(7, 4, "v7", `{"gtin":"`+g1+`","lot":"C","status":"released"}`+"\n")}, ReasonBaseMismatch},
		{"delta with a bad row", []msg{signed.delta(7, 5, "v7", `{"gtin":"`+g1+`","lot":"C","status":"lost"}`+"\n")}, ReasonBadRows},
		{"delta with an unknown field", []msg{signed.delta(7, 5, "v7", `{"gtin":"`+g1+`","lot":"C","colour":"red"}`+"\n")}, ReasonBadRows},
		{"delta body altered after signing", []msg{func() msg {
			d := signed.delta(7, 5, "v7", `{"gtin":"`+g1+`","lot":"C","status":"released"}`+"\n")
			d.payload = bytes.Replace(d.payload, []byte(`"C"`), []byte(`"D"`), 1)
			return d
		}()}, ReasonChecksum},
		{"topic without sequence", []msg{{topicBase + "delta/x", []byte("{}")}}, ReasonMalformed},
		{"manifest not JSON", []msg{{topicBase + "snapshot/9/manifest", []byte("nope")}}, ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ack Ack
			var err error
			for _, m := range c.msgs {
				if ack, err = s.ApplyUpdate(m.topic, m.payload); err != nil {
					break
				}
			}
			var ue *UpdateError
			if !errors.As(err, &ue) || ue.Reason != c.reason || ack.Status != StatusRejected || ack.Reason != c.reason || ack.Detail == "" {
				t.Fatalf("got %v, ack %+v; want rejected %s", err, ack, c.reason)
			}
			if info, _ := s.Info(); info.Version != "v5" || info.Seq != 5 || !hasLot(t, s, "A4") || hasLot(t, s, "C") {
				t.Fatalf("list changed: %+v", info)
			}
		})
	}
	// A good delta applies atomically and moves the version on.
	rows := `{"gtin":"` + g1 + `","lot":"C","status":"recalled","recall_id":"R-1","batches":["C-1"]}` + "\n" +
		`{"op":"delete","gtin":"` + g1 + `","lot":"A0"}` + "\n" +
		`{"gtin":"` + g1 + `","serial":"SER1","lot":"C","state":"expected"}` + "\n"
	ack := apply(t, s, signed.delta(7, 5, "v7", rows))
	if ack.Status != StatusApplied || ack.ActiveVer != "v7" || ack.ActiveSeq != 7 {
		t.Fatalf("delta ack %+v", ack)
	}
	if l, ok, _ := s.Lot(g1, "C-1"); !ok || l.Lot != "C" || l.RecallID != "R-1" {
		t.Fatalf("batch code C-1: %+v %v", l, ok)
	}
	if hasLot(t, s, "A0") || !hasLot(t, s, "A1") {
		t.Fatal("delete not applied")
	}
	info, _ := s.Info()
	if info.Counts.Lots != 5 || info.Counts.Serials != 1 || info.Counts.Batches != 1 {
		t.Fatalf("counts %+v", info.Counts)
	}
	if ack, _ := s.ApplyUpdate(signed.delta(7, 5, "v7", rows).topic, signed.delta(7, 5, "v7", rows).payload); ack.Status != StatusIgnored || ack.Reason != ReasonDuplicate {
		t.Fatalf("replayed delta: %+v", ack)
	}
}

func TestUpdaterRunsOffTheReceiveGoroutine(t *testing.T) {
	s := openStore(t)
	acks := make(chan Ack, 16)
	u := NewUpdater(s, func(a Ack) { acks <- a }, nil)
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	man, chunks := central{}.snapshot(3, "v3", listBody("U", 3), 1<<20)
	u.Handle(man.topic, man.payload)
	buf := append([]byte(nil), chunks[0].payload...)
	u.Handle(chunks[0].topic, buf)
	clear(buf) // Handle copied it
	var last Ack
	for i := 0; i < 2; i++ {
		last = <-acks
	}
	if last.Status != StatusApplied || !hasLot(t, s, "U2") {
		t.Fatalf("ack %+v", last)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	u.Handle(man.topic, man.payload) // after Run: dropped, does not block
}

func TestImportJSONLAndPartial(t *testing.T) {
	s := openStore(t)
	body := `{"kind":"product","gtin":"` + g1 + `","name":"Widget"}
{"gtin":"` + g1 + `","lot":"L1","status":"released","expiry":"2027-01-01","batches":["L1-a","L1-b"]}
{"gtin":"` + g1 + `","serial":"S1","lot":"L1","state":"received","door":"d1","changed":"2026-11-01T10:00:00Z"}
{"sscc":"106141411234567897","gtin":"` + g1 + `","lot":"L1","state":"expected"}
{"shipment":"ASN-1","door":"d1","direction":"receiving","gtin":"` + g1 + `","lot":"L1","qty":10}
{"shipment":"ASN-1","door":"d1","direction":"receiving","sscc":"106141411234567897"}
`
	info, err := s.Import(testCtx, strings.NewReader(body), ImportOptions{Version: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Products: 1, Lots: 1, Batches: 2, Serials: 1, SSCCs: 1, Shipments: 2}
	if info.Counts != want {
		t.Fatalf("counts %+v, want %+v", info.Counts, want)
	}
	if l, ok, _ := s.Lot(g1, "L1-b"); !ok || l.Lot != "L1" {
		t.Fatalf("batch lookup %+v", l)
	}
	if x, ok, _ := s.Serial(g1, "S1"); !ok || x.State != "received" || x.Door != "d1" || x.Lot != "L1" {
		t.Fatalf("serial %+v", x)
	}
	// Export and re-import round trip.
	var out bytes.Buffer
	if _, err := s.Export(&out); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t)
	info2, err := s2.Import(testCtx, bytes.NewReader(out.Bytes()), ImportOptions{Version: "rt"})
	if err != nil || info2.Counts != want {
		t.Fatalf("round trip: %+v %v\n%s", info2.Counts, err, out.String())
	}
	var out2 bytes.Buffer
	s2.Export(&out2)
	if out.String() != out2.String() {
		t.Fatalf("export differs after round trip:\n%s\n---\n%s", out.String(), out2.String())
	}

	bad := `{"gtin":"` + g1 + `","lot":"P1","status":"released"}
{"gtin":"` + g1 + `","lot":"P2","status":"released"
{"gtin":"` + g1 + `","lot":"P3","status":"released"}
`
	_, err = s.Import(testCtx, strings.NewReader(bad), ImportOptions{Version: "bad"})
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Bad != 1 || ie.Rows[0].Line != 2 {
		t.Fatalf("bad JSONL: %v", err)
	}
	if v := s.Version(); v != "j1" {
		t.Fatalf("version %q after a failed import", v)
	}
	info, err = s.Import(testCtx, strings.NewReader(bad), ImportOptions{Version: "partial", Partial: true})
	if !errors.As(err, &ie) || info.Version != "partial" || info.Counts.Lots != 2 || !hasLot(t, s, "P3") {
		t.Fatalf("partial: %+v %v", info, err)
	}
}
