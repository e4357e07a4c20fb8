#!/usr/bin/env bash
# CCX13 sizing harness: how many events one node takes, and how many nodes a workload needs. One command:
#
#   bench/sizing.sh [--rates 5000,10000,20000,40000,60000] [--duration S] [--p99-target MS] [--out DIR]
#                   [--dsn ADMIN_DSN | --patroni DIR] [--db NAME] [--cpus N] [--memory SIZE]
#                   [--mix canonical=2,sendgrid=3,twilio=4,segment=1] [--canonical-batch 50] [--sendgrid-batch 20]
#                   [--duplicates 0.05] [--invalid 0.01] [--connections N] [--io-threads N] [--writers N]
#                   [--daily-volume 100M] [--retention-months 13] [--targets 10M,100M,1B] [--headroom 0.7]
#                   [--peak-factor 3] [--node-cores 2] [--node-disk-gb 80] [--drain-wait S] [--build DIR] [--keep]
#
# Starts a private PostgreSQL (deploy/local-postgres.sh; or uses --dsn, or the HAProxy primary endpoint of
# the local Patroni cluster with --patroni DIR: deploy/cluster/cluster.sh start DIR), migrates a fresh
# database, starts `crm-ingest serve` and drives it with bench/http_load --mode mix (open loop: latency
# from each request's intended send time) at each offered rate of --rates (events/s; the request rate is
# derived from the mix's mean events per request). The mix: canonical NDJSON batches, SendGrid event
# arrays, single Twilio status callbacks and Segment calls (page views with UTM + gclid, A/B exposures,
# conversions), with --duplicates of the requests repeated byte for byte and --invalid of the canonical
# and SendGrid events invalid (they must land in rejected_events).
#
# Per rate: achieved events/s, p50/p95/p99/max acknowledgement latency, events lost (every acknowledged
# id, valid or invalid, looked up in PostgreSQL once the log is drained: must be 0), CPU of crm-ingest and
# of PostgreSQL (from /proc, postmaster and its children), crm-ingest RSS, disk bytes per stored event
# (tables + indexes + TOAST, and WAL), the drain lag. After the steps: a plain `psql \copy` of the
# saturation step's rows into an empty schema (the database's ceiling, same run). The saturation point is
# the highest offered rate whose p99 <= --p99-target with nothing lost, refused or failed and >= 98% of
# the offered rate acknowledged; "sustained" also asks that the drainer caught up within
# max(2 s, duration/4) after the load (the sizing uses the sustained one).
#
# Writes DIR/report.md, DIR/report.json and DIR/latency.png (gnuplot), default build/sizing-report.
# --cpus N pins crm-ingest and (when this script started it) PostgreSQL to CPUs 0..N-1 with taskset, and
# http_load to the other CPUs when there are any; --memory SIZE (e.g. 2G) puts them in a memory cgroup
# (v1 or v2) limited to SIZE: together they emulate a node smaller than this machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/bench/sizing
export PGOPTIONS="-c client_min_messages=warning"
build=$root/build rates=5000,10000,20000,40000,60000 duration=10 p99_target=50 out="" admin_dsn="" patroni_dir=""
db=bench_sizing cpus="" memory="" mix="canonical=2,sendgrid=3,twilio=4,segment=1" canonical_batch=50
sendgrid_batch=20 duplicates=0.05 invalid=0.01 connections=256 io_threads=2 writers=2 daily_volume=100M
retention_months=13 targets=10M,100M,1B headroom=0.7 peak_factor=3 node_cores=2 node_disk_gb=80 drain_wait=120 keep=0
command_line="bench/sizing.sh $*"
source "$root/bench/lib.sh"
bench_options --rates --duration --p99-target --out --dsn=admin_dsn --patroni=patroni_dir --db --cpus --memory --mix \
  --canonical-batch --sendgrid-batch --duplicates --invalid --connections --io-threads --writers --daily-volume \
  --retention-months --targets --headroom --peak-factor --node-cores --node-disk-gb --drain-wait --build --keep! -- "$@"
[ -n "$out" ] || out=$build/sizing-report
bench_tools ingest/crm-ingest bench/http_load
load=$build/bench/http_load
for tool in psql jq gnuplot curl taskset; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run deploy/install-deps.sh" >&2; exit 1; }
done
[ -n "$admin_dsn" ] && [ -n "$patroni_dir" ] && { echo "--dsn and --patroni exclude each other" >&2; exit 2; }
source "$here/lib.sh"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/crm-sizing.XXXXXX)
chmod 755 "$work"
serve_pid="" pgdir="" cgroup_dir="" started_cluster=0
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$serve_pid" 2>/dev/null || true
  fi
  if [ -n "$pgdir" ]; then bash "$root/deploy/local-postgres.sh" stop "$pgdir" >/dev/null 2>&1 || true; fi
  if [ "$started_cluster" = 1 ]; then bash "$root/deploy/cluster/cluster.sh" stop "$patroni_dir" >/dev/null 2>&1 || true; fi
  if [ -n "$cgroup_dir" ]; then  # empty once the last process of it has been reaped
    for _ in $(seq 1 50); do rmdir "$cgroup_dir" 2>/dev/null && break; sleep 0.1; done
  fi
  if [ "$keep" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 130" INT TERM

# --- the database -------------------------------------------------------------------------------------
layout=single
if [ -n "$patroni_dir" ]; then
  layout=patroni
  # `cluster.sh start` reuses a running cluster; one it had to start ("cluster up") is stopped at the end.
  cluster_out=$(bash "$root/deploy/cluster/cluster.sh" start "$patroni_dir" 2>&1) || { echo "$cluster_out" >&2; exit 1; }
  grep -v '^[A-Z_]*=' <<<"$cluster_out" >&2 || true
  grep -q 'cluster up' <<<"$cluster_out" && started_cluster=1
  eval "$(grep '^[A-Z_]*=' <<<"$cluster_out")"
  admin_dsn=$ADMIN_DSN
elif [ -z "$admin_dsn" ]; then
  pgdir=$work/pg
  admin_dsn=$(bash "$root/deploy/local-postgres.sh" start "$pgdir")
fi
dsn=$(dsn_with_db "$admin_dsn" "$db")
copy_dsn=$(dsn_with_db "$admin_dsn" "${db}_copy")
psql "$admin_dsn" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
"$exe" --log-level warn migrate --dsn "$dsn" >/dev/null
pg_version=$(psql "$dsn" -qAtc "SHOW server_version")
postmaster=$(postmaster_pid "$admin_dsn")  # empty when PostgreSQL is not on this machine

# --- caps: --cpus (taskset) and --memory (cgroup) ------------------------------------------------------
cpu_list="" load_cpu_list=""
if [ -n "$cpus" ]; then
  [ "$cpus" -ge 1 ] && [ "$cpus" -le "$(nproc)" ] || { echo "--cpus must be 1..$(nproc)" >&2; exit 2; }
  cpu_list="0-$((cpus - 1))"
  [ "$cpus" -lt "$(nproc)" ] && load_cpu_list="$cpus-$(($(nproc) - 1))"
  node_cores=$cpus
fi
if [ -n "$memory" ]; then cgroup_dir=$(make_memory_cgroup "$memory") || { echo "--memory: no writable memory cgroup here" >&2; exit 1; }; fi
pg_capped=no
if [ -n "$postmaster" ] && [ -n "$pgdir" ]; then  # only a PostgreSQL this script started is capped
  [ -n "$cpu_list" ] && pin_tree "$postmaster" "$cpu_list"
  [ -n "$cgroup_dir" ] && cgroup_add_tree "$cgroup_dir" "$postmaster"
  [ -n "$cpu_list$cgroup_dir" ] && pg_capped=yes
fi

# --- crm-ingest serve ----------------------------------------------------------------------------------
serve_config "$work/serve.toml" "$dsn" "$writers" "$io_threads" "$work/log"
serve_cmd=("$exe" --log-level warn serve --config "$work/serve.toml")
[ -n "$cpu_list" ] && serve_cmd=(taskset -c "$cpu_list" "${serve_cmd[@]}")
: >"$work/serve.out"  # exists before the child's redirection runs: the port loop reads it at once
"${serve_cmd[@]}" >>"$work/serve.out" 2>"$work/serve.log" &
serve_pid=$!
[ -n "$cgroup_dir" ] && echo "$serve_pid" >"$cgroup_dir/cgroup.procs"
serve_port
load_cmd=("$load")
[ -n "$load_cpu_list" ] && load_cmd=(taskset -c "$load_cpu_list" "$load")
echo "sizing: crm-ingest serve on 127.0.0.1:$port (io_threads=$io_threads writers=$writers, cpus=${cpu_list:-all}," \
     "memory=${memory:-unlimited}), PostgreSQL $pg_version ($layout) $(redact "$dsn")" >&2

# Mean events per request of the mix: the request rate of an offered event rate.
events_per_request=$(mix_events_per_request "$mix" "$canonical_batch" "$sendgrid_batch")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the steps -----------------------------------------------------------------------------------------
seed=$(( $(date +%s) % 100000 * 100 ))
: >"$work/steps.jsonl"
IFS=, read -r -a rate_list <<<"$rates"
for rate in "${rate_list[@]}"; do
  [ -n "$rate" ] || continue
  seed=$((seed + 1))
  run_step "$rate" "$seed" >>"$work/steps.jsonl"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the psql \copy ceiling, the report ----------------------------------------------------------------
copy_json=$(copy_ceiling "$work/steps.jsonl")
jq -n --slurpfile steps "$work/steps.jsonl" --argjson copy "$copy_json" \
  --arg command "$command_line" --arg generated_at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg layout "$layout" --arg pg_version "$pg_version" --arg cpu_model "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)" \
  --argjson nproc "$(nproc)" --argjson mem_kb "$(awk '/^MemTotal/ {print $2}' /proc/meminfo)" \
  --arg load_before "$load_before" --arg load_after "$load_after" --arg cpus "${cpu_list:-all}" \
  --arg memory "${memory:-unlimited}" --arg pg_capped "$pg_capped" --arg pg_local "$([ -n "$postmaster" ] && echo yes || echo no)" \
  --arg mix "$mix" --argjson canonical_batch "$canonical_batch" --argjson sendgrid_batch "$sendgrid_batch" \
  --argjson duplicates "$duplicates" --argjson invalid "$invalid" --argjson events_per_request "$events_per_request" \
  --argjson duration "$duration" --argjson p99_target "$p99_target" --argjson connections "$connections" \
  --argjson io_threads "$io_threads" --argjson writers "$writers" \
  --argjson daily_volume "$(parse_count "$daily_volume")" --argjson retention_months "$retention_months" \
  --argjson targets "[$(IFS=,; for t in $targets; do printf '%s,' "$(parse_count "$t")"; done | sed 's/,$//')]" \
  --argjson headroom "$headroom" --argjson peak_factor "$peak_factor" --argjson node_cores "$node_cores" --argjson node_disk_gb "$node_disk_gb" \
  -f "$here/report.jq" >"$out/report.json"
jq -r '.steps[] | [.offered_events_per_s, .latency_ms.p50, .latency_ms.p95, .latency_ms.p99, .latency_ms.max] | @tsv' \
  "$out/report.json" >"$work/latency.dat"
gnuplot -e "datafile='$work/latency.dat'; outfile='$out/latency.png'; target=$p99_target" "$here/latency.gp"
jq -r -f "$here/report_md.jq" "$out/report.json" >"$out/report.md"
bash "$here/check_report.sh" "$out" >&2
echo "sizing: report in $out/report.md ($out/report.json, $out/latency.png)" >&2
jq -r '.saturation | "saturation (sustained): \(.sustained.offered_events_per_s // 0) events/s, p99 \(.sustained.p99_ms // "-") ms; psql \\copy ratio \(.sustained.ratio_to_copy // "-")"' "$out/report.json"
