package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/collector"
	"github.com/dockd/dockd/internal/serverproc"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink"
	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// startCollect runs `dockd collect run` in this process against broker and
// db, serving /trace on a free port, and returns that base URL once the
// collector's subscription is acknowledged.
func startCollect(t *testing.T, db string, brokers ...string) (baseURL string) {
	t.Helper()
	var args []string
	for _, b := range brokers {
		args = append(args, "--broker", b)
	}
	return startCollectArgs(t, db, args...)
}

// startCollectArgs is startCollect with any further flags.
func startCollectArgs(t *testing.T, db string, extra ...string) (baseURL string) {
	t.Helper()
	port, err := serverproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"collect", "run", "--db", db, "--name", "e2e", "--http", addr}, extra...)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, nil, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("collect run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("collect run did not stop")
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", logs.String())
		}
	})
	waitUntil(t, 60*time.Second, "the collector to subscribe", func() bool {
		return strings.Contains(logs.String(), "collector: subscribed")
	})
	return "http://" + addr
}

// TestCollectStationToPostgres: a whole station (pty scanner → decision →
// buffer → MQTT) and `dockd collect run` on the same Mosquitto: every scan
// is a row in PostgreSQL, and `dockd collect trace` and GET /trace show
// where the lot crossed, which way, when and with what decision.
func TestCollectStationToPostgres(t *testing.T) {
	pg := testkit.StartPostgres(t)
	s := startStation(t)
	base := startCollect(t, pg.DSN(), s.broker.URL())
	s.write(gs1Scan("LOT42", "S1"))
	s.write(gs1Scan("LOT99", "S2"))
	s.write(gs1Scan("LOT42", "S3"))
	evs := s.waitDecisions(3, 10*time.Second)
	waitUntil(t, 20*time.Second, "3 rows in PostgreSQL", func() bool {
		return pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, evs[0].Station) == 3
	})

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"collect", "trace", "--db", pg.DSN(), "--lot", "LOT42"}, nil, &out, &errb); err != nil {
		t.Fatalf("collect trace: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("collect trace --lot LOT42: want a header and 2 rows:\n%s", out.String())
	}
	for i, serial := range []string{"S1", "S3"} {
		f := strings.Fields(lines[i+1])
		// TIME SITE DOOR STATION SEQ DIRECTION DECISION REASON GTIN LOT SERIAL ...
		if f[1] != "test-site" || f[2] != "door-9" || f[5] != "receiving" || f[6] != string(evs[0].Decision.Verdict) || f[9] != "LOT42" || f[10] != serial {
			t.Fatalf("trace row %d: %q", i, lines[i+1])
		}
	}

	res, err := http.Get(base + "/trace?lot=LOT99")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr collector.TraceResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /trace: %d %v", res.StatusCode, err)
	}
	if len(tr.Crossings) != 1 || tr.Crossings[0].Serial != "S2" || tr.Crossings[0].Door != "door-9" || tr.Crossings[0].Seq != evs[1].Seq {
		t.Fatalf("GET /trace?lot=LOT99: %+v, want the one S2 crossing (seq %d)", tr.Crossings, evs[1].Seq)
	}

	out.Reset()
	if err := run(context.Background(), []string{"collect", "trace", "--db", pg.DSN(), "--serial", "S2", "--json"}, nil, &out, &errb); err != nil {
		t.Fatalf("collect trace --json: %v", err)
	}
	var tj collector.TraceResponse
	if err := json.Unmarshal(out.Bytes(), &tj); err != nil || len(tj.Crossings) != 1 || tj.Crossings[0].Lot != "LOT99" {
		t.Fatalf("collect trace --serial S2 --json: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"collect", "--help"}, {"collect", "run", "--help"}, {"collect", "trace", "--help"}} {
		var o bytes.Buffer
		if err := run(context.Background(), args, nil, &o, &o); err != nil {
			t.Fatalf("%v: %v, want exit 0", args, err)
		}
	}
}

// TestCollectRunTLSAndACL: `dockd collect run` as the shipped ACL's user
// "central" over server-verified TLS with a password file: it reads the
// events, writes the receipts, and a station user confined to its own
// topics sees its receipt.
func TestCollectRunTLSAndACL(t *testing.T) {
	pki := testkit.NewPKI(t, "collect")
	cert, key := pki.Server(t, "broker", []string{"127.0.0.1"})
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	testkit.WriteMosquittoPasswd(t, pw, map[string]string{"central": "central-secret", "s1-d1": "station-secret"})
	acl := filepath.Join(dir, "acl")
	// central's block as in firmware-config/mosquitto-acl.example, and one station.
	if err := os.WriteFile(acl, []byte(`user central
topic read dockd/v1/+/+/events
topic read dockd/v1/+/+/status
topic write dockd/v1/+/+/cmd/#
topic write dockd/v1/+/+/receipts
topic read dockd/v1/+/+/receipt-probe

user s1-d1
topic write dockd/v1/s1/d1/events
topic read dockd/v1/s1/d1/receipts
`), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := testkit.StartMosquitto(t, testkit.WithMosqAuth(pw, acl), testkit.WithMosqTLS(testkit.MosqTLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}))
	pwFile := filepath.Join(dir, "central.pw")
	if err := os.WriteFile(pwFile, []byte("central-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg := testkit.StartPostgres(t)
	startCollectArgs(t, pg.DSN(), "--broker", broker.TLSURL(), "--username", "central", "--password-file", pwFile, "--ca-file", pki.CAFile)

	tc, err := uplink.TLSConfig(pki.CAFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 4)
	st := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.TLSURL()).SetClientID("s1-d1").SetUsername("s1-d1").
		SetPassword("station-secret").SetTLSConfig(tc).SetProtocolVersion(4))
	if tok := st.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("station connect: %v", tok.Error())
	}
	defer st.Disconnect(100)
	if tok := st.Subscribe("dockd/v1/s1/d1/receipts", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("station subscribe: %v", tok.Error())
	}
	ev := fmt.Sprintf(`{"schema":"dockd.custody-event/1","id":"6f1c1b0e-3b1a-4c55-9a8e-0123456789ab","seq":1,"site":"s1","station":"s1-d1","door":"d1",
"direction":"receiving","time":"2026-01-01T00:00:00Z","clock_synced":true,"reader":"r","raw":"x","decision":"reject","reason":"bad_scan","error_kind":"syntax"}`)
	if tok := st.Publish("dockd/v1/s1/d1/events", 1, false, ev); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("station publish: %v", tok.Error())
	}
	select {
	case p := <-got:
		contracttest.Require(t, contract.ReceiptSchemaFile, p)
		if !strings.Contains(string(p), `"upto":1`) {
			t.Fatalf("receipt %s, want upto 1", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no receipt through TLS and the ACL")
	}
}
