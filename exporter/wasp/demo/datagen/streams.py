"""The per-day streams of the generator: WhatsApp messages, AI messages, webhooks, the AI cache."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from wasp.demo.datagen.base import _Base
from wasp.demo.datagen.profile import (
    AI_MODELS,
    DAILY,
    INTENTS,
    WEBHOOK_EVENT_TYPES,
    WORDS,
)
from wasp.demo.datagen.sqlbits import (
    JsonExpr,
    StrExpr,
    choose,
    json_text,
    lit,
    phone_number_id,
    pick,
    uuid_of,
)


class _Streams(_Base):
    def _messages(self, a: datetime, b: datetime) -> int:
        params = self._bucket_params(a, b, DAILY["messages"] * self.scale)
        in_type = pick(
            "u_type",
            [
                ("TEXT", 88),
                ("IMAGE", 6),
                ("AUDIO", 3),
                ("INTERACTIVE", 1.5),
                ("DOCUMENT", 1),
                ("VIDEO", 0.5),
            ],
        )
        out_type = pick(
            "u_type",
            [("TEXT", 72), ("TEMPLATE", 20), ("INTERACTIVE", 5), ("IMAGE", 2), ("DOCUMENT", 1)],
        )
        d1 = "(1 - 4 * ln(1 - u_d1))"  # seconds until the delivery receipt (mean 5 s)
        d2 = "(-600 * ln(1 - u_d2))"  # then seconds until read (mean 10 min)
        age = "extract(epoch FROM %(end)s - created_at)"
        status = f"""CASE
            WHEN direction = 'INBOUND' THEN
                CASE WHEN u_read < 0.02 OR {age} < {d1} THEN 'DELIVERED' ELSE 'READ' END
            WHEN u_fail < 0.02 THEN CASE WHEN {age} < 3 THEN 'SENT' ELSE 'FAILED' END
            WHEN u_read < 0.01 OR {age} < {d1} THEN 'SENT'
            WHEN u_read < 0.25 OR {age} < {d1} + {d2} THEN 'DELIVERED'
            ELSE 'READ' END"""
        content = (
            f"CASE WHEN message_type <> 'TEXT' AND message_type <> 'TEMPLATE' THEN NULL"
            f" WHEN direction = 'INBOUND' THEN {choose('u_txt', WORDS['customer_texts'])}"
            f" ELSE {choose('u_txt', WORDS['business_texts'])} END"
        )
        return self._exec(
            f"""
            INSERT INTO messages (id, salon_id, direction, conversation_id, phone_number, message_type,
                                  content, whatsapp_id, status, cost, created_at)
            SELECT id, salon_id, direction{self._cast("messages", "direction")},
                   CASE WHEN message_type = 'TEMPLATE' AND u_cost < 0.5 THEN NULL
                        ELSE {self._conv_id("salon_id", "phone")} END,
                   phone, message_type{self._cast("messages", "message_type")}, {content},
                   -- whatsapp_id sorts like id, so both unique indexes take the rows in order
                   CASE WHEN status = 'FAILED' AND u_cost < 0.5 THEN NULL
                        ELSE 'wamid.HBgL' || upper(replace(id, '-', '')) END,
                   status{self._cast("messages", "status")},
                   CASE WHEN direction = 'INBOUND' THEN NULL
                        WHEN message_type = 'TEMPLATE'
                            THEN round((0.006 + 0.05 * u_cost * u_cost)::numeric, 4)::float8
                        ELSE 0 END,
                   created_at
            FROM (
                SELECT y.*, {status} AS status
                FROM (
                    SELECT x.*, {self._salon_id("rank")} AS salon_id, {self._phone("rank", "u_cust")} AS phone,
                           CASE WHEN direction = 'INBOUND' THEN {in_type} ELSE {out_type} END AS message_type
                    FROM (
                        SELECT {uuid_of(str(self.seed), "'msg'", "h.key", "g.n")} AS id,
                               h.ts + random() * h.w * interval '1 second' AS created_at,
                               {self._rank()} AS rank,
                               CASE WHEN random() < 0.45 THEN 'INBOUND' ELSE 'OUTBOUND' END AS direction,
                               random() AS u_cust, random() AS u_type, random() AS u_fail,
                               random() AS u_d1, random() AS u_d2, random() AS u_read,
                               random() AS u_txt, random() AS u_cost
                        FROM {self._BUCKET_ROWS}
                    ) x
                    OFFSET 0
                ) y
                OFFSET 0
            ) z
            ORDER BY id""",
            params,
        )

    def _ai(self, a: datetime, b: datetime) -> int:
        params = self._bucket_params(a, b, DAILY["ai_conversations"] * self.scale)
        models = [(m.name, m.share) for m in AI_MODELS]
        pref = (
            "(('x' || substr(md5(concat_ws(':', " + str(self.seed) + ", 'pref', rank)), 1, 12))"
            "::bit(48)::bigint / 281474976710656.0)"
        )
        price = (
            "CASE ai_model "
            + " ".join(f"WHEN {lit(m.name)} THEN {m.usd_per_1k_tokens!r}" for m in AI_MODELS)
            + " END"
        )
        median = (
            "CASE ai_model "
            + " ".join(f"WHEN {lit(m.name)} THEN {m.median_response_ms}" for m in AI_MODELS)
            + " END"
        )
        intent = pick(
            "u_int",
            [(i, w) for i, w in zip(INTENTS, (30, 15, 12, 12, 10, 8, 6, 5, 2), strict=True)],
        )
        has_intent = self.info.has_column("ai_messages", "intent")
        intent_col = ", intent" if has_intent else ""
        intent_val = ", CASE WHEN direction = 'INBOUND' THEN intent END" if has_intent else ""
        exchange = "((j - 1) / 2)"
        return self._exec(
            f"""
            WITH c AS MATERIALIZED (
                SELECT x.id, x.created_at, {self._salon_id("rank")} AS salon_id,
                       {self._phone("rank", "u_cust")} AS phone,
                       CASE WHEN u_mix < 0.8 THEN {pick("u_pref", models)} ELSE {pick("u_model", models)} END
                           AS ai_model,
                       2 * (1 + least(5, floor(-ln(1 - u_len) / ln(2))))::int - (u_odd < 0.03)::int AS k,
                       40 + 80 * -ln(1 - u_gap) AS gap_s
                FROM (
                SELECT x0.*, {pref} AS u_pref  -- each salon mostly uses its own model
                FROM (
                    SELECT {uuid_of(str(self.seed), "'aic'", "h.key", "g.n")} AS id,
                           h.ts + random() * h.w * interval '1 second' AS created_at,
                           {self._rank()} AS rank,
                           random() AS u_cust, random() AS u_mix, random() AS u_model,
                           random() AS u_len, random() AS u_gap, random() AS u_odd
                    FROM {self._BUCKET_ROWS}
                ) x0
                OFFSET 0
                ) x
            ), m AS MATERIALIZED (
                SELECT z.*,
                       c_created + ({exchange} * gap_s) * interval '1 second'
                           + coalesce(response_time_ms, 0) * interval '1 millisecond' AS created_at,
                       CASE WHEN direction = 'OUTBOUND'
                            THEN round((tokens_used / 1000.0::float8 * {price.replace("ai_model", "z.ai_model")}
                                        * (0.85 + 0.3 * u_cost))::numeric, 6)::float8 END AS cost
                FROM (
                    SELECT y.*,
                           CASE WHEN direction = 'OUTBOUND' THEN
                               round({median} * exp(0.55 * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2)))::int
                               + CASE WHEN u_tail < 0.015 THEN 5000 + floor(u_tail / 0.015 * 25000)::int
                                      ELSE 0 END
                           END AS response_time_ms,
                           CASE WHEN direction = 'OUTBOUND' THEN
                               300 + 180 * {exchange} + floor(u_tok * u_tok * 1200)::int END AS tokens_used,
                           {intent} AS intent,
                           CASE WHEN direction = 'INBOUND' THEN {choose("u_txt", WORDS["customer_texts"])}
                                ELSE {choose("u_txt", WORDS["assistant_texts"])} END AS content
                    FROM (
                        SELECT c.id AS conversation_id, c.salon_id, c.phone, c.ai_model,
                               c.created_at AS c_created, c.gap_s, j,
                               md5(c.id || ':' || j)::uuid::text AS id,
                               CASE WHEN mod(j, 2) = 1 THEN 'INBOUND' ELSE 'OUTBOUND' END AS direction,
                               random() AS u1, random() AS u2, random() AS u_tail, random() AS u_tok,
                               random() AS u_int, random() AS u_txt, random() AS u_cost
                        FROM c CROSS JOIN LATERAL generate_series(1, c.k) AS j
                        OFFSET 0
                    ) y
                    OFFSET 0
                ) z
            ), ins AS (
                INSERT INTO ai_messages (id, conversation_id, salon_id, phone_number, direction, content,
                                         ai_model, tokens_used, cost, response_time_ms{intent_col},
                                         created_at)
                SELECT id, conversation_id, salon_id, phone, direction{self._cast("ai_messages", "direction")},
                       content, CASE WHEN direction = 'OUTBOUND' THEN ai_model END, tokens_used, cost,
                       response_time_ms{intent_val}, created_at
                FROM m
                WHERE created_at < %(end)s
                ORDER BY id
            )
            INSERT INTO ai_conversations (id, salon_id, phone_number, conversation_id, ai_model,
                                          total_tokens, total_cost, message_count, last_activity,
                                          created_at)
            SELECT c.id, c.salon_id, c.phone, {self._conv_id("c.salon_id", "c.phone")}, c.ai_model,
                   t.tokens, t.cost, t.n, t.last, c.created_at
            FROM c
            JOIN (
                SELECT conversation_id, count(*)::int AS n, coalesce(sum(tokens_used), 0)::int AS tokens,
                       coalesce(sum(cost), 0) AS cost, max(created_at) AS last
                FROM m WHERE created_at < %(end)s GROUP BY conversation_id
            ) t ON t.conversation_id = c.id
            ORDER BY c.id""",
            params,
        )

    def _webhooks(self, a: datetime, b: datetime) -> int:
        params = self._bucket_params(a, b, DAILY["webhook_logs"] * self.scale)
        shares = dict(zip(WEBHOOK_EVENT_TYPES, (42, 40, 8, 5, 3, 2), strict=True))
        fail = dict(zip(WEBHOOK_EVENT_TYPES, (0.01, 0.005, 0.06, 0.03, 0.01, 0.01), strict=True))
        median = dict(zip(WEBHOOK_EVENT_TYPES, (45, 8, 350, 180, 20, 25), strict=True))
        event = pick("u_ev", list(shares.items()))
        fail_rate = (
            "CASE event_type "
            + " ".join(f"WHEN {lit(e)} THEN {r!r}" for e, r in fail.items())
            + " END"
        )
        med = (
            "CASE event_type "
            + " ".join(f"WHEN {lit(e)} THEN {v}" for e, v in median.items())
            + " END"
        )
        ts = "extract(epoch FROM created_at)::bigint::text"
        wamid = StrExpr("'wamid.HBgL' || upper(substr(md5(id), 1, 28))")
        ts = StrExpr("extract(epoch FROM created_at)::bigint::text")
        pnid = StrExpr(f"coalesce({phone_number_id('prank')}, '100000000000000')")
        phone = StrExpr("phone")

        def jchoose(u: str, options: tuple[str, ...]) -> JsonExpr:
            return JsonExpr(choose(u, [json.dumps(o) for o in options]))

        def whatsapp(value: dict[str, Any]) -> dict[str, Any]:
            return {
                "object": "whatsapp_business_account",
                "entry": [{"id": pnid, "changes": [{"field": "messages", "value": value}]}],
            }

        received = whatsapp({
            "messaging_product": "whatsapp",
            "messages": [{
                "from": phone, "id": wamid, "timestamp": ts, "type": "text",
                "text": {"body": jchoose("u_txt", WORDS["customer_texts"])},
            }],
        })  # fmt: skip
        status_upd = whatsapp({
            "messaging_product": "whatsapp",
            "statuses": [{
                "id": wamid, "status": jchoose("u_txt", ("sent", "delivered", "read")),
                "timestamp": ts, "recipient_id": phone,
            }],
        })  # fmt: skip
        calendar = {
            "kind": "api#channel",
            "resourceState": jchoose("u_txt", ("exists", "sync", "not_exists")),
            "channelId": StrExpr("substr(md5(id), 1, 16)"),
            "resourceId": StrExpr("substr(md5(id || 'r'), 1, 20)"),
        }
        payment = {
            "type": jchoose(
                "u_txt",
                ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"),
            ),
            "amount": JsonExpr("(1500 + floor(u_txt * 12000)::int)::text"),
            "currency": "usd",
            "id": StrExpr("'pi_' || substr(md5(id), 1, 24)"),
        }
        template = {
            "event": jchoose("u_txt", ("APPROVED", "REJECTED", "PENDING")),
            "message_template_id": JsonExpr("floor(u_txt * 1e12)::bigint::text"),
            "message_template_name": jchoose("u_ev", WORDS["template_names"]),
        }
        account = {"field": "account_update", "phone_number": phone, "event": "VERIFIED_ACCOUNT"}
        payload = f"""(CASE event_type
            WHEN 'message_received' THEN {json_text(received)}
            WHEN 'status_update' THEN {json_text(status_upd)}
            WHEN 'calendar_sync' THEN {json_text(calendar)}
            WHEN 'payment' THEN {json_text(payment)}
            WHEN 'template_status_update' THEN {json_text(template)}
            ELSE {json_text(account)} END)::jsonb"""
        has_pt = self.info.has_column("webhook_logs", "processing_time_ms")
        pt_col = ", processing_time_ms" if has_pt else ""
        pt_val = ", CASE WHEN status = 'received' THEN NULL ELSE ptime END" if has_pt else ""
        age_ms = "extract(epoch FROM %(end)s - created_at) * 1000"
        return self._exec(
            f"""
            INSERT INTO webhook_logs (id, salon_id, event_type, payload, status, error{pt_col}, created_at)
            SELECT id, salon_id, event_type, {payload}, status,
                   CASE WHEN status IN ('failed', 'error')
                        THEN {choose("u_err", WORDS["webhook_errors"])} END{pt_val}, created_at
            FROM (
                SELECT y.*,
                       CASE WHEN {age_ms} < ptime OR u_fail > 0.9995 THEN 'received'
                            WHEN u_fail < {fail_rate} * 0.6 THEN 'failed'
                            WHEN u_fail < {fail_rate} THEN 'error'
                            ELSE 'processed' END AS status
                FROM (
                    SELECT x.*, CASE WHEN u_null < 0.015 THEN NULL ELSE {self._salon_id("rank")} END AS salon_id,
                           CASE WHEN u_null < 0.015 THEN NULL ELSE rank END AS prank,
                           {self._phone("rank", "u_cust")} AS phone,
                           greatest(1, round({med} * exp(0.7 * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2))
                                              + CASE WHEN u_tail < 0.004 THEN 5000 + u_tail * 6e6 ELSE 0 END
                                   ))::int AS ptime
                    FROM (
                        SELECT w.*, {event} AS event_type
                        FROM (
                            SELECT {uuid_of(str(self.seed), "'wh'", "h.key", "g.n")} AS id,
                                   h.ts + random() * h.w * interval '1 second' AS created_at,
                                   {self._rank()} AS rank,
                                   random() AS u_ev, random() AS u_null, random() AS u_cust,
                                   random() AS u_fail, random() AS u_err, random() AS u_txt,
                                   random() AS u1, random() AS u2, random() AS u_tail
                            FROM {self._BUCKET_ROWS}
                        ) w
                        OFFSET 0
                    ) x
                    OFFSET 0
                ) y
                OFFSET 0
            ) z
            ORDER BY id""",
            params,
        )

    def _cache(self, a: datetime, b: datetime) -> int:
        params = self._bucket_params(a, b, DAILY["ai_response_cache"] * self.scale)
        # The app deletes entries two days after they expire: only those still present are made.
        return self._exec(
            f"""
            INSERT INTO ai_response_cache (id, query_hash, salon_id, hit_count,
                                           created_at, last_used_at, expires_at)
            SELECT id, md5(id || ':q'), salon_id, hits, created_at,
                   CASE WHEN hits = 0 THEN created_at
                        ELSE created_at + u_used * (least(expires_at, %(end)s) - created_at) END,
                   expires_at
            FROM (
                SELECT x.*, {self._salon_id("rank")} AS salon_id,
                       {choose("u_txt", WORDS["assistant_texts"])} AS response,
                       floor(exp(u_h1 * u_h2 * 7))::int - 1 AS hits,
                       created_at + CASE WHEN u_ttl < 0.7 THEN interval '24 hours'
                                         ELSE interval '7 days' END AS expires_at
                FROM (
                    SELECT {uuid_of(str(self.seed), "'cache'", "h.key", "g.n")} AS id,
                           h.ts + random() * h.w * interval '1 second' AS created_at,
                           {self._rank()} AS rank, random() AS u_txt, random() AS u_h1,
                           random() AS u_h2, random() AS u_ttl, random() AS u_used
                    FROM {self._BUCKET_ROWS}
                ) x
                OFFSET 0
            ) y
            WHERE expires_at >= %(end)s - interval '2 days'
            ORDER BY id""",
            params,
        )

    # -- derived tables ---------------------------------------------------
