#!/usr/bin/env bash
# Attribution cost benchmark: in one run, times `crm-ingest import` of the same generated touchpoint-heavy
# file into fresh databases with the attribution/A-B maintenance on (default) and off (--no-attribution),
# alternating, and prints the median rates and their ratio (on / off). Also times the recompute that brings
# the "off" database up to date, and checks that it equals the "on" tables.
#
#   bench/attribution_bench.sh [--events N] [--touchpoints SHARE] [--repeat K] [--writers W] [--order time|random]
#                              [--conversions SHARE --exposures SHARE] [--build DIR] [--dsn ADMIN_DSN]
# Without --conversions, gen_events draws the six touch types alike (1/6 conversions, 1/6 exposures).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
events=300000 touchpoints=0.9 repeat=3 writers=2 order=time build=$root/build admin_dsn="" conversions="" exposures=""
bench_options --events --touchpoints --repeat --writers --order --conversions --exposures --build --dsn=admin_dsn -- "$@"
mix="${conversions:+ --conversions $conversions}${exposures:+ --exposures $exposures}"  # gen_events' touch type shares
bench_tools ingest/crm-ingest bench/gen_events
bench_start attribution-bench

echo "generating $events events ($touchpoints touchpoints, order $order)..." >&2
# shellcheck disable=SC2086
"$gen" --count "$events" --seed 42 --touchpoints "$touchpoints" --duplicates 0.01 --invalid 0 --order "$order" $mix \
  > "$work/events.ndjson" 2>"$work/gen.txt"
cat "$work/gen.txt" >&2

ons=() offs=()
for round in $(seq 1 "$repeat"); do
  for mode in on off; do
    recreate "bench_attr_$mode"
    flag=""; [ "$mode" = off ] && flag="--no-attribution"
    t0=$(now)
    # shellcheck disable=SC2086
    "$exe" --log-level warn import --no-progress --writers "$writers" --summary json $flag \
      --dsn "$(db "bench_attr_$mode")" "$work/events.ndjson" > "$work/import-$mode.json"
    t1=$(now)
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
    if [ "$mode" = on ]; then ons+=("$t"); else offs+=("$t"); fi
    printf 'round %d, attribution %-3s: %.2f s %s\n' "$round" "$mode" "$t" "$(cat "$work/import-$mode.json")" >&2
  done
done
credits=$(psql "$(db bench_attr_on)" -qAtc "SELECT count(*) FROM attribution_credits")
conversions=$(psql "$(db bench_attr_on)" -qAtc "SELECT count(*) FROM customer_touchpoints WHERE touch_type = 'conversion'")
t0=$(now)
"$exe" --log-level warn report attribution --recompute --dsn "$(db bench_attr_off)" >/dev/null 2>&1
t1=$(now)
recompute=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
same=$(psql "$(db bench_attr_on)" -qAtc "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, trim_scale(conversions), trim_scale(revenue) FROM campaign_attribution_daily) t")
same_off=$(psql "$(db bench_attr_off)" -qAtc "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, trim_scale(conversions), trim_scale(revenue) FROM campaign_attribution_daily) t")
mon=$(median "${ons[@]}"); moff=$(median "${offs[@]}")
awk -v n="$events" -v on="$mon" -v off="$moff" -v w="$writers" -v rc="$recompute" -v cr="$credits" -v cv="$conversions" 'BEGIN {
  printf "import, attribution on : %d records in %.2f s = %.0f records/s (%d writers, median)\n", n, on, n/on, w
  printf "import, attribution off: %d records in %.2f s = %.0f records/s (%d writers, median)\n", n, off, n/off, w
  printf "ratio on/off           : %.2f (import rate with maintenance over without)\n", off/on
  printf "recompute from scratch : %.2f s for %d conversions, %d credit rows\n", rc, cv, cr
}'
if [ "$same" = "$same_off" ]; then echo "daily aggregate: incremental (on) == recomputed (off)"; else echo "daily aggregate: MISMATCH"; exit 1; fi
