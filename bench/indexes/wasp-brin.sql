-- Index set "wasp-brin" (measured as "wasp" in the first runs, see
-- docs/benchmark.md): BRIN on the append-only tables, on top of the application's six (tenant-scoped) seed indexes.
--
-- Measured (docs/benchmark.md): bookings(updated_at) pays off (the per-row
-- refresh reads only changed rows); the BRIN indexes do not.  Rows inserted
-- after a VACUUM land in the free space the FSM lists at the end of old
-- pages, widening those ranges to "last month .. now", and every query for
-- recent rows then reads all of them.  The recommendation that came out of
-- it: the btrees of the "seed" set plus bookings(updated_at).
-- For run_bench.py --index-sets <repo>/bench/indexes/wasp.sql; every index is
-- named bx_* so that the harness drops it when it switches sets.
--
-- * messages, ai_messages, webhook_logs are append-only and written in
--   created_at order: a BRIN index on created_at (a few hundred kB instead of
--   a btree of hundreds of MB) finds both the head wasp re-reads and the edge
--   bucket of a window.  16 pages per range keeps the over-read of a small
--   incremental refresh to a few pages; autosummarize summarises new ranges.
-- * bookings rows change at any time (status), but every change bumps
--   updated_at: the per-row mode reads `updated_at >= <last refresh - 60 s>`,
--   which a btree on updated_at answers without touching the rest of the
--   24 h window.  created_at keeps a btree for the hourly full reload (rows
--   that are updated move, so a BRIN on bookings.created_at degrades).
-- * bookings.start_ts (a forward window) and ai_conversations.last_activity
--   (bumped by the application) are not append-only: btrees, as in "seed".

-- the application's indexes (as in the harness's seed_only.sql)
CREATE INDEX bx_bookings_salon_start      ON bookings (salon_id, start_ts);
CREATE INDEX bx_bookings_phone_salon      ON bookings (customer_phone, salon_id);
CREATE INDEX bx_messages_salon_created    ON messages (salon_id, created_at DESC);
CREATE INDEX bx_messages_conv_created     ON messages (conversation_id, created_at);
CREATE INDEX bx_aiconv_salon_activity     ON ai_conversations (salon_id, last_activity DESC);
CREATE INDEX bx_aimsg_salon_created       ON ai_messages (salon_id, created_at DESC);

-- monitoring
CREATE INDEX bx_messages_created_brin ON messages     USING brin (created_at) WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX bx_aimsg_created_brin    ON ai_messages  USING brin (created_at) WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX bx_webhook_created_brin  ON webhook_logs USING brin (created_at) WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX bx_bookings_updated      ON bookings (updated_at);
CREATE INDEX bx_bookings_created      ON bookings (created_at);
CREATE INDEX bx_bookings_start        ON bookings (start_ts);
CREATE INDEX bx_aiconv_activity       ON ai_conversations (last_activity);
