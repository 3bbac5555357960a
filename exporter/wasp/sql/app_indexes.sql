-- Indexes that the built-in app pack needs to stay cheap (see docs/app-pack.md
-- for what each one serves and the measured DB time per refresh with and
-- without it). The application's own indexes lead with salon_id and cannot
-- serve a global "last N minutes" window; without these, every refresh of the
-- window queries reads the whole table (seconds per refresh at a month of
-- data, and growing).
--
-- Run as the application's owner, one statement at a time outside a
-- transaction block (CONCURRENTLY does not block the application's writes):
--   psql -v ON_ERROR_STOP=1 -f app_indexes.sql "$APP_DSN"
-- The names start with wasp_ so that they are easy to tell from Prisma's.

-- The append-only event tables, read by time windows and, for webhook_logs,
-- by "the newest row" (which only a btree answers: a BRIN index cannot).
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_messages_created_at_idx
    ON messages (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_ai_messages_created_at_idx
    ON ai_messages (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_webhook_logs_created_at_idx
    ON webhook_logs (created_at);

-- Bookings by appointment time (upcoming, double bookings) and by last change
-- (cancellations, no-shows, and the incremental re-read of changed bookings).
-- bookings (created_at) already exists in the application's schema.
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_bookings_start_ts_idx
    ON bookings (start_ts);
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_bookings_updated_at_idx
    ON bookings (updated_at);

-- Reminders due in the last day, and the unsent ones (overdue). The partial
-- index holds only rows not yet sent, so it stays small.
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_reminders_scheduled_at_idx
    ON reminders (scheduled_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS wasp_reminders_unsent_scheduled_at_idx
    ON reminders (scheduled_at) WHERE sent_at IS NULL;
