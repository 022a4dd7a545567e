// Package firmwareconfig embeds the station's shipped data files: the
// default config with every key documented, the demo config, and a sample
// allowlist. The files themselves are the reference; this package only makes
// them available to the binary.
package firmwareconfig

import _ "embed"

// DefaultConfig is dockd.yaml: the documented default configuration.
//
//go:embed dockd.yaml
var DefaultConfig []byte

// DemoConfig is demo.yaml: the configuration `dockd demo` runs.
//
//go:embed demo.yaml
var DemoConfig []byte

// SampleAllowlist is sample-allowlist.csv: the demo's allowlist.
//
//go:embed sample-allowlist.csv
var SampleAllowlist []byte
