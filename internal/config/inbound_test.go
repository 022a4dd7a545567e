package config

import (
	"strings"
	"testing"
	"time"
)

// With a broker, a config must name central's allowlist key or accept
// unsigned lists explicitly, never both; without a broker nothing arrives
// and neither is needed.
func TestAllowlistTrustIsADecision(t *testing.T) {
	const key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	broker := base + "mqtt:\n  broker: tcp://h:1883\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"no broker, no key", base, ""},
		{"broker, neither", broker, "allowlist.public_key: the uplink is on but no key checks"},
		{"broker and key", broker + "allowlist:\n  public_key: " + key + "\n", ""},
		{"broker, unsigned on purpose", broker + "allowlist:\n  allow_unsigned: true\n", ""},
		{"both", broker + "allowlist:\n  public_key: " + key + "\n  allow_unsigned: true\n", "contradicts public_key"},
		{"door named allowlist", strings.Replace(base, "door: d1", "door: allowlist", 1), `"allowlist" is reserved`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(c.yaml))
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestInboundLimits(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Allowlist
	if cfg.MQTT.Limits.CommandBytes != 64<<10 || a.MaxChunkBytes != 256<<10 || a.MaxDeltaBytes != 1<<20 ||
		a.MaxSnapshotBytes != 64<<20 || a.StagingTTL != time.Hour || a.DiskReserve != 32<<20 {
		t.Fatalf("defaults: %+v %+v", cfg.MQTT.Limits, a)
	}
	for yaml, want := range map[string]string{
		"mqtt:\n  limits:\n    command_bytes: 2MiB\n":                                    "mqtt.limits.command_bytes: 2097152 bytes: want 1KiB … 1MiB",
		"allowlist:\n  max_chunk_bytes: 100\n":                                           "allowlist.max_chunk_bytes",
		"allowlist:\n  max_delta_bytes: 32MiB\n":                                         "allowlist.max_delta_bytes",
		"allowlist:\n  max_snapshot_bytes: 128KiB\n":                                     "allowlist.max_snapshot_bytes",
		"allowlist:\n  staging_ttl: 10s\n":                                               "allowlist.staging_ttl",
		"allowlist:\n  max_snapshot_bytes: 1GiB\n  staging_ttl: 2h\n  disk_reserve: 0\n": "",
	} {
		_, err := Parse("x.yaml", []byte(base+yaml))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: got %v, want %q", yaml, err, want)
		}
	}
}
