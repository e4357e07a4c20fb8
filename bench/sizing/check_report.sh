#!/usr/bin/env bash
# Checks that a bench/sizing.sh report is complete and self-consistent (no timing is judged):
#   bench/sizing/check_report.sh DIR [EXPECTED_STEPS]
# Exit 0 and "report consistent" when it is, else 1 with every failed check.
set -euo pipefail
dir=$1 expected=${2:-}
fail=0
bad() { echo "check_report: $*" >&2; fail=1; }
for f in report.json report.md latency.png; do [ -s "$dir/$f" ] || bad "$dir/$f missing or empty"; done
[ "$fail" = 0 ] || exit 1
[ "$(head -c 8 "$dir/latency.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || bad "latency.png is not a PNG"
j=$dir/report.json
[ -z "$expected" ] || [ "$(jq '.steps | length' "$j")" = "$expected" ] || bad "expected $expected steps, found $(jq '.steps | length' "$j")"
# Every check is a jq expression that must be true; its text is the message.
while IFS= read -r check; do
  [ -n "$check" ] || continue
  [ "$(jq "$check" "$j")" = true ] || bad "failed: $check"
done <<'CHECKS'
.steps | length >= 1
[.steps[] | .events_lost == 0] | all
[.steps[] | .events_acked > 0 and .requests_ok > 0 and .requests_ok <= .requests_scheduled] | all
[.steps[] | .latency_ms | .p50 <= .p95 and .p95 <= .p99 and .p99 <= .max] | all
[.steps[] | (.mix.kinds | map(.events_acked) | add) == .events_acked] | all
[.steps[] | .mix.duplicate_events_acked <= .events_acked and .mix.invalid_events_acked <= .events_acked] | all
[.steps[] | .ids.acked_valid_distinct > 0 and .stored_rows >= .ids.acked_valid_distinct - .ids.lost_valid] | all
[.steps[] | .ids.acked_invalid_distinct <= .mix.invalid_events_acked] | all
[.steps[] | .disk.table_bytes > 0 and .disk.wal_bytes > 0] | all
[.steps[] | .crm_ingest_rss_mb > 0 and .cpu.crm_ingest_cpu_us_per_event > 0] | all
.steps | map(.offered_events_per_s) | . == sort
(.saturation.acknowledged.offered_events_per_s // 0) == ([.steps[] | select(.passes) | .offered_events_per_s] | max // 0)
(.saturation.sustained.offered_events_per_s // 0) == ([.steps[] | select(.sustained) | .offered_events_per_s] | max // 0)
(.saturation.sustained.offered_events_per_s // 0) <= (.saturation.acknowledged.offered_events_per_s // 0)
[.steps[] | (.sustained | not) or .passes] | all
.copy.rows > 0 and .copy.rows_per_s > 0
.sizing.single_node.saturation_events_per_s == (.saturation.sustained.offered_events_per_s // 0)
.sizing.single_node.planned_events_per_s == (.sizing.single_node.saturation_events_per_s * .sizing.headroom | floor)
.sizing.single_node.planned_events_per_day == (.sizing.single_node.saturation_events_per_s * .sizing.headroom * 86400 | floor)
.sizing.table_bytes_per_event > 0 and .sizing.wal_bytes_per_event > 0
. as $r | [.sizing.volumes[] | .single_nodes == null or (.single_nodes >= 1 and (.single_nodes - 1) * $r.sizing.single_node.planned_events_per_s < .peak_events_per_s and .single_nodes * $r.sizing.single_node.planned_events_per_s >= .peak_events_per_s)] | all
[.sizing.volumes[] | .patroni_nodes == null or .patroni_nodes == 3 * .patroni_clusters] | all
[.sizing.volumes[] | .storage_gib_retained >= .storage_gib_per_month] | all
CHECKS
md=$dir/report.md
for heading in "## Steps" "## Saturation" "## Sizing (CCX13)" "Assumptions:" "latency.png"; do
  grep -qF "$heading" "$md" || bad "report.md lacks '$heading'"
done
[ "$(grep -c '^| [0-9]' "$md")" -ge "$(jq '(.steps | length) + (.sizing.volumes | length)' "$j")" ] ||
  bad "report.md lacks rows of the steps or of the volumes"
[ "$fail" = 0 ] || exit 1
echo "report consistent: $(jq '.steps | length' "$j") steps, $dir"
