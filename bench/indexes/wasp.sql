-- Index set "wasp": wasp's recommendation for the benchmark queries, i.e. the
-- harness's "seed" set (the application's six tenant-scoped indexes plus a
-- btree on every queried time column) and one more btree:
--
-- * bookings(updated_at). Bookings change at any time (cancelled, moved) and
--   the application bumps updated_at on every change; wasp keeps its two
--   bookings windows (created in the last 24 h, starting in the next 24 h)
--   per row and re-reads only the rows whose updated_at moved since its last
--   refresh. Without this index that re-read visits every booking of the
--   window (created 24 h) or scans the table (starting 24 h).
--
-- BRIN instead of the btrees on the append-only tables was measured and
-- rejected (bench/indexes/wasp-brin.sql and docs/benchmark.md: rows inserted
-- after a VACUUM land in old pages and widen their ranges to "now").
-- For run_bench.py --index-sets <repo>/bench/indexes/wasp.sql; every index is
-- named bx_* so that the harness drops it when it switches sets.

-- the application's indexes (as in the harness's seed_only.sql)
CREATE INDEX bx_bookings_salon_start      ON bookings (salon_id, start_ts);
CREATE INDEX bx_bookings_phone_salon      ON bookings (customer_phone, salon_id);
CREATE INDEX bx_messages_salon_created    ON messages (salon_id, created_at DESC);
CREATE INDEX bx_messages_conv_created     ON messages (conversation_id, created_at);
CREATE INDEX bx_aiconv_salon_activity     ON ai_conversations (salon_id, last_activity DESC);
CREATE INDEX bx_aimsg_salon_created       ON ai_messages (salon_id, created_at DESC);

-- the time columns the monitoring queries filter on (as in the harness's seed.sql)
CREATE INDEX bx_bookings_created          ON bookings (created_at);
CREATE INDEX bx_bookings_start            ON bookings (start_ts);
CREATE INDEX bx_messages_created          ON messages (created_at);
CREATE INDEX bx_aiconv_activity           ON ai_conversations (last_activity);
CREATE INDEX bx_aimsg_created             ON ai_messages (created_at);
CREATE INDEX bx_webhook_created           ON webhook_logs (created_at);

-- wasp's per-row windows
CREATE INDEX bx_bookings_updated          ON bookings (updated_at);
