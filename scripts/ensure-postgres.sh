#!/usr/bin/env bash
# Makes sure the PostgreSQL 15 server programs the tests start are installed
# (/usr/lib/postgresql/15/bin: initdb, postgres). Tests make their own
# throw-away clusters on free loopback ports (internal/testkit/postgres.go);
# this only installs the programs. No cluster is started: a policy-rc.d
# keeps the package from starting the system one on port 5432.
set -euo pipefail
bindir=/usr/lib/postgresql/15/bin
if [ -x "$bindir/postgres" ] && [ -x "$bindir/initdb" ] && id postgres >/dev/null 2>&1; then exit 0; fi
echo "ensure-postgres: the tests need PostgreSQL 15 ($bindir); installing the Debian package 'postgresql-15'" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "ensure-postgres: not root and no passwordless sudo: install it yourself: sudo apt-get install postgresql-15" >&2; exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: no apt-get here: install PostgreSQL 15 and set DOCKD_PG_BINDIR to the directory holding initdb and postgres" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  added_policy=1
fi
trap '[ -n "$added_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
$sudo apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
[ -x "$bindir/postgres" ] || { echo "ensure-postgres: install failed: no $bindir/postgres" >&2; exit 1; }
