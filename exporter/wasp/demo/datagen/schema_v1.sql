-- The application's schema as it runs today (Prisma migrations, PostgreSQL 15).
--
-- Apply to an EMPTY database: plain CREATE statements, no IF NOT EXISTS, so a
-- second run fails loudly instead of half-matching an existing schema.
--
-- The tables ../shared/app-schema.md documents hold exactly the columns it lists,
-- no more (tests/test_datagen.py compares them with tests/data/app-schema-tables.md):
-- a query that needs a column the application lacks fails here first.
-- Faithful to what Prisma generates:
--   * ids are application-generated UUIDs stored as text (no sequences);
--   * DateTime is timestamp(3) without time zone holding UTC. The
--     DEFAULT CURRENT_TIMESTAMP that Prisma emits would store *session-local*
--     time; the application (and wasp's generator) always supplies the value;
--   * status columns are plain text with upper-case values;
--   * @@unique / @unique become unique INDEXES named <table>_<cols>_key, and
--     @@index becomes <table>_<cols>_idx.
-- Foreign keys are left out: Prisma's relationMode = "prisma" keeps relations
-- in the client, and no monitoring query depends on them. Secondary indexes are
-- the ones the application is known to have (tenant-scoped, leading with
-- salon_id, plus bookings (created_at)); wasp recommends any others it needs.

CREATE TABLE salons (
    id                      text NOT NULL,
    name                    text NOT NULL,
    phone_number_id         text,
    is_active               boolean NOT NULL DEFAULT true,
    trial_status            text NOT NULL DEFAULT 'ACTIVE',
    usage_current_bookings  integer NOT NULL DEFAULT 0,
    usage_limit_bookings    integer NOT NULL DEFAULT 100,
    usage_current_messages  integer NOT NULL DEFAULT 0,
    usage_limit_messages    integer NOT NULL DEFAULT 1000,
    created_at              timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT salons_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX salons_phone_number_id_key ON salons (phone_number_id);

CREATE TABLE masters (
    id          text NOT NULL,
    salon_id    text NOT NULL,
    name        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  timestamp(3) without time zone NOT NULL,
    CONSTRAINT masters_pkey PRIMARY KEY (id)
);
CREATE INDEX masters_salon_id_idx ON masters (salon_id);

CREATE TABLE bookings (
    id                 text NOT NULL,
    booking_code       text NOT NULL,
    salon_id           text NOT NULL,
    customer_phone     text NOT NULL,
    customer_name      text,
    service            text NOT NULL,
    master_id          text,
    service_id         text,
    start_ts           timestamp(3) without time zone NOT NULL,
    end_ts             timestamp(3) without time zone,
    status             text NOT NULL DEFAULT 'CONFIRMED',
    reminder_sent      boolean NOT NULL DEFAULT false,
    reminder_response  text,
    created_at         timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at         timestamp(3) without time zone NOT NULL,
    CONSTRAINT bookings_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX bookings_booking_code_salon_id_key ON bookings (booking_code, salon_id);
CREATE INDEX bookings_salon_id_start_ts_idx ON bookings (salon_id, start_ts);
CREATE INDEX bookings_salon_id_created_at_idx ON bookings (salon_id, created_at);
CREATE INDEX bookings_created_at_idx ON bookings (created_at);

CREATE TABLE conversations (
    id               text NOT NULL,
    salon_id         text NOT NULL,
    phone_number     text NOT NULL,
    status           text NOT NULL DEFAULT 'ACTIVE',
    started_at       timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_message_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    message_count    integer NOT NULL DEFAULT 0,
    cost             double precision NOT NULL DEFAULT 0,
    CONSTRAINT conversations_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX conversations_salon_id_phone_number_key ON conversations (salon_id, phone_number);
CREATE INDEX conversations_salon_id_last_message_at_idx ON conversations (salon_id, last_message_at);

CREATE TABLE messages (
    id               text NOT NULL,
    salon_id         text NOT NULL,
    direction        text NOT NULL,
    conversation_id  text,
    phone_number     text NOT NULL,
    message_type     text NOT NULL DEFAULT 'TEXT',
    content          text,
    whatsapp_id      text,
    status           text NOT NULL DEFAULT 'SENT',
    cost             double precision,
    created_at       timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT messages_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX messages_whatsapp_id_key ON messages (whatsapp_id);
CREATE INDEX messages_salon_id_created_at_idx ON messages (salon_id, created_at);

CREATE TABLE ai_conversations (
    id               text NOT NULL,
    salon_id         text NOT NULL,
    phone_number     text NOT NULL,
    conversation_id  text,
    ai_model         text NOT NULL DEFAULT 'gpt-4',
    total_tokens     integer NOT NULL DEFAULT 0,
    total_cost       double precision NOT NULL DEFAULT 0,
    message_count    integer NOT NULL DEFAULT 0,
    last_activity    timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at       timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ai_conversations_pkey PRIMARY KEY (id)
);
CREATE INDEX ai_conversations_salon_id_created_at_idx ON ai_conversations (salon_id, created_at);

CREATE TABLE ai_messages (
    id                text NOT NULL,
    conversation_id   text NOT NULL,
    salon_id          text NOT NULL,
    phone_number      text NOT NULL,
    direction         text NOT NULL,
    content           text NOT NULL,
    ai_model          text,
    tokens_used       integer,
    cost              double precision,
    response_time_ms  integer,
    created_at        timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ai_messages_pkey PRIMARY KEY (id)
);
CREATE INDEX ai_messages_salon_id_created_at_idx ON ai_messages (salon_id, created_at);

CREATE TABLE webhook_logs (
    id          text NOT NULL,
    salon_id    text,
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'received',
    error       text,
    created_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT webhook_logs_pkey PRIMARY KEY (id)
);
CREATE INDEX webhook_logs_salon_id_created_at_idx ON webhook_logs (salon_id, created_at);

CREATE TABLE reminders (
    id            text NOT NULL,
    booking_id    text NOT NULL,
    salon_id      text NOT NULL,
    scheduled_at  timestamp(3) without time zone NOT NULL,
    sent_at       timestamp(3) without time zone,
    status        text NOT NULL DEFAULT 'PENDING',
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT reminders_pkey PRIMARY KEY (id)
);
CREATE INDEX reminders_booking_id_idx ON reminders (booking_id);
CREATE INDEX reminders_salon_id_scheduled_at_idx ON reminders (salon_id, scheduled_at);

CREATE TABLE templates (
    id          text NOT NULL,
    salon_id    text NOT NULL,
    name        text NOT NULL,
    language    text NOT NULL DEFAULT 'en',
    category    text NOT NULL,
    status      text NOT NULL DEFAULT 'PENDING',
    created_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT templates_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX templates_salon_id_name_language_key ON templates (salon_id, name, language);

CREATE TABLE ai_response_cache (
    id            text NOT NULL,
    query_hash    text NOT NULL,
    salon_id      text NOT NULL,
    hit_count     integer NOT NULL DEFAULT 0,
    created_at    timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_used_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at    timestamp(3) without time zone NOT NULL,
    CONSTRAINT ai_response_cache_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ai_response_cache_query_hash_salon_id_key ON ai_response_cache (query_hash, salon_id);
CREATE INDEX ai_response_cache_expires_at_idx ON ai_response_cache (expires_at);
