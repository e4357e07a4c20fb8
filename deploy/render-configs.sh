#!/usr/bin/env bash
# Renders the Patroni, HAProxy and etcd configuration of every node from ONE inventory file.
#
#   deploy/render-configs.sh INVENTORY OUTDIR
#
# writes, for each of the three nodes (NODEn_NAME in INVENTORY):
#   OUTDIR/<node name>/patroni.yml   Patroni (validate: patroni --validate-config)
#   OUTDIR/<node name>/haproxy.cfg   HAProxy: primary port via /primary, replica port via /replica
#   OUTDIR/<node name>/etcd.env      etcd member settings (environment file, Debian's /etc/default/etcd)
# from the templates in deploy/templates/ (envsubst from Debian's gettext-base; only the variables listed
# below are substituted). deploy/render-app-configs.sh renders crm-ingest's own files from the same file.
#
# Inventory (see deploy/inventory.example.env): CLUSTER_NAME and NODE{1,2,3}_{NAME,ADDR} are required;
# everything else has the production default shown in the example. A per-node value (NODE2_POSTGRES_PORT,
# NODE2_PG_DATA_DIR...) overrides the cluster-wide one, for several nodes on one host. A password left at
# its placeholder is rendered with a warning.
set -euo pipefail

[ $# -eq 2 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
inventory=$1
outdir=$2
templates=$(cd "$(dirname "$0")/templates" && pwd)
command -v envsubst >/dev/null || { echo "render-configs: envsubst not found (apt-get install gettext-base)" >&2; exit 1; }
[ -r "$inventory" ] || { echo "render-configs: cannot read inventory $inventory" >&2; exit 1; }

# shellcheck disable=SC1090
set -a; . "$inventory"; set +a

fail() { echo "render-configs: $*" >&2; exit 1; }
need() { for v in "$@"; do [ -n "${!v:-}" ] || fail "$v is not set in $inventory"; done; }

need CLUSTER_NAME NODE1_NAME NODE1_ADDR NODE2_NAME NODE2_ADDR NODE3_NAME NODE3_ADDR
# Production defaults (deploy/inventory.example.env documents each).
: "${POSTGRES_PORT:=5432}" "${PATRONI_REST_PORT:=8008}" "${ETCD_CLIENT_PORT:=2379}" "${ETCD_PEER_PORT:=2380}"
: "${HAPROXY_PRIMARY_PORT:=5000}" "${HAPROXY_REPLICA_PORT:=5001}" "${HAPROXY_STATS_PORT:=7000}"
: "${HAPROXY_BIND_ADDR:=0.0.0.0}"
: "${PG_DATA_DIR:=/var/lib/postgresql/15/main}" "${ETCD_DATA_DIR:=/var/lib/etcd}"
: "${PATRONI_PGPASS:=/var/lib/postgresql/.pgpass.patroni}" "${RUN_DIR:=/var/run/postgresql}"
: "${PG_BINDIR:=/usr/lib/postgresql/15/bin}" "${CLIENT_CIDR:=samenet}"
: "${PATRONI_TTL:=20}" "${PATRONI_LOOP_WAIT:=3}" "${PATRONI_RETRY_TIMEOUT:=5}"
: "${PG_SUPERUSER:=postgres}" "${PG_REPLICATION_USER:=replicator}" "${PG_REWIND_USER:=rewind_user}"
: "${CRM_INGEST_DB_NAME:=crm}" "${CRM_INGEST_DB_USER:=crm_ingest}" "${CRM_INGEST_OWNER_USER:=crm_ingest_owner}"
for v in PG_SUPERUSER_PASSWORD PG_REPLICATION_PASSWORD PG_REWIND_PASSWORD CRM_INGEST_DB_PASSWORD CRM_INGEST_OWNER_PASSWORD; do
  if [ -z "${!v:-}" ] || [ "${!v}" = change-me ]; then
    echo "render-configs: warning: $v is the placeholder 'change-me'; set it before deploying" >&2
    printf -v "$v" '%s' change-me
  fi
done
# The passwords are written into YAML and into SQL run by a shell-split command (post_bootstrap).
for v in PG_SUPERUSER_PASSWORD PG_REPLICATION_PASSWORD PG_REWIND_PASSWORD CRM_INGEST_DB_PASSWORD CRM_INGEST_OWNER_PASSWORD; do
  [[ ${!v} =~ ^[A-Za-z0-9._~+/=@%:,-]+$ ]] || fail "$v may hold only letters, digits and ._~+/=@%:,- (no quotes, spaces or \$)"
done
for v in CRM_INGEST_DB_USER CRM_INGEST_OWNER_USER CRM_INGEST_DB_NAME; do
  [[ ${!v} =~ ^[a-z_][a-z0-9_]*$ ]] || fail "$v must be a lower-case SQL identifier (got '${!v}')"
done
# Least privilege (schemas/0003_security.sql): the bootstrap creates the NOLOGIN roles crm_ingest_writer and
# crm_ingest_analytics, the owner CRM_INGEST_OWNER_USER (owns the database; runs `crm-ingest migrate` and
# `partitions retain`) and CRM_INGEST_DB_USER, the login role `serve` connects as, granted crm_ingest_writer
# only, with BYPASSRLS: the writer's policies admit every row of the three tables Row Level Security guards, so
# it changes nothing serve may read or insert, and PostgreSQL refuses COPY into those tables to a role the
# policies apply to (the writer then stages every row: sinks/postgres/direct_copy.h). The same name
# for both keeps the single-role layout (serve as owner: Row Level Security and the writer's limits do not
# apply to it), with a warning.
if [ "$CRM_INGEST_DB_USER" = "$CRM_INGEST_OWNER_USER" ]; then
  echo "render-configs: warning: CRM_INGEST_DB_USER = CRM_INGEST_OWNER_USER ($CRM_INGEST_DB_USER): serve will run as the table owner, not as crm_ingest_writer" >&2
  CRM_INGEST_SERVE_ROLE_SQL=""
else
  CRM_INGEST_SERVE_ROLE_SQL=" -c \"CREATE ROLE $CRM_INGEST_DB_USER LOGIN BYPASSRLS PASSWORD '$CRM_INGEST_DB_PASSWORD' IN ROLE crm_ingest_writer\""
fi
for v in PATRONI_TTL PATRONI_LOOP_WAIT PATRONI_RETRY_TIMEOUT HAPROXY_PRIMARY_PORT HAPROXY_REPLICA_PORT HAPROXY_STATS_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || fail "$v must be a number (got '${!v}')"
done
(( PATRONI_LOOP_WAIT + 2 * PATRONI_RETRY_TIMEOUT <= PATRONI_TTL )) \
  || fail "Patroni needs loop_wait + 2 * retry_timeout <= ttl (got $PATRONI_LOOP_WAIT + 2 * $PATRONI_RETRY_TIMEOUT > $PATRONI_TTL)"
export POSTGRES_PORT PATRONI_REST_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT HAPROXY_PRIMARY_PORT HAPROXY_REPLICA_PORT \
  HAPROXY_STATS_PORT HAPROXY_BIND_ADDR RUN_DIR PG_BINDIR CLIENT_CIDR PATRONI_TTL PATRONI_LOOP_WAIT \
  PATRONI_RETRY_TIMEOUT PG_SUPERUSER PG_SUPERUSER_PASSWORD PG_REPLICATION_USER PG_REPLICATION_PASSWORD \
  PG_REWIND_USER PG_REWIND_PASSWORD CRM_INGEST_DB_NAME CRM_INGEST_DB_USER CRM_INGEST_DB_PASSWORD \
  CRM_INGEST_OWNER_USER CRM_INGEST_OWNER_PASSWORD CRM_INGEST_SERVE_ROLE_SQL

nodes=(1 2 3)
# node_var N NAME: NODEn_NAME if set, else NAME (the cluster-wide value).
node_var() {
  local specific="NODE$1_$2"
  if [ -n "${!specific:-}" ]; then echo "${!specific}"; else echo "${!2}"; fi
}
for n in "${nodes[@]}"; do
  for p in POSTGRES_PORT PATRONI_REST_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT; do
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
  HAPROXY_SERVERS+="${HAPROXY_SERVERS:+$'\n'}    server $name $addr:$(node_var "$n" POSTGRES_PORT) maxconn 500 check port $(node_var "$n" PATRONI_REST_PORT)"
done
export ETCD_HOSTS ETCD_INITIAL_CLUSTER HAPROXY_SERVERS

vars='$CLUSTER_NAME $NODE_NAME $NODE_ADDR $NODE_POSTGRES_PORT $NODE_PATRONI_REST_PORT $NODE_ETCD_CLIENT_PORT
  $NODE_ETCD_PEER_PORT $NODE_PG_DATA_DIR $NODE_ETCD_DATA_DIR $NODE_PATRONI_PGPASS $ETCD_HOSTS $ETCD_INITIAL_CLUSTER
  $HAPROXY_SERVERS $HAPROXY_PRIMARY_PORT $HAPROXY_REPLICA_PORT $HAPROXY_STATS_PORT $HAPROXY_BIND_ADDR $RUN_DIR
  $PG_BINDIR $CLIENT_CIDR $PATRONI_TTL $PATRONI_LOOP_WAIT $PATRONI_RETRY_TIMEOUT $PG_SUPERUSER $PG_SUPERUSER_PASSWORD
  $PG_REPLICATION_USER $PG_REPLICATION_PASSWORD $PG_REWIND_USER $PG_REWIND_PASSWORD $CRM_INGEST_DB_NAME
  $CRM_INGEST_DB_USER $CRM_INGEST_DB_PASSWORD $CRM_INGEST_OWNER_USER $CRM_INGEST_OWNER_PASSWORD $CRM_INGEST_SERVE_ROLE_SQL'

mkdir -p "$outdir"
for n in "${nodes[@]}"; do
  name_var="NODE${n}_NAME" addr_var="NODE${n}_ADDR"
  export NODE_NAME=${!name_var} NODE_ADDR=${!addr_var}
  export NODE_POSTGRES_PORT NODE_PATRONI_REST_PORT NODE_ETCD_CLIENT_PORT NODE_ETCD_PEER_PORT
  export NODE_PG_DATA_DIR NODE_ETCD_DATA_DIR NODE_PATRONI_PGPASS
  NODE_POSTGRES_PORT=$(node_var "$n" POSTGRES_PORT)
  NODE_PATRONI_REST_PORT=$(node_var "$n" PATRONI_REST_PORT)
  NODE_ETCD_CLIENT_PORT=$(node_var "$n" ETCD_CLIENT_PORT)
  NODE_ETCD_PEER_PORT=$(node_var "$n" ETCD_PEER_PORT)
  NODE_PG_DATA_DIR=$(node_var "$n" PG_DATA_DIR)
  NODE_ETCD_DATA_DIR=$(node_var "$n" ETCD_DATA_DIR)
  NODE_PATRONI_PGPASS=$(node_var "$n" PATRONI_PGPASS)
  dir=$outdir/$NODE_NAME
  mkdir -p "$dir"
  for t in patroni.yml haproxy.cfg etcd.env; do
    envsubst "$vars" <"$templates/$t" >"$dir/$t.tmp"
    mv "$dir/$t.tmp" "$dir/$t"
  done
  # Passwords inside: readable by the owner only.
  chmod 0600 "$dir/patroni.yml"
done
echo "render-configs: wrote ${#nodes[@]} nodes to $outdir" >&2
