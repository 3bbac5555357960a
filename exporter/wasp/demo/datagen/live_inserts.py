"""The live writer's inserts: messages, AI exchanges, bookings, webhooks, cache, templates."""

from __future__ import annotations

import heapq
import json
import math
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from wasp.demo.datagen.live_base import _NOW, _WriterBase
from wasp.demo.datagen.profile import (
    AI_MODELS,
    INTENTS,
    SERVICES,
    WEBHOOK_EVENT_TYPES,
    WORDS,
)


class _Inserts(_WriterBase):
    def schedule_receipts(self, mid: str, status: str, *, fast: bool = False) -> None:
        r = self.rng.random()
        d1 = 1 + self.rng.expovariate(1 / 4)
        if status == "SENT":
            if r < 0.02:
                self.schedule(self.rng.uniform(1, 5), "msg", mid, "FAILED")
                return
            if r < 0.03:
                return  # never delivered (phone off)
            self.schedule(d1, "msg", mid, "DELIVERED")
        if r < 0.25:
            return  # delivered, never read
        read_after = self.rng.expovariate(1 / (20 if fast else 120))
        self.schedule(d1 + read_after, "msg", mid, "READ")

    def new_messages(self, n: int) -> None:
        if n == 0:
            return
        rows = []
        for _ in range(n):
            s = self.salon()
            inbound = self.rng.random() < 0.45
            mtype = "TEXT"
            if not inbound and self.rng.random() < 0.2:
                mtype = "TEMPLATE"
            elif self.rng.random() < 0.08:
                mtype = self.rng.choice(("IMAGE", "AUDIO", "INTERACTIVE", "DOCUMENT", "VIDEO"))
            texts = WORDS["customer_texts"] if inbound else WORDS["business_texts"]
            content = self.rng.choice(texts) if mtype in ("TEXT", "TEMPLATE") else None
            cost = (
                None
                if inbound
                else (
                    round(0.006 + 0.05 * self.rng.random() ** 2, 4) if mtype == "TEMPLATE" else 0.0
                )
            )
            mid = self.new_id()
            rows.append((
                mid, s.id, "INBOUND" if inbound else "OUTBOUND", self.phone(s), mtype, content,
                "wamid.HBgL" + mid.replace("-", "").upper(), "DELIVERED" if inbound else "SENT",
                cost, self.lag_ms(),
            ))  # fmt: skip
        # The conversation row first (one per salon and phone), then the messages that point at it.
        per_pair: Counter[tuple[str, str]] = Counter((r[1], r[3]) for r in rows)
        pairs = sorted(per_pair)
        conv_ids = dict(
            ((str(sid), str(ph)), str(cid))
            for cid, sid, ph in self.conn.execute(
                f"""INSERT INTO conversations (id, salon_id, phone_number, status, started_at,
                                               last_message_at, message_count, cost)
                    SELECT v.id, v.salon_id, v.phone, 'ACTIVE'{self.cast("conversations", "status")},
                           {_NOW}, {_NOW}, v.n, 0
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS v(id, salon_id, phone, n)
                    ON CONFLICT (salon_id, phone_number) DO UPDATE
                    SET last_message_at = excluded.last_message_at,
                        message_count = conversations.message_count + excluded.message_count,
                        status = CASE WHEN conversations.status::text = 'BLOCKED'
                                      THEN conversations.status ELSE excluded.status END
                    RETURNING id, salon_id, phone_number""",
                (
                    [self.new_id() for _ in pairs],
                    [p[0] for p in pairs],
                    [p[1] for p in pairs],
                    [per_pair[p] for p in pairs],
                ),
            ).fetchall()
        )
        cols = list(zip(*rows, strict=True))
        self.conn.execute(
            f"""INSERT INTO messages (id, salon_id, direction, conversation_id, phone_number,
                                      message_type, content, whatsapp_id, status, cost, created_at)
                SELECT v.id, v.salon_id, v.direction{self.cast("messages", "direction")}, v.conv,
                       v.phone, v.mtype{self.cast("messages", "message_type")}, v.content, v.wa,
                       v.status{self.cast("messages", "status")}, v.cost,
                       {_NOW} - v.lag * interval '1 millisecond'
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                            %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[])
                     AS v(id, salon_id, direction, conv, phone, mtype, content, wa, status, cost, lag)""",
            (
                list(cols[0]), list(cols[1]), list(cols[2]),
                [conv_ids.get((r[1], r[3])) for r in rows],
                list(cols[3]), list(cols[4]), list(cols[5]), list(cols[6]), list(cols[7]),
                list(cols[8]), list(cols[9]),
            ),
        )  # fmt: skip
        self.stats.inserted["messages"] += n
        self.stats.updated["conversations"] += len(pairs)
        for r in rows:
            if r[2] == "INBOUND":
                self.schedule(self.rng.uniform(1, 3), "msg", r[0], "READ")
            else:
                self.schedule_receipts(r[0], "SENT")
        usage = Counter(r[1] for r in rows)
        self.bump_usage("usage_current_messages", usage)

    def bump_usage(self, column: str, per_salon: Counter[str]) -> None:
        ids = sorted(per_salon)
        self.conn.execute(
            f"""UPDATE salons SET {column} = {column} + v.n
                FROM unnest(%s::text[], %s::int[]) AS v(id, n) WHERE salons.id = v.id""",
            (ids, [per_salon[i] for i in ids]),
        )
        self.stats.updated["salons"] += len(ids)

    def ai_exchange(
        self, conv: str, s_id: str, phone: str, model: str, k: int
    ) -> list[tuple[Any, ...]]:
        """The two ai_messages rows of one question and answer (the k-th exchange)."""
        m = next(x for x in AI_MODELS if x.name == model)
        rt = m.median_response_ms * math.exp(0.55 * self.rng.gauss(0, 1))
        if self.rng.random() < 0.015:
            rt += self.rng.uniform(5000, 30000)
        tokens = 300 + 180 * k + int(self.rng.random() ** 2 * 1200)
        cost = round(tokens / 1000 * m.usd_per_1k_tokens * self.rng.uniform(0.85, 1.15), 6)
        intent = self.rng.choices(INTENTS, weights=(30, 15, 12, 12, 10, 8, 6, 5, 2))[0]
        lag = self.lag_ms()
        return [
            (self.new_id(), conv, s_id, phone, "INBOUND", self.rng.choice(WORDS["customer_texts"]),
             None, None, None, None, intent, lag + rt),
            (self.new_id(), conv, s_id, phone, "OUTBOUND", self.rng.choice(WORDS["assistant_texts"]),
             model, tokens, cost, int(rt), None, lag),
        ]  # fmt: skip

    def insert_ai_messages(self, rows: list[tuple[Any, ...]]) -> None:
        cols = list(zip(*rows, strict=True))
        intent_col, intent_val = (", intent", ", v.intent") if self.has_intent else ("", "")
        self.conn.execute(
            f"""INSERT INTO ai_messages (id, conversation_id, salon_id, phone_number, direction, content,
                                         ai_model, tokens_used, cost, response_time_ms{intent_col},
                                         created_at)
                SELECT v.id, v.conv, v.salon_id, v.phone, v.direction{self.cast("ai_messages", "direction")},
                       v.content, v.model, v.tokens, v.cost, v.rt{intent_val},
                       {_NOW} - v.lag * interval '1 millisecond'
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                            %s::text[], %s::int[], %s::float8[], %s::int[], %s::text[], %s::float8[])
                     AS v(id, conv, salon_id, phone, direction, content, model, tokens, cost, rt,
                          intent, lag)""",
            [list(c) for c in cols],
        )
        self.stats.inserted["ai_messages"] += len(rows)
        if self.has_intent:
            per: Counter[tuple[str, str]] = Counter((r[2], r[10]) for r in rows if r[10])
            keys = sorted(per)
            self.conn.execute(
                f"""INSERT INTO intent_analytics (id, salon_id, intent, count, date, created_at, updated_at)
                    SELECT v.id, v.salon_id, v.intent, v.n, {_NOW}::date, {_NOW}, {_NOW}
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS v(id, salon_id, intent, n)
                    ON CONFLICT (salon_id, intent, date) DO UPDATE
                    SET count = intent_analytics.count + excluded.count, updated_at = excluded.updated_at""",
                (
                    [self.new_id() for _ in keys],
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [per[k] for k in keys],
                ),
            )
            self.stats.updated["intent_analytics"] += len(keys)

    def new_ai(self, n: int) -> None:
        if n == 0:
            return
        convs = []
        msgs: list[tuple[Any, ...]] = []
        for _ in range(n):
            s = self.salon()
            model = self.rng.choices(
                [m.name for m in AI_MODELS], weights=[m.share for m in AI_MODELS]
            )[0]
            cid = self.new_id()
            phone = self.phone(s)
            ex = self.ai_exchange(cid, s.id, phone, model, 0)
            msgs.extend(ex)
            convs.append((cid, s.id, phone, model, ex[1][7], ex[1][8]))
            # More exchanges follow (geometric, about two per conversation in all).
            k = 1
            delay = 0.0
            while self.rng.random() < 0.5 and k < 6:
                delay += 30 + self.rng.expovariate(1 / 90)
                self.schedule(delay, "ai", cid, s.id, phone, model, k)
                k += 1
        cols = list(zip(*convs, strict=True))
        self.conn.execute(
            f"""INSERT INTO ai_conversations (id, salon_id, phone_number, conversation_id, ai_model,
                                              total_tokens, total_cost, message_count, last_activity,
                                              created_at)
                SELECT v.id, v.salon_id, v.phone, c.id, v.model, v.tokens, v.cost, 2, {_NOW}, {_NOW}
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::float8[])
                     AS v(id, salon_id, phone, model, tokens, cost)
                LEFT JOIN conversations c ON c.salon_id = v.salon_id AND c.phone_number = v.phone""",
            [list(c) for c in cols],
        )
        self.stats.inserted["ai_conversations"] += n
        self.insert_ai_messages(msgs)

    def follow_ups(self, items: list[tuple[Any, ...]]) -> None:
        msgs: list[tuple[Any, ...]] = []
        for cid, sid, phone, model, k in items:
            msgs.extend(self.ai_exchange(cid, sid, phone, model, k))
        self.insert_ai_messages(msgs)
        outs = [m for m in msgs if m[4] == "OUTBOUND"]
        self.conn.execute(
            f"""UPDATE ai_conversations a
                SET total_tokens = a.total_tokens + v.tokens, total_cost = a.total_cost + v.cost,
                    message_count = a.message_count + 2, last_activity = {_NOW}
                FROM unnest(%s::text[], %s::int[], %s::float8[]) AS v(id, tokens, cost)
                WHERE a.id = v.id""",
            ([m[1] for m in outs], [m[7] for m in outs], [m[8] for m in outs]),
        )
        self.stats.updated["ai_conversations"] += len(outs)

    def new_bookings(self, now: datetime, n: int) -> None:
        if n == 0:
            return
        rows = []
        for _ in range(n):
            s = self.salon()
            svc = self.rng.choice(SERVICES)
            day = now.date() + timedelta(days=min(20, int(self.rng.expovariate(1 / 2.0))))
            start = datetime.combine(day, datetime.min.time()) + timedelta(
                hours=6, minutes=15 * self.rng.randrange(0, 48 - svc.minutes // 15)
            )
            if start <= now + timedelta(minutes=30):
                start += timedelta(days=1)
            bid = self.new_id()
            rows.append((
                bid, "BK" + f"{self.rng.getrandbits(32):08X}", s.id, self.phone(s),
                self.rng.choice(WORDS["first_names"]) + " " + chr(65 + self.rng.randrange(26)) + ".",
                svc.name, self.rng.choice(s.masters), start, start + timedelta(minutes=svc.minutes),
                self.rng.random() < 0.005,
            ))  # fmt: skip
        cols = list(zip(*rows, strict=True))
        # The service checks the master's calendar first; a few requests race past the check.
        made = self.conn.execute(
            f"""INSERT INTO bookings (id, booking_code, salon_id, customer_phone, customer_name, service,
                                      master_id, start_ts, end_ts, status, created_at, updated_at)
                SELECT v.id, v.code, v.salon_id, v.phone, v.name, v.service, v.master, v.start_ts,
                       v.end_ts, 'CONFIRMED'{self.cast("bookings", "status")}, {_NOW}, {_NOW}
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                            %s::text[], %s::timestamp[], %s::timestamp[], %s::bool[])
                     AS v(id, code, salon_id, phone, name, service, master, start_ts, end_ts, racy)
                WHERE v.racy OR NOT EXISTS (
                    SELECT 1 FROM bookings b
                    WHERE b.salon_id = v.salon_id AND b.master_id = v.master
                      AND b.start_ts > v.start_ts - interval '4 hours' AND b.start_ts < v.end_ts
                      AND coalesce(b.end_ts, b.start_ts + interval '1 hour') > v.start_ts
                      AND b.status::text <> 'CANCELLED')
                ON CONFLICT DO NOTHING
                RETURNING id, salon_id, start_ts, end_ts""",
            [list(c) for c in cols],
        ).fetchall()
        if not made:
            return
        self.stats.inserted["bookings"] += len(made)
        for bid, _sid, start, end in made:
            self.track_booking(str(bid), start, end)
        cur = self.conn.execute(
            f"""INSERT INTO reminders (id, booking_id, salon_id, scheduled_at, status, attempts,
                                       created_at)
                SELECT v.rid, v.bid, v.salon_id,
                       CASE WHEN v.start_ts - interval '24 hours' > {_NOW}
                            THEN v.start_ts - interval '24 hours' ELSE v.start_ts - interval '2 hours' END,
                       'PENDING'{self.cast("reminders", "status")}, 0, {_NOW}
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamp[]) AS v(rid, bid, salon_id, start_ts)
                WHERE v.start_ts - interval '2 hours' > {_NOW}""",
            (
                [self.new_id() for _ in made],
                [str(m[0]) for m in made],
                [str(m[1]) for m in made],
                [m[2] for m in made],
            ),
        )
        self.stats.inserted["reminders"] += max(cur.rowcount, 0)
        self.bump_usage("usage_current_bookings", Counter(str(m[1]) for m in made))

    def track_booking(self, bid: str, start: datetime, end: datetime) -> None:
        """Remember a CONFIRMED booking; staff close it 5 to 60 minutes after it ends."""
        self.candidates[bid] = start
        close_at = end + timedelta(minutes=5 + uuid.UUID(bid).int % 56)
        heapq.heappush(self.closing, (close_at, bid))

    def new_webhooks(self, n: int) -> None:
        if n == 0:
            return
        shares = (42, 40, 8, 5, 3, 2)
        fail = dict(zip(WEBHOOK_EVENT_TYPES, (0.02, 0.015, 0.08, 0.04, 0.02, 0.02), strict=True))
        median = dict(zip(WEBHOOK_EVENT_TYPES, (45, 8, 350, 180, 20, 25), strict=True))
        rows = []
        for _ in range(n):
            ev = self.rng.choices(WEBHOOK_EVENT_TYPES, weights=shares)[0]
            s = None if self.rng.random() < 0.015 else self.salon()
            ptime = max(1, int(median[ev] * math.exp(0.7 * self.rng.gauss(0, 1))))
            r = self.rng.random()
            final = "failed" if r < fail[ev] * 0.6 else "error" if r < fail[ev] else "processed"
            err = self.rng.choice(WORDS["webhook_errors"]) if final != "processed" else None
            wid = self.new_id()
            # Slow handlers log "received" first and finish later; fast ones write the outcome once.
            deferred = ptime > 200 or self.rng.random() < 0.1
            rows.append((
                wid, s.id if s else None, ev, _payload(ev, wid, s.rank if s else None),
                "received" if deferred else final, None if deferred else err,
                None if deferred else ptime, self.lag_ms(),
            ))  # fmt: skip
            if deferred:
                self.schedule(
                    max(ptime / 1000, self.rng.uniform(0.5, 5)), "wh", wid, final, err, ptime
                )
        cols = list(zip(*rows, strict=True))
        pt_col, pt_val = (", processing_time_ms", ", v.ptime") if self.has_ptime else ("", "")
        self.conn.execute(
            f"""INSERT INTO webhook_logs (id, salon_id, event_type, payload, status, error{pt_col}, created_at)
                SELECT v.id, v.salon_id, v.event_type, v.payload, v.status, v.error{pt_val},
                       {_NOW} - v.lag * interval '1 millisecond'
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::jsonb[], %s::text[], %s::text[],
                            %s::int[], %s::float8[])
                     AS v(id, salon_id, event_type, payload, status, error, ptime, lag)""",
            [list(c) for c in cols],
        )
        self.stats.inserted["webhook_logs"] += n

    def new_cache(self, n: int, hits: int) -> None:
        if n:
            rows = []
            for _ in range(n):
                s = self.salon()
                cid = self.new_id()
                rows.append((cid, uuid.UUID(int=self.rng.getrandbits(128)).hex, s.id,
                             self.rng.choice(WORDS["assistant_texts"]),
                             24 if self.rng.random() < 0.7 else 168))  # fmt: skip
                self.cache_ids.append((cid, s.id))
            del self.cache_ids[: max(0, len(self.cache_ids) - 10_000)]
            cols = list(zip(*rows, strict=True))
            self.conn.execute(
                f"""INSERT INTO ai_response_cache (id, query_hash, salon_id, hit_count,
                                                   created_at, last_used_at, expires_at)
                    SELECT v.id, v.hash, v.salon_id, 0, {_NOW}, {_NOW},
                           {_NOW} + v.ttl_h * interval '1 hour'
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[])
                         AS v(id, hash, salon_id, response, ttl_h)
                    ON CONFLICT DO NOTHING""",
                [list(c) for c in cols],
            )
            self.stats.inserted["ai_response_cache"] += n
        if hits and self.cache_ids:
            ids = sorted({self.rng.choice(self.cache_ids)[0] for _ in range(hits)})
            self.conn.execute(
                f"""UPDATE ai_response_cache SET hit_count = hit_count + 1, last_used_at = {_NOW}
                    WHERE id = ANY(%s)""",
                (ids,),
            )
            self.stats.updated["ai_response_cache"] += len(ids)

    def new_templates(self, n: int) -> None:
        if n:
            rows = []
            for _ in range(n):
                s = self.salon()
                name = f"{self.rng.choice(WORDS['template_names'])}_{self.rng.getrandbits(24):06x}"
                rows.append((self.new_id(), s.id, name, self.rng.choice(("en", "ru", "es", "de"))))
            cols = list(zip(*rows, strict=True))
            self.conn.execute(
                f"""INSERT INTO templates (id, salon_id, name, language, category, status, created_at)
                    SELECT v.id, v.salon_id, v.name, v.language, 'UTILITY',
                           'PENDING'{self.cast("templates", "status")}, {_NOW}
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
                         AS v(id, salon_id, name, language)
                    ON CONFLICT DO NOTHING""",
                [list(c) for c in cols],
            )
            self.stats.inserted["templates"] += n
            for r in rows:
                self.schedule(self.rng.uniform(60, 1800), "tpl", r[0])

    # -- changes ----------------------------------------------------------


def _payload(event: str, wid: str, rank: int | None) -> str:
    """A small JSON body shaped like the provider's webhook for `event`."""
    pnid = str(100000000000000 + (rank or 0) * 7919 + 104729) if rank is not None else "0"
    wamid = "wamid.HBgL" + wid.replace("-", "").upper()[:28]
    body: dict[str, Any]
    if event in ("message_received", "status_update"):
        value: dict[str, Any] = {"messaging_product": "whatsapp"}
        if event == "message_received":
            value["messages"] = [{"id": wamid, "type": "text", "text": {"body": "Hello"}}]
        else:
            value["statuses"] = [{"id": wamid, "status": "delivered"}]
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": pnid, "changes": [{"field": "messages", "value": value}]}],
        }
    elif event == "calendar_sync":
        body = {"kind": "api#channel", "resourceState": "exists", "channelId": wid[:16]}
    elif event == "payment":
        body = {
            "type": "payment_intent.succeeded",
            "amount": 4500,
            "currency": "usd",
            "id": "pi_" + wid[:24],
        }
    elif event == "template_status_update":
        body = {"event": "APPROVED", "message_template_id": int(wid[:8], 16)}
    else:
        body = {"field": "account_update", "event": "VERIFIED_ACCOUNT"}
    return json.dumps(body, sort_keys=True)
