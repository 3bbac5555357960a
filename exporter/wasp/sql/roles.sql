-- Every role wasp needs, each with the least privilege it needs.
--
-- Run it with psql as a superuser, in the application's database, with the
-- passwords in the environment (never on the command line, where `ps` shows
-- them, and never in a file under version control):
--
--     export WASP_MONITOR_PASSWORD=... WASP_REPLICATION_PASSWORD=... \
--            WASP_BACKUP_PASSWORD=... WASP_HEARTBEAT_PASSWORD=...
--     psql -v ON_ERROR_STOP=1 -d salon -f roles.sql
--
-- psql variables (-v NAME=VALUE) change the defaults:
--     app_schema   the schema of the application's tables (default public)
--
-- | role             | for                         | may                                                      |
-- |------------------|-----------------------------|----------------------------------------------------------|
-- | wasp_monitor     | the exporter                | pg_monitor; SELECT on the application tables the app pack reads; read-only sessions |
-- | wasp_replication | streaming replicas          | REPLICATION (pg_hba.conf decides from where)             |
-- | wasp_backup      | pgBackRest (pg1-user)       | start/stop a backup, switch WAL, restore points, checkpoints, read settings |
-- | wasp_heartbeat   | `wasp replica heartbeat`    | UPDATE the one row of wasp.heartbeat                      |
--
-- None is a superuser, none may create roles or databases. A role whose
-- password variable is not set keeps its password (or has none: it can then
-- only log in by certificate or peer, as pg_hba.conf allows). Passwords are
-- stored as SCRAM-SHA-256 verifiers. The statements that carry a password are
-- kept out of the server log and pg_stat_statements (both could be read by
-- others); the password still crosses the connection, so run this over a
-- local socket or TLS.
--
-- Idempotent: running it again resets every role to these settings.

\set ON_ERROR_STOP on
\if :{?app_schema}
\else
  \set app_schema public
\endif

SET password_encryption = 'scram-sha-256';
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
SET pg_stat_statements.track_utility = off;

-- wasp_monitor: pg_monitor, read-only sessions, statement timeouts
\ir monitor_role.sql

-- The application tables the app pack reads (only those that exist: an older
-- schema may lack one). pg_stats shows column statistics (the postgres pack's
-- bloat estimate) only for tables the role may SELECT.
SELECT format('GRANT USAGE ON SCHEMA %I TO wasp_monitor', :'app_schema') \gexec
SELECT format('GRANT SELECT ON %I.%I TO wasp_monitor', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'app_schema' AND c.relkind IN ('r', 'p')
   AND c.relname IN ('salons', 'bookings', 'conversations', 'messages', 'ai_messages',
                     'webhook_logs', 'reminders')
 ORDER BY c.relname \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO wasp_monitor', current_database()) \gexec

-- wasp_replication: streams WAL to the replicas (pg_basebackup, primary_conninfo)
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wasp_replication') THEN
    CREATE ROLE wasp_replication LOGIN REPLICATION;
  END IF;
END
$$;
ALTER ROLE wasp_replication WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE
  NOBYPASSRLS CONNECTION LIMIT 10;

-- wasp_backup: pgBackRest's database user (backup.pg_user). PostgreSQL 15
-- lets a role without superuser run a backup with these grants; pgBackRest
-- reads the data files as the operating-system user, not through this role.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wasp_backup') THEN
    CREATE ROLE wasp_backup LOGIN;
  END IF;
END
$$;
ALTER ROLE wasp_backup WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 5;
GRANT pg_read_all_settings, pg_checkpoint TO wasp_backup;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_start(text, boolean) TO wasp_backup;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_stop(boolean) TO wasp_backup;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO wasp_backup;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO wasp_backup;

-- wasp_heartbeat: the table (readable by pg_monitor), then a role that may
-- update its one row and nothing else
\ir heartbeat.sql
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wasp_heartbeat') THEN
    CREATE ROLE wasp_heartbeat LOGIN;
  END IF;
END
$$;
ALTER ROLE wasp_heartbeat WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 3;
GRANT USAGE ON SCHEMA wasp TO wasp_heartbeat;
GRANT SELECT, UPDATE ON wasp.heartbeat TO wasp_heartbeat;
ALTER ROLE wasp_heartbeat SET synchronous_commit = local;

-- Passwords, from the environment (psql's \getenv), as SCRAM verifiers
\getenv monitor_password WASP_MONITOR_PASSWORD
\if :{?monitor_password}
ALTER ROLE wasp_monitor PASSWORD :'monitor_password';
\unset monitor_password
\endif
\getenv replication_password WASP_REPLICATION_PASSWORD
\if :{?replication_password}
ALTER ROLE wasp_replication PASSWORD :'replication_password';
\unset replication_password
\endif
\getenv backup_password WASP_BACKUP_PASSWORD
\if :{?backup_password}
ALTER ROLE wasp_backup PASSWORD :'backup_password';
\unset backup_password
\endif
\getenv heartbeat_password WASP_HEARTBEAT_PASSWORD
\if :{?heartbeat_password}
ALTER ROLE wasp_heartbeat PASSWORD :'heartbeat_password';
\unset heartbeat_password
\endif
