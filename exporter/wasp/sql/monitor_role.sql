-- The least-privilege role wasp connects as.
--
-- Run once per cluster as a superuser (or a role with CREATEROLE that may
-- grant pg_monitor), e.g.
--     psql -v ON_ERROR_STOP=1 -d postgres -f monitor_role.sql
-- then give it a password out of band (never in a file under version control):
--     psql -d postgres -c '\password wasp_monitor'
--
-- What it may do: read the statistics views and functions that pg_monitor
-- opens (pg_stat_activity of every session, pg_stat_statements, database and
-- relation sizes, the WAL and archive status directories). What it may not
-- do: write anything (every session is read-only), read application data
-- (until granted below), read pg_authid or pg_hba_file_rules (the postgres
-- pack then reports those two checks as unavailable instead of failing).
--
-- Idempotent: running it again resets the role to these settings.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wasp_monitor') THEN
    CREATE ROLE wasp_monitor LOGIN;
  END IF;
END
$$;

ALTER ROLE wasp_monitor WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS INHERIT CONNECTION LIMIT 10;
GRANT pg_monitor TO wasp_monitor;

-- Backstops in case a client forgets: the exporter sets these per session too.
ALTER ROLE wasp_monitor SET default_transaction_read_only = on;
ALTER ROLE wasp_monitor SET statement_timeout = '30s';
ALTER ROLE wasp_monitor SET lock_timeout = '10s';
ALTER ROLE wasp_monitor SET idle_in_transaction_session_timeout = '60s';

-- pg_stat_statements: the statements queries of the postgres pack need the
-- extension in the database the target connects to (and the library in
-- shared_preload_libraries). As a superuser, in that database:
--     CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
--
-- Application tables (the app pack, and the bloat estimate of the postgres
-- pack, which needs column statistics that pg_stats only shows for tables
-- the role may SELECT). In the application's database, as the owner of the
-- tables (replace app_owner and public with yours):
--     GRANT CONNECT ON DATABASE booking TO wasp_monitor;
--     GRANT USAGE ON SCHEMA public TO wasp_monitor;
--     GRANT SELECT ON ALL TABLES IN SCHEMA public TO wasp_monitor;
--     ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public
--       GRANT SELECT ON TABLES TO wasp_monitor;
