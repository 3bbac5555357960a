#!/bin/bash
# First start of the primary (run by the postgres image's entrypoint, as the postgres
# OS user, against a temporary server on the Unix socket): roles, the application
# database, pg_stat_statements, the monitoring role and the heartbeat.
set -euo pipefail

for v in APP_PASSWORD WASP_MONITOR_PASSWORD WASP_REPLICATION_PASSWORD WASP_HEARTBEAT_PASSWORD; do
  if [ -z "${!v:-}" ]; then echo "10-wasp-primary: $v is not set" >&2; exit 1; fi
done

psql=(psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --no-password)
monitor_sql=$("${WASP_PYTHON:-/opt/wasp/bin/python}" -c \
  "import importlib.resources as r; print(r.files('wasp.sql').joinpath('monitor_role.sql'))")

"${psql[@]}" -d postgres \
  -v app_password="$APP_PASSWORD" \
  -v replication_password="$WASP_REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE DATABASE salon OWNER app;
CREATE ROLE wasp_replication REPLICATION LOGIN PASSWORD :'replication_password';
SQL

"${psql[@]}" -d postgres -f "$monitor_sql"
"${psql[@]}" -d postgres -v monitor_password="$WASP_MONITOR_PASSWORD" <<'SQL'
ALTER ROLE wasp_monitor PASSWORD :'monitor_password';
SQL

"${psql[@]}" -d salon <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
-- the app pack reads the application's tables, which the application's migrations create
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO wasp_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wasp_monitor;
SQL

wasp replica heartbeat --install --dbname salon \
  --primary-dsn "host=${PGHOST:-/var/run/postgresql} dbname=salon user=$POSTGRES_USER" \
  --password-env WASP_HEARTBEAT_PASSWORD
