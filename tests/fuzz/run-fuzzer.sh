#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a scratch copy of its seed corpus.
#   run-fuzzer.sh BINARY SECONDS [SEED_DIR...]
set -euo pipefail
bin=$1 seconds=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
for d in "$@"; do [ -d "$d" ] && find "$d" -type f -size -64k -exec cp {} "$work/corpus/" \; ; done
cd "$work"
exec "$bin" corpus -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
