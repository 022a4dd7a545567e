#!/usr/bin/env bash
# Shared by the scripts/ensure-*.sh scripts (sourced, not run): installs
# Debian packages the tests need, as root or with passwordless sudo.
#
#   apt_install WHO HINT PACKAGE...
#
# WHO names the caller in messages; HINT says what to do by hand where this
# cannot install (not root, no apt-get). Returns non-zero, having said why,
# when it cannot install. A policy-rc.d that denies service starts is in
# place during the install, so a server package (mosquitto, postgresql)
# never starts a system service on its standard port: the tests start their
# own servers on free loopback ports.
apt_install() {
  local who=$1 hint=$2; shift 2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "$who: not root and no passwordless sudo: $hint" >&2; return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: no apt-get here: $hint" >&2; return 1
  fi
  echo "$who: installing the Debian package(s) $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null || true
  local added_policy="" rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [ -n "$added_policy" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" != 0 ]; then echo "$who: apt-get install $* failed (exit $rc)" >&2; fi
  return "$rc"
}
