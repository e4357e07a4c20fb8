#!/usr/bin/env bash
# The Patroni, HAProxy and etcd configurations rendered from the production inventory
# (deploy/inventory.example.env) and from the local cluster's (deploy/cluster/local.inventory.env)
# pass the real tools' checks: `haproxy -c -f` and `patroni --validate-config`.
#
# patroni --validate-config also probes the network: it wants etcd reachable and the listen ports
# free on this host. Those two complaints are expected here (no etcd runs for this check, and the
# production addresses are not this machine's); any other complaint fails the check. The local
# cluster's start (deploy/cluster/cluster.sh start) runs the full validation with etcd up.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

check() {  # check NODE_DIR
  local d=$1 out
  if ! out=$(haproxy -c -f "$d/haproxy.cfg" 2>&1); then
    echo "FAIL haproxy -c -f $d/haproxy.cfg: $out"; failed=1
  else
    echo "ok   haproxy -c -f $d/haproxy.cfg"
  fi
  out=$(/usr/bin/python3 /usr/bin/patroni --validate-config "$d/patroni.yml" 2>&1 || true)
  local rest
  rest=$(grep -v -E "is not reachable|Port [0-9]+ is already in use" <<<"$out" | grep -v '^\s*$' || true)
  if [ -n "$rest" ]; then
    echo "FAIL patroni --validate-config $d/patroni.yml:"; echo "$rest"; failed=1
  else
    echo "ok   patroni --validate-config $d/patroni.yml${out:+ (network only: $(tr '\n' ';' <<<"$out"))}"
  fi
  grep -q '^ETCD_INITIAL_CLUSTER=.*,.*,' "$d/etcd.env" || { echo "FAIL $d/etcd.env: not three members"; failed=1; }
  # Nothing left unsubstituted.
  if grep -n '\${' "$d/patroni.yml" "$d/haproxy.cfg" "$d/etcd.env"; then failed=1; fi
}

bash "$root/deploy/render-configs.sh" "$root/deploy/inventory.example.env" "$work/production"
for d in "$work"/production/*/; do check "${d%/}"; done
grep -q 'server crm-db-3 10.0.0.13:5432 .*check port 8008' "$work/production/crm-db-1/haproxy.cfg" \
  || { echo "FAIL production haproxy.cfg lacks node 3"; failed=1; }

bash "$root/deploy/cluster/cluster.sh" render "$work/local"
for d in "$work"/local/conf/*/; do check "${d%/}"; done

# The bootstrap creates the roles of schemas/0003_security.sql: production separates the owner from serve's
# login role (granted crm_ingest_writer only); the local cluster keeps one role for both.
boot() { /usr/bin/python3 -c 'import shlex, sys, yaml; print("\n".join(shlex.split(yaml.safe_load(open(sys.argv[1]))["bootstrap"]["post_bootstrap"])))' "$1"; }
prod_boot=$(boot "$work/production/crm-db-1/patroni.yml")
for want in "CREATE ROLE crm_ingest_writer NOLOGIN" "CREATE ROLE crm_ingest_analytics NOLOGIN" \
            "CREATE ROLE crm_ingest_owner LOGIN PASSWORD 'change-me'" \
            "CREATE ROLE crm_ingest LOGIN BYPASSRLS PASSWORD 'change-me' IN ROLE crm_ingest_writer" "CREATE DATABASE crm OWNER crm_ingest_owner"; do
  grep -qxF -- "$want" <<<"$prod_boot" || { echo "FAIL production post_bootstrap lacks: $want"; failed=1; }
done
local_boot=$(boot "$work/local/conf/node1/patroni.yml")
[ "$(grep -c '^CREATE ROLE crm ' <<<"$local_boot")" = 1 ] || { echo "FAIL local post_bootstrap: $local_boot"; failed=1; }
grep -qxF "CREATE ROLE crm_ingest_writer NOLOGIN" <<<"$local_boot" || { echo "FAIL local post_bootstrap lacks the writer role"; failed=1; }
# A password that would break the SQL or the YAML it is written into is refused.
sed "s/^CRM_INGEST_DB_PASSWORD=.*/CRM_INGEST_DB_PASSWORD=it's/" "$root/deploy/inventory.example.env" >"$work/quote.env"
if bash "$root/deploy/render-configs.sh" "$work/quote.env" "$work/quote" 2>/dev/null; then
  echo "FAIL a password with a quote was rendered"; failed=1
fi

# A broken inventory is refused, not rendered with holes.
grep -v "^NODE3_ADDR=" "$root/deploy/inventory.example.env" >"$work/broken.env"
if bash "$root/deploy/render-configs.sh" "$work/broken.env" "$work/broken" 2>/dev/null; then
  echo "FAIL an inventory without NODE3_ADDR was rendered"; failed=1
fi
exit "$failed"
