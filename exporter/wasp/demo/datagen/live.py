"""Keep an application database moving the way the running service does.

`run_live` inserts rows at the application's daily rates (times `rate`, shaped by
the time of day) and changes existing rows as the service does: WhatsApp
delivery receipts move messages SENT -> DELIVERED -> READ (or FAILED), webhook
logs move from received to processed/failed/error, bookings are cancelled,
rescheduled, completed or marked no-show with `updated_at` bumped, reminders
fall due and are sent or fail, AI conversations grow by exchanges, and
conversations expire. Rows are stamped with `clock_timestamp() AT TIME ZONE
'utc'`; a few are stamped seconds before their transaction commits, as a slow
request would. Every tick does a bounded amount of work in one transaction.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from threading import Event
from typing import Any

import psycopg

from wasp.demo.datagen.profile import (
    AI_MODELS,
    DAILY,
    INTENTS,
    SERVICES,
    WEBHOOK_EVENT_TYPES,
    WORDS,
    rate_factor,
)
from wasp.demo.datagen.schema import SchemaInfo, inspect_schema

__all__ = ["LiveStats", "run_live"]

Log = Callable[[str], None]

# Changes per day at rate 1.0, on top of the inserts in DAILY.
_CANCELS_PER_DAY = 900.0
_RESCHEDULES_PER_DAY = 300.0
_CACHE_HITS_PER_DAY = 20_000.0

_MAX_NEW_PER_TICK = 5_000  # per stream; beyond it the tick drops rows (counted)
_MAX_CHANGES_PER_TICK = 5_000  # per kind of change
_MAX_PENDING = 200_000  # scheduled future changes kept in memory
_REFRESH_S = 60.0  # how often salons and booking candidates are re-read
_SUMMARY_S = 10.0

_NOW = "(clock_timestamp() AT TIME ZONE 'utc')"


@dataclass
class LiveStats:
    """What a live run did: rows inserted and updated per table, ticks, drops and errors."""

    ticks: int = 0
    inserted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    errors: int = 0
    seconds: float = 0.0


def run_live(
    dsn: str,
    *,
    rate: float = 1.0,
    stop: Event,
    tick_s: float = 1.0,
    log: Log | None = None,
    seed: int | None = None,
    pause: Callable[[], Collection[str]] | None = None,
) -> LiveStats:
    """Insert and update application rows at `rate` x the real daily volumes until `stop` is set.

    `pause` names the streams to hold back right now (``"webhooks"``: no new webhook
    rows), for the demo's fault drills.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if tick_s <= 0:
        raise ValueError(f"tick_s must be > 0, got {tick_s}")
    out = log or (lambda _m: None)
    stats = LiveStats()
    started = time.monotonic()
    writer: _Writer | None = None
    backoff = 1.0
    try:
        while not stop.is_set():
            if writer is None:
                try:
                    writer = _Writer(dsn, rate=rate, rng=random.Random(seed), stats=stats, log=out)
                    writer.paused = pause or (lambda: ())
                    backoff = 1.0
                except psycopg.OperationalError as e:
                    stats.errors += 1
                    out(f"live: cannot connect ({e}); retrying in {backoff:.0f}s")
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            t0 = time.monotonic()
            try:
                writer.tick(stop)
            except psycopg.OperationalError as e:
                stats.errors += 1
                out(f"live: connection lost ({e}); reconnecting")
                writer.close()
                writer = None
                continue
            except psycopg.Error as e:
                stats.errors += 1
                out(f"live: tick failed: {e}")
                writer.rollback()
            stats.ticks += 1
            stop.wait(max(0.0, tick_s - (time.monotonic() - t0)))
    finally:
        if writer is not None:
            writer.close()
        stats.seconds = time.monotonic() - started
    return stats


@dataclass(order=True)
class _Due:
    """A change the service will make at `at` (monotonic seconds)."""

    at: float
    kind: str = field(compare=False)
    data: tuple[Any, ...] = field(compare=False)


@dataclass
class _Salon:
    id: str
    rank: int
    masters: list[str]


class _Writer:
    """One connection's worth of live state: salons, carries, the schedule of future changes."""

    def __init__(
        self, dsn: str, *, rate: float, rng: random.Random, stats: LiveStats, log: Log
    ) -> None:
        self.conn = psycopg.connect(dsn, autocommit=False, application_name="wasp-datagen-live")
        self.conn.execute("SET statement_timeout = '20s'")
        self.conn.commit()
        self.info: SchemaInfo = inspect_schema(self.conn)
        self.conn.commit()
        if not self.info.has_table("salons"):
            self.conn.close()
            raise psycopg.ProgrammingError("no application schema here (table salons is missing)")
        self.rate = rate
        self.rng = rng
        self.stats = stats
        self.log = log
        self.carry: dict[str, float] = {}
        self.due: list[_Due] = []
        self.salons: list[_Salon] = []
        self.weights: list[float] = []
        # Upcoming or running CONFIRMED bookings: id -> start; closing: (close time, id) heap.
        self.candidates: dict[str, datetime] = {}
        self.closing: list[tuple[datetime, str]] = []
        self.last_refresh = -math.inf
        self.last_summary = time.monotonic()
        self.last_tick = time.monotonic()
        self.last_expiry = -math.inf
        self.cache_ids: list[tuple[str, str]] = []
        self.has_intent = self.info.has_column("ai_messages", "intent") and self.info.has_table(
            "intent_analytics"
        )
        self.has_ptime = self.info.has_column("webhook_logs", "processing_time_ms")
        self.reported = Counter[str]()
        self.paused: Callable[[], Collection[str]] = lambda: ()

    # -- plumbing ---------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def rollback(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()

    def cast(self, table: str, column: str) -> str:
        return "::" + self.info.types[(table, column)]

    def now(self) -> datetime:
        row = self.conn.execute(f"SELECT {_NOW}").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value

    def count(self, stream: str, per_day: float, dt: float, factor: float) -> int:
        """How many events of `stream` fall into the last `dt` seconds (fractions carried over)."""
        acc = self.carry.get(stream, 0.0) + per_day * self.rate * factor * dt / 86_400
        n = int(acc)
        self.carry[stream] = acc - n
        if n > _MAX_NEW_PER_TICK:
            self.stats.dropped += n - _MAX_NEW_PER_TICK
            n = _MAX_NEW_PER_TICK
        return n

    def schedule(self, delay_s: float, kind: str, *data: Any) -> None:
        if len(self.due) >= _MAX_PENDING:
            self.stats.dropped += 1
            return
        heapq.heappush(self.due, _Due(time.monotonic() + delay_s, kind, data))

    def lag_ms(self) -> float:
        """Stamp-to-commit delay: usually milliseconds, sometimes a slow transaction's seconds."""
        if self.rng.random() < 0.02:
            return self.rng.uniform(1000, 8000)
        return self.rng.uniform(0, 50)

    def salon(self) -> _Salon:
        return self.rng.choices(self.salons, cum_weights=self.weights)[0]

    def phone(self, s: _Salon) -> str:
        # Same shape as the history's numbers, so returning customers hit existing conversations.
        return f"+79{s.rank % 10_000:04d}{int(self.rng.random() ** 1.5 * 2000):05d}"

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- the tick ---------------------------------------------------------

    def tick(self, stop: Event) -> None:
        mono = time.monotonic()
        dt = min(mono - self.last_tick, 5.0)
        self.last_tick = mono
        if mono - self.last_refresh >= _REFRESH_S:
            self.refresh()
            self.last_refresh = mono
        if not self.salons:
            if not self.reported["no-salons"]:
                self.log("live: no active salons; load history first (wasp datagen)")
                self.reported["no-salons"] = 1
            self.conn.commit()
            return
        now = self.now()
        factor = rate_factor(now)
        steps: list[Callable[[], None]] = [
            lambda: self.new_messages(self.count("messages", DAILY["messages"], dt, factor)),
            lambda: self.new_ai(
                self.count("ai_conversations", DAILY["ai_conversations"], dt, factor)
            ),
            lambda: self.new_bookings(now, self.count("bookings", DAILY["bookings"], dt, factor)),
            lambda: None if "webhooks" in self.paused() else self.new_webhooks(
                self.count("webhook_logs", DAILY["webhook_logs"], dt, factor)
            ),
            lambda: self.new_cache(
                self.count("ai_response_cache", DAILY["ai_response_cache"], dt, factor),
                self.count("cache_hits", _CACHE_HITS_PER_DAY, dt, factor),
            ),
            lambda: self.new_templates(self.count("templates", DAILY["templates"], dt, factor)),
            lambda: self.change_bookings(
                now,
                self.count("cancels", _CANCELS_PER_DAY, dt, factor),
                self.count("reschedules", _RESCHEDULES_PER_DAY, dt, factor),
            ),
            self.send_reminders,
            self.apply_due,
            self.expire_conversations,
        ]
        for step in steps:
            if stop.is_set():
                break
            step()
        self.conn.commit()
        if mono - self.last_summary >= _SUMMARY_S:
            self.summary()
            self.last_summary = mono

    def summary(self) -> None:
        ins = self.stats.inserted - self.reported
        upd = Counter({k: v for k, v in self.stats.updated.items()})
        self.reported = Counter(self.stats.inserted)
        parts = ", ".join(f"{k} +{v}" for k, v in sorted(ins.items()) if v)
        changed = ", ".join(f"{k} {v}" for k, v in sorted(upd.items()) if v)
        self.log(f"live: inserted {parts or 'nothing'}; updated so far: {changed or 'nothing'}")

    # -- reference data ---------------------------------------------------

    def refresh(self) -> None:
        """Re-read active salons (weighted by recent traffic), masters and booking candidates."""
        rows = self.conn.execute(
            "SELECT id FROM salons WHERE is_active ORDER BY created_at, id"
        ).fetchall()
        ids = [str(r[0]) for r in rows]
        if not ids:
            self.conn.commit()
            self.salons = []
            return
        recent: dict[str, int] = dict(
            self.conn.execute(
                f"""SELECT salon_id, count(*) FROM messages
                    WHERE salon_id = ANY(%s) AND created_at > {_NOW} - interval '6 hours'
                    GROUP BY salon_id""",
                (ids,),
            ).fetchall()
        )
        if recent:
            ids.sort(key=lambda i: (-int(recent.get(i, 0)), i))
            raw = [float(recent.get(i, 0)) + 0.5 for i in ids]
        else:
            raw = [1.0 / (k + 1) for k in range(len(ids))]
        masters: dict[str, list[str]] = {}
        if self.info.has_table("masters"):
            for sid, mid in self.conn.execute(
                "SELECT salon_id, id FROM masters WHERE is_active AND salon_id = ANY(%s) ORDER BY id",
                (ids,),
            ):
                masters.setdefault(str(sid), []).append(str(mid))
        self.salons = [
            _Salon(i, k, masters.get(i) or [f"{i[:8]}-m{j}" for j in range(2)])
            for k, i in enumerate(ids)
        ]
        self.weights = []
        acc = 0.0
        for w in raw:
            acc += w
            self.weights.append(acc)
        cand = self.conn.execute(
            f"""SELECT id, salon_id, start_ts, coalesce(end_ts, start_ts + interval '1 hour')
                FROM bookings
                WHERE salon_id = ANY(%s)
                  AND start_ts BETWEEN {_NOW} - interval '6 hours' AND {_NOW} + interval '3 days'
                  AND status::text = 'CONFIRMED'
                ORDER BY start_ts LIMIT 50000""",
            (ids,),
        ).fetchall()
        self.candidates = {}
        self.closing = []
        for bid, _sid, start, end in cand:
            self.track_booking(str(bid), start, end)
        # Delivery receipts still due for the newest outbound messages (from history or a past run).
        pending = self.conn.execute(
            f"""SELECT id, status::text FROM messages
                WHERE salon_id = ANY(%s) AND created_at > {_NOW} - interval '30 minutes'
                  AND direction::text = 'OUTBOUND' AND status::text IN ('SENT', 'DELIVERED')
                LIMIT 20000""",
            (ids,),
        ).fetchall()
        for mid, st in pending:
            self.schedule_receipts(str(mid), str(st), fast=True)
        self.conn.commit()

    # -- inserts ----------------------------------------------------------

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

    def change_bookings(self, now: datetime, cancels: int, reschedules: int) -> None:
        """Complete or no-show bookings that ended; cancel and reschedule some upcoming ones."""
        done: list[tuple[str, str]] = []
        while self.closing and self.closing[0][0] <= now and len(done) < _MAX_CHANGES_PER_TICK:
            _, bid = heapq.heappop(self.closing)
            if bid in self.candidates:
                done.append((bid, "NO_SHOW" if uuid.UUID(bid).int % 20 == 0 else "COMPLETED"))
        cancel: list[str] = []
        move: list[str] = []
        if cancels or reschedules:
            upcoming = [b for b, start in self.candidates.items() if start > now]
            picked = self.rng.sample(upcoming, min(len(upcoming), cancels + reschedules))
            cancel = picked[: min(cancels, _MAX_CHANGES_PER_TICK)]
            move = picked[len(cancel) : len(cancel) + min(reschedules, _MAX_CHANGES_PER_TICK)]
        changes = done + [(b, "CANCELLED") for b in cancel]
        for bid, _ in changes:
            self.candidates.pop(bid, None)
        if changes:
            cur = self.conn.execute(
                f"""UPDATE bookings b SET status = v.status{self.cast("bookings", "status")},
                                          updated_at = {_NOW}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE b.id = v.id AND b.status::text = 'CONFIRMED'""",
                ([c[0] for c in changes], [c[1] for c in changes]),
            )
            self.stats.updated["bookings"] += max(cur.rowcount, 0)
        if cancel:
            cur = self.conn.execute(
                f"""UPDATE reminders SET status = 'CANCELLED'{self.cast("reminders", "status")}
                    WHERE booking_id = ANY(%s) AND status::text = 'PENDING'""",
                (cancel,),
            )
            self.stats.updated["reminders"] += max(cur.rowcount, 0)
        if move:
            days = [1 + self.rng.randrange(3) for _ in move]
            cur = self.conn.execute(
                f"""UPDATE bookings b
                    SET start_ts = b.start_ts + v.days * interval '1 day',
                        end_ts = b.end_ts + v.days * interval '1 day',
                        status = 'RESCHEDULED'{self.cast("bookings", "status")}, updated_at = {_NOW}
                    FROM unnest(%s::text[], %s::int[]) AS v(id, days)
                    WHERE b.id = v.id AND b.status::text = 'CONFIRMED'
                      AND NOT EXISTS (
                          SELECT 1 FROM bookings o
                          WHERE o.salon_id = b.salon_id AND o.master_id = b.master_id AND o.id <> b.id
                            AND o.start_ts > b.start_ts + v.days * interval '1 day' - interval '4 hours'
                            AND o.start_ts < coalesce(b.end_ts, b.start_ts + interval '1 hour')
                                             + v.days * interval '1 day'
                            AND coalesce(o.end_ts, o.start_ts + interval '1 hour')
                                > b.start_ts + v.days * interval '1 day'
                            AND o.status::text <> 'CANCELLED')""",
                (move, days),
            )
            self.stats.updated["bookings"] += max(cur.rowcount, 0)
            cur = self.conn.execute(
                """UPDATE reminders r SET scheduled_at = r.scheduled_at + v.days * interval '1 day'
                    FROM unnest(%s::text[], %s::int[]) AS v(id, days)
                    WHERE r.booking_id = v.id AND r.status::text = 'PENDING'""",
                (move, days),
            )
            self.stats.updated["reminders"] += max(cur.rowcount, 0)
            for bid in move:
                self.candidates.pop(bid, None)

    def send_reminders(self) -> None:
        """Send reminders that just fell due; a few fail or are missed and stay overdue."""
        rows = self.conn.execute(
            f"""SELECT id, booking_id, attempts FROM reminders
                WHERE salon_id = ANY(%s)
                  AND scheduled_at BETWEEN {_NOW} - interval '10 minutes' AND {_NOW}
                  AND status::text = 'PENDING'
                LIMIT {_MAX_CHANGES_PER_TICK}""",
            ([s.id for s in self.salons],),
        ).fetchall()
        sent: list[tuple[str, str]] = []
        tried: list[tuple[str, int]] = []
        for rid, bid, attempts in rows:
            r = self.rng.random()
            if r < 0.01:
                continue  # the worker misses it: it stays PENDING, overdue
            if r < 0.04:
                tried.append((str(rid), int(attempts) + 1))
            else:
                sent.append((str(rid), str(bid)))
        if sent:
            self.conn.execute(
                f"""UPDATE reminders SET status = 'SENT'{self.cast("reminders", "status")},
                                         sent_at = {_NOW}, attempts = attempts + 1
                    WHERE id = ANY(%s)""",
                ([s[0] for s in sent],),
            )
            self.conn.execute(
                f"UPDATE bookings SET reminder_sent = true, updated_at = {_NOW} WHERE id = ANY(%s)",
                ([s[1] for s in sent],),
            )
            self.stats.updated["reminders"] += len(sent)
            self.stats.updated["bookings"] += len(sent)
        if tried:
            self.conn.execute(
                f"""UPDATE reminders r
                    SET attempts = v.attempts, last_error = v.error,
                        status = (CASE WHEN v.attempts >= 3 THEN 'FAILED' ELSE 'PENDING' END)
                                 {self.cast("reminders", "status")}
                    FROM unnest(%s::text[], %s::int[], %s::text[]) AS v(id, attempts, error)
                    WHERE r.id = v.id""",
                (
                    [t[0] for t in tried],
                    [t[1] for t in tried],
                    [self.rng.choice(WORDS["reminder_errors"]) for _ in tried],
                ),
            )
            self.stats.updated["reminders"] += len(tried)

    def apply_due(self) -> None:
        """Apply scheduled changes whose time has come (bounded per tick)."""
        now = time.monotonic()
        by_kind: dict[str, list[tuple[Any, ...]]] = {}
        taken = 0
        while self.due and self.due[0].at <= now and taken < _MAX_CHANGES_PER_TICK * 4:
            d = heapq.heappop(self.due)
            by_kind.setdefault(d.kind, []).append(d.data)
            taken += 1
        msgs = by_kind.get("msg", [])
        if msgs:
            # Receipts can overtake each other; a status only moves forward.
            cur = self.conn.execute(
                f"""UPDATE messages m SET status = v.status{self.cast("messages", "status")}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE m.id = v.id
                      AND array_position(ARRAY['SENT', 'DELIVERED', 'READ'], m.status::text)
                          < array_position(ARRAY['SENT', 'DELIVERED', 'READ', 'FAILED'], v.status)""",
                ([m[0] for m in msgs], [m[1] for m in msgs]),
            )
            self.stats.updated["messages"] += max(cur.rowcount, 0)
        hooks = by_kind.get("wh", [])
        if hooks:
            pt = ", processing_time_ms = v.ptime" if self.has_ptime else ""
            cur = self.conn.execute(
                f"""UPDATE webhook_logs w SET status = v.status, error = v.error{pt}
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS v(id, status, error, ptime)
                    WHERE w.id = v.id AND w.status = 'received'""",
                ([h[0] for h in hooks], [h[1] for h in hooks], [h[2] for h in hooks],
                 [h[3] for h in hooks]),
            )  # fmt: skip
            self.stats.updated["webhook_logs"] += max(cur.rowcount, 0)
        ai = by_kind.get("ai", [])
        if ai:
            self.follow_ups(ai)
        tpl = by_kind.get("tpl", [])
        if tpl:
            statuses = ["REJECTED" if self.rng.random() < 0.1 else "APPROVED" for _ in tpl]
            cur = self.conn.execute(
                f"""UPDATE templates t SET status = v.status{self.cast("templates", "status")}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE t.id = v.id AND t.status::text = 'PENDING'""",
                ([t[0] for t in tpl], statuses),
            )
            self.stats.updated["templates"] += max(cur.rowcount, 0)

    def expire_conversations(self) -> None:
        """WhatsApp's 24-hour window closes: ACTIVE conversations silent for a day expire."""
        mono = time.monotonic()
        if mono - self.last_expiry < _REFRESH_S:
            return
        self.last_expiry = mono
        cur = self.conn.execute(
            f"""UPDATE conversations SET status = 'EXPIRED'{self.cast("conversations", "status")}
                WHERE id IN (
                    SELECT id FROM conversations
                    WHERE salon_id = ANY(%s)
                      AND last_message_at BETWEEN {_NOW} - interval '25 hours'
                                              AND {_NOW} - interval '24 hours'
                      AND status::text = 'ACTIVE'
                    LIMIT {_MAX_CHANGES_PER_TICK})""",
            ([s.id for s in self.salons],),
        )
        self.stats.updated["conversations"] += max(cur.rowcount, 0)


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
