-- The heartbeat row written by `wasp replica heartbeat` on the primary.
-- One row (id = 1); its age on a standby is the end-to-end replication delay.
-- Idempotent: `wasp replica heartbeat --install` runs it on every call.
CREATE SCHEMA IF NOT EXISTS wasp;
CREATE TABLE IF NOT EXISTS wasp.heartbeat (
    id      smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    beat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    seq     bigint      NOT NULL DEFAULT 0,
    source  text        NOT NULL DEFAULT ''
);
INSERT INTO wasp.heartbeat (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
-- the exporter's sessions (members of pg_monitor) read it everywhere
GRANT USAGE ON SCHEMA wasp TO pg_monitor;
GRANT SELECT ON wasp.heartbeat TO pg_monitor;
