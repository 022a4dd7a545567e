#!/usr/bin/env bash
# scripts/journal-cost.sh [LINES] [RATE]: what the journal costs the
# storage per decision line. It starts a private systemd-journald
# (Storage=persistent) in its own mount namespace, with its journal in a
# temporary directory on the same filesystem as this checkout, sends LINES
# lines shaped like dockd's decision line (default 120) at RATE lines/s
# (default 2) through journald's stdout stream (as a unit's
# StandardError=journal does), and prints the journal file's growth and
# journald's own write_bytes (/proc/PID/io: pages it dirtied, which the
# kernel writes back every 30 s) per line. Needs root, unshare and
# systemd-journald; touches no journal outside its namespace.
set -euo pipefail
lines=${1:-120}
rate=${2:-2}
journald=$(command -v systemd-journald || echo /lib/systemd/systemd-journald)
[ -x "$journald" ] || { echo "journal-cost: systemd-journald not found" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "journal-cost: needs root (a private mount namespace)" >&2; exit 2; }
work=$(mktemp -d "$PWD/.journal-cost.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/var"
printf '[Journal]\nStorage=persistent\n' > "$work/journald.conf"
export work lines rate journald
unshare -m --propagation private bash -euo pipefail -c '
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal /run/log /var/log/journal
mount -t tmpfs tmpfs /run/log
mount --bind "$work/var" /var/log/journal
mount --bind "$work/journald.conf" /etc/systemd/journald.conf
"$journald" & jpid=$!
trap "kill $jpid" EXIT
sleep 1
journalctl --flush
echo warm-up | systemd-cat -t journal-cost
sleep 1
used() { # bytes in use in the active journal file: tail object offset + its size
  python3 - "$(ls /var/log/journal/*/system.journal)" <<PY
import struct, sys
b = open(sys.argv[1], "rb").read()
tail = struct.unpack_from("<Q", b, 136)[0]
print(tail + struct.unpack_from("<Q", b, tail + 8)[0])
PY
}
u0=$(used); w0=$(awk "/^write_bytes/{print \$2}" /proc/$jpid/io)
python3 - "$lines" "$rate" <<PY | systemd-cat -t dockd
import datetime, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    t = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print("{\"time\":\"%s\",\"level\":\"INFO\",\"msg\":\"decision\",\"part\":\"station\",\"seq\":%d,\"reader\":\"scanner-1\",\"decision\":\"accept\",\"reason\":\"ok\",\"gtin\":\"09506000134352\",\"lot\":\"LOT42\",\"serial\":\"S%06d\",\"sscc\":\"\",\"detail\":\"\"}" % (t, i + 1, i), flush=True)
    time.sleep(1 / rate)
PY
sleep 1
u1=$(used); w1=$(awk "/^write_bytes/{print \$2}" /proc/$jpid/io)
echo "journal: $lines decision lines at $rate/s"
echo "  journal file growth: $(( (u1 - u0) / lines )) B/line"
echo "  journald write_bytes: $(( (w1 - w0) / lines )) B/line"
'
