#!/bin/bash
# First start of the primary (run by the postgres image's entrypoint, as the postgres
# OS user, against a temporary server on the Unix socket): the application's role and
# database, pg_stat_statements, and every wasp role from wasp's roles.sql. Passwords are
# read from the docker secrets and reach psql through its environment (\getenv), never
# its command line.
set -euo pipefail

SECRETS=${WASP_SECRETS_DIR:-/run/secrets}
secret() {  # secret NAME: the content of a secret file, or exit naming it
  if [ ! -s "$SECRETS/$1" ]; then echo "10-wasp-primary: secret $1 is missing" >&2; exit 1; fi
  printf '%s' "$(< "$SECRETS/$1")"
}
APP_PASSWORD=$(secret app_password)
WASP_MONITOR_PASSWORD=$(secret wasp_monitor_password)
WASP_REPLICATION_PASSWORD=$(secret wasp_replication_password)
WASP_HEARTBEAT_PASSWORD=$(secret wasp_heartbeat_password)
WASP_BACKUP_PASSWORD=$(secret wasp_backup_password)
export APP_PASSWORD WASP_MONITOR_PASSWORD WASP_REPLICATION_PASSWORD WASP_HEARTBEAT_PASSWORD \
  WASP_BACKUP_PASSWORD

psql=(psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --no-password)
roles_sql=$("${WASP_PYTHON:-/opt/wasp/bin/python}" -c \
  "import importlib.resources as r; print(r.files('wasp.sql').joinpath('roles.sql'))")

# the application's role: it owns its database and nothing more (not a superuser)
"${psql[@]}" -d postgres <<'SQL'
SET password_encryption = 'scram-sha-256';
SET log_statement = 'none';
SET pg_stat_statements.track_utility = off;
\getenv app_password APP_PASSWORD
CREATE ROLE app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_password';
CREATE DATABASE salon OWNER app;
SQL

"${psql[@]}" -d salon <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
# wasp_monitor, wasp_replication, wasp_backup, wasp_heartbeat (and wasp.heartbeat)
"${psql[@]}" -d salon -f "$roles_sql"
# the app pack reads the application's tables, which the application's migrations create
# later: roles.sql granted the ones that exist, default privileges reach the rest
"${psql[@]}" -d salon <<'SQL'
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO wasp_monitor;
SQL
