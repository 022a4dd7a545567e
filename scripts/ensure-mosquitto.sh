#!/usr/bin/env bash
# Makes sure the mosquitto broker binary the tests start is installed.
# Tests start their own broker processes on free loopback ports; this only
# installs the program. On Debian/Ubuntu as root (or with passwordless sudo)
# it installs the package; otherwise it says what to install and fails.
set -euo pipefail
for p in mosquitto /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
  if command -v "$p" >/dev/null 2>&1; then exit 0; fi
done
echo "ensure-mosquitto: the tests need the mosquitto broker binary; installing the Debian package 'mosquitto'" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "ensure-mosquitto: not root and no passwordless sudo: install it yourself: sudo apt-get install mosquitto" >&2; exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-mosquitto: no apt-get here: install Mosquitto (https://mosquitto.org) so that 'mosquitto' is on PATH or in /usr/sbin" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# A policy-rc.d that denies service starts keeps the package from starting a
# system broker on port 1883 during the install (the tests start their own).
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  added_policy=1
fi
trap '[ -n "$added_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
$sudo apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { echo "ensure-mosquitto: install failed" >&2; exit 1; }
