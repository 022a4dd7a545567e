package main

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// Garbage collector settings for a station. The daemon's live heap is a
// few MiB, so at Go's default (GOGC=100) a collection starts every few MiB
// allocated — every hundred scans or so — and on a 2-core box its mark
// work competes with the scan → light path: it was most of the p99
// (BenchmarkScanToLight on this project's 2-core machine: p99 1.7–2.0 ms at
// GOGC=100, 1.2–1.3 ms at 400, p50 unchanged). A higher percentage makes
// collections rarer; the soft memory limit makes them frequent again if the
// heap ever grows (a large allowlist update in flight), so memory stays
// bounded on a 1 GiB box. GOGC and GOMEMLIMIT in the environment win.
const (
	stationGCPercent   = 400
	stationMemoryLimit = 256 << 20
)

// tuneGC applies the station's collector settings to this process, unless
// the environment sets them, and logs what is in force.
func tuneGC(log *slog.Logger) {
	gc, limit := "GOGC from the environment", "GOMEMLIMIT from the environment"
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(stationGCPercent)
		gc = "400"
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(stationMemoryLimit)
		limit = "256MiB"
	}
	log.Debug("garbage collector", "gc_percent", gc, "memory_limit", limit)
}
