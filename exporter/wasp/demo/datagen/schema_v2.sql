-- The application's schema after the enum migration (Prisma, PostgreSQL 15).
--
-- Apply to an EMPTY database: plain CREATE statements, no IF NOT EXISTS, so a
-- second run fails loudly instead of half-matching an existing schema.
--
-- Same tables, columns and indexes as schema_v1.sql (exactly the documented
-- columns, see there), plus the newer-schema-only ones:
--   * Prisma enums (quoted PascalCase type names) for the status-like columns,
--     with the same upper-case values the text columns held; queries that
--     compare them must cast the column to text to work on both variants;
--   * webhook_logs.processing_time_ms, ai_messages.intent;
--   * the intent_analytics table (daily counts written by a background job).
-- webhook_logs.status stays text: its values are lower-case and defined by
-- the application's webhook handlers, not by an enum.
-- Everything else as in schema_v1.sql: text UUID ids, timestamp(3) without
-- time zone holding UTC (the CURRENT_TIMESTAMP defaults are never relied on),
-- unique indexes named <table>_<cols>_key, the same secondary indexes, no
-- foreign keys.

CREATE TYPE "BookingStatus" AS ENUM ('CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW', 'RESCHEDULED');
CREATE TYPE "MessageDirection" AS ENUM ('INBOUND', 'OUTBOUND');
CREATE TYPE "MessageType" AS ENUM ('TEXT', 'TEMPLATE', 'IMAGE', 'DOCUMENT', 'AUDIO', 'VIDEO', 'INTERACTIVE');
CREATE TYPE "MessageStatus" AS ENUM ('SENT', 'DELIVERED', 'READ', 'FAILED');
CREATE TYPE "ConversationStatus" AS ENUM ('ACTIVE', 'EXPIRED', 'BLOCKED', 'ARCHIVED');
CREATE TYPE "ReminderStatus" AS ENUM ('PENDING', 'SENT', 'FAILED', 'CANCELLED');
CREATE TYPE "TemplateStatus" AS ENUM ('PENDING', 'APPROVED', 'REJECTED');

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
    status             "BookingStatus" NOT NULL DEFAULT 'CONFIRMED',
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
    status           "ConversationStatus" NOT NULL DEFAULT 'ACTIVE',
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
    direction        "MessageDirection" NOT NULL,
    conversation_id  text,
    phone_number     text NOT NULL,
    message_type     "MessageType" NOT NULL DEFAULT 'TEXT',
    content          text,
    whatsapp_id      text,
    status           "MessageStatus" NOT NULL DEFAULT 'SENT',
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
    direction         "MessageDirection" NOT NULL,
    content           text NOT NULL,
    ai_model          text,
    tokens_used       integer,
    cost              double precision,
    response_time_ms  integer,
    intent            text,
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
    processing_time_ms integer,
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
    status        "ReminderStatus" NOT NULL DEFAULT 'PENDING',
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
    status      "TemplateStatus" NOT NULL DEFAULT 'PENDING',
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

CREATE TABLE intent_analytics (
    id          text NOT NULL,
    salon_id    text NOT NULL,
    intent      text NOT NULL,
    count       integer NOT NULL DEFAULT 0,
    date        date NOT NULL,
    created_at  timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  timestamp(3) without time zone NOT NULL,
    CONSTRAINT intent_analytics_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX intent_analytics_salon_id_intent_date_key ON intent_analytics (salon_id, intent, date);
CREATE INDEX intent_analytics_date_idx ON intent_analytics (date);
