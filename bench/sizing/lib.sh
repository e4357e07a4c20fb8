# Helpers of bench/sizing.sh (sourced; they read its variables: dsn, port, work, serve_pid, postmaster, ...).

# dsn_with_db DSN NAME: the same server and options, another database.
dsn_with_db() {
  local base=${1%%\?*} query=""
  [ "$base" != "$1" ] && query="?${1#*\?}"
  echo "${base%/*}/$2$query"
}
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# 10M, 100M, 1B, 2.5k, 1000 -> an integer.
parse_count() {
  awk -v s="$1" 'BEGIN { m = 1; u = toupper(substr(s, length(s)));
    if (u == "K") m = 1e3; else if (u == "M") m = 1e6; else if (u == "B" || u == "G") m = 1e9;
    if (m > 1) s = substr(s, 1, length(s) - 1);
    if (s !~ /^[0-9]+(\.[0-9]+)?$/) { print "bad count: " s > "/dev/stderr"; exit 1 }
    printf "%.0f", s * m }'
}

# Mean events per request of a --mix (canonical batch, SendGrid array, one Twilio callback, one Segment call).
mix_events_per_request() {
  awk -v mix="$1" -v c="$2" -v g="$3" 'BEGIN {
    n = split(mix, items, ","); per["canonical"] = c; per["sendgrid"] = g; per["twilio"] = 1; per["segment"] = 1
    for (i = 1; i <= n; i++) { split(items[i], kv, "="); w += kv[2]; e += kv[2] * per[kv[1]] }
    if (w <= 0) { print "bad --mix" > "/dev/stderr"; exit 1 }
    printf "%.4f", e / w }'
}

# The postmaster serving DSN when it runs on this machine (its data directory's postmaster.pid), else nothing.
postmaster_pid() {
  local data pid
  data=$(psql "$1" -qAtc "SHOW data_directory" 2>/dev/null) || return 0
  [ -r "$data/postmaster.pid" ] || return 0
  pid=$(head -n1 "$data/postmaster.pid")
  grep -q postgres "/proc/$pid/comm" 2>/dev/null && echo "$pid"
  return 0
}

proc_children() { cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'; }

# CPU seconds (user + system) of a process so far; with "tree", plus its live children and the children
# it has reaped (PostgreSQL: the postmaster, its backends and auxiliary processes).
proc_cpu_s() {
  local pid=$1 hz total
  hz=$(getconf CLK_TCK)
  [ -r "/proc/$pid/stat" ] || { echo 0; return; }
  if [ "${2:-}" = tree ]; then
    total=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pid/stat")
    for c in $(proc_children "$pid"); do
      total=$(( total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$c/stat" 2>/dev/null || echo 0) ))
    done
  else
    total=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
  fi
  awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'
}

proc_status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

pin_tree() {  # pin_tree PID CPULIST: the process, its threads and its children (new children inherit)
  taskset -a -pc "$2" "$1" >/dev/null
  for c in $(proc_children "$1"); do taskset -a -pc "$2" "$c" >/dev/null 2>&1 || true; done
}

make_memory_cgroup() {  # prints the new cgroup's directory
  local bytes dir
  bytes=$(numfmt --from=iec "$1")
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # v2
    dir=/sys/fs/cgroup/crm-sizing-$$
    mkdir "$dir" 2>/dev/null || return 1
    echo "$bytes" >"$dir/memory.max" || return 1
  elif [ -d /sys/fs/cgroup/memory ]; then  # v1
    dir=/sys/fs/cgroup/memory/crm-sizing-$$
    mkdir "$dir" 2>/dev/null || return 1
    echo "$bytes" >"$dir/memory.limit_in_bytes" || return 1
  else
    return 1
  fi
  echo "$dir"
}
cgroup_add_tree() {
  echo "$2" >"$1/cgroup.procs"
  for c in $(proc_children "$2"); do echo "$c" >"$1/cgroup.procs" 2>/dev/null || true; done
}

metric() {  # metric NAME -> its value on serve's /metrics (summed over labels; 0 when absent)
  curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { v += $2 }
    END { printf "%.0f", v + 0 }'
}

# Bytes of every table of the database (heap, indexes, TOAST), of the event tables only, and the WAL position.
db_sizes() {
  psql "$dsn" -qAtF' ' -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0),
      coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname LIKE 'communications%' OR c.relname LIKE 'customer_touchpoints%'), 0),
      pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')"
}
stored_rows() { psql "$dsn" -qAtc "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)"; }

# Acknowledged ids of a step that PostgreSQL does not hold: valid ones in communications
# (provider_message_id: m-, g-, SM) or customer_touchpoints (message_id: t-, s-); invalid ones (x-) in
# rejected_events.raw. Prints: distinct_valid missing_valid distinct_invalid missing_invalid.
missing_ids() {  # missing_ids ACK_LOG SEED_HEX
  tr ' ' '\n' <"$1" | sed '/^$/d' >"$1.ids"
  psql "$dsn" -qAtF' ' \
    -c "CREATE TEMP TABLE acked_raw (id text)" \
    -c "\\copy acked_raw FROM '$1.ids'" \
    -c "CREATE TEMP TABLE acked AS SELECT DISTINCT id FROM acked_raw" \
    -c "CREATE TEMP TABLE dead AS SELECT DISTINCT substring(raw from 'x-$2-[0-9a-f]{16}') AS id FROM rejected_events
          WHERE raw LIKE '%x-$2-%'" \
    -c "ANALYZE acked" -c "ANALYZE dead" \
    -c "SELECT (SELECT count(*) FROM acked WHERE id NOT LIKE 'x-%'),
               (SELECT count(*) FROM acked a WHERE a.id NOT LIKE 'x-%'
                  AND NOT EXISTS (SELECT 1 FROM communications c WHERE c.provider_message_id = a.id)
                  AND NOT EXISTS (SELECT 1 FROM customer_touchpoints t WHERE t.message_id = a.id)),
               (SELECT count(*) FROM acked WHERE id LIKE 'x-%'),
               (SELECT count(*) FROM acked a WHERE a.id LIKE 'x-%' AND NOT EXISTS (SELECT 1 FROM dead d WHERE d.id = a.id))"
}

now_s() { date +%s.%N; }

# One offered rate: load, drain, check, measure. Prints one JSON object.
run_step() {
  local rate=$1 seed=$2 s out ack req_rate t0 t1 t2 sc0 sc1 sc2="" pc0 pc1 pc2="" rss hwm sizes0 sizes1 rows0 rows1
  s=$(printf '%08x' "$seed")
  out=$work/step-$rate.json ack=$work/step-$rate.acks
  req_rate=$(awk -v r="$rate" -v e="$events_per_request" 'BEGIN { printf "%.3f", r / e }')
  echo "== $rate events/s offered ($req_rate requests/s) for $duration s, seed $seed" >&2
  read -r -a sizes0 <<<"$(db_sizes)"
  rows0=$(stored_rows)
  sc0=$(proc_cpu_s "$serve_pid") pc0=$(proc_cpu_s "${postmaster:-0}" tree) t0=$(now_s)
  "${load_cmd[@]}" --url "http://127.0.0.1:$port" --mode mix --mix "$mix" --events-per-request "$canonical_batch" \
    --sendgrid-events-per-request "$sendgrid_batch" --duplicates "$duplicates" --invalid "$invalid" \
    --rate "$req_rate" --duration "$duration" --connections "$connections" --seed "$seed" --timeout 10 \
    --drain-timeout 15 --ack-log "$ack" >"$out"
  t1=$(now_s) sc1=$(proc_cpu_s "$serve_pid") pc1=$(proc_cpu_s "${postmaster:-0}" tree)
  rss=$(proc_status_kb "$serve_pid" VmRSS) hwm=$(proc_status_kb "$serve_pid" VmHWM)
  # Drain: until every acknowledged id is found. The id check (a scan of the tables) runs once serve's
  # counters say the writers caught up (rows inserted + duplicates >= events accepted + dead-lettered) or
  # stopped moving for 1 s; gives up when nothing moves for 20 s or after --drain-wait.
  local started moved written accepted prev="" check="" missing_valid=0 missing_invalid=0 drained=false caught_up=""
  started=$(date +%s) moved=$(now_s)
  while :; do
    written=$(( $(metric crm_ingest_writer_rows_total || echo 0) + $(metric crm_ingest_writer_duplicates_total || echo 0) ))
    accepted=$(( $(metric crm_ingest_events_accepted_total || echo 0) + $(metric crm_ingest_events_rejected_total || echo 0) ))
    # CPU is read at the end of the drain too (the id check below is the harness's work, not serve's).
    [ "$written" != "$prev" ] && { prev=$written; moved=$(now_s); sc2=$(proc_cpu_s "$serve_pid"); pc2=$(proc_cpu_s "${postmaster:-0}" tree); }
    # The drain lag ends when the writers caught up (or last moved), not when the id check is done.
    if [ -z "$caught_up" ] && [ "$written" -ge "$accepted" ]; then
      caught_up=$(now_s) sc2=$(proc_cpu_s "$serve_pid") pc2=$(proc_cpu_s "${postmaster:-0}" tree)
    fi
    if [ -n "$caught_up" ] || awk -v m="$moved" -v n="$(now_s)" 'BEGIN { exit !(n - m >= 1) }'; then
      check=$(missing_ids "$ack" "$s")
      read -r _ missing_valid _ missing_invalid <<<"$check"
      if [ "$missing_valid" = 0 ] && [ "$missing_invalid" = 0 ]; then drained=true; break; fi
    fi
    if awk -v m="$moved" -v n="$(now_s)" 'BEGIN { exit !(n - m >= 20) }' || [ $(( $(date +%s) - started )) -ge "$drain_wait" ]; then
      echo "   the drainer stopped short: $missing_valid valid and $missing_invalid invalid acknowledged events not found" >&2
      break
    fi
    sleep 0.25
  done
  t2=$(now_s)
  [ -n "$caught_up" ] || caught_up=$moved
  if [ "$drained" != true ]; then caught_up=$t2 sc2=$(proc_cpu_s "$serve_pid") pc2=$(proc_cpu_s "${postmaster:-0}" tree); fi
  read -r -a sizes1 <<<"$(db_sizes)"
  rows1=$(stored_rows)
  local distinct_valid distinct_invalid
  read -r distinct_valid _ distinct_invalid _ <<<"$check"
  echo "   $(jq -r '"acked \(.events_acked) events in \(.ok) requests, p99 \(.latency_ms.p99) ms"' "$out"), lost $missing_valid + $missing_invalid invalid, drained $(awk -v a="$t1" -v b="$caught_up" 'BEGIN{printf "%.1f", b-a}') s after the load" >&2
  jq -c --argjson offered "$rate" --argjson req_rate "$req_rate" --argjson seed "$seed" \
    --argjson t0 "$t0" --argjson t1 "$t1" --argjson t2 "$t2" --argjson tc "$caught_up" \
    --argjson sc0 "$sc0" --argjson sc1 "$sc1" --argjson sc2 "$sc2" \
    --argjson pc0 "$pc0" --argjson pc1 "$pc1" --argjson pc2 "$pc2" --argjson pg_local "$([ -n "$postmaster" ] && echo true || echo false)" \
    --argjson rss_kb "${rss:-0}" --argjson hwm_kb "${hwm:-0}" \
    --argjson rel0 "${sizes0[0]}" --argjson ev0 "${sizes0[1]}" --argjson wal0 "${sizes0[2]}" \
    --argjson rel1 "${sizes1[0]}" --argjson ev1 "${sizes1[1]}" --argjson wal1 "${sizes1[2]}" \
    --argjson rows0 "$rows0" --argjson rows1 "$rows1" --argjson drained "$drained" \
    --argjson distinct_valid "${distinct_valid:-0}" --argjson missing_valid "${missing_valid:-0}" \
    --argjson distinct_invalid "${distinct_invalid:-0}" --argjson missing_invalid "${missing_invalid:-0}" '
    def r(x; n): (x * pow(10; n) | round) / pow(10; n);
    . as $g | ($t1 - $t0) as $load_s | ([$tc - $t0, $load_s] | max) as $step_s | ($rows1 - $rows0) as $stored |
    {
      offered_events_per_s: $offered, offered_requests_per_s: $req_rate, seed: $seed,
      duration_s: $g.duration_s, requests_scheduled: $g.scheduled, requests_ok: $g.ok, non_2xx: $g.non_2xx,
      errors: ($g.errors | add), events_sent: $g.events_sent, events_acked: $g.events_acked,
      achieved_requests_per_s: $g.achieved_rps, achieved_events_per_s: $g.achieved_events_per_s,
      latency_ms: {p50: $g.latency_ms.p50, p95: $g.latency_ms.p95, p99: $g.latency_ms.p99, max: $g.latency_ms.max},
      max_release_lag_ms: $g.max_release_lag_ms, mix: $g.mix,
      ids: {acked_valid_distinct: $distinct_valid, acked_invalid_distinct: $distinct_invalid,
            lost_valid: $missing_valid, lost_invalid: $missing_invalid},
      events_lost: ($missing_valid + $missing_invalid),
      drained: $drained, drain_lag_s: r([$tc - $t1, 0] | max; 2),
      stored_rows: $stored, stored_rows_per_s: r($stored / $step_s; 0),
      cpu: {
        crm_ingest_cores_load: r(($sc1 - $sc0) / $load_s; 2), postgres_cores_load: (if $pg_local then r(($pc1 - $pc0) / $load_s; 2) else null end),
        crm_ingest_cores_step: r(($sc2 - $sc0) / $step_s; 2), postgres_cores_step: (if $pg_local then r(($pc2 - $pc0) / $step_s; 2) else null end),
        crm_ingest_cpu_us_per_event: (if $g.events_acked > 0 then r(($sc2 - $sc0) * 1e6 / $g.events_acked; 2) else null end),
        postgres_cpu_us_per_event: (if $pg_local and $g.events_acked > 0 then r(($pc2 - $pc0) * 1e6 / $g.events_acked; 2) else null end)
      },
      crm_ingest_rss_mb: r($rss_kb / 1024; 1), crm_ingest_peak_rss_mb: r($hwm_kb / 1024; 1),
      disk: {
        table_bytes: ($rel1 - $rel0), event_table_bytes: ($ev1 - $ev0), wal_bytes: ($wal1 - $wal0),
        table_bytes_per_event: (if $stored > 0 then r(($rel1 - $rel0) / $stored; 1) else null end),
        wal_bytes_per_event: (if $stored > 0 then r(($wal1 - $wal0) / $stored; 1) else null end),
        total_bytes_per_event: (if $stored > 0 then r(($rel1 - $rel0 + $wal1 - $wal0) / $stored; 1) else null end)
      }
    }' "$out"
}


# The database's ceiling in the same run: a plain `psql \copy` (CSV) of one step's stored rows into an
# empty, migrated database on the same server. The step: the highest one that passed, else the last.
copy_ceiling() {  # copy_ceiling STEPS_JSONL -> JSON
  local seed s n t0 t1
  seed=$(jq -s --argjson t "$p99_target" '
    (map(select(.latency_ms.p99 <= $t and .events_lost == 0)) | last | .seed) // (last | .seed)' "$1")
  s=$(printf '%08x' "$seed")
  psql "$dsn" -qc "\\copy (SELECT $comm_cols FROM communications WHERE provider_message_id LIKE 'm-$s-%' OR provider_message_id LIKE 'g-$s-%' OR provider_message_id LIKE 'SM$s%') TO '$work/comm.csv' CSV" \
              -c "\\copy (SELECT $touch_cols FROM customer_touchpoints WHERE message_id LIKE 't-$s-%' OR message_id LIKE 's-$s-%') TO '$work/touch.csv' CSV"
  n=$(( $(wc -l <"$work/comm.csv") + $(wc -l <"$work/touch.csv") ))
  psql "$admin_dsn" -qAtc "DROP DATABASE IF EXISTS ${db}_copy WITH (FORCE)" -c "CREATE DATABASE ${db}_copy" >/dev/null
  "$exe" --log-level warn migrate --dsn "$copy_dsn" >/dev/null
  t0=$(now_s)
  psql "$copy_dsn" -qc "\\copy communications ($comm_cols) FROM '$work/comm.csv' CSV" \
                   -c "\\copy customer_touchpoints ($touch_cols) FROM '$work/touch.csv' CSV"
  t1=$(now_s)
  psql "$admin_dsn" -qAtc "DROP DATABASE IF EXISTS ${db}_copy WITH (FORCE)" >/dev/null
  jq -n --argjson seed "$seed" --argjson n "$n" --argjson t0 "$t0" --argjson t1 "$t1" \
    '{seed: $seed, rows: $n, seconds: (($t1 - $t0) * 1000 | round / 1000), rows_per_s: (if $t1 > $t0 then ($n / ($t1 - $t0) | round) else null end)}'
}
