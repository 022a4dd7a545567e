package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	firmwareconfig "github.com/dockd/dockd/firmware-config"
	"github.com/dockd/dockd/internal/dock"
)

func TestShippedConfigsAreValid(t *testing.T) {
	cfg, err := Parse("dockd.yaml", firmwareconfig.DefaultConfig)
	if err != nil {
		t.Fatalf("shipped default config does not validate:\n%v", err)
	}
	if cfg.Station.ID != "dc-east-door-07" || cfg.Readers[0].Baud != 9600 || cfg.Light.DecisionHold != 2*time.Second {
		t.Fatalf("default config parsed wrong: %+v", cfg)
	}
	if cfg.TopicBase() != "dockd/v1/dc-east/door-07" {
		t.Fatalf("topic base %q", cfg.TopicBase())
	}
	demo := strings.Replace(string(firmwareconfig.DemoConfig), `state_dir: ""`, "state_dir: /tmp/x", 1)
	if _, err := Parse("demo.yaml", []byte(demo)); err != nil {
		t.Fatalf("demo config does not validate:\n%v", err)
	}
}

const base = `station:
  site: s1
  door: d1
  direction: shipping
state_dir: /tmp/dockd
readers:
  - id: r1
    port: /dev/ttyUSB0
`

func TestParseErrorsCarryLineAndReason(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown key", base + "colour: blue\n", 9, "field colour not found"},
		{"unknown nested key", base + "    speed: 9600\n", 9, "field speed not found"},
		{"bad baud", base + "    baud: 9601\n", 9, "9601 is not a standard baud rate"},
		{"bad parity", base + "    parity: weird\n", 9, `"weird": want none`},
		{"bad suffix", base + "    suffix: TAB\n", 9, `want CR, LF or CRLF`},
		{"missing door", strings.Replace(base, "  door: d1\n", "", 1), 1, "station.door: missing"},
		{"bad direction", strings.Replace(base, "shipping", "sideways", 1), 4, `"sideways": want receiving or shipping`},
		{"bad pin name", base + "light:\n  driver: gpio\n  pins:\n    green: GPIO17\n    red: LED_RED\n", 13, `"LED_RED" is not a pin name`},
		{"missing red pin", base + "light:\n  driver: gpio\n  pins:\n    green: GPIO17\n", 11, "light.pins.red: missing"},
		{"bad duration", base + "light:\n  decision_hold: soon\n", 10, "soon"},
		{"bad size", base + "buffer:\n  max_bytes: lots\n", 10, "bad size"},
		{"duplicate reader", base + "  - id: r1\n    port: /dev/ttyUSB1\n", 9, `"r1" used twice`},
		{"no port", base + "  - id: r2\n", 9, "missing port"},
		{"bad yaml", base + "readers: [\n", 9, ""},
		{"policy reason", base + "policy:\n  warn: [buffer_full]\n", 10, `"buffer_full" cannot be turned into a warning`},
		{"bad regexp", base + "decode:\n  plain_patterns: ['(?P<lot>[']\n", 10, "bad regular expression"},
		{"bad time zone", strings.Replace(base, "  direction: shipping\n", "  direction: shipping\n  time_zone: Mars/Olympus\n", 1), 5, `station.time_zone: "Mars/Olympus" is not an IANA time zone`},
		{"epcis on without locations", base + "epcis:\n  enabled: true\n", 9, "epcis.read_point: missing"},
		{"epcis private URN", base + "epcis:\n  read_point: urn:dockd:site:s1:door:d1\n", 10, "epcis.read_point: \"urn:dockd:site:s1:door:d1\": want an SGLN"},
		{"epcis bad SGLN", base + "epcis:\n  biz_location: urn:epc:id:sgln:4012345.0001.0\n", 10, "12 digits together"},
		{"epcis bad GLN check digit", base + "epcis:\n  biz_location: https://id.gs1.org/414/4012345000008\n", 10, "valid check digit"},
		{"epcis prefix length", base + "epcis:\n  company_prefixes:\n    \"4012345\": 5\n", 11, "epcis.company_prefixes.4012345: company prefix \"4012345\": length 5 is not 6 to 12"},
		{"epcis prefix digits", base + "epcis:\n  company_prefixes:\n    \"40-12\": 7\n", 11, "want 1 to 12 digits"},
		{"epcis transaction type", base + "epcis:\n  transaction_type: asn\n", 10, `epcis.transaction_type: transaction type "asn": want a CBV business transaction type`},
		{"epcis transaction uri", base + "epcis:\n  transaction_uri: https://erp.example/asn/\n", 10, "put {id} where the shipment id goes"},
		{"bad digital_link", base + "decode:\n  digital_link: loose\n", 10, `"loose": want strict or lenient`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("site.yaml", []byte(c.yaml))
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want config.Errors, got %v", err)
			}
			e := es[0]
			if e.File != "site.yaml" || e.Line != c.line || !strings.Contains(e.Error(), c.want) {
				t.Fatalf("got %q (line %d), want line %d containing %q", e.Error(), e.Line, c.line, c.want)
			}
			if !strings.HasPrefix(e.Error(), "site.yaml:") {
				t.Fatalf("error does not start with the file: %q", e.Error())
			}
		})
	}
}

func TestDefaultsFillReaderAndStation(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Readers[0]
	if r.Type != "serial" || r.Baud != 9600 || r.Suffix != "CR" || r.MaxFrame != 4096 || r.StopBits != "1" {
		t.Fatalf("reader defaults: %+v", r)
	}
	if cfg.Station.ID != "s1-d1" || cfg.Station.Direction != dock.Shipping || cfg.MQTT.ClientID != "dockd-s1-d1" {
		t.Fatalf("station: %+v %q", cfg.Station, cfg.MQTT.ClientID)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1048576": 1 << 20, "512KiB": 512 << 10, "256MiB": 256 << 20, "1GiB": 1 << 30, "10MB": 10e6, "3 kB": 3000} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "12XB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestReaderProfileAndRFID(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(base+"    profile: zebra-ds2208\n  - id: uhf\n    type: rfid\n    profile: thingmagic-m6e-nano\n    port: /dev/ttyUSB1\n    min_rssi: -65\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Readers[0]; r.Baud != 9600 || r.Suffix != "CR" || r.Type != "serial" || r.DedupeWindow != 0 {
		t.Fatalf("barcode profile: %+v", r)
	}
	if r := cfg.Readers[1]; r.Protocol != "mercury" || r.Baud != 115200 || r.DedupeWindow != 2*time.Second || r.MinRSSI != -65 {
		t.Fatalf("rfid profile: %+v", r)
	}
	_, err = Parse("x.yaml", []byte(base+"    profile: no-such-scanner\n"))
	if err == nil || !strings.Contains(err.Error(), "x.yaml:9: readers[0].profile: \"no-such-scanner\"") || !strings.Contains(err.Error(), "zebra-ds2208") {
		t.Fatalf("unknown profile: %v", err)
	}
	_, err = Parse("x.yaml", []byte(base+"  - id: uhf\n    type: rfid\n    port: /dev/ttyUSB1\n"))
	if err == nil || !strings.Contains(err.Error(), "needs protocol ascii or mercury") {
		t.Fatalf("rfid without protocol: %v", err)
	}
}

func TestEPCISSection(t *testing.T) {
	yaml := strings.Replace(base, "  direction: shipping\n", "  direction: shipping\n  time_zone: Europe/Berlin\n", 1) + `epcis:
  enabled: true
  read_point: urn:epc:id:sgln:4012345.00001.door9
  biz_location: https://id.gs1.org/414/4012345000009
  company_prefixes:
    "4012345": 7
    0614141: 7
    "95": 9
  transaction_type: desadv
  transaction_uri: "urn:epcglobal:cbv:bt:4012345000009:{id}"
`
	cfg, err := Parse("site.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.EPCIS
	if !e.Enabled || e.ReadPoint != "urn:epc:id:sgln:4012345.00001.door9" || e.TransactionType != "desadv" {
		t.Fatalf("parsed %+v", e)
	}
	p := e.Prefixes()
	// An unquoted key keeps its leading zero (YAML into a string key).
	if p.Len() != 3 || p.Length("0614141123458") != 7 || p.Length("9506000134352") != 9 {
		t.Fatalf("prefix table %v", e.CompanyPrefixes)
	}
	if loc := cfg.Station.Location(); loc.String() != "Europe/Berlin" {
		t.Fatalf("time zone %v", loc)
	}
	off, err := Parse("site.yaml", []byte(base))
	if err != nil || off.EPCIS.Enabled || off.Station.Location() != time.Local {
		t.Fatalf("defaults: %+v %v", off.EPCIS, err)
	}
}

func TestDeliveryAndBrokers(t *testing.T) {
	unsigned := "allowlist:\n  allow_unsigned: true\n"
	cfg, err := Parse("x.yaml", []byte(base+unsigned+"mqtt:\n  broker: tcp://a:1883\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Delivery != DeliveryBroker || cfg.MQTT.ReceiptTimeout != 30*time.Second || len(cfg.MQTT.Brokers) != 1 || cfg.MQTT.Brokers[0] != "tcp://a:1883" {
		t.Fatalf("defaults: %+v", cfg.MQTT)
	}
	cfg, err = Parse("x.yaml", []byte(base+unsigned+"mqtt:\n  brokers: [tcp://a:1883, ssl://b:8883]\n  delivery: receipt\n  receipt_timeout: 5s\n  receipt_alarm: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Broker != "tcp://a:1883" || len(cfg.MQTT.Brokers) != 2 || cfg.MQTT.Delivery != DeliveryReceipt || cfg.MQTT.ReceiptTimeout != 5*time.Second {
		t.Fatalf("brokers list: %+v", cfg.MQTT)
	}
	for _, c := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"bad delivery", base + "mqtt:\n  broker: tcp://a:1\n  delivery: central\n", 11, `mqtt.delivery: "central": want broker or receipt`},
		{"receipt without broker", base + "mqtt:\n  delivery: receipt\n", 10, "receipt delivery needs mqtt.broker"},
		{"short timeout", base + "mqtt:\n  broker: tcp://a:1\n  receipt_timeout: 10ms\n", 11, "mqtt.receipt_timeout: 10ms: want 1s"},
		{"alarm below timeout", base + "mqtt:\n  broker: tcp://a:1\n  receipt_timeout: 1m\n  receipt_alarm: 30s\n", 12, "want at least receipt_timeout"},
		{"bad list entry", base + "mqtt:\n  brokers:\n    - tcp://a:1\n    - http://b\n", 12, `mqtt.brokers[1]: "http://b"`},
		{"both keys", base + "mqtt:\n  broker: tcp://a:1\n  brokers: [tcp://b:1]\n", 11, "not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("site.yaml", []byte(c.yaml))
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want config.Errors, got %v", err)
			}
			if e := es[0]; e.Line != c.line || !strings.Contains(e.Error(), c.want) || !strings.HasPrefix(e.Error(), "site.yaml:") {
				t.Fatalf("got %q (line %d), want line %d containing %q", e.Error(), e.Line, c.line, c.want)
			}
		})
	}
}
