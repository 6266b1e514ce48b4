#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 for tests and benchmarks, installing Debian's package when
# it is missing. Usage: `source scripts/postgres.sh` — it exports WEIR_TEST_DATABASE_URL and
# stops the server (and removes its files) when the sourcing shell exits.
#
# The cluster lives in a fresh temporary directory, listens on a free loopback port and a
# private socket directory, and trusts local connections: nothing of the machine's own
# PostgreSQL setup is used or changed.

pg_bin=/usr/lib/postgresql/15/bin
if [ ! -x "$pg_bin/initdb" ]; then
    echo "postgres: installing postgresql-15" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

if ! command -v openssl >/dev/null; then
    echo "postgres: installing openssl (for the test server's TLS certificate)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

pg_dir=$(mktemp -d /tmp/weir-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: the cluster belongs to the unprivileged `postgres` user
# (created by the Debian package) or, failing that, `nobody`.
pg_user=postgres
id "$pg_user" >/dev/null 2>&1 || pg_user=nobody
chown "$pg_user" "$pg_dir"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }

as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U weir --auth=trust -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; return 1 2>/dev/null || exit 1; }
# TLS, as managed databases offer it: a certificate authority made here, and a server
# certificate it signed for `localhost` and 127.0.0.1, so the tests can connect with every
# sslmode (plain connections stay allowed). WEIR_TEST_PG_CA names the authority's file.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=weir test CA" \
    -keyout "$pg_dir/ca.key" -out "$pg_dir/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$pg_dir/server.key" -out "$pg_dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$pg_dir/san.ext"
openssl x509 -req -in "$pg_dir/server.csr" -CA "$pg_dir/ca.crt" -CAkey "$pg_dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$pg_dir/san.ext" -out "$pg_dir/server.crt" >/dev/null 2>&1
chown "$pg_user" "$pg_dir/server.key" "$pg_dir/server.crt"
chmod 600 "$pg_dir/server.key"
# Settings for a test server: quick, bounded, and durable enough (fsync stays on, so the
# kill -9 tests mean what they say).
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c max_connections=200 -c shared_buffers=256MB -c ssl=on -c ssl_cert_file=$pg_dir/server.crt -c ssl_key_file=$pg_dir/server.key" >/dev/null \
    || { cat "$pg_dir/server.log" >&2; return 1 2>/dev/null || exit 1; }

export WEIR_TEST_DATABASE_URL="postgres://weir@127.0.0.1:$pg_port/postgres"
export WEIR_TEST_PG_DIR="$pg_dir"
export WEIR_TEST_PG_CA="$pg_dir/ca.crt"
stop_postgres() {
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_postgres EXIT
echo "postgres: running at $WEIR_TEST_DATABASE_URL" >&2
