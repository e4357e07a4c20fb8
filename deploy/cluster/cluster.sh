#!/usr/bin/env bash
# A real 3-node Patroni cluster on one machine, no containers: etcd (3 members), three PostgreSQL 15
# nodes under Patroni and HAProxy, all as plain processes on loopback, all rendered from
# deploy/cluster/local.inventory.env through deploy/render-configs.sh (the templates of production).
#
#   cluster.sh start DIR               render (free ports), start etcd, validate, start Patroni x3 + HAProxy;
#                                      waits for a leader and two streaming replicas, prints `dsn` output;
#                                      CLUSTER_REPLICATION=async starts it in asynchronous replication
#   cluster.sh render DIR              only resolve the inventory (free ports) and render DIR/conf
#   cluster.sh stop DIR                stop everything (by pid: HAProxy, Patroni/PostgreSQL, etcd)
#   cluster.sh status DIR              patronictl list and the HAProxy ports; exit 3 when not running
#   cluster.sh dsn DIR                 PRIMARY_DSN=, REPLICA_DSN=, ADMIN_DSN=, ... (shell-sourceable)
#   cluster.sh leader DIR              the current leader's node name
#   cluster.sh switchover DIR          patronictl switchover --force (to a synchronous standby)
#   cluster.sh failover DIR [LAG_S]    crash the leader's host: kill -9 of its Patroni, postmaster and every
#                                      PostgreSQL child (WAL senders too); prints the node name. With LAG_S,
#                                      its WAL senders are frozen (SIGSTOP) LAG_S seconds before: a congested
#                                      link, the replicas miss the last LAG_S seconds of WAL
#   cluster.sh crash DIR NODE          the same for any node
#   cluster.sh replication DIR [sync|async [MAX_LAG]]  print the replication mode, or switch to it
#                                      (Patroni's synchronous_mode, edited in the DCS) and wait until it is
#                                      in force; maximum_lag_on_failover becomes MAX_LAG bytes (default 1 MiB)
#   cluster.sh sync-standby DIR        the current synchronous standby's node name (empty when none)
#   cluster.sh pause-receivers DIR     SIGSTOP the WAL receiver of every replica (a congested link: the
#                                      replicas fall behind); resume-receivers DIR sends them SIGCONT
#   cluster.sh freeze-senders DIR      SIGSTOP the leader's WAL senders (nothing more reaches a replica
#                                      until `failover` crashes the leader, or thaw-senders DIR)
#   cluster.sh start-node DIR NODE     (re)start one node's Patroni (it rejoins, pg_rewind if needed)
#   cluster.sh stop-node DIR NODE      stop one node's Patroni (and its PostgreSQL)
#   cluster.sh reinit DIR NODE         a running replica's data wiped and cloned again from the leader (patronictl
#                                      reinit --wait): for a node whose history diverged where pg_rewind cannot see it
#   cluster.sh db-stop DIR             the whole database down: every node's Patroni and PostgreSQL
#                                      (replicas first, the leader last; etcd and HAProxy stay up)
#   cluster.sh db-start DIR            start every node again (the old leader, holding the newest WAL,
#                                      is the only one synchronous_mode lets take over)
#   cluster.sh haproxy-stop|haproxy-start|haproxy-restart DIR
#   cluster.sh wait-healthy DIR [SECONDS]   until a leader and two streaming replicas (default 60 s)
#   cluster.sh heal DIR [SECONDS]      start whatever is down (nodes, HAProxy), then wait-healthy
#   cluster.sh leader-changed-at DIR   Unix time of the last leader change (Patroni's /history)
#
# Daemons run as the unprivileged user `postgres` (PostgreSQL refuses root); DIR is handed to it. Every
# daemon's pid is kept in DIR/pids and processes are stopped by those pids only. Logs: DIR/logs.
set -euo pipefail

usage() { sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
dir=$(mkdir -p "$2" && cd "$2" && pwd)
pids=$dir/pids
logs=$dir/logs
conf=$dir/conf
inventory=$dir/inventory.env
run_user=${CLUSTER_USER:-postgres}
python=/usr/bin/python3  # Debian's Python: Patroni's modules live there

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$run_user" --regid="$run_user" --init-groups env HOME="$dir" "$@"
  else
    env HOME="$dir" "$@"
  fi
}

# Starts a daemon in its own session, as the unprivileged user; records its pid (setsid, setpriv and
# env all exec, so $! is the daemon itself).
spawn() {
  local name=$1; shift
  if [ "$(id -u)" -eq 0 ]; then
    setsid setpriv --reuid="$run_user" --regid="$run_user" --init-groups env HOME="$dir" "$@" \
      >>"$logs/$name.log" 2>&1 </dev/null &
  else
    setsid env HOME="$dir" "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$pids/$name.pid"
}

alive() { [ -f "$pids/$1.pid" ] && kill -0 "$(cat "$pids/$1.pid")" 2>/dev/null; }

# Sends SIGTERM to the recorded pid, waits up to $2 s, then SIGKILL.
stop_pid() {
  local name=$1 wait_s=${2:-20} pid
  [ -f "$pids/$name.pid" ] || return 0
  pid=$(cat "$pids/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop within ${wait_s} s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pids/$name.pid"
}

load_inventory() {
  [ -f "$inventory" ] || die "no cluster in $dir (run: cluster.sh start $dir)"
  # shellcheck disable=SC1090
  . "$inventory"
}

node_names() { echo "$NODE1_NAME $NODE2_NAME $NODE3_NAME"; }
node_index() { local i; for i in 1 2 3; do local v="NODE${i}_NAME"; [ "${!v}" = "$1" ] && { echo "$i"; return; }; done; die "no node $1"; }
node_field() { local v="NODE$(node_index "$1")_$2"; echo "${!v}"; }
rest_url() { echo "http://$(node_field "$1" ADDR):$(node_field "$1" PATRONI_REST_PORT)"; }
postmaster_pid() { local f; f="$(node_field "$1" PG_DATA_DIR)/postmaster.pid"; [ -f "$f" ] && head -n1 "$f" || true; }

# patroni_get PATH: GET /PATH of Patroni's REST API from the first node that answers.
patroni_get() {
  local n
  for n in $(node_names); do
    if curl -fsS --max-time 1 "$(rest_url "$n")/$1" 2>/dev/null; then return 0; fi
  done
  return 1
}

# Patroni's view of the cluster and its dynamic configuration.
cluster_json() { patroni_get cluster; }
config_json() { patroni_get config; }

leader() {
  cluster_json | jq -r '[.members[] | select(.role == "leader" and .state == "running")][0].name // empty'
}

# "sync" when Patroni's synchronous_mode is on, else "async" (what the DCS says, not what is in force).
configured_mode() {
  config_json | jq -r 'if .synchronous_mode == true then "sync" else "async" end'
}

# A leader and two streaming replicas; in synchronous mode one of them is the synchronous standby, in
# asynchronous mode none is.
healthy() {
  local mode; mode=$(configured_mode 2>/dev/null) || return 1
  cluster_json | jq -e --arg mode "$mode" '([.members[] | select(.role == "sync_standby")] | length) as $sync
    | ([.members[] | select(.role == "leader" and .state == "running")] | length) == 1
    and ([.members[] | select((.role == "replica" or .role == "sync_standby") and (.state == "streaming" or .state == "running") and (.lag // 0) != "unknown")] | length) == 2
    and (if $mode == "sync" then $sync >= 1 else $sync == 0 end)' \
    >/dev/null 2>&1
}

sync_standby() {
  cluster_json | jq -r '[.members[] | select(.role == "sync_standby")][0].name // empty'
}

# The leader's synchronous_standby_names: what PostgreSQL has in force (empty: asynchronous).
leader_ssn() {
  as_user "$PG_BINDIR/psql" "$(admin_dsn)" -Atqc "SHOW synchronous_standby_names" 2>/dev/null
}

set_replication() {
  local mode=$1 max_lag=${2:-1048576} want start=$SECONDS
  case "$mode" in sync) want=true ;; async) want=false ;; *) usage ;; esac
  [[ $max_lag =~ ^[0-9]+$ ]] || die "MAX_LAG must be a number of bytes (got '$max_lag')"
  if [ "$(configured_mode)" != "$mode" ] || [ "$(config_json | jq -r '.maximum_lag_on_failover')" != "$max_lag" ]; then
    as_user "$python" /usr/bin/patronictl -c "$conf/$NODE1_NAME/patroni.yml" edit-config "$CLUSTER_NAME" \
      --force --quiet --set "synchronous_mode=$want" --set "maximum_lag_on_failover=$max_lag" >/dev/null
  fi
  # In force: Patroni's leader has (re)written synchronous_standby_names and the sync key.
  until [ "$(configured_mode 2>/dev/null)" = "$mode" ] && healthy && primary_works \
      && if [ "$mode" = sync ]; then [ -n "$(leader_ssn)" ]; else [ -z "$(leader_ssn)" ]; fi; do
    (( SECONDS - start < 60 )) || { status_text >&2 || true; die "replication not $mode after 60 s"; }
    sleep 0.3
  done
  log "replication is $mode (synchronous_standby_names='$(leader_ssn)', maximum_lag_on_failover=$max_lag)"
}

# now_hms VAR: the wall-clock time now, HH:MM:SS.micro, into VAR without forking (bash's EPOCHREALTIME):
# for log lines whose time must be the moment of an action on a loaded machine.
now_hms() { local now_hms_t=$EPOCHREALTIME; printf -v "$1" '%(%T)T.%s' "${now_hms_t%.*}" "${now_hms_t#*.}"; }

# kill -9 of a node as a crashed host would lose it: its Patroni, its postmaster and every child of the
# postmaster (WAL senders included, so nothing more is shipped). All are frozen first (SIGSTOP), so no
# child is forked and none runs between the first and the last kill. With LAG_S, the postmaster's WAL
# senders are frozen LAG_S seconds before (everything else looked up first, so that little but the sleep
# lies between the freeze and the crash).
crash_node() {
  local n=$1 lag=${2:-} pm p children senders frozen_at crashed_at
  pm=$(postmaster_pid "$n")
  p=$(cat "$pids/patroni-$n.pid" 2>/dev/null || true)
  if [ -n "$lag" ]; then
    senders=$( [ -n "$pm" ] && ps -o pid=,args= --ppid "$pm" 2>/dev/null | awk '/walsender/ {print $1}' || true)
    # shellcheck disable=SC2086
    [ -z "$senders" ] || kill -STOP $senders
    now_hms frozen_at
    sleep "$lag"
  fi
  # shellcheck disable=SC2086
  kill -STOP $p $pm 2>/dev/null || true
  children=$( [ -n "$pm" ] && ps -o pid= --ppid "$pm" || true)
  # shellcheck disable=SC2086
  kill -STOP $children 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -KILL $p $pm $children 2>/dev/null || true
  now_hms crashed_at
  rm -f "$pids/patroni-$n.pid" "$pids/frozen-senders"
  [ -z "$lag" ] || log "froze the WAL senders of $n ($(echo $senders)) at $frozen_at"
  log "crashed $n: kill -9 of patroni ${p:-none}, postmaster ${pm:-none} and $(wc -w <<<"$children") children at $crashed_at"
}

thaw_senders() {
  [ -f "$pids/frozen-senders" ] || return 0
  # shellcheck disable=SC2046
  kill -CONT $(cat "$pids/frozen-senders") 2>/dev/null || true
  rm -f "$pids/frozen-senders"
}

resume_receivers() {
  [ -f "$pids/paused-receivers" ] || return 0
  # shellcheck disable=SC2046
  kill -CONT $(cat "$pids/paused-receivers") 2>/dev/null || true
  log "resumed WAL receivers $(echo $(cat "$pids/paused-receivers")) at $(date -u +%T.%N)"
  rm -f "$pids/paused-receivers"
}

# The WAL receiver of every running replica (children of its postmaster).
receiver_pids() {
  local n l pm
  l=$(leader 2>/dev/null || true)
  for n in $(node_names); do
    [ "$n" != "$l" ] || continue
    pm=$(postmaster_pid "$n")
    [ -n "$pm" ] || continue
    ps -o pid=,args= --ppid "$pm" 2>/dev/null | awk '/walreceiver/ {print $1}'
  done
}

primary_works() {
  as_user "$PG_BINDIR/psql" "$(admin_dsn)" -Atqc "SELECT NOT pg_is_in_recovery()" 2>/dev/null | grep -q t
}

wait_healthy() {
  local timeout=${1:-60} start=$SECONDS
  until healthy && primary_works; do
    (( SECONDS - start < timeout )) || { status_text >&2 || true; die "cluster not healthy after ${timeout} s"; }
    sleep 0.5
  done
}

admin_dsn() {
  echo "postgresql://$PG_SUPERUSER:$PG_SUPERUSER_PASSWORD@127.0.0.1:$HAPROXY_PRIMARY_PORT/postgres?connect_timeout=2"
}

print_dsn() {
  cat <<EOF
PRIMARY_DSN=postgresql://$CRM_INGEST_DB_USER:$CRM_INGEST_DB_PASSWORD@127.0.0.1:$HAPROXY_PRIMARY_PORT/$CRM_INGEST_DB_NAME?connect_timeout=2
REPLICA_DSN=postgresql://$CRM_INGEST_DB_USER:$CRM_INGEST_DB_PASSWORD@127.0.0.1:$HAPROXY_REPLICA_PORT/$CRM_INGEST_DB_NAME?connect_timeout=2
ADMIN_DSN=$(admin_dsn)
HAPROXY_PRIMARY_PORT=$HAPROXY_PRIMARY_PORT
HAPROXY_REPLICA_PORT=$HAPROXY_REPLICA_PORT
HAPROXY_STATS_PORT=$HAPROXY_STATS_PORT
EOF
}

status_text() {
  load_inventory
  as_user "$python" /usr/bin/patronictl -c "$conf/$NODE1_NAME/patroni.yml" list 2>&1 || true
  alive haproxy && echo "haproxy: primary 127.0.0.1:$HAPROXY_PRIMARY_PORT replicas 127.0.0.1:$HAPROXY_REPLICA_PORT" \
    || echo "haproxy: not running"
}

# Picks $1 distinct free TCP ports on 127.0.0.1 (all bound at once, so no two are equal).
free_ports() {
  "$python" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

resolve_inventory() {
  # The loopback inventory with every "auto" port replaced by a free one, and the paths under DIR.
  local src=$here/local.inventory.env
  # shellcheck disable=SC1090
  . "$src"
  local autos=() v
  for v in $(compgen -v | grep -E '^(NODE[123]_)?(POSTGRES_PORT|PATRONI_REST_PORT|ETCD_CLIENT_PORT|ETCD_PEER_PORT)$|^HAPROXY_(PRIMARY|REPLICA|STATS)_PORT$'); do
    [ "${!v}" = auto ] && autos+=("$v")
  done
  local ports; read -r -a ports <<<"$(free_ports ${#autos[@]})"
  {
    echo "# Resolved from $src by cluster.sh start on $(date -u +%FT%TZ)."
    grep -v '^\s*for \|^\s*done\|^\s*eval \|auto$' "$src" | grep -E '^[A-Z0-9_]+=' || true
    local i=0
    for v in "${autos[@]}"; do echo "$v=${ports[$i]}"; i=$((i + 1)); done
    for n in 1 2 3; do
      local name_var="NODE${n}_NAME"
      echo "NODE${n}_PG_DATA_DIR=$dir/data/${!name_var}/pgdata"
      echo "NODE${n}_ETCD_DATA_DIR=$dir/data/${!name_var}/etcd"
      echo "NODE${n}_PATRONI_PGPASS=$dir/data/${!name_var}/pgpass"
    done
    echo "RUN_DIR=$dir/run"
  } >"$inventory"
}

start_node() {
  local n=$1
  alive "patroni-$n" && return 0
  # A node killed with -9 may leave backends of its dead postmaster behind for a moment.
  local pm; pm=$(postmaster_pid "$n")
  if [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null; then die "PostgreSQL of $n (pid $pm) is still running"; fi
  spawn "patroni-$n" "$python" /usr/bin/patroni "$conf/$n/patroni.yml"
}

stop_node() {
  local n=$1 pm
  pm=$(postmaster_pid "$n")
  # Patroni stops its PostgreSQL on SIGTERM (fast shutdown, then immediate).
  stop_pid "patroni-$n" 40
  if [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null; then
    log "PostgreSQL of $n (pid $pm) outlived Patroni; stopping it"
    kill -QUIT "$pm" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pm" 2>/dev/null || true
  fi
}

# Replicas first (in parallel), the leader last: no failover is attempted while the cluster goes down.
stop_database() {
  local l n
  l=$(leader 2>/dev/null || true)
  for n in $(node_names); do [ "$n" = "$l" ] || stop_node "$n" & done
  wait
  [ -z "$l" ] || stop_node "$l"
}

haproxy_start() {
  alive haproxy && return 0
  spawn haproxy /usr/sbin/haproxy -db -f "$conf/$NODE1_NAME/haproxy.cfg"
  # Listening, and routing to the primary once the checks have run.
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_PRIMARY_PORT") 2>/dev/null && return 0
    alive haproxy || die "haproxy exited; see $logs/haproxy.log"
    sleep 0.1
  done
  die "haproxy does not listen on $HAPROXY_PRIMARY_PORT; see $logs/haproxy.log"
}

case "$cmd" in
  start)
    if [ -f "$inventory" ] && alive haproxy; then load_inventory; wait_healthy 60; print_dsn; exit 0; fi
    # Nothing of a previous run may survive into this one.
    if [ -f "$inventory" ]; then "$0" stop "$dir"; fi
    rm -rf "$conf" "$dir/data" "$dir/run" "$logs" "$pids"
    mkdir -p "$pids" "$logs" "$dir/data" "$dir/run"
    for cmd_needed in etcd patroni haproxy envsubst jq curl setpriv; do
      command -v "$cmd_needed" >/dev/null || die "$cmd_needed not found: run deploy/install-deps.sh"
    done
    resolve_inventory
    "$deploy/render-configs.sh" "$inventory" "$conf"
    load_inventory
    if [ "$(id -u)" -eq 0 ]; then
      id "$run_user" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$run_user"
      # The unprivileged user must reach DIR through its parents.
      d=$dir; while [ "$d" != / ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
      chown -R "$run_user": "$dir"
    fi
    for n in $(node_names); do mkdir -p "$dir/data/$n"; done
    [ "$(id -u)" -ne 0 ] || chown -R "$run_user": "$dir/data"
    for n in $(node_names); do
      # shellcheck disable=SC2046
      spawn "etcd-$n" env $(grep -E '^ETCD_[A-Z0-9_]+=' "$conf/$n/etcd.env") /usr/bin/etcd
    done
    start=$SECONDS
    until as_user etcdctl --endpoints="$(grep ^ETCD_ADVERTISE_CLIENT_URLS "$conf/$NODE1_NAME/etcd.env" | cut -d= -f2)" \
        endpoint health >/dev/null 2>&1; do
      (( SECONDS - start < 30 )) || die "etcd not healthy after 30 s; see $logs/etcd-*.log"
      sleep 0.2
    done
    # Validate what is about to run, with Patroni's own validator (etcd must be up, ports still free).
    for n in $(node_names); do
      out=$(as_user "$python" /usr/bin/patroni --validate-config "$conf/$n/patroni.yml" 2>&1) \
        || die "patroni --validate-config $conf/$n/patroni.yml: $out"
      /usr/sbin/haproxy -c -q -f "$conf/$n/haproxy.cfg" || die "haproxy -c -f $conf/$n/haproxy.cfg failed"
    done
    # The first node bootstraps; the others clone it.
    start_node "$NODE1_NAME"
    start=$SECONDS
    until [ "$(leader)" = "$NODE1_NAME" ]; do
      (( SECONDS - start < 60 )) || die "no leader after 60 s; see $logs/patroni-$NODE1_NAME.log"
      alive "patroni-$NODE1_NAME" || die "Patroni exited; see $logs/patroni-$NODE1_NAME.log"
      sleep 0.3
    done
    start_node "$NODE2_NAME"
    start_node "$NODE3_NAME"
    haproxy_start
    wait_healthy 90
    case "${CLUSTER_REPLICATION:-sync}" in
      sync) ;;
      async) set_replication async ;;
      *) die "CLUSTER_REPLICATION must be sync or async (got '${CLUSTER_REPLICATION}')" ;;
    esac
    log "cluster up in $dir ($SECONDS s); leader $(leader); replication $(configured_mode)"
    print_dsn
    ;;
  render)
    mkdir -p "$dir"
    resolve_inventory
    "$deploy/render-configs.sh" "$inventory" "$conf"
    ;;
  stop)
    [ -f "$inventory" ] || exit 0
    load_inventory
    resume_receivers
    thaw_senders
    stop_pid haproxy 10
    stop_database
    for n in $(node_names); do stop_pid "etcd-$n" 10; done
    log "cluster in $dir stopped"
    ;;
  status)
    [ -f "$inventory" ] || exit 3
    status_text
    alive haproxy || exit 3
    ;;
  dsn) load_inventory; print_dsn ;;
  leader) load_inventory; leader ;;
  wait-healthy) load_inventory; wait_healthy "${3:-60}" ;;
  switchover)
    load_inventory
    l=$(leader); [ -n "$l" ] || die "no leader"
    as_user "$python" /usr/bin/patronictl -c "$conf/$NODE1_NAME/patroni.yml" switchover "$CLUSTER_NAME" \
      --leader "$l" --force
    ;;
  failover)
    load_inventory
    l=$(leader); [ -n "$l" ] || die "no leader"
    crash_node "$l" "${3:-}"
    echo "$l"
    ;;
  crash) [ $# -eq 3 ] || usage; load_inventory; node_index "$3" >/dev/null; crash_node "$3" ;;
  replication)
    load_inventory
    if [ $# -ge 3 ]; then set_replication "$3" "${4:-}"; else configured_mode; fi
    ;;
  sync-standby) load_inventory; sync_standby ;;
  pause-receivers)
    load_inventory
    r=$(receiver_pids)
    [ -n "$r" ] || die "no WAL receiver found"
    # shellcheck disable=SC2086
    kill -STOP $r
    echo "$r" >"$pids/paused-receivers"
    log "paused WAL receivers $(echo $r) at $(date -u +%T.%N)"
    ;;
  resume-receivers) load_inventory; resume_receivers ;;
  freeze-senders)
    load_inventory
    l=$(leader); [ -n "$l" ] || die "no leader"
    pm=$(postmaster_pid "$l")
    r=$(ps -o pid=,args= --ppid "$pm" 2>/dev/null | awk '/walsender/ {print $1}')
    [ -n "$r" ] || die "no WAL sender on $l"
    # shellcheck disable=SC2086
    kill -STOP $r
    echo "$r" >"$pids/frozen-senders"
    now_hms t
    log "froze the WAL senders of $l ($(echo $r)) at $t"
    ;;
  thaw-senders) load_inventory; thaw_senders ;;
  start-node) [ $# -eq 3 ] || usage; load_inventory; start_node "$3" ;;
  stop-node) [ $# -eq 3 ] || usage; load_inventory; stop_node "$3" ;;
  reinit)
    [ $# -eq 3 ] || usage; load_inventory; node_index "$3" >/dev/null
    as_user "$python" /usr/bin/patronictl -c "$conf/$NODE1_NAME/patroni.yml" reinit "$CLUSTER_NAME" "$3" --force --wait
    ;;
  heal)
    load_inventory
    resume_receivers
    thaw_senders
    for n in $(node_names); do alive "patroni-$n" || start_node "$n"; done
    haproxy_start
    wait_healthy "${3:-90}"
    ;;
  leader-changed-at)
    load_inventory
    l=$(leader); [ -n "$l" ] || die "no leader"
    curl -fsS --max-time 2 "$(rest_url "$l")/history" | "$python" -c '
import datetime, json, sys
h = json.load(sys.stdin)
print(datetime.datetime.fromisoformat(h[-1][3]).timestamp() if h else 0)'
    ;;
  db-stop)
    load_inventory
    stop_database
    log "database down (every node) at $(date -u +%T.%N)"
    ;;
  db-start) load_inventory; for n in $(node_names); do start_node "$n"; done ;;
  haproxy-stop) load_inventory; stop_pid haproxy 10 ;;
  haproxy-start) load_inventory; haproxy_start ;;
  haproxy-restart) load_inventory; stop_pid haproxy 10; haproxy_start ;;
  *) usage ;;
esac
