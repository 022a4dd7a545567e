#!/usr/bin/env bash
# Makes sure the mosquitto broker binary the tests start is installed.
# Tests start their own broker processes on free loopback ports; this only
# installs the program (scripts/apt-install.sh).
set -euo pipefail
for p in mosquitto /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
  if command -v "$p" >/dev/null 2>&1; then exit 0; fi
done
. "$(dirname "$0")/apt-install.sh"
apt_install ensure-mosquitto "install Mosquitto so that 'mosquitto' is on PATH or in /usr/sbin (Debian: apt-get install mosquitto)" mosquitto
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { echo "ensure-mosquitto: install failed" >&2; exit 1; }
