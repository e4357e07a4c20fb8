# Helpers shared by the benchmark scripts (sourced once they set root).

# bench_options OPTION... -- ARG...: reads the script's command line ARG... into its variables. OPTION is
# --name (takes a value, into $name with the dashes as underscores), --name=VAR (a value, into $VAR) or
# --name! (a flag: $name=1). Any other argument, or a value missing, prints the usage and exits 2.
bench_options() {
  local -A var=()
  local o v
  for o; do
    shift
    [ "$o" = -- ] && break
    case "$o" in
      *=*) var[${o%%=*}]=${o#*=} ;;
      *!) v=${o%!}; v=${v#--}; var[${o%!}]="${v//-/_}!" ;;
      *) v=${o#--}; var[$o]=${v//-/_} ;;
    esac
  done
  while [ $# -gt 0 ]; do
    v=""; [ -n "$1" ] && v=${var[$1]:-}
    case "$v" in
      "") bench_usage; exit 2 ;;
      *!) printf -v "${v%!}" 1; shift ;;
      *) [ $# -ge 2 ] || { bench_usage; exit 2; }
         printf -v "$v" '%s' "$2"; shift 2 ;;
    esac
  done
}
# bench_usage: the script's header comment (what it does and its options), without the comment marks.
bench_usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

# bench_tools EXE...: every tool built below $build, or exits with the command that builds them. Sets exe and
# gen: where a build puts the command and the event generator.
bench_tools() {
  local x
  for x in "$@"; do
    [ -x "$build/$x" ] || { echo "build first: cmake --build $build --target ${*##*/}" >&2; exit 1; }
  done
  exe=$build/ingest/crm-ingest
  gen=$build/bench/gen_events
}

# serve_port: waits up to 30 s for the `crm-ingest serve` started as $serve_pid to write "listening on port N"
# into $work/serve.out and sets $port; exits with its log ($work/serve.log) if it dies or stays silent.
serve_port() {
  port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$work/serve.out" 2>/dev/null | head -n1 || true)
    [ -n "$port" ] && break
    kill -0 "$serve_pid" 2>/dev/null || { echo "crm-ingest serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "crm-ingest serve did not report its port within 30 s" >&2; cat "$work/serve.log" >&2; exit 1; }
}

# bench_start NAME: a fresh work directory ($work, readable by the server's COPY), the private PostgreSQL
# unless --dsn named one ($admin_dsn), and an exit trap that stops $bench_pids (TERM, KILL after 10 s), stops
# that server and removes the directory (kept with bench_keep=1).
bench_pids=()
bench_dirs=()  # more scratch directories of the run, removed with the work directory
bench_start() {
  # The private PostgreSQL is reached as its superuser, which the commands that write refuse unless allowed.
  export CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true
  work=$(mktemp -d "/tmp/crm-$1.XXXXXX")
  chmod 755 "$work"
  trap bench_cleanup EXIT
  if [ -z "$admin_dsn" ]; then
    pgdir=$work/pg
    admin_dsn=$(bash "$root/deploy/local-postgres.sh" start "$pgdir")
  fi
}
bench_cleanup() {
  local p
  for p in "${bench_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${bench_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -n "${pgdir:-}" ] && bash "$root/deploy/local-postgres.sh" stop "$pgdir" >/dev/null 2>&1 || true
  if [ "${bench_keep:-0}" = 1 ]; then
    echo "work directory kept: $work ${bench_dirs[*]}" >&2
  else
    rm -rf "$work" "${bench_dirs[@]}"
  fi
}

# db NAME: the DSN of database NAME on the benchmark's server. recreate NAME: that database, empty and migrated.
db() { echo "${admin_dsn%/*}/$1"; }
recreate() {
  psql "$admin_dsn" -qAtc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  "$build/ingest/crm-ingest" --log-level warn migrate --dsn "$(db "$1")" >/dev/null
}

now() { date +%s.%N; }
# median X...: the median of the numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# The columns of a plain `psql \copy` of the stored rows (the reference every benchmark measures against).
comm_cols="event_id, occurred_at, received_at, lead_id, channel, direction, status, provider, provider_message_id, provider_event_id, email, phone, campaign_id, ab_test_id, variant, url, error_code, error_reason, metadata, tenant_id"
touch_cols="touchpoint_id, occurred_at, received_at, lead_id, anonymous_id, message_id, touch_type, utm_source, utm_medium, utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid, landing_url, referrer, channel_group, campaign_id, is_conversion, conversion_type, conversion_value, currency, ab_test_id, variant, metadata, tenant_id"

# ceiling_export DSN DIR: the rows stored in DSN as binary COPY files in two halves by id (DIR/{comm,touch}.{0,1}.bin),
# for ceiling_copy_binary2.
ceiling_export() {
  local t cols table key h
  for t in comm touch; do
    cols=$comm_cols table=communications key=event_id
    [ "$t" = touch ] && cols=$touch_cols table=customer_touchpoints key=touchpoint_id
    for h in 0 1; do
      psql "$1" -qc "\\copy (SELECT $cols FROM $table WHERE get_byte(uuid_send($key), 15) % 2 = $h) TO '$2/$t.$h.bin' (FORMAT binary)"
    done
  done
}
# ceiling_copy_binary2 DSN DIR: two concurrent `psql \copy ... (FORMAT binary)` sessions, one half each; prints the
# seconds until both are done — the box's ceiling ("2 x binary COPY").
ceiling_copy_binary2() {
  local t0 h p=()
  t0=$(now)
  for h in 0 1; do
    psql "$1" -qc "\\copy communications ($comm_cols) FROM '$2/comm.$h.bin' (FORMAT binary)" \
              -c "\\copy customer_touchpoints ($touch_cols) FROM '$2/touch.$h.bin' (FORMAT binary)" &
    p+=($!)
  done
  wait "${p[@]}"
  awk -v a="$t0" -v b="$(now)" 'BEGIN{print b-a}'
}

# serve_config FILE DSN WRITERS IO_THREADS LOG_DIR: a serve.toml on an ephemeral loopback port.
serve_config() {
  cat >"$1" <<TOML
[http]
listen = "127.0.0.1:0"
io_threads = $4

[postgres]
dsn = "$2"
writers = $3
# The benchmark's private server is reached as its superuser; a deployment uses the least-privilege writer role.
allow_superuser = true

[log]
dir = "$5"

# The load's provider webhooks are unsigned.
[webhooks.sendgrid]
allow_unsigned = true
[webhooks.twilio]
allow_unsigned = true
[webhooks.segment]
allow_unsigned = true
TOML
}
