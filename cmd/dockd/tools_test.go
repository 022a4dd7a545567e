package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockd/dockd/buffer"
)

// dockd decode prints exactly one JSON object per input line, in order,
// with \x1d typed as GS under --escapes.
func TestDecodeCommand(t *testing.T) {
	in := strings.Join([]string{
		`]C1010950600013435210LOT42\x1d21S1`,
		`(01)09506000134353(10)LOT42`,
		`https://id.example.com/01/09506000134352/10/LOT42?17=270630`,
		``,
		`]Z9garbage`,
	}, "\n") + "\n"
	var out bytes.Buffer
	if err := run(context.Background(), []string{"decode", "--escapes"}, strings.NewReader(in), &out, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d output lines for 5 input lines:\n%s", len(lines), out.String())
	}
	type result struct {
		Input, Symbology, Form, GTIN, Lot, Serial, Expiry string
		OK                                                bool
		Error                                             *struct{ Kind, AI string }
	}
	var r [5]result
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &r[i]); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i+1, err, l)
		}
	}
	if !r[0].OK || r[0].Symbology != "GS1-128" || r[0].GTIN != "09506000134352" || r[0].Lot != "LOT42" || r[0].Serial != "S1" {
		t.Errorf("GS1-128: %+v", r[0])
	}
	if r[1].OK || r[1].Error == nil || r[1].Error.Kind != "check_digit" || r[1].Error.AI != "01" {
		t.Errorf("bad check digit: %+v", r[1])
	}
	if !r[2].OK || r[2].Form != "digital_link" || r[2].Expiry != "2027-06-30" {
		t.Errorf("Digital Link: %+v", r[2])
	}
	if r[4].OK || r[4].Error == nil || r[4].Error.Kind != "bad_symbology" {
		t.Errorf("unknown AIM id: %+v", r[4])
	}
	// Without --escapes, "<GS>" is label data: AI 10 "A<GS>B" is a valid
	// lot, and a real GS byte still separates.
	out.Reset()
	raw := "]C1010950600013435210A<GS>B\n]C1010950600013435210LOT42\x1d21S1\n"
	if err := run(context.Background(), []string{"decode"}, strings.NewReader(raw), &out, &out); err != nil {
		t.Fatal(err)
	}
	if l := strings.Split(out.String(), "\n"); len(l) < 2 || !strings.Contains(l[0], `"lot":"A<GS>B"`) || !strings.Contains(l[1], `"lot":"LOT42"`) || !strings.Contains(l[1], `"serial":"S1"`) {
		t.Errorf("decode without --escapes: %s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"decode", "--escapes"}, strings.NewReader("]C1010950600013435210A<GS>21B\n"), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"lot":"A"`) || !strings.Contains(out.String(), `"serial":"B"`) {
		t.Errorf("decode --escapes with <GS>: %s", out.String())
	}
	// --digital-link selects the mode.
	out.Reset()
	run(context.Background(), []string{"decode", "--digital-link", "lenient"}, strings.NewReader("https://example.com/01/4006381333931\nhttps://example.com/about\n"), &out, &out)
	if l := strings.Split(out.String(), "\n"); len(l) < 2 || !strings.Contains(l[0], `"gtin":"04006381333931"`) || !strings.Contains(l[1], `"form":"plain"`) {
		t.Errorf("decode --digital-link lenient: %s", out.String())
	}
	out.Reset()
	run(context.Background(), []string{"decode"}, strings.NewReader("https://example.com/about\n"), &out, &out)
	if !strings.Contains(out.String(), `"kind":"bad_uri"`) {
		t.Errorf("decode (strict) of a URL without a key: %s", out.String())
	}
	out.Reset()
	run(context.Background(), []string{"decode", "--rfid"}, strings.NewReader("3074257BF7194E4000001A85\n"), &out, &out)
	if !strings.Contains(out.String(), `"uri":"urn:epc:id:sgtin:0614141.812345.6789"`) {
		t.Errorf("decode --rfid: %s", out.String())
	}
}

// The allowlist tools: import with progress, stats, lookup, export; a bad
// file changes nothing and names the line.
func TestAllowlistCommands(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "list.csv")
	os.WriteFile(csv, []byte("gtin,lot,status,expiry\n09506000134352,A1,released,2030-01-01\n09506000134352,A2,recalled,\n"), 0o600)
	var out, errb bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"allowlist", "import", "--state-dir", dir, "--version", "v7", csv}, nil, &out, &errb); err != nil {
		t.Fatalf("import: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "v7") || !strings.Contains(out.String(), "2 lots") || !strings.Contains(errb.String(), "import: 2 rows") {
		t.Fatalf("import output %q / progress %q", out.String(), errb.String())
	}
	out.Reset()
	if err := run(ctx, []string{"allowlist", "lookup", "--state-dir", dir, "09506000134352", "A2"}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), `"status":"recalled"`) {
		t.Fatalf("lookup: %v %s", err, out.String())
	}
	if err := run(ctx, []string{"allowlist", "lookup", "--state-dir", dir, "09506000134352", "A9"}, nil, &out, &errb); err == nil {
		t.Fatal("lookup of an unknown lot succeeded")
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("gtin,lot,status\n09506000134352,B1,released\n123,B2,released\n"), 0o600)
	err := run(ctx, []string{"allowlist", "import", "--state-dir", dir, bad}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "line 3: gtin") {
		t.Fatalf("bad import: %v", err)
	}
	out.Reset()
	run(ctx, []string{"allowlist", "stats", "--state-dir", dir}, nil, &out, &errb)
	if !strings.Contains(out.String(), `"version":"v7"`) || !strings.Contains(out.String(), `"lots":2`) {
		t.Fatalf("stats after a failed import: %s", out.String())
	}
}

// The buffer tools carry a backlog off one box and replay it on another.
func TestBufferCommands(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	q, err := buffer.Open(filepath.Join(a, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 25; i++ {
		if _, err := q.Append(context.Background(), func(seq uint64) ([]byte, error) {
			return []byte(fmt.Sprintf(`{"seq":%d,"id":"e%d"}`, seq, i)), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	ctx := context.Background()
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"buffer", "stats", "--state-dir", a}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), `"Depth":25`) {
		t.Fatalf("stats: %v %s", err, out.String())
	}
	out.Reset()
	run(ctx, []string{"buffer", "peek", "--state-dir", a, "3"}, nil, &out, &errb)
	if n := strings.Count(out.String(), "\n"); n != 3 || !strings.HasPrefix(out.String(), "1\t") {
		t.Fatalf("peek 3: %q", out.String())
	}
	file := filepath.Join(t.TempDir(), "backlog.jsonl")
	if err := run(ctx, []string{"buffer", "export", "--state-dir", a, file}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"buffer", "import", "--state-dir", b, file}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "imported 25 events") {
		t.Fatalf("import: %v %s", err, out.String())
	}
	q2, err := buffer.Open(filepath.Join(b, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	rs, _ := q2.Pending(0, 100)
	if len(rs) != 25 || string(rs[24].Payload) != `{"seq":25,"id":"e25"}` {
		t.Fatalf("replayed %d records, last %s", len(rs), rs[len(rs)-1].Payload)
	}
}
