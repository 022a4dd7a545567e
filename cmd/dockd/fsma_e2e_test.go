package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/epcis"
	"github.com/dockd/dockd/internal/epcis/epcistest"
	"github.com/dockd/dockd/internal/fsma204"
	"github.com/dockd/dockd/internal/fsma204/fsma204test"
	"github.com/dockd/dockd/internal/testkit"
)

// TestCollectFSMA204Station: a whole station (pty scanner → decision →
// buffer → MQTT) and `dockd collect run --http` on the same Mosquitto;
// `dockd collect export --fsma204` answers for the lot with exactly the
// scans that crossed the door, as CSV and XLSX files, and GET
// /epcis/events returns every scan of the lot as schema-valid EPCIS.
func TestCollectFSMA204Station(t *testing.T) {
	pg := testkit.StartPostgres(t)
	s := startStation(t)
	base := startCollect(t, pg.DSN(), s.broker.URL())
	s.write(gs1Scan("LOT42", "S1"))
	s.write(gs1Scan("LOT99", "S2")) // not on the list: refused at the door
	s.write(gs1Scan("LOT42", "S3"))
	evs := s.waitDecisions(3, 10*time.Second)
	waitUntil(t, 20*time.Second, "3 rows in PostgreSQL", func() bool {
		return pg.QueryInt(`SELECT count(*) FROM events WHERE station = $1`, evs[0].Station) == 3
	})
	var crossed, lot42 []dock.CustodyEvent
	for _, e := range evs {
		if e.Lot == "LOT42" {
			lot42 = append(lot42, e)
			if e.Verdict == dock.Accept || e.Verdict == dock.Warn {
				crossed = append(crossed, e)
			}
		}
	}
	if len(crossed) != 2 || evs[1].Verdict != dock.Reject {
		t.Fatalf("decisions %v %v %v: want LOT42 accepted twice and LOT99 refused", evs[0].Verdict, evs[1].Verdict, evs[2].Verdict)
	}

	dir := t.TempDir()
	for _, name := range []string{"recall.csv", "recall.xlsx"} {
		out := filepath.Join(dir, name)
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"collect", "export", "--fsma204", "--lot", "LOT42", "--db", pg.DSN(), "--out", out}, nil, &stdout, &stderr); err != nil {
			t.Fatalf("collect export --out %s: %v\n%s", name, err, stderr.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var rows [][]string
		if strings.HasSuffix(name, ".csv") {
			rows, err = csv.NewReader(bytes.NewReader(b)).ReadAll()
		} else {
			var sh *fsma204test.Sheet
			if sh, err = fsma204test.ReadXLSX(b); err == nil {
				rows = sh.Rows
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rows) != len(crossed)+1 || strings.Join(rows[0], "|") != strings.Join(fsma204.Columns(), "|") {
			t.Fatalf("%s: %d rows, want a header and %d", name, len(rows), len(crossed))
		}
		for i, e := range crossed {
			r := rows[i+1]
			want := map[int]string{fsma204.ColEventID: e.ID, fsma204.ColSeq: strconv.FormatUint(e.Seq, 10),
				fsma204.ColTLC: "(01)" + demoGTIN + "(10)LOT42", fsma204.ColCTE: fsma204.Receiving, fsma204.ColQuantity: "1",
				fsma204.ColUnit: "each", fsma204.ColSerial: e.Serial, fsma204.ColLocation: "site test-site, door door-9",
				fsma204.ColTime: e.Time.UTC().Format("2006-01-02T15:04:05") + "+00:00"}
			for c, v := range want {
				if r[c] != v {
					t.Errorf("%s row %d: %s = %q, want %q", name, i+1, fsma204.Columns()[c], r[c], v)
				}
			}
		}
		if !strings.Contains(stderr.String(), "2 receiving/shipping events") {
			t.Errorf("collect export says %q", stderr.String())
		}
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"collect", "export", "--lot", "LOT42", "--db", pg.DSN()}, nil, io.Discard, &stderr)
	if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), "--fsma204") {
		t.Errorf("collect export without --fsma204: exit %d, %v", code, err)
	}

	get := func(q string) (int, []byte) {
		res, err := http.Get(base + "/epcis/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	code, body := get("MATCH_lot=LOT42")
	if code != 200 {
		t.Fatalf("GET /epcis/events?MATCH_lot=LOT42: %d %s", code, body)
	}
	epcistest.Require(t, body)
	var doc epcis.QueryDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.EPCISBody.QueryResults.ResultsBody.EventList
	if len(got) != len(lot42) {
		t.Fatalf("EPCIS MATCH_lot=LOT42: %d events, want %d", len(got), len(lot42))
	}
	for i, e := range lot42 {
		if got[i].DockdID != e.ID || got[i].BizStep != epcis.StepReceiving {
			t.Errorf("EPCIS event %d: %s %s, want %s receiving", i, got[i].DockdID, got[i].BizStep, e.ID)
		}
	}
	code, body = get("MATCH_epc=" + url.QueryEscape("https://id.gs1.org/01/"+demoGTIN+"/21/S3"))
	if err := json.Unmarshal(body, &doc); err != nil || code != 200 || len(doc.EPCISBody.QueryResults.ResultsBody.EventList) != 1 ||
		doc.EPCISBody.QueryResults.ResultsBody.EventList[0].DockdID != evs[2].ID {
		t.Fatalf("GET ?MATCH_epc=…/21/S3: %d %s", code, body)
	}
	if code, body = get("EQ_action=OBSERVE"); code != 400 || !strings.Contains(string(body), "EQ_action") {
		t.Fatalf("GET ?EQ_action=OBSERVE: %d %s, want 400 naming it", code, body)
	}
}
