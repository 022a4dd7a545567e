#!/usr/bin/env bash
# make bench: every package's benchmarks, then one table of the station's
# headline figures pulled from their output. Raw output: bin/bench.out.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
out=bin/bench.out
: > "$out"
run() { # run PKG REGEX BENCHTIME
  echo "== go test -bench '$2' -benchtime $3 $1" | tee -a "$out"
  go test -run '^$' -bench "$2" -benchtime "$3" -benchmem "$1" 2>&1 | grep -E '^(Benchmark|ok|FAIL|PASS|goos|cpu)' | tee -a "$out"
}
run ./internal/scan . 1s
run ./device/reader . 1s
run ./internal/allowlist Lookup 200000x
run ./internal/allowlist Replace 1x
run ./buffer . 1s
run ./uplink . 3x
run ./cmd/dockd ScanToLight 1000x
run ./cmd/dockd ScanToPuback 1000x
run ./cmd/dockd EndToEnd 5x
run ./cmd/dockd DrainVsRelay 1x
run ./cmd/dockd RSSWithBacklog 1x
run ./cmd/dockd WriteBytes 1x
run ./cmd/dockd RFIDBurst 1x
run ./cmd/dockd IdleWrites 1x
run ./cmd/dockd FlashPerEvent 1x
run ./internal/collector CollectorThroughput 1x
run ./internal/collector FSMA204Export 3x

# metric NAME-REGEX UNIT: the value before UNIT on the first matching benchmark line.
metric() {
  grep -E "^$1" "$out" | head -1 | awk -v u="$2" '{for (i=2;i<=NF;i++) if ($i==u) {print $(i-1); exit}}'
}
row() { printf '| %-52s | %14s | %s\n' "$1" "${2:-n/a}" "$3"; }
echo
echo "dockd headline figures ($(go env GOOS)/$(go env GOARCH), $(nproc) cores, $(date -u +%Y-%m-%d))"
printf '| %-52s | %14s | %s\n' figure value unit
row "decode: 4-AI GS1-128 element string"            "$(metric 'BenchmarkDecodeElementString' ns/op)" "ns/scan"
row "decode: GS1 Digital Link URI"                   "$(metric 'BenchmarkDecodeDigitalLink' ns/op)" "ns/scan"
row "decode: SGTIN-96"                               "$(metric 'BenchmarkDecodeSGTIN96' ns/op)" "ns/scan"
row "allowlist look-up p99 (1M lots)"                "$(metric 'BenchmarkLookup' p99-µs)" "µs"
row "allowlist replacement: peak anonymous memory"   "$(metric 'BenchmarkReplace' peak-anon-MiB)" "MiB (DOCKD_BENCH_ROWS rows replaced; file $(metric 'BenchmarkReplace' file-before-compact-MiB) → $(metric 'BenchmarkReplace' file-after-compact-MiB) MiB compacted)"
row "durable append, 64 concurrent (group commit)"   "$(metric 'BenchmarkAppendConcurrent/goroutines=64' events/s)" "events/s"
row "durable append, 512 concurrent (group commit)"  "$(metric 'BenchmarkAppendConcurrent/goroutines=512' events/s)" "events/s"
row "  baseline: raw bbolt, 100 values per tx"       "$(metric 'BenchmarkBoltBatch100' events/s)" "events/s"
row "  baseline: raw bbolt, 1 value per tx"          "$(metric 'BenchmarkBoltOnePerTx' events/s)" "events/s"
row "durable append, single appender p50"            "$(metric 'BenchmarkAppendSingle' p50-µs)" "µs"
row "durable append, single appender p99"            "$(metric 'BenchmarkAppendSingle' p99-µs)" "µs"
row "  baseline: raw bbolt 1 value per tx, p99"       "$(metric 'BenchmarkBoltOnePerTx' p99-µs)" "µs"
row "uplink drain to Mosquitto, QoS 1, in-flight 32" "$(metric 'BenchmarkDrain/inflight=32' msgs/s)" "msgs/s"
row "drain 100k backlog → Mosquitto, QoS 1 (dockd)"   "$(metric 'BenchmarkDrainVsRelay' dockd-msgs/s)" "msgs/s"
row "  baseline: mosquitto_pub -l -q 1 relay"         "$(metric 'BenchmarkDrainVsRelay' relay-msgs/s)" "msgs/s (arrived: $(metric 'BenchmarkDrainVsRelay' relay-arrived-%)%)"
row "  ratio dockd / relay"                           "$(metric 'BenchmarkDrainVsRelay' ratio)" "×"
row "RSS with 1M-event backlog, anonymous, draining"  "$(metric 'BenchmarkRSSWithBacklog' draining-anon-MiB)" "MiB (+ $(metric 'BenchmarkRSSWithBacklog' mapped-file-MiB) MiB mapped bbolt file)"
row "scan → light p50 (pty → GPIO edge, whole daemon)" "$(metric 'BenchmarkScanToLight' scan-light-p50-µs)" "µs"
row "scan → light p99"                               "$(metric 'BenchmarkScanToLight' scan-light-p99-µs)" "µs"
row "scan → PUBACK p50 (broker up)"                "$(metric 'BenchmarkScanToPuback' scan-puback-p50-µs)" "µs"
row "scan → PUBACK p99"                             "$(metric 'BenchmarkScanToPuback' scan-puback-p99-µs)" "µs"
row "storage writes per event, broker delivery (whole daemon)" "$(metric 'BenchmarkFlashPerEvent' broker-B/event)" "bytes/event (/proc/PID/io write_bytes, 50 scans/s)"
row "  receipt delivery (receipts every 500 ms)"         "$(metric 'BenchmarkFlashPerEvent' receipt-B/event)" "bytes/event (ratio receipt/broker $(metric 'BenchmarkFlashPerEvent' ratio))"
row "end to end: pty → Mosquitto subscriber"         "$(metric 'BenchmarkEndToEnd' events/s)" "events/s"
row "bytes written per scan, 0.1 scans/s (whole daemon)" "$(metric 'BenchmarkWriteBytes' 0.1/s-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 0.1/s-x-floor)× floor)"
row "bytes written per scan, 0.5 scans/s"               "$(metric 'BenchmarkWriteBytes' 0.5/s-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 0.5/s-x-floor)× floor)"
row "bytes written per scan, 2 scans/s"                "$(metric 'BenchmarkWriteBytes' 2/s-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 2/s-x-floor)× floor)"
row "bytes written per scan, 2 scans/s, no broker"     "$(metric 'BenchmarkWriteBytes' 2/s-nobroker-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 2/s-nobroker-x-floor)× floor)"
row "bytes written per scan, 10 scans/s"               "$(metric 'BenchmarkWriteBytes' 10/s-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 10/s-x-floor)× floor)"
row "bytes written per scan, bursts of 100"            "$(metric 'BenchmarkWriteBytes' burst100-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' burst100-x-floor)× floor)"
row "pwrite bytes per lone scan, 0.1 scans/s (strace)" "$(metric 'BenchmarkWriteBytes' 0.1/s-pwrite-B/scan)" "B/scan (buffer.db $(metric 'BenchmarkWriteBytes' 0.1/s-pwrite-buffer-B/scan), allowlist.db $(metric 'BenchmarkWriteBytes' 0.1/s-pwrite-allowlist-B/scan))"
row "pwrite bytes per lone scan, 0.5 scans/s (strace)" "$(metric 'BenchmarkWriteBytes' 0.5/s-pwrite-B/scan)" "B/scan handed to the kernel, budget 16384 (buffer.db $(metric 'BenchmarkWriteBytes' 0.5/s-pwrite-buffer-B/scan), allowlist.db $(metric 'BenchmarkWriteBytes' 0.5/s-pwrite-allowlist-B/scan); $(metric 'BenchmarkWriteBytes' 0.5/s-pwrite-x-floor)× floor)"
row "pwrite bytes per lone scan, 2 scans/s"             "$(metric 'BenchmarkWriteBytes' 2/s-pwrite-B/scan)" "B/scan (buffer.db $(metric 'BenchmarkWriteBytes' 2/s-pwrite-buffer-B/scan), allowlist.db $(metric 'BenchmarkWriteBytes' 2/s-pwrite-allowlist-B/scan); $(metric 'BenchmarkWriteBytes' 2/s-pwrite-x-floor)× floor)"
row "pwrite bytes per scan, 10 scans/s"                 "$(metric 'BenchmarkWriteBytes' 10/s-pwrite-B/scan)" "B/scan ($(metric 'BenchmarkWriteBytes' 10/s-pwrite-x-floor)× floor)"
row "pwrite bytes per scan, bursts of 100"              "$(metric 'BenchmarkWriteBytes' burst100-pwrite-B/scan)" "B/scan, budget 2048"
row "  baseline: raw bbolt 1-record commit, pwrite"     "$(metric 'BenchmarkWriteBytes' floor-pwrite-B/commit)" "B/commit (bucket leaf, root, meta)"
row "bytes written per second, idle (after lazy writes)" "$(metric 'BenchmarkIdleWrites' idle-B/s)" "B/s"
row "  baseline: raw bbolt, one fsync'd 1-record commit" "$(metric 'BenchmarkWriteBytes' floor-B/commit)" "B/commit (write_bytes on this filesystem)"
row "RFID burst: 2 readers × 921600 baud, distinct EPCs" "$(metric 'BenchmarkRFIDBurst' lines/s)" "lines/s offered"
row "  decided"                                         "$(metric 'BenchmarkRFIDBurst' decided/s)" "events/s"
row "  delivered (QoS 1 subscriber)"                    "$(metric 'BenchmarkRFIDBurst' delivered/s)" "events/s ($(metric 'BenchmarkRFIDBurst' delivered-%)% of lines)"
row "  lag of the last event after the burst"          "$(metric 'BenchmarkRFIDBurst' lag-s)" "s"
row "  daemon CPU per event"                            "$(metric 'BenchmarkRFIDBurst' cpu-µs/event)" "µs"
row "  bytes written per event"                         "$(metric 'BenchmarkRFIDBurst' B/event)" "B"
row "collector: backlog → PostgreSQL, batch 1000"     "$(metric 'BenchmarkCollectorThroughput/batch=1000' events/s)" "events/s (one collector, fsync on)"
row "  baseline: one event per transaction"          "$(metric 'BenchmarkCollectorThroughput/batch=1-' events/s)" "events/s"
row "FSMA 204 export, one lot of 1M events (CSV)"     "$(metric 'BenchmarkFSMA204Export/lot/csv' s/export)" "s ($(metric 'BenchmarkFSMA204Export/lot/csv' rows) rows; PostgreSQL COPY baseline $(metric 'BenchmarkFSMA204Export/lot/baseline' s/export) s)"
row "FSMA 204 export, one day of 1M events (CSV)"     "$(metric 'BenchmarkFSMA204Export/day/csv' rows/s)" "rows/s ($(metric 'BenchmarkFSMA204Export/day/csv' s/export) s; XLSX $(metric 'BenchmarkFSMA204Export/day/xlsx' rows/s) rows/s; COPY baseline $(metric 'BenchmarkFSMA204Export/day/baseline' rows/s) rows/s)"
row "FSMA 204 export, all ~950k CTEs of 1M events (CSV)" "$(metric 'BenchmarkFSMA204Export/all/csv' rows/s)" "rows/s ($(metric 'BenchmarkFSMA204Export/all/csv' s/export) s; COPY baseline $(metric 'BenchmarkFSMA204Export/all/baseline' rows/s) rows/s)"
