#!/usr/bin/env bash
# Smoke test of the container stack (deploy/stack.sh): the three nodes of production on this machine, in
# containers built from the repository. What it proves, in order:
#   1. the stack comes up from nothing (images, bootstrap with the roles, migration as the owner, serve ready);
#   2. signed webhooks (Segment, WhatsApp) and canonical events (API key) posted to both crm-ingest nodes are
#      stored; a wrong signature and a missing key are refused;
#   3. Prometheus scrapes every target (crm-ingest, Patroni, etcd, node_exporter): /api/v1/targets all up;
#   4. no alert rule is pending or firing while the stack is healthy (after traffic reached both nodes);
#   5. serve connects as the login role granted crm_ingest_writer only: it cannot update, delete, truncate,
#      create or drop, read a partition or another table directly, or write the migration ledger; a tenant
#      reader (crm_ingest_analytics) sees only its tenant's rows (Row Level Security);
#   6. stop the leader's Patroni container under load: a replica takes over, writes resume, every
#      acknowledged event is stored exactly once, no batch failed; the old leader rejoins as a replica.
#
#   tests/deploy/stack_smoke.sh [--binary PATH] [--dir DIR] [--keep] [--engine podman|docker] [--log FILE]
#
# --binary: the crm-ingest binary to put into the image (default: the image compiles it). --keep leaves the
# stack running for inspection (deploy/stack.sh down --dir DIR --volumes removes it). --log FILE: a copy of
# everything printed (each step with its time). Exit 0 = all passed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=$root/tests/fixtures/webhooks
dir="" keep=0 up_args=() logfile=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) up_args+=(--binary "$2"); shift 2 ;;
    --engine) up_args+=(--engine "$2"); shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --log) logfile=$2; shift 2 ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done
if [ -n "$logfile" ]; then : >"$logfile"; exec > >(tee -a "$logfile") 2>&1; fi
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/crm-stack-smoke.XXXXXX")
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
t0=$SECONDS
passed=0 failed=0
log() { printf 'smoke: [%4ss] %s\n' "$((SECONDS - t0))" "$*"; }
ok() { passed=$((passed + 1)); log "ok   $*"; }
bad() { failed=$((failed + 1)); log "FAIL $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
stack() { local c=$1; shift; bash "$root/deploy/stack.sh" "$c" --dir "$dir" "$@"; }

cleanup() {
  local rc=$?
  if [ "$keep" = 1 ]; then log "kept the stack in $dir (deploy/stack.sh down --dir $dir --volumes)";
  else stack down --volumes >/dev/null 2>&1 || true; rm -rf "$dir"; fi
  exit "$rc"
}
trap cleanup EXIT
# A run killed before its cleanup left its stack in DIR: remove it first (no-op when there is none).
stack down --volumes >/dev/null 2>&1 || true

# --- 1. up ------------------------------------------------------------------------------------------------
stack render
set -a; . "$dir/inventory.env"; set +a
nodes=("$NODE1_NAME" "$NODE2_NAME" "$NODE3_NAME")
segment_secret=smoke-segment-$RANDOM$RANDOM
whatsapp_secret=smoke-whatsapp-$RANDOM$RANDOM
api_key=smoke-key-$RANDOM$RANDOM
# Secrets by environment (env_file), as an operator would put them; /metrics stays open to Prometheus.
for n in "$NODE1_NAME" "$NODE2_NAME"; do
  cat >>"$dir/rendered/$n/crm-ingest.env" <<EOF
CRM_INGEST_WEBHOOKS_SEGMENT_SHARED_SECRET=$segment_secret
CRM_INGEST_WEBHOOKS_WHATSAPP_APP_SECRET=$whatsapp_secret
CRM_INGEST_AUTH_API_KEYS=smoke=sha256:$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)
CRM_INGEST_AUTH_PROTECT_METRICS=false
EOF
done
up_start=$SECONDS
stack up "${up_args[@]}"
log "stack up in $((SECONDS - up_start)) s"

url1=http://$NODE1_ADDR:$NODE1_CRM_INGEST_HTTP_PORT
url2=http://$NODE2_ADDR:$NODE2_CRM_INGEST_HTTP_PORT
prom=http://$NODE3_ADDR:$PROMETHEUS_PORT
owner_dsn="host=$NODE1_ADDR port=$HAPROXY_PRIMARY_PORT dbname=$CRM_INGEST_DB_NAME user=$CRM_INGEST_OWNER_USER password=$CRM_INGEST_OWNER_PASSWORD connect_timeout=5"
serve_dsn="host=$NODE1_ADDR port=$HAPROXY_PRIMARY_PORT dbname=$CRM_INGEST_DB_NAME user=$CRM_INGEST_DB_USER password=$CRM_INGEST_DB_PASSWORD connect_timeout=5"
admin_dsn="host=$NODE1_ADDR port=$HAPROXY_PRIMARY_PORT dbname=$CRM_INGEST_DB_NAME user=$PG_SUPERUSER password=$PG_SUPERUSER_PASSWORD connect_timeout=5"
q() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
# The SQLSTATE of a statement run as serve's role ("ok" when it succeeded).
as_serve() { local out; if out=$(psql "$serve_dsn" -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$1" 2>&1); then echo ok;
  else sed -nE 's/^ERROR: +([0-9A-Z]{5}):.*/\1/p' <<<"$out" | head -n 1; fi; }
post() {  # post URL PATH BODY_FILE [curl args...] -> prints the HTTP status; the body goes to $dir/answer
  local url=$1 path=$2 body=$3; shift 3
  curl -sS --max-time 30 -o "$dir/answer" -w '%{http_code}' -X POST --data-binary "@$body" "$@" "$url$path" || echo 000
}
hmac_hex() { openssl dgst "-$1" -hmac "$2" -r "$3" | cut -d' ' -f1; }
uuid() { cat /proc/sys/kernel/random/uuid; }
# events FILE COUNT: COUNT canonical communications with fresh event ids; the ids are appended to FILE.ids
events() {
  local f=$1 count=$2 i id now
  now=$(date -u +%FT%TZ)
  : >"$f"
  for ((i = 0; i < count; i++)); do
    id=$(uuid)
    echo "$id" >>"$f.ids"
    printf '{"kind":"communication","event_id":"%s","occurred_at":"%s","channel":"email","status":"sent","email":"smoke%d@example.com","campaign_id":7,"provider":"smoke"}\n' \
      "$id" "$now" "$i" >>"$f"
  done
}
stored_count() {  # stored_count IDS_FILE: how many of those event ids are in communications (as the owner)
  local list
  list=$(sed "s/.*/'&'/" "$1" | paste -sd, -)
  q "$owner_dsn" "SELECT count(*) FROM communications WHERE event_id IN ($list)"
}
wait_stored() {  # wait_stored IDS_FILE SECONDS
  local want got start=$SECONDS
  want=$(sort -u "$1" | wc -l)
  while :; do
    got=$(stored_count "$1" 2>/dev/null || echo -1)
    [ "$got" = "$want" ] && return 0
    (( SECONDS - start < $2 )) || { log "stored $got of $want"; return 1; }
    sleep 1
  done
}

wait_until() { local s=$SECONDS t=$1; shift; until "$@"; do (( SECONDS - s < t )) || return 1; sleep 2; done; }

# The image: non-root, read-only root file system, its health check (GET /readyz) passes.
exec_serve() { stack compose "$NODE1_NAME" exec -T crm-ingest "$@"; }
check "crm-ingest runs as uid 10001 (not root)" test "$(exec_serve id -u 2>/dev/null | tr -d '\r')" = 10001
check "crm-ingest's root file system is read-only" test "$(exec_serve sh -c 'touch /opt/x 2>/dev/null && echo writable || echo read-only' | tr -d '\r')" = read-only
check "crm-ingest's log volume is writable" test "$(exec_serve sh -c 'touch /var/lib/crm-ingest/.w && rm /var/lib/crm-ingest/.w && echo ok' | tr -d '\r')" = ok
check "the image's health check (/readyz) passes" exec_serve /usr/local/bin/crm-ingest-healthcheck

# --- 2. traffic -------------------------------------------------------------------------------------------
key=(-H "X-API-Key: $api_key" -H 'Content-Type: application/x-ndjson')
check "the sample's canonical events are accepted by $NODE1_NAME (API key)" \
  test "$(post "$url1" /v1/events "$root/deploy/sample/events.ndjson" "${key[@]}")" = 200
check "an unauthenticated /v1/events is refused (401)" \
  test "$(post "$url1" /v1/events "$root/deploy/sample/events.ndjson" -H 'Content-Type: application/x-ndjson')" = 401
: >"$dir/first.ids"
events "$dir/first" 200
check "200 new canonical events are accepted by $NODE2_NAME" test "$(post "$url2" /v1/events "$dir/first" "${key[@]}")" = 200
seg=$fixtures/segment/page-utm-gclid.derived.json
touchpoints_before=$(q "$owner_dsn" 'SELECT count(*) FROM customer_touchpoints')
check "a signed Segment webhook is accepted" test "$(post "$url1" /v1/webhooks/segment "$seg" \
  -H "X-Signature: $(hmac_hex sha1 "$segment_secret" "$seg")" -H 'Content-Type: application/json')" = 200
check "a Segment webhook with a wrong signature is refused (401)" test "$(post "$url1" /v1/webhooks/segment "$seg" \
  -H "X-Signature: $(hmac_hex sha1 wrong-secret "$seg")" -H 'Content-Type: application/json')" = 401
wa=$fixtures/whatsapp/docs-status-delivered.json
check "a signed WhatsApp webhook is accepted by $NODE2_NAME" test "$(post "$url2" /v1/webhooks/whatsapp "$wa" \
  -H "X-Hub-Signature-256: sha256=$(hmac_hex sha256 "$whatsapp_secret" "$wa")" -H 'Content-Type: application/json')" = 200
check "the 200 canonical events are stored" wait_stored "$dir/first.ids" 60
wamid=$(jq -r '.entry[0].changes[0].value.statuses[0].id' "$wa")
check "the sample's events are stored" test "$(q "$owner_dsn" "SELECT count(*) FROM communications WHERE provider_message_id = 'sg-msg-0001'")" -gt 0
check "the WhatsApp status is stored ($wamid)" \
  test "$(q "$owner_dsn" "SELECT count(*) FROM communications WHERE provider_message_id = '$wamid'")" -ge 1
touchpoint_added() { [ "$(q "$owner_dsn" 'SELECT count(*) FROM customer_touchpoints')" -gt "$touchpoints_before" ]; }
check "the Segment page view is stored as a touchpoint" wait_until 30 touchpoint_added
log "rows: communications $(q "$owner_dsn" 'SELECT count(*) FROM communications'), touchpoints $(q "$owner_dsn" \
  'SELECT count(*) FROM customer_touchpoints'), rejected $(q "$owner_dsn" 'SELECT count(*) FROM rejected_events')"

# --- 3. Prometheus targets ----------------------------------------------------------------------------------
targets_up() {
  curl -fsS --max-time 5 "$prom/api/v1/targets" >"$dir/targets.json" 2>/dev/null &&
    jq -e '[.data.activeTargets[] | select(.health != "up")] | length == 0' "$dir/targets.json" >/dev/null &&
    jq -e '[.data.activeTargets[]] | length == 11' "$dir/targets.json" >/dev/null
}
if wait_until 120 targets_up; then ok "Prometheus: all 11 targets up (crm-ingest x2, patroni x3, etcd x3, node x3)"
else bad "Prometheus targets: $(jq -c '[.data.activeTargets[] | {job: .labels.job, i: .labels.instance, h: .health, e: .lastError}]' "$dir/targets.json" 2>/dev/null)"; fi

# --- 4. no alert while healthy --------------------------------------------------------------------------
# Two evaluation rounds (15 s) after both collectors wrote a batch and every target was scraped.
sleep 35
curl -fsS --max-time 5 "$prom/api/v1/rules?type=alert" >"$dir/rules.json"
rules=$(jq '[.data.groups[].rules[]] | length' "$dir/rules.json")
active=$(jq -c '[.data.groups[].rules[] | select(.state != "inactive") | {name, state}]' "$dir/rules.json")
check "no alert pending or firing while healthy ($rules rules evaluated; active: $active)" test "$active" = "[]"
check "Prometheus evaluated the alert rules" test "$rules" -ge 15

# --- 5. least privilege -----------------------------------------------------------------------------------
check "serve's sessions run as $CRM_INGEST_DB_USER" test "$(q "$admin_dsn" \
  "SELECT count(*) FROM pg_stat_activity WHERE datname = '$CRM_INGEST_DB_NAME' AND usename = '$CRM_INGEST_DB_USER'")" -ge 2
check "no session of the database runs as the owner" test "$(q "$admin_dsn" \
  "SELECT count(*) FROM pg_stat_activity WHERE datname = '$CRM_INGEST_DB_NAME' AND usename = '$CRM_INGEST_OWNER_USER'")" = 0
check "$CRM_INGEST_DB_USER: login, no superuser/createrole/createdb, member of crm_ingest_writer only" test "$(q "$admin_dsn" \
  "SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
          (SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid)
   FROM pg_roles r WHERE r.rolname = '$CRM_INGEST_DB_USER'")" = "t|f|f|f|f|crm_ingest_writer"
check "the database belongs to $CRM_INGEST_OWNER_USER" test "$(q "$admin_dsn" \
  "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$CRM_INGEST_DB_NAME'")" = "$CRM_INGEST_OWNER_USER"
check "the migration granted the writer (0003 did not skip the roles)" test "$(q "$owner_dsn" \
  "SELECT has_table_privilege('crm_ingest_writer', 'communications', 'INSERT')")" = t
part=$(q "$owner_dsn" "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'communications'::regclass AND c.relname <> 'communications_default' LIMIT 1")
for stmt in "UPDATE communications SET status = 'opened'" "DELETE FROM communications" "TRUNCATE communications" \
            "DELETE FROM ingest_batches" "UPDATE rejected_events SET reason = 'x'" "INSERT INTO schema_migrations SELECT * FROM schema_migrations LIMIT 1" \
            "SELECT count(*) FROM $part" "CREATE TABLE public.smoke (x int)" "DROP TABLE communications" \
            "ALTER TABLE communications DISABLE ROW LEVEL SECURITY" "CREATE ROLE smoke" "COPY communications TO PROGRAM 'true'" \
            "SELECT pg_read_file('/etc/passwd')" "SELECT count(*) FROM pg_authid"; do
  code=$(as_serve "$stmt")
  check "serve's role may not: $stmt ($code)" test "$code" = 42501
done
check "serve's role may insert and read what it writes (the writer's grants)" test "$(as_serve "BEGIN; INSERT INTO rejected_events (rejection_id, received_at, source, reason, raw) VALUES (gen_random_uuid(), now(), 'smoke', 'smoke', '{}'); SELECT count(*) FROM communications; ROLLBACK")" = ok
# Row Level Security as a tenant reader meets it (PostgREST: SET ROLE + request.jwt.claims).
q "$owner_dsn" "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, email, tenant_id)
  SELECT gen_random_uuid(), now(), now(), 'email', 'sent', 'rls@example.com', t FROM unnest(ARRAY['smoke-a','smoke-a','smoke-b']) t" >/dev/null
rls_count=$(psql "$admin_dsn" -XAtq -v ON_ERROR_STOP=1 <<'SQL' | tail -n 1
BEGIN;
SET LOCAL ROLE crm_ingest_analytics;
SELECT set_config('request.jwt.claims', '{"tenant_id":"smoke-a"}', true) \g /dev/null
SELECT count(*) FROM communications;
COMMIT;
SQL
)
check "Row Level Security: tenant smoke-a's reader sees its 2 rows only (got $rls_count)" test "$rls_count" = 2

# --- 6. failover under load --------------------------------------------------------------------------------
leader() { curl -fsS --max-time 2 "http://$1:$2/cluster" 2>/dev/null | jq -r '[.members[] | select(.role == "leader" and .state == "running")][0].name // empty'; }
leader_any() { local i a p l; for i in 1 2 3; do a=NODE${i}_ADDR p=NODE${i}_PATRONI_REST_PORT; l=$(leader "${!a}" "${!p}") && [ -n "$l" ] && { echo "$l"; return 0; }; done; return 1; }
old=$(leader_any)
log "leader before: $old"
failures_before=$(for u in "$url1" "$url2"; do curl -fsS "$u/metrics" | sed -nE 's/^crm_ingest_writer_failures_total ([0-9.e+]+)$/\1/p'; done | awk '{s += $1} END {print s + 0}')
: >"$dir/load.ids"
# The load: 60 requests of 20 fresh events, alternating between the two collectors, one every 0.5 s; ids of
# acknowledged (200) requests only are expected to be stored.
load() {
  local i code f
  for ((i = 0; i < 60; i++)); do
    f=$dir/load-$i
    : >"$f.ids"
    events "$f" 20
    if ((i % 2)); then code=$(post "$url2" /v1/events "$f" "${key[@]}"); else code=$(post "$url1" /v1/events "$f" "${key[@]}"); fi
    if [ "$code" = 200 ]; then cat "$f.ids" >>"$dir/load.ids"; else echo "request $i: $code" >>"$dir/load.refused"; fi
    sleep 0.5
  done
}
load &
load_pid=$!
sleep 5
stop_at=$SECONDS
stack compose "$old" stop patroni >/dev/null 2>&1
log "stopped the leader's Patroni container ($old) in $((SECONDS - stop_at)) s"
new=""
wait_new() { new=$(leader_any) && [ -n "$new" ] && [ "$new" != "$old" ]; }
if wait_until 60 wait_new; then ok "a replica took over: $new ($((SECONDS - stop_at)) s after the stop began)"; else bad "no new leader within 60 s"; fi
wait "$load_pid"
acked=$(wc -l <"$dir/load.ids")
check "every load request was acknowledged during the failover (refused: $(cat "$dir/load.refused" 2>/dev/null | paste -sd';' - || true))" \
  test "$acked" = 1200
check "writes resumed: all $acked acknowledged events stored" wait_stored "$dir/load.ids" 120
check "each stored once" test "$(q "$owner_dsn" "SELECT count(*) - count(DISTINCT event_id) FROM communications")" = 0
failures_after=$(for u in "$url1" "$url2"; do curl -fsS "$u/metrics" | sed -nE 's/^crm_ingest_writer_failures_total ([0-9.e+]+)$/\1/p'; done | awk '{s += $1} END {print s + 0}')
check "no batch failed for good (crm_ingest_writer_failures_total $failures_before -> $failures_after)" test "$failures_before" = "$failures_after"
rejoin_at=$SECONDS
stack compose "$old" start patroni >/dev/null 2>&1
cluster_url_ok() { local i a p; for i in 1 2 3; do a=NODE${i}_ADDR p=NODE${i}_PATRONI_REST_PORT;
  curl -fsS --max-time 2 "http://${!a}:${!p}/cluster" 2>/dev/null | jq -e --arg o "$old" \
    '[.members[] | select(.name == $o and (.role == "replica" or .role == "sync_standby") and (.state == "streaming" or .state == "running"))] | length == 1' >/dev/null && return 0; done; return 1; }
if wait_until 120 cluster_url_ok; then ok "the old leader $old rejoined as a replica ($((SECONDS - rejoin_at)) s)"; else bad "$old did not rejoin within 120 s"; fi

log "done in $((SECONDS - t0)) s: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
