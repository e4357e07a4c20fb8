#!/usr/bin/env bash
# A private PostgreSQL 15 under one directory, on a free loopback port: the embedded default of
# crm-ingest and the database of the tests. Nothing here touches a system-wide cluster.
#
#   deploy/local-postgres.sh start DIR   initdb (first time) + start; prints the DSN on stdout
#   deploy/local-postgres.sh stop DIR    fast shutdown (by the postmaster's pid file)
#   deploy/local-postgres.sh status DIR  prints the DSN and exits 0 if running, else exits 3
#   deploy/local-postgres.sh dsn DIR     prints the DSN of a started instance
#
# PostgreSQL refuses to run as root: when run as root, DIR is handed to the 'postgres' user (created by
# Debian's postgresql package) and every server command runs as that user.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
data=$dir/data
sock=$dir/socket
log=$dir/postgres.log
port_file=$dir/port

pgbin=${PG_BINDIR:-}
if [ -z "$pgbin" ]; then
  if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then pgbin=/usr/lib/postgresql/15/bin
  elif command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/pg_ctl" ]; then pgbin=$(pg_config --bindir)
  else echo "local-postgres: PostgreSQL 15 server binaries not found (apt-get install postgresql-15)" >&2; exit 1; fi
fi

run_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

dsn() { echo "postgresql://crm@127.0.0.1:$(cat "$port_file")/crm"; }

free_port() {
  # Ask the kernel for a free loopback port.
  python3 - <<'PY' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

is_running() { [ -f "$data/postmaster.pid" ] && run_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  start)
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
      chown postgres: "$dir"
      # The postgres user must be able to reach DIR through its parents.
      d=$dir; while [ "$d" != / ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
    fi
    if is_running; then dsn; exit 0; fi
    mkdir -p "$sock"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$sock"
    if [ ! -f "$data/PG_VERSION" ]; then
      # Text compares bytewise (LC_COLLATE C: the identifiers in keys and joins are compared with memcmp and
      # sorted with abbreviated keys; the order is C.UTF-8's, code point order); character classes stay UTF-8.
      run_pg "$pgbin/initdb" -D "$data" -U crm --auth=trust --encoding=UTF8 --locale=C.UTF-8 --lc-collate=C \
        >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
      cat >>"$data/postgresql.conf" <<CONF
# crm-ingest local instance
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
max_connections = 100
shared_buffers = 256MB
wal_level = replica
max_wal_size = 4GB
checkpoint_timeout = 15min
fsync = on
synchronous_commit = on
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
CONF
    fi
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      echo "$port" >"$port_file"
      if run_pg "$pgbin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 30 start >/dev/null 2>&1; then
        run_pg "$pgbin/psql" -h "$sock" -p "$port" -U crm -d postgres -Atqc \
          "SELECT 1 FROM pg_database WHERE datname = 'crm'" | grep -q 1 \
          || run_pg "$pgbin/createdb" -h "$sock" -p "$port" -U crm crm
        dsn
        exit 0
      fi
      tail -n 5 "$log" >&2 || true
    done
    echo "local-postgres: could not start PostgreSQL in $data (see $log)" >&2
    exit 1
    ;;
  stop)
    if is_running; then run_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 300 stop >/dev/null; fi
    ;;
  status)
    if is_running; then dsn; else exit 3; fi
    ;;
  dsn)
    [ -f "$port_file" ] || { echo "local-postgres: no instance in $dir" >&2; exit 1; }
    dsn
    ;;
  *) usage ;;
esac
