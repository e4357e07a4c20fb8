#!/bin/sh
# Run once by Patroni on the node that bootstraps cluster ${CLUSTER_NAME}, with a superuser connection
# string as $1: creates the role and database crm-ingest writes to (it then applies its own migrations).
# Rendered by deploy/render-configs.sh from deploy/templates/post-bootstrap.sh.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -q <<'SQL'
CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASSWORD}';
CREATE DATABASE ${APP_DB} OWNER ${APP_USER};
SQL
