#!/usr/bin/env bash
# Import benchmark: in one run, times `crm-ingest import` of N generated events (staging COPY, in-batch
# de-duplication, ON CONFLICT insert, metrics, ledger) and a plain `psql \copy` of the very rows it
# stored, as CSV, into an identical empty schema, and the box's ceiling: two concurrent binary COPY sessions
# of the same rows (one half each). Prints the rates and the ratios (import / \copy, import / 2 x binary COPY),
# the median of --repeat alternating rounds, because this machine is shared and noisy.
#
#   bench/import_bench.sh [--events N] [--repeat K] [--writers W] [--build DIR] [--dsn ADMIN_DSN] [--order time|random]
#                         [--import-args "..."] [--gen-args "..."]
# --gen-args passes options to bench/gen_events, e.g. "--touchpoints 0" for communications only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
events=1000000 repeat=3 writers=2 build=$root/build admin_dsn="" order=time import_args="" gen_args=""
bench_options --events --repeat --writers --build --dsn=admin_dsn --order --import-args --gen-args -- "$@"
bench_tools ingest/crm-ingest bench/gen_events
bench_start import-bench

echo "generating $events events..." >&2
# shellcheck disable=SC2086
"$gen" --count "$events" --seed 42 --duplicates 0.01 --invalid 0 --order "$order" $gen_args > "$work/events.ndjson" 2>"$work/gen.txt"
cat "$work/gen.txt" >&2
bytes=$(stat -c %s "$work/events.ndjson")


imports=() copies=() bins=() r_copy=() r_bin=()
for round in $(seq 1 "$repeat"); do
  recreate bench_import
  t0=$(now)
  # shellcheck disable=SC2086
  "$exe" --log-level warn import --no-progress --writers "$writers" --summary json $import_args --dsn "$(db bench_import)" \
    "$work/events.ndjson" > "$work/import.json"
  t1=$(now)
  rows=$(psql "$(db bench_import)" -qAtc "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)")
  if [ "$round" = 1 ]; then
    psql "$(db bench_import)" -qc "\\copy (SELECT $comm_cols FROM communications) TO '$work/comm.csv' CSV"
    psql "$(db bench_import)" -qc "\\copy (SELECT $touch_cols FROM customer_touchpoints) TO '$work/touch.csv' CSV"
    ceiling_export "$(db bench_import)" "$work"
  fi
  recreate bench_copy
  t2=$(now)
  psql "$(db bench_copy)" -qc "\\copy communications ($comm_cols) FROM '$work/comm.csv' CSV" \
                          -c "\\copy customer_touchpoints ($touch_cols) FROM '$work/touch.csv' CSV"
  t3=$(now)
  recreate bench_copy
  tb=$(ceiling_copy_binary2 "$(db bench_copy)" "$work")
  ti=$(awk -v a="$t0" -v b="$t1" "BEGIN{print b-a}"); tc=$(awk -v a="$t2" -v b="$t3" "BEGIN{print b-a}")
  imports+=("$ti"); copies+=("$tc"); bins+=("$tb")
  r_copy+=("$(awk -v a="$ti" -v b="$tc" 'BEGIN{printf "%.3f", b/a}')"); r_bin+=("$(awk -v a="$ti" -v b="$tb" 'BEGIN{printf "%.3f", b/a}')")
  printf 'round %d: import %.2f s (%s), psql \\copy %.2f s, 2 x binary COPY %.2f s: import/\\copy %.2f, import/2xbinary %.2f, %d rows stored\n' \
    "$round" "$ti" "$(cat "$work/import.json")" "$tc" "$tb" "${r_copy[-1]}" "${r_bin[-1]}" "$rows" >&2
done
mi=$(median "${imports[@]}"); mc=$(median "${copies[@]}"); mb=$(median "${bins[@]}")
awk -v n="$events" -v rows="$rows" -v bytes="$bytes" -v ti="$mi" -v tc="$mc" -v tb="$mb" -v w="$writers" \
    -v rc="$(median "${r_copy[@]}")" -v rb="$(median "${r_bin[@]}")" -v args="$import_args" 'BEGIN {
  printf "crm-ingest import : %d records (%.0f MB NDJSON) in %.2f s = %.0f records/s (%d writers%s, median)\n", n, bytes/1e6, ti, n/ti, w, args == "" ? "" : ", " args
  printf "psql \\copy (CSV)  : %d rows in %.2f s = %.0f rows/s (median)\n", rows, tc, rows/tc
  printf "2 x binary COPY   : %d rows in %.2f s = %.0f rows/s (median)\n", rows, tb, rows/tb
  printf "ratio import/copy : %.2f (rows stored per second, import over \\copy; median of the rounds'"'"' ratios)\n", rc
  printf "ratio import/2xbin: %.2f (import over the box'"'"'s ceiling)\n", rb
}'
