#!/usr/bin/env bash
# Installs the Debian packages, builds everything with warnings as errors and runs every test (unit,
# integration against a private PostgreSQL that ctest starts and stops itself). ctest's summary is the
# last thing printed. CRM_SANITIZE=1 builds and tests under AddressSanitizer + UBSan instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/deploy/install-deps.sh"
if [ "${CRM_SANITIZE:-0}" = 1 ]; then
  build=${BUILD_DIR:-$root/build-asan}
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCRM_INGEST_SANITIZE=ON)
else
  build=${BUILD_DIR:-$root/build}
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
# The libFuzzer targets need clang: a tree of their own, run by ctest (label fuzz) for CRM_FUZZ_SECONDS each.
fuzz_build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
CXX=clang++ cmake -S "$root" -B "$fuzz_build" -G Ninja -DCRM_INGEST_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$fuzz_build" --target all
# BUILD_TESTING is forced on: a tree configured without tests (by hand, or an older quick start) must not
# turn this command into one that passes without testing.
cmake -S "$root" -B "$build" -G Ninja -DBUILD_TESTING=ON -DCRM_INGEST_BENCH=ON -DCRM_INGEST_WERROR=ON \
  -DCRM_FUZZ_BIN_DIR="$fuzz_build" -DCRM_FUZZ_SECONDS="${CRM_FUZZ_SECONDS:-20}" "${flags[@]}" >/dev/null
cmake --build "$build"
# A stale server from an interrupted run would hold the fixture's directory.
bash "$root/deploy/local-postgres.sh" stop "$build/test-postgres" >/dev/null 2>&1 || true
bash "$root/deploy/cluster/cluster.sh" stop "$build/test-cluster" >/dev/null 2>&1 || true
cd "$build"
set +e
# What the suite holds: every test ctest knows in this tree, and at least the floor recorded in the
# repository (tests/min-test-count), so that a discovery that lost tests cannot pass either.
registered=$(ctest -N | sed -nE 's/^Total Tests: ([0-9]+)$/\1/p')
floor=$(tr -dc '0-9' < "$root/tests/min-test-count")
ctest --output-on-failure -j2 --timeout 600 2>&1 | tee "$build/ctest.log"
rc=${PIPESTATUS[0]}
verdict=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$build/ctest.log" | tail -n 1)
ran=$(sed -nE 's/.* out of ([0-9]+)$/\1/p' <<<"$verdict")
skipped=$(grep -cE '\*\*\*(Skipped|Not Run)' "$build/ctest.log" || true)
if [ -z "$ran" ] || [ "$ran" -eq 0 ]; then
  echo "run-all: ctest ran no test" >&2; rc=1
elif [ "$ran" -lt "${registered:-0}" ] || [ "$ran" -lt "$floor" ]; then
  echo "run-all: ctest ran $ran tests; the suite holds $registered (and at least $floor)" >&2; rc=1
elif [ "$skipped" -gt 0 ]; then
  echo "run-all: $skipped tests were skipped or not run" >&2; rc=1
fi
# ctest prints label and time summaries after its verdict; repeat the verdict so that it is the last line.
echo "${verdict:-no ctest summary}"
exit "$rc"
