#!/bin/sh
# Entry point of the crm-ingest image: `crm-ingest ARGS...` (default: serve --config /etc/crm-ingest/crm-ingest.toml).
# Before `serve`, the configuration (the mounted file and the CRM_INGEST_* environment) is checked and the
# container refuses to start with every mistake listed. Secrets come from the environment (env_file:
# PGPASSWORD, CRM_INGEST_WEBHOOKS_*...), from the mounted TOML (reloaded on SIGHUP), or from mounted files
# (PGPASSFILE for libpq; auth.jwt_public_key_file, auth.jwks_file, http.tls_*_file).
set -eu
if [ "${1:-}" = serve ]; then
  config=/etc/crm-ingest/crm-ingest.toml
  prev=
  for a in "$@"; do
    [ "$prev" = --config ] && config=$a
    case $a in --config=*) config=${a#--config=} ;; esac
    prev=$a
  done
  crm-ingest config check "$config" >/dev/null
fi
exec crm-ingest "$@"
