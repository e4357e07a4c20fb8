#!/usr/bin/env bash
# Renders the Patroni, HAProxy and etcd configuration of every node from ONE inventory file.
#
#   deploy/render-configs.sh INVENTORY OUTDIR
#
# writes, for each of the three nodes (NODEn_NAME in INVENTORY):
#   OUTDIR/<node name>/patroni.yml        Patroni (validate: patroni --validate-config)
#   OUTDIR/<node name>/haproxy.cfg        HAProxy: primary port via /primary, replica port via /replica
#   OUTDIR/<node name>/etcd.env           etcd member settings (environment file)
#   OUTDIR/<node name>/post-bootstrap.sh  creates crm-ingest's role and database at bootstrap
# from the templates in deploy/templates/ (envsubst from Debian's gettext-base; only the variables listed
# below are substituted). A port may be given once (PG_PORT) or per node (NODE2_PG_PORT). Every variable
# the templates use must be set: a missing one is an error, not an empty string.
set -euo pipefail

[ $# -eq 2 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
inventory=$1
outdir=$2
templates=$(cd "$(dirname "$0")/templates" && pwd)
command -v envsubst >/dev/null || { echo "render-configs: envsubst not found (apt-get install gettext-base)" >&2; exit 1; }
[ -r "$inventory" ] || { echo "render-configs: cannot read inventory $inventory" >&2; exit 1; }

# shellcheck disable=SC1090
set -a; . "$inventory"; set +a

fail() { echo "render-configs: $*" >&2; exit 1; }
need() { for v in "$@"; do [ -n "${!v:-}" ] || fail "$v is not set in $inventory"; done; }

need CLUSTER_NAME DATA_ROOT RUN_DIR PG_BINDIR CLIENT_CIDR PATRONI_TTL PATRONI_LOOP_WAIT PATRONI_RETRY_TIMEOUT \
  HAPROXY_PRIMARY_PORT HAPROXY_REPLICA_PORT HAPROXY_STATS_PORT HAPROXY_BIND_ADDR \
  PG_SUPERUSER PG_SUPERUSER_PASSWORD PG_REPLICATION_USER PG_REPLICATION_PASSWORD PG_REWIND_USER PG_REWIND_PASSWORD \
  APP_DB APP_USER APP_PASSWORD
(( PATRONI_LOOP_WAIT + 2 * PATRONI_RETRY_TIMEOUT <= PATRONI_TTL )) \
  || fail "Patroni needs loop_wait + 2 * retry_timeout <= ttl (got $PATRONI_LOOP_WAIT + 2 * $PATRONI_RETRY_TIMEOUT > $PATRONI_TTL)"

nodes=(1 2 3)
# node_var N NAME: NODEn_NAME if set, else NAME (a cluster-wide default).
node_var() {
  local specific="NODE$1_$2"
  if [ -n "${!specific:-}" ]; then echo "${!specific}"
  elif [ -n "${!2:-}" ]; then echo "${!2}"
  else fail "neither $specific nor $2 is set in $inventory"; fi
}
for n in "${nodes[@]}"; do
  need "NODE${n}_NAME" "NODE${n}_ADDR"
  for p in PG_PORT PATRONI_REST_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT; do
    v=$(node_var "$n" "$p")
    [[ $v =~ ^[0-9]+$ ]] || fail "NODE${n}_${p} must be a port number (got '$v')"
  done
done

# Cluster-wide lists.
ETCD_HOSTS="" ETCD_INITIAL_CLUSTER="" HAPROXY_SERVERS=""
for n in "${nodes[@]}"; do
  name_var="NODE${n}_NAME" addr_var="NODE${n}_ADDR"
  name=${!name_var} addr=${!addr_var}
  ETCD_HOSTS+="${ETCD_HOSTS:+,}$addr:$(node_var "$n" ETCD_CLIENT_PORT)"
  ETCD_INITIAL_CLUSTER+="${ETCD_INITIAL_CLUSTER:+,}$name=http://$addr:$(node_var "$n" ETCD_PEER_PORT)"
  HAPROXY_SERVERS+="${HAPROXY_SERVERS:+$'\n'}    server $name $addr:$(node_var "$n" PG_PORT) maxconn 500 check port $(node_var "$n" PATRONI_REST_PORT)"
done
export ETCD_HOSTS ETCD_INITIAL_CLUSTER HAPROXY_SERVERS

vars='$CLUSTER_NAME $NODE_NAME $NODE_ADDR $NODE_PG_PORT $NODE_PATRONI_REST_PORT $NODE_ETCD_CLIENT_PORT
  $NODE_ETCD_PEER_PORT $NODE_DATA_DIR $NODE_CONF_DIR $ETCD_HOSTS $ETCD_INITIAL_CLUSTER $HAPROXY_SERVERS
  $HAPROXY_PRIMARY_PORT $HAPROXY_REPLICA_PORT $HAPROXY_STATS_PORT $HAPROXY_BIND_ADDR $DATA_ROOT $RUN_DIR $PG_BINDIR
  $CLIENT_CIDR $PATRONI_TTL $PATRONI_LOOP_WAIT $PATRONI_RETRY_TIMEOUT $PG_SUPERUSER $PG_SUPERUSER_PASSWORD
  $PG_REPLICATION_USER $PG_REPLICATION_PASSWORD $PG_REWIND_USER $PG_REWIND_PASSWORD $APP_DB $APP_USER $APP_PASSWORD'

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
for n in "${nodes[@]}"; do
  name_var="NODE${n}_NAME" addr_var="NODE${n}_ADDR"
  export NODE_NAME=${!name_var} NODE_ADDR=${!addr_var}
  export NODE_PG_PORT NODE_PATRONI_REST_PORT NODE_ETCD_CLIENT_PORT NODE_ETCD_PEER_PORT
  NODE_PG_PORT=$(node_var "$n" PG_PORT)
  NODE_PATRONI_REST_PORT=$(node_var "$n" PATRONI_REST_PORT)
  NODE_ETCD_CLIENT_PORT=$(node_var "$n" ETCD_CLIENT_PORT)
  NODE_ETCD_PEER_PORT=$(node_var "$n" ETCD_PEER_PORT)
  export NODE_DATA_DIR="$DATA_ROOT/$NODE_NAME" NODE_CONF_DIR="$outdir/$NODE_NAME"
  mkdir -p "$NODE_CONF_DIR"
  for t in patroni.yml haproxy.cfg etcd.env post-bootstrap.sh; do
    envsubst "$vars" <"$templates/$t" >"$NODE_CONF_DIR/$t.tmp"
    mv "$NODE_CONF_DIR/$t.tmp" "$NODE_CONF_DIR/$t"
  done
  chmod 0755 "$NODE_CONF_DIR/post-bootstrap.sh"
  # Passwords inside: readable by the owner only.
  chmod 0600 "$NODE_CONF_DIR/patroni.yml"
done
echo "render-configs: wrote ${#nodes[@]} nodes to $outdir" >&2
