#!/bin/sh
# SPDX-License-Identifier: MIT
# Entrypoint of the bundled PostgreSQL image (postgres.Dockerfile): initdb on
# first start, then postgres in the foreground. Environment:
#   PGDATA                  data directory (default /var/lib/postgresql/data/pgdata)
#   POSTGRES_PASSWORD_FILE  file with the superuser's password (required)
#   POSTGRES_DB             database to create on first start (default wsgate)
#   PGPORT                  port (default 5432)
set -eu
bin=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
db="${POSTGRES_DB:-wsgate}"
[ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ] ||
    { echo "postgres-entrypoint: POSTGRES_PASSWORD_FILE must name a readable file" >&2; exit 2; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    "$bin/initdb" -D "$PGDATA" -U postgres --pwfile="$POSTGRES_PASSWORD_FILE" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
    printf "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n" \
        >>"$PGDATA/pg_hba.conf"
    "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -k /tmp" -w start >/dev/null
    "$bin/psql" -h /tmp -U postgres -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"$db\""
    "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c "port=${PGPORT:-5432}" \
    -c unix_socket_directories=/tmp
