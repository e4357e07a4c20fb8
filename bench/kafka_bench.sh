#!/usr/bin/env bash
# Kafka benchmark: in one run, the same N generated events (a) imported from the NDJSON file with
# `crm-ingest import` (the reference, as in bench/import_bench.sh) and (b) produced to a topic of the
# mock Kafka cluster (crm-kafka-mock, 3 brokers) and consumed into PostgreSQL by `crm-ingest consume`
# with one and with two consumer processes in one group. Each run writes into a fresh database.
#
# Each Kafka run gets its own topic; its consumers join the group first (the first join of a new group
# takes ~3 s in the mock), then the events are produced, and the rate is measured from the start of
# producing to the commit time of the last batch (ingest_batches.committed_at): produce, consume,
# normalize and write, end to end (producing alone runs at >100k messages/s and overlaps).
# A third run fills its topic first and starts one consumer afterwards, timed from the moment it holds every
# partition (its log line) to its last commit: the file import's terms (the file exists before the import
# starts), without the producer and the brokers' intake taking CPU from the run on the same box.
# The mock keeps only about the last 5 MB of each partition (older data is dropped, as retention would):
# the default 16 partitions hold ~250k generated events; more events need more --partitions.
#
#   bench/kafka_bench.sh [--events N] [--partitions P] [--batch-rows R] [--build DIR] [--dsn ADMIN_DSN]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
events=200000 partitions=16 batch_rows=20000 build=$root/build admin_dsn=""
bench_options --events --partitions --batch-rows --build --dsn=admin_dsn -- "$@"
bench_tools ingest/crm-ingest ingest/crm-kafka-mock bench/gen_events bench/kafka_produce
mock=$build/ingest/crm-kafka-mock
produce=$build/bench/kafka_produce
bench_start kafka-bench

echo "generating $events events..." >&2
"$gen" --count "$events" --seed 42 --duplicates 0.01 --invalid 0 > "$work/events.ndjson" 2>"$work/gen.txt"
lines=$(wc -l < "$work/events.ndjson")

# (a) the file import reference, with one and with two writers
declare -A import_s import_rows
for w in 1 2; do
  recreate bench_import
  t0=$(now)
  "$exe" --log-level warn import --no-progress --writers "$w" --batch-rows "$batch_rows" --summary json \
    --dsn "$(db bench_import)" "$work/events.ndjson" > "$work/import.json"
  t1=$(now)
  import_s[$w]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  import_rows[$w]=$(psql "$(db bench_import)" -qAtc "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)")
done

# (b) the mock cluster and the topic
mkfifo "$work/mock.in"
"$mock" --brokers 3 < "$work/mock.in" > "$work/mock.out" &
bench_pids+=($!)
exec 3> "$work/mock.in"  # keeps the command pipe open
for _ in $(seq 100); do grep -q bootstrap "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
brokers=$(sed -n 's/^bootstrap.servers=//p' "$work/mock.out")

kafka_run() {  # kafka_run NAME CONSUMERS [filled] -> "rate seconds rows"
  local name=$1 n=$2 filled=${3:-} group="bench-$1" topic="events_$1" i cps=()
  recreate "$name"
  local replies; replies=$(grep -c . "$work/mock.out" || true)
  echo "topic $topic $partitions" >&3
  if [ -n "$filled" ]; then
    # The mock answers each command with one line once it is done: the topic exists before the producer starts.
    for _ in $(seq 100); do [ "$(grep -c . "$work/mock.out" || true)" -gt "$replies" ] && break; sleep 0.1; done
    "$produce" --brokers "$brokers" --topic "$topic" --key-field lead_id "$work/events.ndjson" > "$work/$name.produce.txt"
  fi
  printf '[postgres]\ndsn = "%s"\nbatch_rows = %s\nlinger_ms = 200\n\n[kafka]\nbrokers = "%s"\ngroup = "%s"\ntopics = "%s=canonical"\n' \
    "$(db "$name")" "$batch_rows" "$brokers" "$group" "$topic" > "$work/$name.toml"
  for i in $(seq "$n"); do
    "$exe" consume --config "$work/$name.toml" > "$work/$name.$i.out" 2> "$work/$name.$i.err" &
    cps+=($!); bench_pids+=($!)
  done
  # Every member holds its share of the partitions before the events arrive.
  local want=$((partitions / n))
  for _ in $(seq 600); do
    local ready=0
    for i in $(seq "$n"); do
      tail -n 1 <(grep "partitions assigned\|partitions revoked" "$work/$name.$i.err") | grep -q "partitions=$want\$" && ready=$((ready + 1))
    done
    [ "$ready" = "$n" ] && break
    sleep 0.1
  done
  local t0; t0=$(now)
  if [ -n "$filled" ]; then  # from the (last) assignment's log line, UTC: "<ISO time> info Kafka partitions assigned..."
    t0=$(grep -h "partitions assigned" "$work/$name".*.err | awk '{print $1}' | sort | tail -n 1 |
         xargs -I{} date -u -d {} +%s.%N)
  else
    "$produce" --brokers "$brokers" --topic "$topic" --key-field lead_id "$work/events.ndjson" > "$work/$name.produce.txt"
  fi
  local done_sql="SELECT coalesce(sum(communications_in + touchpoints_in + rejected), 0) FROM ingest_batches"
  # The run's end is read from the ledger below (its last commit time), not from when this loop sees it: a
  # poll every second loses no precision. Each poll is a psql process and a new server backend; at 10 a second
  # they took ~10 % of the 2-core box from the run they timed (consume 1M events: 22.5-22.8 s vs 19.8-20.9 s).
  # A deadline, so that a run whose messages the mock dropped (it keeps ~5 MB per partition: a filled topic of
  # more events than --partitions hold) ends with a short count instead of waiting for ever.
  local deadline=$((SECONDS + 120 + lines / 2000))
  until [ "$(psql "$(db "$name")" -qAtc "$done_sql")" -ge "$lines" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "kafka_bench: $name: not every event arrived in time" >&2; break; fi
    sleep 1
  done
  for p in "${cps[@]}"; do kill -TERM "$p"; wait "$p" || true; done
  local last; last=$(psql "$(db "$name")" -qAtc "SELECT extract(epoch FROM max(committed_at)) FROM ingest_batches")
  local rows; rows=$(psql "$(db "$name")" -qAtc "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)")
  awk -v a="$t0" -v b="$last" -v n="$lines" -v rows="$rows" 'BEGIN{printf "%.0f %.2f %d\n", n/(b-a), b-a, rows}'
}
read -r r1 s1 rows1 < <(kafka_run bench_kafka1 1)
read -r r2 s2 rows2 < <(kafka_run bench_kafka2 2)
read -r r3 s3 rows3 < <(kafka_run bench_kafka3 1 filled)

echo "events: $lines records ($(cat "$work/gen.txt" | tr '\n' ' '))"
echo "kafka_produce (1-writer run): $(cat "$work/bench_kafka1.produce.txt")"
for w in 1 2; do
  label="file, $w writer"; [ "$w" = 1 ] && label="$label " || label="${label}s"
  awk -v n="$lines" -v ti="${import_s[$w]}" -v rows="${import_rows[$w]}" -v label="$label" 'BEGIN{printf "crm-ingest import (%s)  : %d records in %.2f s = %.0f records/s, %d rows stored\n", label, n, ti, n/ti, rows}'
done
printf 'crm-ingest consume (Kafka, 1 process) : %d records in %.2f s = %s records/s, %d rows stored\n' "$lines" "$s1" "$r1" "$rows1"
printf 'crm-ingest consume (Kafka, 2 processes): %d records in %.2f s = %s records/s, %d rows stored\n' "$lines" "$s2" "$r2" "$rows2"
printf 'crm-ingest consume (Kafka, 1 process, topic filled first): %d records in %.2f s = %s records/s, %d rows stored\n' "$lines" "$s3" "$r3" "$rows3"
