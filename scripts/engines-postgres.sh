#!/usr/bin/env bash
# Make a PostgreSQL server ready for portway's shared-store tests. Idempotent,
# and quick (one query) when it is already up.
#
#  - Debian's postgresql package (15 on Debian 12) is installed if missing;
#  - a cluster of its own, "15/portway" (pg_createcluster), listens ONLY on
#    127.0.0.1:$PORTWAY_PG_PORT (default 55432) and on a unix socket in
#    /var/run/postgresql; it is started without systemd (pg_ctlcluster);
#    log: /var/log/portway/postgresql.log;
#  - a role "portway" (password "portway", may create databases) owns a
#    database "portway";
#  - synchronous_commit is off: a commit does not wait for its WAL flush
#    (a crash may lose the last few hundred milliseconds, never consistency).
#    This server holds test data only; the flush wait made the store tests
#    several times slower on a small VM.
#
# Tests read the URL from PORTWAY_TEST_PG_URL, default
#   postgresql+psycopg://portway:portway@127.0.0.1:55432/portway
# (tests/conftest.py); each test works in a schema of its own.
#
#   scripts/engines-postgres.sh
set -euo pipefail

logdir=${PORTWAY_LOG_DIR:-/var/log/portway}
port=${PORTWAY_PG_PORT:-55432}
timeout=${PORTWAY_ENGINE_TIMEOUT:-60}
cluster=portway
role=portway
password=portway
database=portway

say() { printf '==> %s\n' "$*"; }
die() { printf 'engines-postgres.sh: %s\n' "$*" >&2; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }
sql() { as_postgres psql -X -q -t -A -p "$port" -h /var/run/postgresql -d postgres -c "$1"; }
up() { as_postgres pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; }
ready() {
  up && PGPASSWORD=$password psql -X -q -t -A -h 127.0.0.1 -p "$port" -U "$role" -d "$database" \
    -c 'select 1' >/dev/null 2>&1
}

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and manages the cluster)"
configured() { grep -qx "synchronous_commit = off" /etc/postgresql/*/$cluster/postgresql.conf 2>/dev/null; }
if ready && configured; then
  say "postgresql ready: postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
  exit 0
fi

if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  say "install postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends postgresql >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends postgresql >/dev/null; }
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
mkdir -p "$logdir" /var/run/postgresql
chown postgres:postgres /var/run/postgresql
touch "$logdir/postgresql.log"
chown postgres:postgres "$logdir/postgresql.log"

if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$version/$cluster"; then
  say "create cluster $version/$cluster on 127.0.0.1:$port"
  pg_createcluster "$version" "$cluster" --port "$port" --logfile "$logdir/postgresql.log" \
    -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
conf=/etc/postgresql/$version/$cluster/postgresql.conf
# only loopback; enough connections for parallel controllers and test schemas
sed -i -E "s/^#?listen_addresses *=.*/listen_addresses = '127.0.0.1'/" "$conf"
sed -i -E "s/^#?max_connections *=.*/max_connections = 200/" "$conf"
sed -i -E "s/^#?synchronous_commit *=.*/synchronous_commit = off/" "$conf"

if up; then
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" reload >/dev/null
else
  say "start postgresql $version/$cluster (log: $logdir/postgresql.log)"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >>"$logdir/postgresql.log" 2>&1 ||
    { tail -n 20 "$logdir/postgresql.log" >&2; die "pg_ctlcluster $version $cluster start failed"; }
  deadline=$((SECONDS + timeout))
  until up; do
    ((SECONDS < deadline)) || { tail -n 20 "$logdir/postgresql.log" >&2; die "not up within ${timeout}s"; }
    sleep 0.3
  done
fi

if [[ $(sql "select 1 from pg_roles where rolname = '$role'") != 1 ]]; then
  say "create role $role"
  sql "create role $role login createdb password '$password'"
fi
if [[ $(sql "select 1 from pg_database where datname = '$database'") != 1 ]]; then
  say "create database $database"
  sql "create database $database owner $role"
fi
ready || die "role $role cannot connect to database $database on 127.0.0.1:$port"
say "postgresql ready: postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
