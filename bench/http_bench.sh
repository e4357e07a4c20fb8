#!/usr/bin/env bash
# HTTP ingest benchmark: one command. Starts a private PostgreSQL (deploy/local-postgres.sh) and
# `crm-ingest serve` on a free loopback port, then drives bench/http_load (open loop, latency from the
# intended send time) at a rising series of rates:
#   (a) POST /v1/events, 100 canonical NDJSON events per request
#   (b) POST /v1/webhooks/twilio, one Twilio status callback per request
# After every step it waits for the drainer to write the local log into PostgreSQL and checks that the
# rows of that step (found by the step's seed, which every id carries) equal the events acknowledged
# with 2xx: loss = acknowledged - stored. Prints one table; the raw JSON of every step stays in the
# work directory with --keep.
#
#   bench/http_bench.sh [--build DIR] [--events-rates 250,500,1000,2000] [--twilio-rates 2000,5000,10000,20000]
#                       [--duration S] [--connections N] [--io-threads N] [--writers N] [--load-threads N]
#                       [--drain-wait S] [--verify-ids] [--dsn ADMIN_DSN] [--keep] [--seed N] [--log-dir DIR]
#
# --log-dir puts serve's local log in a fresh directory under DIR instead of the work directory under /tmp: a
# deployment keeps the log on another disk than PostgreSQL's data (README), and the edge's median latency is
# mostly the log's fdatasync waiting behind PostgreSQL's writes when they share one (a tmpfs shows the bound).
#
# --verify-ids also loads each step's ack log (every acknowledged id) into PostgreSQL and counts the ids
# missing from the tables, instead of comparing counts only. Both programs share this box's CPUs: the
# load generator's own cost is inside the numbers (its JSON shows max_release_lag_ms when it fell behind).
# Targets on a 2-core CCX13-like box: (a) >= 100k events/s, (b) >= 20k requests/s, both with p99 <= 50 ms.
# Connections default to 512: an open-loop rate R over C keep-alive connections needs each round trip to
# finish within C/R (at 20k req/s and 128 connections, 6.4 ms, about two group commits), so too few
# connections measure the client's window rather than the server. Providers call from many connections.
# After the steps, a plain `psql \copy` of the last events step's rows into an empty schema gives the
# database's own ceiling on this box, and the drain rate is reported as a ratio to it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
export PGOPTIONS="-c client_min_messages=warning"
build=$root/build events_rates=250,500,1000,2000 twilio_rates=2000,5000,10000,20000
duration=10 connections=512 io_threads=2 writers=2 load_threads=1 drain_wait=300 verify_ids=0 admin_dsn="" keep=0 seed=""
log_dir=""
bench_options --build --events-rates --twilio-rates --duration --connections --io-threads --writers --load-threads \
  --drain-wait --verify-ids! --dsn=admin_dsn --keep! --seed --log-dir -- "$@"
bench_tools ingest/crm-ingest bench/http_load
load=$build/bench/http_load
command -v psql >/dev/null || { echo "psql not found (apt-get install postgresql-client-15)" >&2; exit 1; }

bench_keep=$keep
bench_start http-bench
dsn=$(db bench_http)
recreate bench_http

# serve's local log: in the work directory (on the disk PostgreSQL writes to, unless /tmp is elsewhere), or in a
# fresh directory under --log-dir (a deployment keeps it on another disk than PostgreSQL's data: README).
log=$work/log
if [ -n "$log_dir" ]; then
  mkdir -p "$log_dir"
  log=$(mktemp -d "$log_dir/crm-http-bench-log.XXXXXX")
  bench_dirs+=("$log")
fi
serve_config "$work/serve.toml" "$dsn" "$writers" "$io_threads" "$log"
"$exe" --log-level warn serve --config "$work/serve.toml" >"$work/serve.out" 2>"$work/serve.log" &
serve_pid=$!
bench_pids+=("$serve_pid")
serve_port
echo "crm-ingest serve on 127.0.0.1:$port (io_threads=$io_threads writers=$writers, local log $log), PostgreSQL $dsn" >&2

json_field() {  # json_field FILE key -> the number after "key": (first match)
  grep -o "\"$2\":[0-9.]*" "$1" | head -n1 | cut -d: -f2
}
latency_field() { grep -o "\"latency_ms\":{[^}]*}" "$1" | grep -o "\"$2\":[0-9.]*" | cut -d: -f2; }

# Rows of one step: its ids all start with the step's seed (see bench/http_load/main.cc).
stored_rows() {  # stored_rows MODE SEED
  local s; s=$(printf '%08x' "$2")
  if [ "$1" = events ]; then
    psql "$dsn" -qAtc "SELECT (SELECT count(*) FROM communications WHERE provider_message_id LIKE 'm-$s-%')
                            + (SELECT count(*) FROM customer_touchpoints WHERE message_id LIKE 't-$s-%')"
  else
    psql "$dsn" -qAtc "SELECT count(*) FROM communications WHERE provider_message_id LIKE 'SM$s%'"
  fi
}

missing_ids() {  # missing_ids ACK_LOG -> acknowledged ids not in the tables
  tr ' ' '\n' <"$1" | sed '/^$/d' >"$1.ids"
  psql "$dsn" -qAt \
    -c "CREATE TEMP TABLE acked (id text)" \
    -c "\\copy acked FROM '$1.ids'" \
    -c "SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM communications c WHERE c.provider_message_id = a.id)
                                       AND NOT EXISTS (SELECT 1 FROM customer_touchpoints t WHERE t.message_id = a.id)"
}

proc_cpu_s() {  # CPU seconds (user + system) a process has used so far
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
metric() {  # metric NAME -> its value on serve's /metrics (0 when absent)
  curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { v = $2 + 0 } END { printf "%.6f", v + 0 }'
}
# delay_buckets: serve's histogram of the analytics stage's delay (commit of a batch to its application to the
# attribution and A/B tables) as "le count" lines, cumulative since serve started.
delay_buckets() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^crm_ingest_analytics_delay_seconds_bucket/ { match($0, /le="[^"]*"/); print substr($0, RSTART + 4, RLENGTH - 5), $2 }'
}
# delay_p99 BEFORE AFTER: the bucket bound under which 99 % of the step's batches were applied, and their number.
delay_p99() {
  awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; le[++n] = $1; c[n] = d }
       END { total = c[n]; if (total <= 0) { print "- 0"; exit }
             for (i = 1; i <= n; ++i) if (c[i] >= 0.99 * total) { print le[i], total; exit } }' \
    <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}
timer=(); [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%U %S" -o)

rows=() verdict_events=0 verdict_twilio=0
# Fresh ids on every run of the script, even against an old database; --seed N repeats a run's loads exactly (the
# same leads, times and templates: the analytics work depends on them) — into a fresh database only.
[ -n "$seed" ] || seed=$(( $(date +%s) % 100000 * 100 ))
step() {  # step MODE RATE
  local mode=$1 rate=$2 out ack started acked stored prev waited t0 t1 drain_s lost extra cpu0 cpu1 srv_cores load_cores
  seed=$((seed + 1))
  out=$work/$mode-$rate.json ack=$work/$mode-$rate.acks
  echo "== $mode at $rate requests/s for $duration s (seed $seed)" >&2
  local gc0 fs0 fss0 gc1 fs1 fss1 per_group fsync_ms
  gc0=$(metric crm_ingest_log_group_commits_total) fs0=$(metric crm_ingest_log_fsyncs_total)
  fss0=$(metric crm_ingest_log_fsync_seconds_total)
  local delays0; delays0=$(delay_buckets)
  cpu0=$(proc_cpu_s "$serve_pid")
  t0=$(date +%s.%N)
  ${timer[@]+"${timer[@]}" "$work/$mode-$rate.time"} "$load" --url "http://127.0.0.1:$port" --mode "$mode" --rate "$rate" --duration "$duration" \
    --connections "$connections" --threads "$load_threads" --seed "$seed" --timeout 10 --drain-timeout 15 \
    --ack-log "$ack" >"$out"
  cat "$out" >&2
  t1=$(date +%s.%N)
  cpu1=$(proc_cpu_s "$serve_pid")
  srv_cores=$(awk -v c0="$cpu0" -v c1="$cpu1" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (c1-c0)/(b-a)}')
  load_cores=-
  if [ -s "$work/$mode-$rate.time" ]; then
    load_cores=$(awk -v a="$t0" -v b="$t1" '{printf "%.2f", ($1+$2)/(b-a)}' "$work/$mode-$rate.time")
  fi
  acked=$(json_field "$out" events_acked)
  # Wait for the drainer. Every acknowledged event is in the local log by now, so the drain is over once the
  # log's backlog gauge (published after every batch) reads 0; that poll costs serve a /metrics page. Counting the
  # step's rows costs PostgreSQL a scan of both tables (~0.3 s of a core per poll at 1M rows), which on a 2-core
  # box slowed the very drain it timed: the rows are counted once the gauge says so, and again every second,
  # until every acknowledged event is stored or the count stops moving for 20 s.
  stored=0 prev=-1
  started=$(date +%s)
  while [ $(( $(date +%s) - started )) -lt "$drain_wait" ] &&
        ! awk -v b="$(metric crm_ingest_log_backlog_bytes)" 'BEGIN{exit !(b == 0)}'; do
    sleep 0.1
  done
  local drained; drained=$(date +%s.%N)
  waited=$(date +%s)
  while :; do
    stored=$(stored_rows "$mode" "$seed")
    [ "$stored" -ge "$acked" ] && break
    # A gauge read before the last batches' completions were published: the end of the drain is the count's.
    drained=""
    if [ "$stored" != "$prev" ]; then prev=$stored waited=$(date +%s); fi
    if [ $(( $(date +%s) - waited )) -ge 20 ] || [ $(( $(date +%s) - started )) -ge "$drain_wait" ]; then
      echo "   the drainer stopped short: $stored of $acked acknowledged events stored" >&2
      break
    fi
    sleep 1
  done
  # The drain's end: its time after the load, and the rows stored per second from the start of the step to it
  # (not to the end of the analytics wait below).
  local db_rate
  [ -n "$drained" ] || drained=$(date +%s.%N)
  drain_s=$(awk -v a="$t1" -v b="$drained" 'BEGIN{printf "%.1f", b-a}')
  db_rate=$(awk -v s="$stored" -v a="$t0" -v b="$drained" 'BEGIN{printf "%.0f", s/(b-a)}')
  # The drainer publishes the log's counters after each batch: by now they cover the whole step.
  gc1=$(metric crm_ingest_log_group_commits_total) fs1=$(metric crm_ingest_log_fsyncs_total)
  fss1=$(metric crm_ingest_log_fsync_seconds_total)
  per_group=$(awk -v n="$(json_field "$out" sent)" -v a="$gc0" -v b="$gc1" 'BEGIN{printf "%.1f", (b > a ? n/(b-a) : 0)}')
  fsync_ms=$(awk -v a="$fs0" -v b="$fs1" -v x="$fss0" -v y="$fss1" 'BEGIN{printf "%.2f", (b > a ? 1000*(y-x)/(b-a) : 0)}')
  if [ "$verify_ids" = 1 ]; then
    lost=$(missing_ids "$ack")
  else
    lost=$(( acked > stored ? acked - stored : 0 ))
  fi
  extra=$(( stored > acked ? stored - acked : 0 ))  # stored but not acknowledged (timed out): harmless
  local non2xx errors
  non2xx=$(grep -o '"non_2xx":{[^}]*}' "$out" | cut -d: -f2- | tr -d '{}"')
  errors=$(grep -o '"errors":{[^}]*}' "$out" | grep -o '[0-9][0-9]*' | awk '{s+=$1} END{print s+0}')
  local p99 ok_rps
  p99=$(latency_field "$out" p99) ok_rps=$(json_field "$out" achieved_rps)
  # The highest offered rate sustained (>= 98% of it acknowledged per second) with p99 <= 50 ms, nothing
  # lost, refused or failed.
  if awk -v p="$p99" -v got="$ok_rps" -v want="$rate" 'BEGIN{exit !(p <= 50 && got >= 0.98 * want)}' &&
     [ "$lost" = 0 ] && [ -z "$non2xx" ] && [ "$errors" = 0 ]; then
    if [ "$mode" = events ]; then
      verdict_events=$(awk -v a="$verdict_events" -v b="$rate" -v n="$(json_field "$out" events_per_request)" \
        'BEGIN{printf "%.0f", (b * n > a ? b * n : a)}')
    else
      verdict_twilio=$(awk -v a="$verdict_twilio" -v b="$rate" 'BEGIN{printf "%.0f", (b > a ? b : a)}')
    fi
  fi
  rows+=("$(printf '%-6s %8s %9s %9.0f %10.0f %8s %6s %8s %8s %8s %7s %9s %6s %5s %7s %7s %7s %8s' \
    "$mode" "$rate" "$(json_field "$out" ok)" "$(json_field "$out" achieved_rps)" \
    "$(json_field "$out" achieved_events_per_s)" "$(latency_field "$out" p50)" "$(latency_field "$out" p99)" \
    "$(latency_field "$out" max)" "${non2xx:-0}" "$errors" "$drain_s" \
    "$db_rate" "$lost" "$extra" \
    "$srv_cores" "$load_cores" "$per_group" "$fsync_ms")")
  local in_use; in_use=$(metric crm_ingest_writer_writers_in_use | cut -d. -f1)
  echo "   acknowledged $acked events, stored $stored, lost $lost, drained ${drain_s}s after the load;" \
    "batches split among $in_use of the $writers writers at the drain's end (postgres.adaptive_writers)" >&2
  # The attribution and A/B tables: how long after its commit each of the step's batches was applied (the stage
  # is given 30 s to finish the step's backlog).
  local current="" a0
  a0=$(date +%s.%N)
  for _ in $(seq 150); do
    if [ "$(metric crm_ingest_analytics_pending_batches)" = 0.000000 ]; then
      current=$(awk -v a="$a0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
      break
    fi
    sleep 0.2
  done
  local p99_delay applied
  read -r p99_delay applied < <(delay_p99 "$delays0" "$(delay_buckets)")
  if [ "$applied" = 0 ]; then
    echo "   analytics: no batch of this step had touchpoints to apply" >&2
  else
    local caught_up="tables still behind 30 s after the drain (the next step runs beside the stage)"
    [ -n "$current" ] && caught_up="tables current ${current}s after the drain"
    echo "   analytics: 99 % of the step's $applied batches with touchpoints applied within ${p99_delay} s of their commit (crm_ingest_analytics_delay_seconds); $caught_up" >&2
  fi
  if [ "$mode" = events ]; then
    last_events_seed=$seed
    last_events_db_rate=$db_rate
    last_events_acked_rate=$(json_field "$out" achieved_events_per_s)
  fi
}

# The database's ceiling on this box for the same rows: a plain `psql \copy` (CSV) of the last events
# step's stored rows into an identical empty schema, timed in the same run.
copy_reference() {
  local s copy_dsn t0 t1 n
  s=$(printf '%08x' "$last_events_seed")
  copy_dsn=$(db bench_http_copy)
  psql "$dsn" -qc "\\copy (SELECT $comm_cols FROM communications WHERE provider_message_id LIKE 'm-$s-%') TO '$work/comm.csv' CSV" \
              -c "\\copy (SELECT $touch_cols FROM customer_touchpoints WHERE message_id LIKE 't-$s-%') TO '$work/touch.csv' CSV"
  n=$(( $(wc -l <"$work/comm.csv") + $(wc -l <"$work/touch.csv") ))
  recreate bench_http_copy
  t0=$(date +%s.%N)
  psql "$copy_dsn" -qc "\\copy communications ($comm_cols) FROM '$work/comm.csv' CSV" \
                   -c "\\copy customer_touchpoints ($touch_cols) FROM '$work/touch.csv' CSV"
  t1=$(date +%s.%N)
  psql "$admin_dsn" -qAtc "DROP DATABASE IF EXISTS bench_http_copy WITH (FORCE)" >/dev/null
  copy_rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
  copy_rows=$n
}

last_events_seed="" last_events_db_rate=0 last_events_acked_rate=0 copy_rate="" copy_rows=0
IFS=, read -r -a ev_rates <<<"$events_rates"
IFS=, read -r -a tw_rates <<<"$twilio_rates"
for r in "${ev_rates[@]}"; do [ -n "$r" ] && step events "$r"; done
for r in "${tw_rates[@]}"; do [ -n "$r" ] && step twilio "$r"; done
[ -n "$last_events_seed" ] && copy_reference

echo
echo "crm-ingest serve: io_threads=$io_threads writers=$writers; http_load: $connections connections, $load_threads thread(s), ${duration}s per step; $(nproc) CPUs shared"
printf '%-6s %8s %9s %9s %10s %8s %6s %8s %8s %8s %7s %9s %6s %5s %7s %7s %7s %8s\n' mode "offer/s" ok "req/s" "events/s" \
  "p50ms" "p99ms" "max ms" "non-2xx" errors "drain s" "db ev/s" loss extra "srv cpu" "gen cpu" "req/gc" "fsync ms"
printf '%s\n' "${rows[@]}"
echo "(req/s, events/s: 2xx per second at the HTTP edge, i.e. fsynced in the local log; latency from the intended"
echo " send time; drain s: from the end of the load until PostgreSQL held every acknowledged event; db ev/s: rows"
echo " stored per second from the start of the step to the end of the drain; loss: acknowledged but not stored;"
echo " srv cpu / gen cpu: cores used by crm-ingest serve (PostgreSQL not included) / by http_load during the load;"
echo " req/gc: requests per group commit of the local log (one fdatasync each); fsync ms: mean fdatasync time)"
if [ -n "$copy_rate" ]; then
  echo "database ceiling: psql \\copy of the last events step's $copy_rows rows into an empty schema: $copy_rate rows/s;"
  echo "  that step's db ev/s over it: $(awk -v a="$last_events_db_rate" -v b="$copy_rate" 'BEGIN{printf "%.2f", a/b}')" \
       "(sustained drain into PostgreSQL, while the same box also ran the HTTP edge and the load generator)"
  # db ev/s counts the load's time too, so it cannot pass the rate the load acknowledged, whatever the drain does.
  echo "  at most $(awk -v a="$last_events_acked_rate" -v b="$copy_rate" 'BEGIN{printf "%.2f", a/b}') by this measure" \
       "(the step's acknowledged events/s over the same \\copy: a drain of 0 s)"
fi
verdict() { if [ "$2" -ge "$3" ]; then echo "$1: $2 (target $3) PASS"; else echo "$1: $2 (target $3) FAIL"; fi; }
echo "highest offered rate sustained (>= 98% acknowledged) with p99 <= 50 ms, no loss, no error, no refusal:"
[ ${#ev_rates[@]} -gt 0 ] && verdict "  events (a), events/s   " "$verdict_events" 100000
[ ${#tw_rates[@]} -gt 0 ] && verdict "  twilio (b), requests/s " "$verdict_twilio" 20000
true
