#!/usr/bin/env bash
# Installs the Debian 12 packages crm-ingest needs to build, test and run its embedded database.
# Runs apt-get as root (through sudo when not root). Idempotent.
set -euo pipefail
# Usage: install-deps.sh [--build | --containers]
#   (none)        everything to build, test and run (the test command and the quick start)
#   --build       only what compiling crm-ingest needs (the image's build stage, deploy/compose/crm-ingest.Dockerfile)
#   --containers  only what deploy/stack.sh needs to build the images and run the container stack (podman, runc,
#                 mmdebstrap, docker-compose...); the test command installs these only when it runs that test
build_packages=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-system-dev librdkafka-dev libpqxx-dev libpq-dev libsimdjson-dev prometheus-cpp-dev
  libphonenumber-dev libssl-dev zlib1g-dev libcli11-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  # ISO 4217 currency codes (transform/normalize/currency.h).
  libicu-dev
  # Caller authentication (JWT verification, ingest/auth/).
  libjwt-dev
)
packages=(
  "${build_packages[@]}"
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  postgresql-15 postgresql-client-15
  prometheus docker-compose systemd
  # The local Patroni cluster (deploy/cluster/cluster.sh) and config rendering (deploy/render-configs.sh).
  patroni etcd-server etcd-client haproxy gettext-base jq curl
  # The sizing harness's latency plot (bench/sizing.sh).
  gnuplot-nox
)
# deploy/stack.sh: the container engine (podman with runc; docker is used instead when its daemon answers),
# the base image builder, Docker Compose to run the compose files, and the renderers' and smoke test's tools.
container_packages=(
  podman runc mmdebstrap ca-certificates docker-compose gettext-base jq curl perl postgresql-client-15 openssl
)
case "${1:-}" in
  "") ;;
  --build) packages=("${build_packages[@]}") ;;
  --containers) packages=("${container_packages[@]}") ;;
  *) echo "usage: install-deps.sh [--build | --containers]" >&2; exit 2 ;;
esac
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
