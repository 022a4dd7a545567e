#!/usr/bin/env bash
# Makes sure the PostgreSQL 15 server programs the tests start are installed
# (/usr/lib/postgresql/15/bin: initdb, postgres). Tests make their own
# throw-away clusters on free loopback ports (internal/testkit/postgres.go);
# this only installs the programs (scripts/apt-install.sh keeps the package
# from starting the system cluster on port 5432).
set -euo pipefail
bindir=/usr/lib/postgresql/15/bin
if [ -x "$bindir/postgres" ] && [ -x "$bindir/initdb" ] && id postgres >/dev/null 2>&1; then exit 0; fi
. "$(dirname "$0")/apt-install.sh"
apt_install ensure-postgres "install PostgreSQL 15 (Debian: apt-get install postgresql-15), or set DOCKD_PG_BINDIR to the directory holding initdb and postgres" postgresql-15
[ -x "$bindir/postgres" ] || { echo "ensure-postgres: install failed: no $bindir/postgres" >&2; exit 1; }
