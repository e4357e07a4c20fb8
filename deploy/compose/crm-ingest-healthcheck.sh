#!/bin/sh
# Health check of the crm-ingest image: GET /readyz on the listener serve uses (http.listen and
# http.tls_cert_file of the effective configuration: the mounted file plus the CRM_INGEST_* environment).
# Exit 0 = ready (database reachable, local log below its high-water mark).
set -eu
config=${CRM_INGEST_CONFIG:-/etc/crm-ingest/crm-ingest.toml}
settings=$(crm-ingest config check "$config" 2>/dev/null) || exit 1
listen=$(printf '%s\n' "$settings" | sed -n 's/^listen = "\([^"]*\)".*/\1/p' | head -n 1)
cert=$(printf '%s\n' "$settings" | sed -n 's/^tls_cert_file = "\([^"]*\)".*/\1/p' | head -n 1)
host=${listen%:*}
port=${listen##*:}
case $host in ""|0.0.0.0|"[::]"|"::") host=127.0.0.1 ;; esac
scheme=http
[ -z "$cert" ] || scheme=https
# --insecure: the certificate names the public host, not this address; only readiness is asked.
exec curl --silent --show-error --fail --insecure --max-time 4 --output /dev/null "$scheme://$host:$port/readyz"
