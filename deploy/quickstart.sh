#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install the packages, build crm-ingest, start the embedded
# private PostgreSQL, migrate it and import the bundled sample, then show the summary and a few rows.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Its own build tree (release, no tests): the test command builds in build/, so the two work in either order.
build=${QUICKSTART_BUILD_DIR:-$root/build-release}
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" --target crm-ingest
exe=$build/ingest/crm-ingest
"$exe" import "$root/deploy/sample/events.ndjson"
dsn=$("$exe" local-db status)
echo
echo "A few stored rows (psql \"$dsn\"):"
psql "$dsn" -P pager=off -c "SELECT occurred_at, channel, status, contact, campaign_id FROM communications ORDER BY occurred_at LIMIT 8"
psql "$dsn" -P pager=off -c "SELECT occurred_at, touch_type, channel_group, utm_source, utm_medium FROM customer_touchpoints ORDER BY occurred_at LIMIT 5"
psql "$dsn" -P pager=off -c "SELECT day, campaign_id, channel, status, event_count FROM communication_metrics ORDER BY 1, 2, 3, 4 LIMIT 8"
psql "$dsn" -P pager=off -c "SELECT source, reason FROM rejected_events ORDER BY source"
echo "Stop the embedded database with: $exe local-db stop"
