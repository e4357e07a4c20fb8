#!/usr/bin/env bash
# Builds crm-ingest's images from this repository and runs the production stack in containers, from the
# compose files of deploy/compose/ rendered from one inventory (the same files Docker Compose runs on a CCX13).
#
#   deploy/stack.sh up [OPTIONS]         install what is missing, build the images, render, start, wait until ready
#   deploy/stack.sh build [OPTIONS]      only build the images
#   deploy/stack.sh render [OPTIONS]     only resolve the inventory into DIR/inventory.env and render DIR/rendered/
#   deploy/stack.sh down [OPTIONS] [--volumes]   remove the containers (and with --volumes their data and DIR's
#                                        rendered files: the next `up` bootstraps a new cluster)
#   deploy/stack.sh status [OPTIONS]     containers, Patroni's members, crm-ingest's /readyz
#   deploy/stack.sh compose NODE ARGS... [OPTIONS before NODE]   docker-compose ARGS in NODE's project,
#                                        e.g. `deploy/stack.sh compose stack-1 stop patroni`
#
# Options:
#   --inventory FILE  the inventory (default deploy/stack.local.inventory.env: the three nodes on this machine,
#                     one loopback address each, free ports and random passwords picked at render time)
#   --node NAME|all   the node(s) whose services run here (default all). On a real node: --node crm-db-1 with
#                     the production inventory; each node then waits for the others (etcd quorum, a primary).
#   --dir DIR         state: resolved inventory, rendered files, engine settings (default .stack/ in the repository)
#   --binary PATH     copy this crm-ingest binary (built on this Debian 12 host) into the image instead of
#                     compiling it in the image's build stage: same runtime stage, minutes faster
#   --engine podman|docker   default: docker when its daemon answers, else podman (installed from Debian)
#   --offline         never try a registry: Debian 12 base image made here with mmdebstrap, etcd/HAProxy/
#                     Prometheus/node_exporter built from Debian's packages (deploy/compose/debian-services.Dockerfile).
#                     Chosen automatically when the base image cannot be pulled.
#
# Heavy steps (image builds, mmdebstrap) run under `nice -n 19`. Every step is logged with its duration.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift

inventory_src=$here/stack.local.inventory.env
only_node=all
dir=$root/.stack
binary=""
engine=""
offline=0
volumes=0
compose_node=""
compose_args=()
while [ $# -gt 0 ]; do
  if [ "$cmd" = compose ] && [ -n "$compose_node" ]; then compose_args+=("$1"); shift; continue; fi
  case $1 in
    --inventory) inventory_src=$2; shift 2 ;;
    --node) only_node=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --binary) binary=$(realpath "$2"); shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --offline) offline=1; shift ;;
    --volumes) volumes=1; shift ;;
    -*) echo "stack: unknown option $1" >&2; usage ;;
    *) if [ "$cmd" = compose ] && [ -z "$compose_node" ]; then compose_node=$1; shift; else usage; fi ;;
  esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
state=$dir/stack.env
inventory=$dir/inventory.env
rendered=$dir/rendered
t0=$SECONDS

log() { printf 'stack: [%4ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Pinned names the compose files use (deploy/compose/nodeN.yml).
PATRONI_IMAGE=twincigo/patroni:3.0.2-pg15
CRM_INGEST_IMAGE=twincigo/crm-ingest:0.1.0
CRM_INGEST_RUNTIME_IMAGE=twincigo/crm-ingest-runtime:0.1.0
UPSTREAM_BASE=docker.io/library/debian:bookworm-20241111-slim
LOCAL_BASE=localhost/twincigo/debian:bookworm-minbase

# --- the engine ------------------------------------------------------------------------------------------
# Settings that later commands (down, status, compose) reuse: DIR/stack.env.
load_state() { if [ -f "$state" ]; then set -a; . "$state"; set +a; fi; }
save_state() {
  { for v in ENGINE CONTAINERS_CONF DOCKER_HOST CRM_LOG_DRIVER BASE_IMAGE ETCD_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE \
             NODE_EXPORTER_IMAGE OFFLINE; do
      if [ -n "${!v:-}" ]; then printf '%s=%q\n' "$v" "${!v}"; fi
    done; } >"$state.tmp"
  mv "$state.tmp" "$state"
}

pick_engine() {
  load_state
  if [ -z "$engine" ]; then engine=${ENGINE:-}; fi
  if [ -z "$engine" ]; then
    if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
  fi
  ENGINE=$engine
  case $engine in
    docker)
      unset CONTAINERS_CONF DOCKER_HOST
      [ -S /run/systemd/journal/socket ] && CRM_LOG_DRIVER=journald || CRM_LOG_DRIVER=json-file ;;
    podman)
      # runc with the cgroupfs manager and no default ulimits: works in restricted hosts (sandboxes, nested
      # containers) as well as on a plain Debian 12 host.
      CONTAINERS_CONF=$dir/containers.conf
      printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' \
        >"$CONTAINERS_CONF"
      export CONTAINERS_CONF
      DOCKER_HOST=unix://$dir/podman.sock
      export DOCKER_HOST
      [ -S /run/systemd/journal/socket ] && CRM_LOG_DRIVER=journald || CRM_LOG_DRIVER=k8s-file ;;
    *) die "--engine must be podman or docker" ;;
  esac
  export ENGINE CRM_LOG_DRIVER
}

eng() { if [ "$ENGINE" = podman ]; then podman "$@"; else docker "$@"; fi; }
image_exists() { eng image inspect "$1" >/dev/null 2>&1; }

# Docker Compose talks to podman through podman's Docker-compatible API socket (one service per DIR).
podman_service() {
  [ "$ENGINE" = podman ] || return 0
  local pid
  pid=$(cat "$dir/podman.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$dir/podman.sock" ]; then return 0; fi
  rm -f "$dir/podman.sock"
  setsid podman system service --time=0 "unix://$dir/podman.sock" >>"$dir/podman-service.log" 2>&1 </dev/null &
  echo $! >"$dir/podman.pid"
  for _ in $(seq 100); do [ -S "$dir/podman.sock" ] && return 0; sleep 0.1; done
  die "podman system service did not open $dir/podman.sock (see $dir/podman-service.log)"
}

stop_podman_service() {
  local pid
  pid=$(cat "$dir/podman.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$dir/podman.pid" "$dir/podman.sock"
}

compose_tool() {
  if [ "$ENGINE" = docker ] && docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi
}

# compose NODE ARGS...: docker-compose in NODE's rendered project. All nodes on one machine: one project
# per node (CLUSTER-DIGEST-NODE) so that containers and volumes do not collide; on a real node the rendered .env's.
compose() {
  local node=$1; shift
  [ -d "$rendered/$node" ] || die "no rendered node $node in $rendered (run: deploy/stack.sh render)"
  local project
  project=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$rendered/$node/.env")
  # (with a digest of DIR: two stacks of different checkouts never share containers or volumes)
  [ "$only_node" = all ] && project=$project-$(printf %s "$dir" | sha256sum | cut -c1-6)-$node
  # shellcheck disable=SC2046
  (cd "$rendered/$node" && env COMPOSE_PROJECT_NAME="$project" $(compose_tool) "$@")
}

# --- images ----------------------------------------------------------------------------------------------
registry_reachable() {
  [ "$offline" = 0 ] && [ "${OFFLINE:-0}" = 0 ] || return 1
  timeout 120 nice -n 19 "$ENGINE" pull -q "$UPSTREAM_BASE" >/dev/null 2>&1
}

make_local_base() {
  if image_exists "$LOCAL_BASE"; then log "base image $LOCAL_BASE present"; return; fi
  log "building the Debian 12 base image with mmdebstrap (no registry)"
  local tar=$dir/debian-bookworm.tar
  # Like Debian's slim images: no manuals, documentation (copyright kept) or translations; no apt lists.
  # (Debian's own PATH: mmdebstrap's filters run `env python3` once per package, and a python3 shim ahead
  # in PATH costs seconds each.)
  nice -n 19 env PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap --variant=minbase --format=tar --quiet \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" </dev/null
  eng import --change 'CMD ["/bin/bash"]' "$tar" "$LOCAL_BASE" >"$dir/import.log" 2>&1 || { cat "$dir/import.log" >&2; die "import of the base image failed"; }
  rm -f "$tar"
  log "base image $LOCAL_BASE imported"
}

build_image() {  # build_image TAG DOCKERFILE CONTEXT [build args...]
  local tag=$1 file=$2 context=$3; shift 3
  local start=$SECONDS net=()
  # apt inside the build needs the host's network (podman's default build network is not there in sandboxes).
  net=(--network host)
  log "building $tag ($(basename "$file") $*)"
  nice -n 19 "$ENGINE" build "${net[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" -f "$file" "$@" "$context" \
    >>"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; die "building $tag failed (log: $dir/build.log)"; }
  log "built $tag in $((SECONDS - start)) s ($(eng image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_images() {
  : >"$dir/build.log"
  if registry_reachable; then
    BASE_IMAGE=$UPSTREAM_BASE OFFLINE=0
    unset ETCD_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE NODE_EXPORTER_IMAGE
    log "registry reachable: base $BASE_IMAGE, upstream etcd/HAProxy/Prometheus/node_exporter images"
  else
    OFFLINE=1
    log "no registry (or --offline): images from Debian's packages only"
    make_local_base
    BASE_IMAGE=$LOCAL_BASE
  fi
  build_image "$PATRONI_IMAGE" "$here/compose/patroni.Dockerfile" "$root"
  if [ -n "$binary" ]; then
    # A small context: the binary (debug info stripped) and the two scripts the image runs.
    [ -x "$binary" ] || die "--binary $binary is not an executable"
    local ctx=$dir/context
    rm -rf "$ctx"; mkdir -p "$ctx/deploy/compose"
    cp "$here/compose/crm-ingest-entrypoint.sh" "$here/compose/crm-ingest-healthcheck.sh" "$ctx/deploy/compose/"
    objcopy --strip-debug "$binary" "$ctx/crm-ingest" 2>/dev/null || cp "$binary" "$ctx/crm-ingest"
    build_image "$CRM_INGEST_RUNTIME_IMAGE" "$here/compose/crm-ingest.Dockerfile" "$ctx" --target runtime
    build_image "$CRM_INGEST_IMAGE" "$here/compose/crm-ingest-prebuilt.Dockerfile" "$ctx" \
      --build-arg "RUNTIME_IMAGE=$CRM_INGEST_RUNTIME_IMAGE"
  else
    build_image "$CRM_INGEST_IMAGE" "$here/compose/crm-ingest.Dockerfile" "$root"
  fi
  if [ "$OFFLINE" = 1 ]; then
    ETCD_IMAGE=twincigo/debian-etcd:3.4-bookworm HAPROXY_IMAGE=twincigo/debian-haproxy:2.6-bookworm
    PROMETHEUS_IMAGE=twincigo/debian-prometheus:2.42-bookworm NODE_EXPORTER_IMAGE=twincigo/debian-node-exporter:1.5-bookworm
    build_image "$ETCD_IMAGE" "$here/compose/debian-services.Dockerfile" "$here/compose" --target etcd
    build_image "$HAPROXY_IMAGE" "$here/compose/debian-services.Dockerfile" "$here/compose" --target haproxy
    build_image "$PROMETHEUS_IMAGE" "$here/compose/debian-services.Dockerfile" "$here/compose" --target prometheus
    build_image "$NODE_EXPORTER_IMAGE" "$here/compose/debian-services.Dockerfile" "$here/compose" --target node-exporter
    export ETCD_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE NODE_EXPORTER_IMAGE
  fi
  export BASE_IMAGE OFFLINE
  save_state
}

# --- inventory and rendering -----------------------------------------------------------------------------
free_ports() {  # N distinct TCP ports free on every address of this machine (all bound at once)
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("0.0.0.0", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

render() {
  if [ -f "$inventory" ] && [ -d "$rendered" ]; then log "using the rendered files in $rendered"; return; fi
  [ -r "$inventory_src" ] || die "cannot read inventory $inventory_src"
  local autos=() v ports
  mapfile -t autos < <(grep -E '^[A-Z0-9_]+_PORT=auto$' "$inventory_src" | cut -d= -f1)
  read -r -a ports <<<"$(free_ports ${#autos[@]})"
  {
    echo "# Resolved from $inventory_src by deploy/stack.sh on $(date -u +%FT%TZ)."
    grep -E '^[A-Z0-9_]+=' "$inventory_src" | grep -vE '=auto$' || true
    local i=0
    for v in "${autos[@]}"; do echo "$v=${ports[$i]}"; i=$((i + 1)); done
    for v in $(grep -E '^[A-Z0-9_]+_PASSWORD=auto$' "$inventory_src" | cut -d= -f1); do
      echo "$v=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    done
  } >"$inventory.tmp"
  chmod 600 "$inventory.tmp"
  mv "$inventory.tmp" "$inventory"
  rm -rf "$rendered"
  bash "$here/render-configs.sh" "$inventory" "$rendered"
  # patroni.yml (mode 0600, passwords inside) is read by the image's user postgres, uid 10002.
  chown 10002:10002 "$rendered"/*/patroni.yml
  CRM_SOURCE_DIR=$root bash "$here/render-app-configs.sh" "$inventory" "$rendered" >&2
  log "rendered $(ls "$rendered" | tr '\n' ' ')into $rendered"
}

load_inventory() {
  [ -f "$inventory" ] || die "no stack in $dir (run: deploy/stack.sh up)"
  # shellcheck disable=SC1090
  set -a; . "$inventory"; set +a
  NODES=("$NODE1_NAME" "$NODE2_NAME" "$NODE3_NAME")
  if [ "$only_node" = all ]; then LOCAL=("${NODES[@]}"); else
    [[ " ${NODES[*]} " == *" $only_node "* ]] || die "--node $only_node is not in the inventory (${NODES[*]})"
    LOCAL=("$only_node")
  fi
}
nvar() { local v="NODE$1_$2" d=${3:-}; echo "${!v:-${!2:-$d}}"; }  # nvar N NAME [DEFAULT]: per-node, cluster-wide or default
idx() { local i; for i in 1 2 3; do local v="NODE${i}_NAME"; [ "${!v}" = "$1" ] && { echo "$i"; return; }; done; }
is_local() { [[ " ${LOCAL[*]} " == *" $1 "* ]]; }
rest() { local i; i=$(idx "$1"); echo "http://$(nvar "$i" ADDR):$(nvar "$i" PATRONI_REST_PORT 8008)"; }
http_url() { local i; i=$(idx "$1"); echo "http://$(nvar "$i" ADDR):$(nvar "$i" CRM_INGEST_HTTP_PORT 8080)"; }

cluster_json() {
  local n
  for n in "${NODES[@]}"; do curl -fsS --max-time 2 "$(rest "$n")/cluster" 2>/dev/null && return 0; done
  return 1
}
has_leader() { cluster_json | jq -e '[.members[] | select(.role == "leader" and .state == "running")] | length == 1' >/dev/null 2>&1; }
healthy() {
  cluster_json | jq -e '([.members[] | select(.role == "leader" and .state == "running")] | length) == 1
    and ([.members[] | select((.role == "replica" or .role == "sync_standby") and (.state == "streaming" or .state == "running"))] | length) == 2
    and ([.members[] | select(.role == "sync_standby")] | length) >= 1' >/dev/null 2>&1
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local timeout=$1 what=$2 start=$SECONDS; shift 2
  until "$@"; do
    (( SECONDS - start < timeout )) || return 1
    sleep 1
  done
  log "$what ($((SECONDS - start)) s)"
}

# --- up / down / status ----------------------------------------------------------------------------------
up() {
  local n i
  load_inventory
  podman_service
  export ETCD_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE NODE_EXPORTER_IMAGE CRM_LOG_DRIVER
  # etcd on every local node first (a member waits for its peers' quorum).
  for n in "${LOCAL[@]}"; do compose "$n" up -d --no-build etcd >&2; done
  if [ ${#LOCAL[@]} -eq 3 ]; then
    i=$(idx "$NODE1_NAME")
    wait_for 60 "etcd cluster healthy" curl -fsS --max-time 2 "http://$NODE1_ADDR:$(nvar 1 ETCD_CLIENT_PORT 2379)/health" \
      >/dev/null || die "etcd not healthy after 60 s"
  fi
  # Patroni: node 1 bootstraps (post_bootstrap creates the roles and the database), the others clone it.
  if is_local "$NODE1_NAME"; then
    compose "$NODE1_NAME" up -d --no-build patroni >&2
    [ ${#LOCAL[@]} -eq 3 ] && { wait_for 120 "Patroni leader elected (bootstrap)" has_leader || die "no Patroni leader after 120 s"; }
  fi
  for n in "${LOCAL[@]}"; do [ "$n" = "$NODE1_NAME" ] || compose "$n" up -d --no-build patroni >&2; done
  if is_local "$NODE1_NAME"; then compose "$NODE1_NAME" up -d --no-build haproxy >&2; fi
  wait_for 600 "Patroni cluster has a leader" has_leader || die "no Patroni leader after 600 s (are the other nodes up?)"
  [ ${#LOCAL[@]} -eq 3 ] && { wait_for 180 "Patroni: leader and two streaming replicas" healthy || die "replicas not streaming after 180 s"; }
  # The schema, as the database owner (idempotent: checksummed migrations under an advisory lock).
  if is_local "$NODE1_NAME"; then
    local start=$SECONDS
    until compose "$NODE1_NAME" run --rm -T --no-deps migrate >>"$dir/migrate.log" 2>&1; do
      (( SECONDS - start < 120 )) || { tail -n 20 "$dir/migrate.log" >&2; die "migrate failed (log: $dir/migrate.log)"; }
      sleep 2
    done
    log "migrated as the owner ($(grep -o 'schema version [0-9]*' "$dir/migrate.log" | tail -n 1))"
  fi
  for n in "${LOCAL[@]}"; do
    i=$(idx "$n")
    if [ "$i" -le 2 ]; then compose "$n" up -d --no-build crm-ingest >&2; fi
    compose "$n" up -d --no-build node-exporter >&2
    if [ "$i" -eq 3 ]; then
      compose "$n" up -d --no-build prometheus >&2
      # Grafana has no Debian package: started only when its upstream image can be had.
      [ "${OFFLINE:-0}" = 1 ] || compose "$n" up -d --no-build grafana >&2
    fi
  done
  local ready_s=120
  [ ${#LOCAL[@]} -eq 3 ] || ready_s=600
  for n in "${LOCAL[@]}"; do
    i=$(idx "$n")
    if [ "$i" -le 2 ]; then
      # (One node of several: its collector may wait for node 1's migration.)
      wait_for "$ready_s" "crm-ingest on $n ready ($(http_url "$n")/readyz)" curl -fsS --max-time 2 -o /dev/null "$(http_url "$n")/readyz" \
        || { compose "$n" logs --tail 30 crm-ingest >&2; die "crm-ingest on $n not ready after $ready_s s"; }
    else
      wait_for 60 "Prometheus ready (http://$NODE3_ADDR:$PROMETHEUS_PORT)" \
        curl -fsS --max-time 2 -o /dev/null "http://$NODE3_ADDR:$PROMETHEUS_PORT/-/ready" || die "Prometheus not ready after 60 s"
    fi
  done
  log "stack up: ${LOCAL[*]} (state in $dir; deploy/stack.sh status --dir $dir)"
}

down() {
  local n
  [ -f "$inventory" ] || { stop_podman_service; log "nothing to stop in $dir"; return 0; }
  load_inventory
  podman_service
  for n in "${LOCAL[@]}"; do
    [ -d "$rendered/$n" ] || continue
    if [ "$volumes" = 1 ]; then compose "$n" --profile jobs down -v --remove-orphans >&2 || true
    else compose "$n" --profile jobs down --remove-orphans >&2 || true; fi
  done
  stop_podman_service
  if [ "$volumes" = 1 ]; then rm -rf "$rendered" "$inventory" "$dir/context"; log "removed the containers, their volumes and $rendered"
  else log "removed the containers (volumes kept; --volumes removes them)"; fi
}

status() {
  local n i
  load_inventory
  podman_service
  for n in "${LOCAL[@]}"; do compose "$n" ps; done
  cluster_json | jq -r '.members[] | "\(.name)\t\(.role)\t\(.state)\ttimeline \(.timeline // "-")\tlag \(.lag // 0)"' || echo "Patroni: no answer"
  for n in "${LOCAL[@]}"; do
    i=$(idx "$n")
    [ "$i" -le 2 ] && echo "crm-ingest $n $(http_url "$n")/readyz: $(curl -s --max-time 2 "$(http_url "$n")/readyz" || echo unreachable)"
  done
  return 0
}

case $cmd in
  up)
    pick_engine
    bash "$here/install-deps.sh" --containers
    [ "$ENGINE" = podman ] && ! command -v podman >/dev/null && die "podman not installed"
    build_images
    render
    up
    ;;
  build) pick_engine; bash "$here/install-deps.sh" --containers; build_images ;;
  render) render ;;
  down) pick_engine; down ;;
  status) pick_engine; status ;;
  compose)
    [ -n "$compose_node" ] || usage
    pick_engine; load_inventory; podman_service
    export ETCD_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE NODE_EXPORTER_IMAGE CRM_LOG_DRIVER
    compose "$compose_node" "${compose_args[@]}"
    ;;
  *) usage ;;
esac
