#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1:${PGPORT:-54329} for the test suite and print the URL to use.
# The database is hotline_test, or the name given as $1: the tests drop and recreate its schema, so a second test
# run beside another one (a local run beside CI) needs its own name.
# Installs Debian's postgresql package when no server binaries are present (CI machines start clean).
set -euo pipefail
PORT=${PGPORT:-54329}
NAME=${1:-hotline_test}
[[ "$NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "database name must be lower-case letters, digits and _: $NAME" >&2; exit 2; }
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pgbin)" ]; then
  echo "installing postgresql from Debian's packages…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi
BIN=$(pgbin)
DATA=${PGDATA_DIR:-/tmp/hotline-test-pg}
if ! "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  rm -rf "$DATA" && mkdir -p "$DATA" && chown postgres "$DATA"
  # initdb refuses to run as root: run the server as the postgres system user.
  su postgres -s /bin/sh -c "'$BIN/initdb' -D '$DATA' -A trust -U postgres -E UTF8 --locale=C.UTF-8" >/dev/null
  su postgres -s /bin/sh -c "'$BIN/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off\" start" >/dev/null
fi
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$NAME'" | grep -q 1 \
  || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$NAME"
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/$NAME"
