package allowlist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/dockd/dockd/uplink/contract"
	"github.com/dockd/dockd/uplink/contract/contracttest"
)

// FuzzParseUpdateTopic: any topic is classified without panicking, and an
// accepted one names a positive seq and a known kind.
func FuzzParseUpdateTopic(f *testing.F) {
	for _, s := range []string{topicBase + "snapshot/1/manifest", topicBase + "snapshot/2/chunk/0", topicBase + "delta/3",
		topicBase + "snapshot/1/chunk/099", topicBase + "delta/0", "x/allowlist/", topicBase + "snapshot/18446744073709551616/manifest"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		ut, err := ParseUpdateTopic(topic)
		if err != nil {
			return
		}
		if ut.Seq == 0 || (ut.Kind != KindManifest && ut.Kind != KindChunk && ut.Kind != KindDelta) || ut.Chunk < 0 || ut.Chunk >= MaxChunks {
			t.Fatalf("accepted %q as %+v", topic, ut)
		}
	})
}

// FuzzParseManifest: never panics; what it accepts satisfies the manifest
// schema and has no repeated member.
func FuzzParseManifest(f *testing.F) {
	man, _ := central{}.snapshot(7, "v7", listBody("A", 3), 100)
	f.Add(man.payload)
	f.Add(bytes.Replace(man.payload, []byte(`"seq":7`), []byte(`"seq":7,"seq":7`), 1))
	f.Add([]byte(`{"schema":"dockd.allowlist-snapshot/1"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if _, err := ParseManifest(7, payload); err != nil {
			return
		}
		if err := contracttest.Validate(contract.AllowlistManifestSchemaFile, payload); err != nil {
			t.Fatalf("accepted a manifest the schema refuses: %v\n%s", err, payload)
		}
	})
}

// FuzzParseDelta: a delta's header and every row of its body are parsed
// without panicking; an accepted header names the schema, the topic's seq
// and a version, and every row that validates satisfies the row schema.
func FuzzParseDelta(f *testing.F) {
	f.Add(central{}.delta(3, 2, "v3", `{"gtin":"`+g1+`","lot":"C","status":"recalled"}`+"\n"+`{"op":"delete","gtin":"`+g1+`","lot":"D"}`+"\n").payload)
	f.Add(central{}.delta(3, 2, "v3", `{"gtin":"`+g1+`","lot":"C","lot":"D"}`).payload)
	f.Add([]byte("{}\n{}"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, body, err := ParseDelta(3, payload)
		if err != nil {
			return
		}
		if h.Schema != DeltaSchema || h.Seq != 3 || h.Version == "" {
			t.Fatalf("accepted header %+v", h)
		}
		src := jsonlSource(bufio.NewReaderSize(bytes.NewReader(body), 1<<16))
		for i := 0; i < 1000; i++ {
			row, _, err := src()
			if err == io.EOF {
				return
			}
			if err != nil {
				continue
			}
			if _, msg := validate(&row); msg == "" {
				// The station reads these values case-insensitively
				// (CONTRACT.md); the schema states central's lowercase.
				row.Status, row.State, row.Direction = strings.ToLower(row.Status), strings.ToLower(row.State), strings.ToLower(row.Direction)
				rb, _ := json.Marshal(row)
				if err := contracttest.Validate(contract.AllowlistRowSchemaFile, rb); err != nil {
					t.Fatalf("row accepted that the schema refuses: %v\n%s", err, rb)
				}
			}
		}
	})
}
