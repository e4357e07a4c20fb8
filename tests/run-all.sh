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
cmake -S "$root" -B "$build" -G Ninja -DCRM_INGEST_WERROR=ON -DCRM_FUZZ_BIN_DIR="$fuzz_build" \
  -DCRM_FUZZ_SECONDS="${CRM_FUZZ_SECONDS:-20}" "${flags[@]}" >/dev/null
cmake --build "$build"
# A stale server from an interrupted run would hold the fixture's directory.
bash "$root/deploy/local-postgres.sh" stop "$build/test-postgres" >/dev/null 2>&1 || true
bash "$root/deploy/cluster/cluster.sh" stop "$build/test-cluster" >/dev/null 2>&1 || true
cd "$build"
set +e
ctest --output-on-failure -j2 --timeout 600 2>&1 | tee "$build/ctest.log"
rc=${PIPESTATUS[0]}
# ctest prints label and time summaries after its verdict; repeat the verdict so that it is the last line.
grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$build/ctest.log" | tail -n 1
exit "$rc"
