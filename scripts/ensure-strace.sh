#!/usr/bin/env bash
# Makes sure strace is installed for `make bench`: BenchmarkWriteBytes
# attaches it to the daemon to count the bytes bbolt hands the kernel with
# pwrite64 (the lone-scan write budget is stated in those). Without it the
# benchmark still runs and those rows read n/a.
set -euo pipefail
if command -v strace >/dev/null 2>&1; then exit 0; fi
. "$(dirname "$0")/apt-install.sh"
apt_install ensure-strace "install strace (Debian: apt-get install strace)" strace
command -v strace >/dev/null 2>&1 || { echo "ensure-strace: installed strace but it is still not on PATH" >&2; exit 1; }
