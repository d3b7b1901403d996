#!/bin/sh
# A running PostgreSQL server for the trace store's PostgreSQL tests
# (tests/observe/test_postgres.py).
#
# Idempotent and unattended (the Makefile's `test` target runs every scripts/setup-*.sh):
#   1. installs Debian's `postgresql` if no server binaries are present (root + apt);
#   2. creates the cluster (pg_createcluster) if Debian did not, and starts it on
#      127.0.0.1:${REFLOWPY_PG_PORT:-5432} unless it already answers;
#   3. creates the login role `reflowpy` (password `reflowpy`, CREATEDB) the tests use;
#      each test run creates and drops its own database.
# The tests read REFLOWPY_PG_DSN (default postgresql://reflowpy:reflowpy@127.0.0.1:5432/postgres).
set -eu

PORT="${REFLOWPY_PG_PORT:-5432}"
say() { echo "setup-postgres: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing postgresql"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q postgresql >/dev/null
fi
VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"

up() { pg_isready -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

if ! up; then
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$VERSION/main"; then
        say "creating cluster $VERSION/main"
        as_root pg_createcluster "$VERSION" main -p "$PORT" >/dev/null
    fi
    say "starting cluster $VERSION/main"
    as_root pg_ctlcluster "$VERSION" main start || true
    i=0
    while ! up; do
        i=$((i + 1))
        [ "$i" -gt 60 ] && { say "PostgreSQL did not come up on port $PORT"; exit 1; }
        sleep 1
    done
fi

as_root runuser -u postgres -- psql -q -p "$PORT" -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reflowpy') THEN
    CREATE ROLE reflowpy LOGIN CREATEDB PASSWORD 'reflowpy';
  END IF;
END $$;
SQL
say "ready on 127.0.0.1:$PORT"
