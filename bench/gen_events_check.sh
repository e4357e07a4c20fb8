#!/usr/bin/env bash
# ctest bench_gen_events_visitors: gen_events --visitors draws touchpoints from a pool of visitors, each with one
# lead on its identified touchpoints and anonymous-only otherwise; without it every touchpoint carries a lead and
# a visitor of its own (the data the import benchmark has always used). The last of a repeated option wins
# (import_bench.sh puts its defaults before the user's --gen-args).
#   bench/gen_events_check.sh PATH_TO_GEN_EVENTS
set -euo pipefail
gen=$1
fail() { echo "gen_events_check: $*" >&2; exit 1; }
common=(--count 4000 --seed 5 --touchpoints 1 --duplicates 0 --invalid 0)

pooled=$("$gen" "${common[@]}" --visitors 300 --identified 0.3 2>/dev/null)
anonymous=$(grep -vc '"lead_id"' <<<"$pooled" || true)
[ "$anonymous" -gt 2400 ] && [ "$anonymous" -lt 3200 ] || fail "expected ~70 % anonymous-only touchpoints, got $anonymous of 4000"
visitors=$(grep -o '"anonymous_id":"[^"]*"' <<<"$pooled" | sort -u | wc -l)
[ "$visitors" -le 300 ] && [ "$visitors" -gt 250 ] || fail "expected up to 300 visitors, got $visitors"
two_leads=$(grep -o '"lead_id":[0-9]*,"anonymous_id":"[^"]*"' <<<"$pooled" | sort -u | cut -d, -f2 | sort | uniq -d | wc -l)
[ "$two_leads" -eq 0 ] || fail "$two_leads visitors carry more than one lead"

plain=$("$gen" "${common[@]}" 2>/dev/null)
without_lead=$(grep -vc '"lead_id"' <<<"$plain" || true)
[ "$without_lead" -eq 0 ] || fail "the default touchpoints must all carry a lead ($without_lead do not)"
distinct=$(grep -o '"anonymous_id":"[^"]*"' <<<"$plain" | sort -u | wc -l)
[ "$distinct" -gt 3900 ] || fail "the default touchpoints must bring new visitors ($distinct distinct of 4000)"
repeated=$("$gen" --count 1000 --seed 5 --duplicates 0.01 --invalid 0 --duplicates 0.5 2>&1 >/dev/null)
unique=$(grep -o '[0-9]* unique events' <<<"$repeated" | cut -d' ' -f1)
[ -n "$unique" ] && [ "$unique" -lt 600 ] || fail "a repeated --duplicates must take the last value (got: $repeated)"
echo "gen_events_check: ok ($anonymous anonymous-only of 4000 from $visitors visitors; default: $distinct visitors)"
