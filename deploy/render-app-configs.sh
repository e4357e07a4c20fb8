#!/usr/bin/env bash
# Renders crm-ingest's own per-node files from the cluster inventory (the same file and variable names as
# deploy/render-configs.sh, which renders Patroni, etcd and HAProxy):
#   OUTDIR/<node>/crm-ingest.toml   crm-ingest config (nodes 1 and 2), every setting documented
#   OUTDIR/<node>/crm-ingest.env    its environment file (serve's role and password; mode 0600)
#   OUTDIR/<node>/crm-ingest-owner.env   the database owner's (`migrate`, `partitions retain`; mode 0600)
#   OUTDIR/<node>/docker-compose.yml + .env   the node's compose project (from deploy/compose/nodeN.yml)
#   OUTDIR/<node3>/prometheus.yml, crm-ingest-alerts.yml, grafana/   Prometheus and Grafana (node 3)
# Usage: render-app-configs.sh INVENTORY OUTDIR
# Inventory variables: CLUSTER_NAME, NODE{1,2,3}_NAME, NODE{1,2,3}_ADDR (required); optional with defaults:
# CRM_INGEST_HTTP_PORT=8080 PATRONI_REST_PORT=8008 ETCD_CLIENT_PORT=2379 NODE_EXPORTER_PORT=9100
# HAPROXY_PRIMARY_PORT=5000 POSTGRES_PORT=5432 CRM_INGEST_DB_NAME=crm CRM_INGEST_DB_USER=crm_ingest
# CRM_INGEST_DB_PASSWORD=change-me CRM_INGEST_OWNER_USER=crm_ingest_owner CRM_INGEST_OWNER_PASSWORD=change-me
# CRM_INGEST_PUBLIC_BASE_URL=https://ingest.example.com CRM_INGEST_DEFAULT_REGION=US PROMETHEUS_PORT=9090.
# A port may be set per node (NODE2_CRM_INGEST_HTTP_PORT, NODE2_PATRONI_REST_PORT, NODE2_ETCD_CLIENT_PORT,
# NODE2_POSTGRES_PORT, NODE2_NODE_EXPORTER_PORT), for several nodes on one host (deploy/stack.sh).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 INVENTORY OUTDIR" >&2
  exit 2
fi
inventory=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
set -a
# shellcheck disable=SC1090
. "$inventory"
set +a
for v in CLUSTER_NAME NODE1_NAME NODE1_ADDR NODE2_NAME NODE2_ADDR NODE3_NAME NODE3_ADDR; do
  if [ -z "${!v:-}" ]; then
    echo "render-app-configs: $inventory does not set $v" >&2
    exit 1
  fi
done
export CRM_INGEST_HTTP_PORT=${CRM_INGEST_HTTP_PORT:-8080} PATRONI_REST_PORT=${PATRONI_REST_PORT:-8008} \
  ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-2379} NODE_EXPORTER_PORT=${NODE_EXPORTER_PORT:-9100} \
  HAPROXY_PRIMARY_PORT=${HAPROXY_PRIMARY_PORT:-5000} POSTGRES_PORT=${POSTGRES_PORT:-5432} \
  CRM_INGEST_DB_NAME=${CRM_INGEST_DB_NAME:-crm} CRM_INGEST_DB_USER=${CRM_INGEST_DB_USER:-crm_ingest} \
  CRM_INGEST_DB_PASSWORD=${CRM_INGEST_DB_PASSWORD:-change-me} \
  CRM_INGEST_OWNER_USER=${CRM_INGEST_OWNER_USER:-crm_ingest_owner} \
  CRM_INGEST_OWNER_PASSWORD=${CRM_INGEST_OWNER_PASSWORD:-change-me} PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090} \
  CRM_INGEST_PUBLIC_BASE_URL=${CRM_INGEST_PUBLIC_BASE_URL:-https://ingest.example.com} \
  CRM_INGEST_DEFAULT_REGION=${CRM_INGEST_DEFAULT_REGION:-US}
# node_port N NAME: NODEn_NAME if set, else the cluster-wide NAME; exported as NODEn_NAME for the templates.
node_port() {
  local specific="NODE$1_$2" v
  v=${!specific:-${!2}}
  [[ $v =~ ^[0-9]+$ ]] || { echo "render-app-configs: $specific must be a port number (got '$v')" >&2; exit 1; }
  export "$specific=$v"
}
for n in 1 2 3; do
  for p in CRM_INGEST_HTTP_PORT PATRONI_REST_PORT ETCD_CLIENT_PORT POSTGRES_PORT NODE_EXPORTER_PORT; do node_port "$n" "$p"; done
done
# libpq multi-host: HAProxy's primary port first, then every node's PostgreSQL; read-write picks the primary.
dsn_for() {
  echo "host=${NODE1_ADDR},${NODE1_ADDR},${NODE2_ADDR},${NODE3_ADDR} port=${HAPROXY_PRIMARY_PORT},${NODE1_POSTGRES_PORT},${NODE2_POSTGRES_PORT},${NODE3_POSTGRES_PORT} dbname=${CRM_INGEST_DB_NAME} user=$1 target_session_attrs=read-write connect_timeout=5"
}
CRM_INGEST_DSN=$(dsn_for "$CRM_INGEST_DB_USER")
CRM_INGEST_OWNER_DSN=$(dsn_for "$CRM_INGEST_OWNER_USER")
export CRM_INGEST_DSN CRM_INGEST_OWNER_DSN
export CRM_SOURCE_DIR=${CRM_SOURCE_DIR:-$(cd "$here/.." && pwd)}

# Replaces ${NAME} by the variable's value; an unset variable is an error (no silent empty strings).
render() {
  perl -pe 's/\$\{([A-Z0-9_]+)\}/defined $ENV{$1} ? $ENV{$1} : die "render-app-configs: $ARGV uses unset variable $1\n"/ge' "$1" >"$2"
}

for n in 1 2 3; do
  name_var=NODE${n}_NAME addr_var=NODE${n}_ADDR
  export NODE_NAME=${!name_var} NODE_ADDR=${!addr_var}
  http_var=NODE${n}_CRM_INGEST_HTTP_PORT exporter_var=NODE${n}_NODE_EXPORTER_PORT
  export NODE_CRM_INGEST_HTTP_PORT=${!http_var} NODE_NODE_EXPORTER_PORT=${!exporter_var}
  dir=$outdir/$NODE_NAME
  mkdir -p "$dir"
  if [ "$n" -le 2 ]; then
    render "$here/app-templates/crm-ingest.toml.tmpl" "$dir/crm-ingest.toml"
    ( umask 077
      render "$here/app-templates/crm-ingest.env.tmpl" "$dir/crm-ingest.env"
      render "$here/app-templates/crm-ingest-owner.env.tmpl" "$dir/crm-ingest-owner.env" )
    chmod 600 "$dir/crm-ingest.env" "$dir/crm-ingest-owner.env"
  else
    render "$here/app-templates/prometheus.yml.tmpl" "$dir/prometheus.yml"
    cp "$here/observability/crm-ingest-alerts.yml" "$dir/crm-ingest-alerts.yml"
    mkdir -p "$dir/grafana/provisioning/datasources" "$dir/grafana/provisioning/dashboards" "$dir/grafana/dashboards"
    cp "$here/observability/grafana/provisioning/datasources.yml" "$dir/grafana/provisioning/datasources/"
    cp "$here/observability/grafana/provisioning/dashboards.yml" "$dir/grafana/provisioning/dashboards/"
    cp "$here/observability/grafana/crm-ingest-dashboard.json" "$dir/grafana/dashboards/"
  fi
  cp "$here/compose/node$n.yml" "$dir/docker-compose.yml"
  {
    echo "# docker-compose variables for $NODE_NAME (rendered)."
    echo "COMPOSE_PROJECT_NAME=${CLUSTER_NAME}"
    echo "CRM_SOURCE_DIR=${CRM_SOURCE_DIR}"
    echo "NODE_NAME=${NODE_NAME}"
    echo "NODE_ADDR=${NODE_ADDR}"
    echo "NODE_EXPORTER_PORT=${NODE_NODE_EXPORTER_PORT}"
    echo "PROMETHEUS_PORT=${PROMETHEUS_PORT}"
  } >"$dir/.env"
done
echo "render-app-configs: wrote $outdir/{$NODE1_NAME,$NODE2_NAME,$NODE3_NAME}"
