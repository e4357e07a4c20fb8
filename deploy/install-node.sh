#!/usr/bin/env bash
# Installs one node's rendered files for the systemd layout (no containers), using Debian's own units for
# etcd (etcd-server: /etc/default/etcd), Patroni (/etc/patroni/config.yml) and HAProxy
# (/etc/haproxy/haproxy.cfg), and crm-ingest's units from deploy/systemd/.
# Usage: install-node.sh RENDERED_NODE_DIR [--root DIR] [--no-enable]
#   RENDERED_NODE_DIR  OUTDIR/<node> written by deploy/render-configs.sh and deploy/render-app-configs.sh
#   --root DIR         install below DIR instead of / (for inspection and tests); implies --no-enable
# Idempotent: re-running replaces the files and reloads systemd.
set -euo pipefail
node_dir=${1:?usage: install-node.sh RENDERED_NODE_DIR [--root DIR] [--no-enable]}
shift
root=/
enable=1
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; enable=0; shift 2 ;;
    --no-enable) enable=0; shift ;;
    *) echo "install-node: unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
r=${root%/}
put() { install -D -m "$3" "$1" "$r$2"; echo "installed $2"; }

[ -f "$node_dir/etcd.env" ] && put "$node_dir/etcd.env" /etc/default/etcd 0644
[ -f "$node_dir/patroni.yml" ] && put "$node_dir/patroni.yml" /etc/patroni/config.yml 0640
[ -f "$node_dir/haproxy.cfg" ] && put "$node_dir/haproxy.cfg" /etc/haproxy/haproxy.cfg 0644
units=()
if [ -f "$node_dir/crm-ingest.toml" ]; then
  put "$node_dir/crm-ingest.toml" /etc/crm-ingest/crm-ingest.toml 0640
  # Keep an edited password: never overwrite an existing environment file.
  if [ ! -f "$r/etc/crm-ingest/crm-ingest.env" ]; then put "$node_dir/crm-ingest.env" /etc/crm-ingest/crm-ingest.env 0600; fi
  if [ -f "$node_dir/crm-ingest-owner.env" ] && [ ! -f "$r/etc/crm-ingest/crm-ingest-owner.env" ]; then
    put "$node_dir/crm-ingest-owner.env" /etc/crm-ingest/crm-ingest-owner.env 0600
  fi
  for u in crm-ingest.service crm-ingest-partitions-ensure.service crm-ingest-partitions-ensure.timer \
           crm-ingest-partitions-retain.service crm-ingest-partitions-retain.timer; do
    put "$here/systemd/$u" "/etc/systemd/system/$u" 0644
  done
  units=(crm-ingest.service crm-ingest-partitions-ensure.timer crm-ingest-partitions-retain.timer)
fi
if [ -f "$node_dir/prometheus.yml" ]; then
  put "$node_dir/prometheus.yml" /etc/prometheus/prometheus.yml 0644
  put "$node_dir/crm-ingest-alerts.yml" /etc/prometheus/crm-ingest-alerts.yml 0644
  put "$node_dir/grafana/provisioning/datasources/datasources.yml" /etc/grafana/provisioning/datasources/crm-ingest.yml 0644
  put "$node_dir/grafana/provisioning/dashboards/dashboards.yml" /etc/grafana/provisioning/dashboards/crm-ingest.yml 0644
  put "$node_dir/grafana/dashboards/crm-ingest-dashboard.json" /var/lib/grafana/dashboards/crm-ingest-dashboard.json 0644
fi
if [ "$enable" = 1 ]; then
  if [ ${#units[@]} -gt 0 ]; then
    id -u crm-ingest >/dev/null 2>&1 || useradd --system --home-dir /var/lib/crm-ingest --shell /usr/sbin/nologin crm-ingest
    chgrp crm-ingest /etc/crm-ingest/crm-ingest.toml /etc/crm-ingest/crm-ingest.env /etc/crm-ingest/crm-ingest-owner.env
    chmod 0640 /etc/crm-ingest/crm-ingest.env /etc/crm-ingest/crm-ingest-owner.env
    install -d -o crm-ingest -g crm-ingest -m 0750 /var/backups/crm-ingest/partitions
  fi
  systemctl daemon-reload
  [ -f /etc/default/etcd ] && systemctl enable --now etcd
  [ -f /etc/patroni/config.yml ] && systemctl enable --now patroni
  [ -f /etc/haproxy/haproxy.cfg ] && [ -f "$node_dir/haproxy.cfg" ] && systemctl enable --now haproxy && systemctl reload haproxy
  [ ${#units[@]} -gt 0 ] && systemctl enable --now "${units[@]}"
fi
echo "install-node: done ($node_dir -> $root)"
