package main

// The audit trail end to end: every way the station's state changes — the
// key switch and the acknowledge button at the door, the status page, the
// control socket (CLI), central's commands and allowlist updates — leaves
// one operator record on the events topic, delivered through the durable
// buffer, following its schema, saying who, how and (for commands) which
// command.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/statuspage"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// operatorRecords returns the distinct operator records central received,
// each validated against the operator-event schema.
func operatorRecords(t *testing.T, msgs []testkit.Message) []dock.CustodyEvent {
	t.Helper()
	var out []dock.CustodyEvent
	seen := map[string]bool{}
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/events") || !bytes.Contains(m.Payload, []byte(`"kind":"operator"`)) {
			continue
		}
		contracttest.Require(t, contract.OperatorEventSchemaFile, m.Payload)
		var e dock.CustodyEvent
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			t.Fatal(err)
		}
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

// waitRecord waits for the operator record matching want and returns it.
func waitRecord(t *testing.T, s *testStation, what string, want func(dock.CustodyEvent) bool) dock.CustodyEvent {
	t.Helper()
	var got dock.CustodyEvent
	s.sub.WaitFor(t, func(ms []testkit.Message) bool {
		for _, e := range operatorRecords(t, ms) {
			if want(e) {
				got = e
				return true
			}
		}
		return false
	}, 20*time.Second)
	if got.ID == "" {
		t.Fatalf("no operator record for %s", what)
	}
	return got
}

func TestAuditTrailEveryPath(t *testing.T) {
	var inputs map[string]*testkit.RecordingPin
	s := startStationWith(t, func(_, y string) string {
		inputs = testkit.RegisterPins(t, "GPIO5", "GPIO6")
		return strings.Replace(y, "  decision_hold: 300ms\n", "  decision_hold: 300ms\n  inputs: {ack_button: GPIO5, direction_switch: GPIO6, debounce: 20ms}\n", 1)
	})
	inputs["GPIO5"].WaitArmed(t, 5*time.Second)
	inputs["GPIO6"].WaitArmed(t, 5*time.Second)
	waitUntil(t, 10*time.Second, "uplink connected", s.d.up.Connected)
	me := statuspage.LocalName(uint32(os.Getuid()))
	isOp := func(action, via string) func(dock.CustodyEvent) bool {
		return func(e dock.CustodyEvent) bool { return e.Action == action && e.Via == via }
	}

	// 1. At the door: the key switch and the acknowledge button.
	inputs["GPIO6"].Set(gpio.Low) // key to shipping
	e := waitRecord(t, s, "key switch", isOp("direction", "key_switch"))
	if e.Actor != "operator" || e.Direction != dock.Shipping || e.PreviousDirection != dock.Receiving {
		t.Fatalf("key switch record %+v", e)
	}
	inputs["GPIO5"].Set(gpio.Low)
	time.Sleep(60 * time.Millisecond)
	inputs["GPIO5"].Set(gpio.High)
	if e := waitRecord(t, s, "acknowledge button", isOp("acknowledge", "button")); e.Actor != "operator" {
		t.Fatalf("button record %+v", e)
	}

	// 2. The status page: a browser signed in with a login link.
	cookie, csrf := browserSession(t, s, noRedirect)
	base := pageBase(s)
	for _, r := range []apiReq{
		{path: "/api/direction", body: `{"direction":"receiving"}`},
		{path: "/api/light-test", body: `{}`},
		{path: "/api/simulate", body: `{"data":"(01)09506000134352(10)LOT42(21)AUD-PAGE"}`},
	} {
		r.origin, r.cookie, r.csrf = base, cookie, csrf
		if code, body := doAPI(t, noRedirect, base, r); code != 200 {
			t.Fatalf("page %s: %d %s", r.path, code, body)
		}
	}
	e = waitRecord(t, s, "page direction", isOp("direction", "page"))
	if e.Actor != "local:tester(uid=0)" || e.Direction != dock.Receiving || e.PreviousDirection != dock.Shipping {
		t.Fatalf("page direction record %+v", e)
	}
	if e := waitRecord(t, s, "page lamp test", isOp("light_test", "page")); e.Actor != "local:tester(uid=0)" {
		t.Fatalf("page lamp test record %+v", e)
	}

	// 3. The technician's tools on the control socket.
	sock := s.d.ctlLn.Addr().String()
	var out bytes.Buffer
	if err := cmdLight(context.Background(), []string{"test", "--socket", sock}, &out, &out); err != nil {
		t.Fatalf("dockd light test: %v\n%s", err, out.String())
	}
	if err := cmdSimulate(context.Background(), []string{"--socket", sock, "(01)09506000134352(10)LOT42(21)AUD-CLI"}, nil, &out, &out); err != nil {
		t.Fatalf("dockd simulate: %v\n%s", err, out.String())
	}
	if err := cmdDirection(context.Background(), []string{"--socket", sock, "shipping"}, &out, &out); err != nil {
		t.Fatalf("dockd direction: %v\n%s", err, out.String())
	}
	if e := waitRecord(t, s, "CLI lamp test", isOp("light_test", "cli")); e.Actor != me {
		t.Fatalf("CLI lamp test record %+v, want actor %s", e, me)
	}
	if e := waitRecord(t, s, "CLI direction", isOp("direction", "cli")); e.Actor != me || e.PreviousDirection != dock.Receiving {
		t.Fatalf("CLI direction record %+v", e)
	}

	// 4. Central: commands, each record naming its command id.
	c := newPahoPublisher(t, s.broker.URL(), "central-audit")
	central(t, c, "set-direction", cmdJSON("aud-dir", `{"direction":"receiving"}`))
	central(t, c, "light-test", cmdJSON("aud-lt", ""))
	central(t, c, "open-shipment", cmdJSON("aud-open", `{"shipment":"SH-1","lines":[{"gtin":"09506000134352","lot":"LOT42","qty":2}]}`))
	central(t, c, "close-shipment", cmdJSON("aud-close", `{"shipment":"SH-1"}`))
	cfgPath := s.d.opts.ConfigPath
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, bytes.Replace(b, []byte("direction: receiving"), []byte("direction: shipping"), 1), 0o600)
	central(t, c, "reload-config", cmdJSON("aud-reload", ""))
	for _, id := range []string{"aud-dir", "aud-lt", "aud-open", "aud-close", "aud-reload"} {
		var r struct {
			OK bool `json:"ok"`
		}
		json.Unmarshal(waitReply(t, s.sub, id, 1)[0], &r)
		if !r.OK {
			t.Fatalf("command %s failed", id)
		}
	}
	for _, w := range []struct{ action, id string }{
		{"direction", "aud-dir"}, {"light_test", "aud-lt"}, {"shipment_open", "aud-open"},
		{"shipment_close", "aud-close"}, {"reload_config", "aud-reload"},
	} {
		e := waitRecord(t, s, w.id, func(e dock.CustodyEvent) bool { return e.Action == w.action && e.CommandID == w.id })
		if e.Actor != "central" || e.Via != "mqtt" {
			t.Fatalf("%s record %+v", w.id, e)
		}
		switch w.action {
		case "shipment_open", "shipment_close":
			if e.Shipment != "SH-1" {
				t.Fatalf("%s record without the shipment: %+v", w.id, e)
			}
		case "reload_config":
			if e.Direction != dock.Shipping || e.PreviousDirection != dock.Receiving {
				t.Fatalf("reload that turned the door: %+v", e)
			}
		}
	}
	// dockd reload on the control socket (the file is unchanged now).
	if err := cmdReload(context.Background(), []string{"--socket", sock}, &out, &out); err != nil {
		t.Fatalf("dockd reload: %v\n%s", err, out.String())
	}
	if e := waitRecord(t, s, "CLI reload", isOp("reload_config", "cli")); e.Actor != me || e.PreviousDirection != "" {
		t.Fatalf("CLI reload record %+v", e)
	}
	// A repeated command id is answered from the cache and changes nothing:
	// no second record.
	central(t, c, "light-test", cmdJSON("aud-lt", ""))
	waitReply(t, s.sub, "aud-lt", 2)

	// 5. Central's allowlist update becomes active.
	body := fmt.Sprintf(`{"gtin":%q,"lot":"AUD1","status":"released"}`+"\n", demoGTIN)
	sum := sha256.Sum256([]byte(body))
	manifest := fmt.Sprintf(`{"schema":"dockd.allowlist-snapshot/1","version":"v-audit","seq":500,"format":"jsonl","chunks":1,"bytes":%d,"sha256":%q}`, len(body), hex.EncodeToString(sum[:]))
	lists := "dockd/v1/test-site/allowlist"
	if err := c.Publish(context.Background(), lists+"/snapshot/500/chunk/0", []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(context.Background(), lists+"/snapshot/500/manifest", []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	if e := waitRecord(t, s, "allowlist activation", isOp("allowlist_activate", "mqtt")); e.AllowlistVersion != "v-audit" || e.Actor != "central" {
		t.Fatalf("allowlist record %+v", e)
	}

	// Every path recorded exactly once; nothing recorded twice.
	time.Sleep(500 * time.Millisecond)
	counts := map[string]int{}
	for _, e := range operatorRecords(t, s.sub.Messages()) {
		counts[e.Action+"/"+e.Via]++
	}
	want := map[string]int{
		"direction/key_switch": 1, "acknowledge/button": 1, "direction/page": 1, "light_test/page": 1,
		"light_test/cli": 1, "direction/cli": 1, "direction/mqtt": 1, "light_test/mqtt": 1,
		"shipment_open/mqtt": 1, "shipment_close/mqtt": 1, "reload_config/mqtt": 1, "allowlist_activate/mqtt": 1,
		"reload_config/cli": 1,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d records, want %d", k, counts[k], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("records %v, want exactly %v", counts, want)
	}
	// The simulated scans are custody events marked as such, with who.
	for _, e := range waitEvents(t, s.sub, 2, 10*time.Second) {
		if strings.HasPrefix(e.Serial, "AUD-") && (!e.Simulated || e.Reader != dock.SimulatedReader || e.Actor == "") {
			t.Fatalf("simulated scan %+v", e)
		}
	}
}

// dockd allowlist import runs while the station is stopped; the version it
// activates is an operator record in the station's buffer, delivered when
// the station runs again.
func TestAuditAllowlistImportWhileStopped(t *testing.T) {
	var out, errb bytes.Buffer
	s := startStationWith(t, func(dir, y string) string {
		cfg := filepath.Join(dir, "stopped.yaml")
		csv := filepath.Join(dir, "list.csv")
		os.WriteFile(cfg, []byte(y), 0o600)
		os.WriteFile(csv, []byte("gtin,lot,status\n"+demoGTIN+",OFF1,released\n"), 0o600)
		if err := cmdAllowlist(context.Background(), []string{"import", "--config", cfg, "--version", "v-offline", csv}, &out, &errb); err != nil {
			t.Fatalf("allowlist import: %v\n%s", err, errb.String())
		}
		if !strings.Contains(errb.String(), "recorded as operator event") {
			t.Fatalf("import did not record itself: %s", errb.String())
		}
		return y
	})
	e := waitRecord(t, s, "the offline import", func(e dock.CustodyEvent) bool { return e.Action == "allowlist_activate" })
	if e.Via != "cli" || e.Actor != statuspage.LocalName(uint32(os.Getuid())) || e.AllowlistVersion != "v-offline" || e.Station != "test-site-door-9" {
		t.Fatalf("offline import record %+v", e)
	}
}
