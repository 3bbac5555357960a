"""Fill an application schema with days of realistic history, set-based and deterministic.

Every table is loaded with INSERT ... SELECT over generate_series; randomness comes
from random() after setseed(), and ids from md5 of the seed and a row key, so the
same seed, size and `end` give the same rows. All times are UTC values for
`timestamp without time zone` columns, computed from `end` (by default the
server's `now() at time zone 'utc'`), never from the session time zone.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from psycopg import pq

from wasp.demo.datagen.profile import (
    AI_MODELS,
    DAILY,
    INTENTS,
    SALON_SKEW,
    SERVICES,
    WEBHOOK_EVENT_TYPES,
    WEEKDAY_WEIGHTS,
    WORDS,
    buckets,
)
from wasp.demo.datagen.schema import TABLES, SchemaInfo, inspect_schema
from wasp.demo.datagen.sqlbits import (
    JsonExpr,
    StrExpr,
    choose,
    json_text,
    lit,
    phone_number_id,
    pick,
    salon_weight,
    text_array,
    uuid_of,
)

__all__ = ["GenerateError", "generate"]

Progress = Callable[[str], None]

_REQUIRED = tuple(t for t in TABLES if t != "intent_analytics")
_MAX_SALONS = 9999  # phone numbers pack the salon rank into 4 digits

# Appointments a fully booked master fits into the 06:00-18:00 UTC day (measured).
_SLOTS_PER_MASTER_DAY = 9.3
# A master takes on average this many bookings per day; sets the staff size per salon.
_BOOKINGS_PER_MASTER = 7.0
# Bookings are made up to this many days ahead.
_MAX_LEAD_DAYS = 20


class GenerateError(RuntimeError):
    """The database or the arguments do not allow generating data."""


def generate(
    conn: psycopg.Connection[Any],
    *,
    days: float = 3,
    scale: float = 1.0,
    salons: int = 1000,
    seed: int = 42,
    end: datetime | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> dict[str, int]:
    """Load `days` of history ending at `end` (UTC) into empty application tables; row counts per table.

    With `workers` = 2 a second connection (same connection parameters and search_path as
    `conn`) loads bookings and the AI tables while `conn` loads messages and webhooks; the
    rows are the same either way.
    `progress` may then be called from that helper thread too (calls are serialised).
    """
    if days < 0:
        raise GenerateError(f"days must be >= 0, got {days}")
    if scale <= 0:
        raise GenerateError(f"scale must be > 0, got {scale}")
    if not 1 <= salons <= _MAX_SALONS:
        raise GenerateError(f"salons must be between 1 and {_MAX_SALONS}, got {salons}")
    if workers not in (1, 2):
        raise GenerateError(f"workers must be 1 or 2, got {workers}")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise GenerateError("the connection is inside a transaction; generate() commits per step")
    info = inspect_schema(conn)
    missing = [t for t in _REQUIRED if not info.has_table(t)]
    if missing:
        raise GenerateError("missing application tables: " + ", ".join(missing))
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM salons)").fetchone()
    if row is not None and row[0]:
        raise GenerateError("salons is not empty: generate() loads into an empty schema")
    if end is None:
        got = conn.execute("SELECT (clock_timestamp() AT TIME ZONE 'utc')::timestamp(3)").fetchone()
        assert got is not None
        end = got[0]
    elif end.tzinfo is not None:
        end = end.astimezone(UTC).replace(tzinfo=None)
    assert end is not None
    if not conn.autocommit:
        conn.commit()  # back to idle: each step below is its own transaction
    lock = threading.Lock()
    say = progress or (lambda _m: None)

    def serialised(msg: str) -> None:
        with lock:
            say(msg)

    g = _Generator(
        conn, info, seed=seed, scale=scale, salons=salons, end=end, days=days, progress=serialised
    )
    return g.run(workers=workers)


def _connect_like(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A second connection to the same database and schema search path as `conn`."""
    extra: dict[str, Any] = {}
    if conn.info.password:
        extra["password"] = conn.info.password
    other = psycopg.connect(conn.info.dsn, autocommit=True, **extra)
    path = conn.execute("SELECT current_setting('search_path')").fetchone()
    if not conn.autocommit:
        conn.commit()
    if path is not None:
        other.execute("SELECT set_config('search_path', %s, false)", (path[0],))
    return other


class _Generator:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        info: SchemaInfo,
        *,
        seed: int,
        scale: float,
        salons: int,
        end: datetime,
        days: float,
        progress: Progress,
    ) -> None:
        self.conn = conn
        self.info = info
        self.seed = seed
        self.scale = scale
        self.n = salons
        self.end = end
        self.start = end - timedelta(days=days)
        self.progress = progress

    # -- plumbing ---------------------------------------------------------

    def _begin_step(self, step: str) -> None:
        """Per-step seed (so each table is reproducible on its own) and session knobs."""
        value = zlib.crc32(f"{self.seed}:{step}".encode()) / 2**32 * 2 - 1
        self.conn.execute("SELECT setseed(%s)", (value,))
        self.conn.execute(
            "SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true),"
            " set_config('synchronous_commit', 'off', true)"
        )

    def _exec(self, query: str, params: dict[str, Any] | None = None) -> int:
        p = {"end": self.end, "start": self.start}
        if params:
            p.update(params)
        cur = self.conn.execute(query, p)
        return cur.rowcount

    def _cast(self, table: str, column: str) -> str:
        return "::" + self.info.types[(table, column)]

    def _salon_id(self, rank: str) -> str:
        return uuid_of(str(self.seed), "'salon'", rank)

    def _rank(self) -> str:
        return f"floor({self.n} * power(random(), {SALON_SKEW!r}))::int"

    def _phone(self, rank: str, u_cust: str) -> str:
        pool = f"least(99999, greatest(10, ceil({salon_weight(rank, self.n)} * {150_000 * self.scale!r})))"
        return f"'+79' || lpad(({rank}::bigint * 100000 + floor({u_cust} * {pool})::bigint)::text, 9, '0')"

    def _conv_id(self, salon_id: str, phone: str) -> str:
        return uuid_of(str(self.seed), "'conv'", salon_id, phone)

    def _bucket_params(self, a: datetime, b: datetime, per_day: float) -> dict[str, Any]:
        bs = [x for x in buckets(a, b, per_day) if x.count > 0]
        return {
            "b_ts": [x.start for x in bs],
            "b_w": [x.seconds for x in bs],
            "b_n": [x.count for x in bs],
            "b_key": [int(x.start.timestamp()) for x in bs],
        }

    _BUCKET_ROWS = """
        unnest(%(b_ts)s::timestamp[], %(b_w)s::float8[], %(b_n)s::int[], %(b_key)s::bigint[])
            AS h(ts, w, cnt, key)
        CROSS JOIN LATERAL generate_series(1, h.cnt) AS g(n)"""

    # -- the run ----------------------------------------------------------

    def _helper(self, conn: psycopg.Connection[Any]) -> _Generator:
        h = _Generator(
            conn, self.info, seed=self.seed, scale=self.scale, salons=self.n, end=self.end,
            days=0, progress=self.progress,
        )  # fmt: skip
        h.start = self.start
        return h

    def run(self, *, workers: int) -> dict[str, int]:
        t0 = time.monotonic()
        self._step("salons", self._salons)
        self._step("masters", self._masters)
        self._step("templates", self._templates)
        days: list[tuple[datetime, datetime]] = []
        day = self.start
        while day < self.end:
            days.append((day, min(day + timedelta(days=1), self.end)))
            day = days[-1][1]
        tables = [t for t in TABLES if self.info.has_table(t)]
        counts: dict[str, int] = {}
        other_conn = _connect_like(self.conn) if workers > 1 else None
        try:
            other = self._helper(other_conn) if other_conn is not None else self
            # Two independent lanes of about equal work: messages and webhooks on conn;
            # bookings, reminders and the AI tables on the other connection.
            lane_a: list[Callable[[], None]] = []
            lane_b: list[Callable[[], None]] = [lambda: other._step("bookings", other._bookings)]
            for k, (a, b) in enumerate(days, 1):
                label = f"day {k}/{len(days)} ({a:%Y-%m-%d %H:%M})"
                lane_a.append(partial(self._day, label, a, b, ("messages", "webhooks")))
                lane_b.append(partial(other._day, label, a, b, ("ai", "cache")))
            self._lanes(lane_a, lane_b, parallel=other is not self)
            final_b: list[Callable[[], None]] = []
            if self.info.has_table("intent_analytics") and self.info.has_column(
                "ai_messages", "intent"
            ):
                final_b.append(lambda: other._step("intent_analytics", other._intent_analytics))
            self._lanes(
                [lambda: self._step("conversations", self._conversations)],
                final_b,
                parallel=other is not self,
            )
            t1 = time.monotonic()
            mine = [t for t in tables if t not in ("conversations", "intent_analytics")
                    and not t.startswith("ai_")]  # fmt: skip
            theirs = [t for t in tables if t not in mine]
            self._lanes(
                [lambda: self._analyze_and_count(mine, counts)],
                [lambda: other._analyze_and_count(theirs, counts)],
                parallel=other is not self,
            )
            self.progress(f"analyze and count in {time.monotonic() - t1:.1f}s")
        finally:
            if other_conn is not None:
                other_conn.close()
        if not self.conn.autocommit:
            self.conn.commit()
        self.progress(f"done in {time.monotonic() - t0:.1f}s: {sum(counts.values())} rows")
        return {t: counts[t] for t in tables}

    def _lanes(
        self, a: list[Callable[[], None]], b: list[Callable[[], None]], *, parallel: bool
    ) -> None:
        """Run two task lists, in two threads when `parallel`; the first error stops both."""
        if not parallel:
            for task in a + b:
                task()
            return
        failed = threading.Event()
        errors: list[BaseException] = []

        def lane(tasks: list[Callable[[], None]]) -> None:
            try:
                for task in tasks:
                    if failed.is_set():
                        return
                    task()
            except BaseException as e:
                errors.append(e)
                failed.set()

        t = threading.Thread(target=lane, args=(b,), name="wasp-datagen-b", daemon=True)
        t.start()
        lane(a)
        t.join()
        if errors:
            raise errors[0]

    def _day(self, label: str, a: datetime, b: datetime, streams: tuple[str, ...]) -> None:
        t1 = time.monotonic()
        done: list[str] = []
        with self.conn.transaction():
            for s in streams:
                self._begin_step(f"{s}:{a.isoformat()}")
                if s == "messages":
                    done.append(f"messages {self._messages(a, b)}")
                elif s == "webhooks":
                    done.append(f"webhook_logs {self._webhooks(a, b)}")
                elif s == "ai":
                    done.append(f"ai_conversations {self._ai(a, b)}")
                else:
                    done.append(f"ai_response_cache {self._cache(a, b)}")
        self.progress(f"{label}: {', '.join(done)} in {time.monotonic() - t1:.1f}s")

    def _analyze_and_count(self, tables: list[str], counts: dict[str, int]) -> None:
        for t in tables:
            self.conn.execute(f"ANALYZE {t}")
            row = self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()
            counts[t] = int(row[0]) if row else 0
        if not self.conn.autocommit:
            self.conn.commit()

    def _step(self, name: str, fn: Callable[[], int]) -> None:
        t1 = time.monotonic()
        with self.conn.transaction():
            self._begin_step(name)
            n = fn()
        self.progress(f"{name}: {n} rows in {time.monotonic() - t1:.1f}s")

    # -- tenants ----------------------------------------------------------

    def _salons(self) -> int:
        w = salon_weight("r", self.n)
        tiers_b = "ARRAY[100, 500, 2000, 10000, 50000, 250000]"
        tiers_m = "ARRAY[1000, 5000, 20000, 100000, 500000, 2500000]"

        def ratio(u: str) -> str:
            # Usage vs plan limit: most well below, ~8% at 90-100%, ~4% over the limit.
            return (
                f"(CASE WHEN {u} < 0.70 THEN 0.05 + {u} / 0.70 * 0.65"
                f" WHEN {u} < 0.88 THEN 0.70 + ({u} - 0.70) / 0.18 * 0.20"
                f" WHEN {u} < 0.96 THEN 0.90 + ({u} - 0.88) / 0.08 * 0.10"
                f" ELSE 1.0 + ({u} - 0.96) / 0.04 * 0.15 END)"
            )

        def tier(tiers: str, monthly: str, trial: int) -> str:
            return (
                f"CASE WHEN trial_status = 'ACTIVE' THEN {trial} ELSE coalesce("
                f"(SELECT min(t) FROM unnest({tiers}) t WHERE t * 0.75 >= {monthly}),"
                f" ({tiers})[6]) END"
            )

        trial = pick(
            "u_trial", [("ACTIVE", 13), ("CONVERTED", 74), ("EXPIRED", 9), ("CANCELLED", 4)]
        )
        return self._exec(f"""
            INSERT INTO salons (id, name, phone_number_id, is_active, trial_status,
                                usage_current_bookings, usage_limit_bookings,
                                usage_current_messages, usage_limit_messages,
                                created_at)
            SELECT id, name, phone_number_id, is_active, trial_status,
                   floor(limit_b * {ratio("u_use_b")})::int, limit_b,
                   floor(limit_m * {ratio("u_use_m")})::int, limit_m,
                   created_at
            FROM (
                SELECT s.*,
                       {tier(tiers_b, f"w * {10_000 * self.scale * 30!r}", 100)} AS limit_b,
                       {tier(tiers_m, f"w * {DAILY['messages'] * self.scale * 30!r}", 1000)} AS limit_m,
                       CASE WHEN trial_status = 'CANCELLED' THEN false
                            WHEN trial_status = 'EXPIRED' THEN u_active < 0.5
                            ELSE u_active < 0.995 END AS is_active,
                       CASE WHEN trial_status = 'ACTIVE'
                            THEN %(end)s - u_created * interval '14 days'
                            ELSE %(end)s - interval '30 days' - u_created * interval '700 days'
                       END AS created_at
                FROM (
                    SELECT r, {self._salon_id("r")} AS id,
                           {choose("u_n1", WORDS["salon_first"])} || ' '
                               || {choose("u_n2", WORDS["salon_second"])} || ' ' || (r + 1) AS name,
                           {phone_number_id("r")} AS phone_number_id,
                           {w} AS w,
                           CASE WHEN r < {self.n} / 10 THEN 'CONVERTED' ELSE {trial} END AS trial_status,
                           u_active, u_use_b, u_use_m, u_created, u_upd
                    FROM (
                        SELECT r, random() AS u_n1, random() AS u_n2, random() AS u_trial,
                               random() AS u_active, random() AS u_use_b, random() AS u_use_m,
                               random() AS u_created, random() AS u_upd
                        FROM generate_series(0, {self.n - 1}) AS r
                    ) s0
                ) s
            ) t
            ORDER BY r""")

    def _masters_of(self, rank: str) -> str:
        w = salon_weight(rank, self.n)
        return f"greatest(1, ceil({w} * {DAILY['bookings'] * self.scale / _BOOKINGS_PER_MASTER!r}))::int"

    def _masters(self) -> int:
        return self._exec(f"""
            INSERT INTO masters (id, salon_id, name, is_active, created_at, updated_at)
            SELECT {uuid_of(str(self.seed), "'master'", "r", "m")}, {self._salon_id("r")},
                   {choose("u_name", WORDS["first_names"])} || ' '
                       || chr(65 + floor(u_init * 26)::int) || '.',
                   true, c, c
            FROM (
                SELECT r, m, random() AS u_name, random() AS u_init,
                       %(end)s - interval '20 days' - random() * interval '600 days' AS c
                FROM generate_series(0, {self.n - 1}) AS r
                CROSS JOIN LATERAL generate_series(0, {self._masters_of("r")} - 1) AS m
            ) x""")

    def _templates(self) -> int:
        names = WORDS["template_names"]
        category = (
            "CASE WHEN name = 'otp_code' THEN 'AUTHENTICATION'"
            " WHEN name IN ('seasonal_promo', 'birthday_offer', 'review_request') THEN 'MARKETING'"
            " ELSE 'UTILITY' END"
        )
        lang = pick("u_lang", [("en", 40), ("ru", 25), ("es", 12), ("de", 8), ("tr", 8), ("ar", 7)])
        # Old templates are decided (a few stuck in review); recent ones are often still pending.
        status = (
            "CASE WHEN recent THEN "
            + pick("u_st", [("PENDING", 45), ("APPROVED", 45), ("REJECTED", 10)])
            + " ELSE "
            + pick("u_st", [("PENDING", 3), ("APPROVED", 87), ("REJECTED", 10)])
            + " END"
        )
        cast = self._cast("templates", "status")
        return self._exec(f"""
            INSERT INTO templates (id, salon_id, name, language, category, status, created_at)
            SELECT id, salon_id, name, language, {category}, status{cast}, created_at
            FROM (
                SELECT t.*, {status} AS status
                FROM (
                    SELECT {uuid_of(str(self.seed), "'template'", "r", "j")} AS id,
                           {self._salon_id("r")} AS salon_id,
                           ({text_array(names)})[1 + mod(o + j, {len(names)})] AS name,
                           lang AS language, recent, u_st, u_upd,
                           CASE WHEN recent THEN %(end)s - u_age * interval '3 days'
                                ELSE %(end)s - interval '3 days' - u_age * interval '400 days'
                           END AS created_at
                    FROM (
                        SELECT r, floor(random() * {len(names)})::int AS o,
                               2 + floor(random() * 7)::int AS k, {lang} AS lang
                        FROM (SELECT r, random() AS u_lang FROM generate_series(0, {self.n - 1}) r) r0
                    ) s
                    CROSS JOIN LATERAL (
                        SELECT j, random() < 0.15 AS recent, random() AS u_st, random() AS u_upd,
                               random() AS u_age
                        FROM generate_series(0, s.k - 1) AS j
                    ) t0
                ) t
            ) x""")

    # -- bookings and reminders ------------------------------------------

    def _booking_status(self) -> tuple[str, str]:
        """(status, updated_at) expressions over a dg_booking row `b` (a status as of `end`)."""
        close = "b.end_ts + (5 + b.upd_u * 175) * interval '1 minute'"
        status = f"""CASE
            WHEN b.start_ts > %(end)s THEN
                CASE WHEN b.status_u < 0.08 THEN 'CANCELLED'
                     WHEN b.status_u < 0.11 THEN 'RESCHEDULED' ELSE 'CONFIRMED' END
            WHEN b.end_ts > %(end)s THEN
                CASE WHEN b.status_u < 0.08 THEN 'CANCELLED' ELSE 'CONFIRMED' END
            WHEN b.status_u < 0.08 THEN 'CANCELLED'
            WHEN b.status_u < 0.11 THEN 'RESCHEDULED'
            WHEN {close} > %(end)s THEN 'CONFIRMED'
            WHEN b.status_u < 0.16 THEN 'NO_SHOW'
            WHEN b.status_u < 0.18 THEN 'CONFIRMED'
            ELSE 'COMPLETED' END"""
        updated = f"""CASE
            WHEN s.status IN ('CANCELLED', 'RESCHEDULED')
                THEN b.created_at + b.upd_u * (least(b.start_ts, %(end)s) - b.created_at)
            WHEN s.status IN ('NO_SHOW', 'COMPLETED') THEN {close}
            ELSE b.created_at END"""
        return status, updated

    def _bookings(self) -> int:
        svc_minutes = "ARRAY[" + ", ".join(str(s.minutes) for s in SERVICES) + "]"
        wd = "ARRAY[" + ", ".join(repr(x) for x in WEEKDAY_WEIGHTS) + "]"
        w = salon_weight("r", self.n)
        nm = self._masters_of("r")
        first_day = datetime.combine(self.start.date(), datetime.min.time())
        last_day = datetime.combine(self.end.date(), datetime.min.time()) + timedelta(
            days=_MAX_LEAD_DAYS + 1
        )
        keep = (
            f"{w} * {DAILY['bookings'] * self.scale!r} * ({wd})[extract(isodow FROM day)::int]"
            f" / ({nm} * {_SLOTS_PER_MASTER_DAY!r})"
        )
        # Each master's day is a back-to-back sequence of appointments (06:00-18:00 UTC), so
        # nothing overlaps by construction; a salon-dependent share of the slots is booked.
        self._exec(
            f"""
            CREATE TEMP TABLE dg_booking ON COMMIT DROP AS
            SELECT row_number() OVER () AS code_n, z.*
            FROM (
                SELECT {uuid_of(str(self.seed), "'booking'", "r", "m", "extract(epoch FROM day)::bigint", "j")} AS id,
                       r, m, floor(cust_u * 1e9)::bigint AS cust, svc, start_ts,
                       start_ts + dur * interval '1 minute' AS end_ts,
                       CASE WHEN cand > start_ts - interval '30 minutes'
                            THEN start_ts - interval '30 minutes'
                                 - tod_u1 * (start_ts - interval '30 minutes' - day)
                            ELSE cand END AS created_at,
                       status_u, upd_u, rem_u, resp_u, extra_u, 'main'::text AS kind
                FROM (
                    SELECT y.*, day + interval '6 hours' + off_min * interval '1 minute' AS start_ts,
                           day - least({_MAX_LEAD_DAYS}, floor(-ln(1 - lead_u) * 2.0)) * interval '1 day'
                               + (4 + 15 * (tod_u1 + tod_u2) / 2) * interval '1 hour' AS cand
                    FROM (
                        SELECT x.*, sum(gap + dur) OVER (PARTITION BY r, m, day ORDER BY j) - dur AS off_min
                        FROM (
                            SELECT a.*, ({svc_minutes})[svc + 1] AS dur
                            FROM (
                                SELECT r, m, day, j, floor(random() * {len(SERVICES)})::int AS svc,
                                       CASE WHEN random() < 0.65 THEN 0
                                            WHEN random() < 0.6 THEN 15 ELSE 30 END AS gap,
                                       random() AS keep_u, random() AS lead_u, random() AS tod_u1,
                                       random() AS tod_u2, random() AS cust_u, random() AS status_u,
                                       random() AS upd_u, random() AS rem_u, random() AS resp_u,
                                       random() AS extra_u
                                FROM generate_series(0, {self.n - 1}) AS r
                                CROSS JOIN LATERAL generate_series(0, {nm} - 1) AS m
                                CROSS JOIN generate_series(%(first_day)s::timestamp, %(last_day)s::timestamp,
                                                           interval '1 day') AS day
                                CROSS JOIN generate_series(1, 12) AS j
                            ) a
                        ) x
                    ) y
                    WHERE off_min + dur <= 720 AND keep_u < {keep}
                ) z0
            ) z
            WHERE created_at >= %(start)s AND created_at < %(end)s""",
            {"first_day": first_day, "last_day": last_day},
        )
        status, updated = self._booking_status()
        # Double bookings: ~0.6% of upcoming live bookings get a second, overlapping booking of
        # the same master, and at least three in the next 24 hours (starting 1 h to 23 h
        # after the end of the load, so that they are still "next 24 h" a while later).
        self._exec(f"""
            INSERT INTO dg_booking
            SELECT (SELECT max(code_n) FROM dg_booking) + row_number() OVER (ORDER BY id),
                   {uuid_of(str(self.seed), "'double'", "id")}, r, m, cust + 7, svc,
                   start_ts + shift, end_ts + shift,
                   created_at + (0.5 + 0.5 * random()) * (%(end)s - created_at),
                   0.5, random(), random(), random(), 1.0, 'double'
            FROM (
                SELECT b.*, least(15 * floor(random() * 3), extract(epoch FROM end_ts - start_ts) / 60 - 15)
                              * interval '1 minute' AS shift,
                       row_number() OVER (PARTITION BY b.start_ts BETWEEN %(end)s + interval '1 hour'
                                                               AND %(end)s + interval '23 hours'
                                          ORDER BY b.extra_u) AS rn
                FROM dg_booking b CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                WHERE b.start_ts > %(end)s AND s.status <> 'CANCELLED'
                ORDER BY b.id
            ) d
            WHERE extra_u < 0.006
               OR (start_ts BETWEEN %(end)s + interval '1 hour' AND %(end)s + interval '23 hours'
                   AND rn <= 3)""")
        # A cancelled slot is often re-booked by someone else: overlapping, but not a double booking.
        self._exec(f"""
            INSERT INTO dg_booking
            SELECT (SELECT max(code_n) FROM dg_booking) + row_number() OVER (ORDER BY id),
                   {uuid_of(str(self.seed), "'rebook'", "id")}, r, m, cust + 13, svc, start_ts, end_ts,
                   cancelled_at + random() * (least(start_ts, %(end)s) - cancelled_at),
                   0.11 + 0.89 * random(), random(), random(), random(), 1.0, 'rebook'
            FROM (
                SELECT b.*, u.updated_at AS cancelled_at
                FROM dg_booking b
                CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                CROSS JOIN LATERAL (SELECT {updated} AS updated_at OFFSET 0) u
                WHERE s.status = 'CANCELLED' AND b.extra_u < 0.35 AND b.kind = 'main'
                ORDER BY b.id
            ) c""")
        rem_status = """CASE
            WHEN f.sched IS NULL THEN NULL
            WHEN f.status = 'CANCELLED' AND f.updated_at <= f.sched THEN 'CANCELLED'
            WHEN f.sched > %(end)s THEN 'PENDING'
            WHEN (%(end)s - f.sched < interval '6 hours' AND f.rem_u < 0.08) OR f.rem_u < 0.004
                THEN 'PENDING'
            WHEN f.rem_u < 0.035 THEN
                CASE WHEN f.sched + interval '20 minutes' > %(end)s THEN 'PENDING' ELSE 'FAILED' END
            WHEN f.sched + (2 + f.rem_u * 90) * interval '1 second' > %(end)s THEN 'PENDING'
            ELSE 'SENT' END"""
        response = (
            "CASE WHEN rem_status = 'SENT' AND response_at <= %(end)s THEN "
            + pick("resp_u", [("CONFIRMED", 55), ("RESCHEDULE", 3), ("CANCEL", 2), ("", 40)])
            + " END"
        )
        services = text_array([s.name for s in SERVICES])
        code = "'BK' || upper(lpad(to_hex(mod(code_n * 2654435761, 4294967296)), 8, '0'))"
        pool = f"least(99999, greatest(10, ceil({w} * {150_000 * self.scale!r})))"
        phone = f"'+79' || lpad((r::bigint * 100000 + mod(cust, {pool}::bigint))::text, 9, '0')"
        name = (
            f"({text_array(WORDS['first_names'])})[1 + mod(cust, {len(WORDS['first_names'])})::int]"
        )
        self._exec(f"""
            WITH f AS MATERIALIZED (
                SELECT b.*, s.status, u.updated_at, {self._salon_id("b.r")} AS salon_id,
                       CASE WHEN b.created_at <= b.start_ts - interval '24 hours'
                                THEN b.start_ts - interval '24 hours'
                            WHEN b.created_at <= b.start_ts - interval '2 hours'
                                THEN b.start_ts - interval '2 hours' END AS sched
                FROM dg_booking b
                CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                CROSS JOIN LATERAL (SELECT {updated} AS updated_at OFFSET 0) u
            ), rm AS MATERIALIZED (
                SELECT f.*, rs.rem_status,
                       f.sched + (2 + f.rem_u * 90) * interval '1 second' AS sent_at,
                       f.sched + (2 + f.rem_u * 90) * interval '1 second'
                           + f.resp_u * interval '40 minutes' AS response_at
                FROM f CROSS JOIN LATERAL (SELECT {rem_status} AS rem_status) rs
            ), bk AS (
                INSERT INTO bookings (id, booking_code, salon_id, customer_phone, customer_name,
                                      service, master_id, service_id, start_ts, end_ts, status,
                                      reminder_sent, reminder_response, created_at, updated_at)
                SELECT id, {code}, salon_id, {phone}, {name} || ' ' || chr(65 + mod(cust / 7, 26)::int) || '.',
                       ({services})[svc + 1], {uuid_of(str(self.seed), "'master'", "r", "m")},
                       {uuid_of(str(self.seed), "'service'", "r", "svc")}, start_ts,
                       CASE WHEN kind = 'main' AND mod(code_n, 50) = 0 THEN NULL ELSE end_ts END,
                       status{self._cast("bookings", "status")},
                       coalesce(rem_status = 'SENT', false), nullif(response, ''),
                       created_at,
                       CASE WHEN nullif(response, '') IS NULL THEN updated_at
                            ELSE greatest(updated_at, response_at) END
                FROM (SELECT rm.*, {response} AS response FROM rm) rr
                ORDER BY id
            )
            INSERT INTO reminders (id, booking_id, salon_id, scheduled_at, sent_at, status, attempts,
                                   last_error, created_at)
            SELECT {uuid_of(str(self.seed), "'reminder'", "id")}, id, salon_id, sched,
                   CASE WHEN rem_status = 'SENT' THEN sent_at END,
                   rem_status{self._cast("reminders", "status")},
                   CASE rem_status WHEN 'SENT' THEN 1 + (resp_u < 0.05)::int
                                   WHEN 'FAILED' THEN 3
                                   WHEN 'PENDING' THEN CASE WHEN sched < %(end)s
                                                            THEN mod(floor(rem_u * 1000)::int, 3)
                                                            ELSE 0 END
                                   ELSE 0 END,
                   CASE WHEN rem_status = 'FAILED'
                            THEN {choose("resp_u", WORDS["reminder_errors"])}
                        WHEN rem_status = 'PENDING' AND sched < %(end)s
                             AND mod(floor(rem_u * 1000)::int, 3) > 0
                            THEN 'WhatsApp API timeout' END,
                   created_at
            FROM rm
            WHERE rem_status IS NOT NULL
            ORDER BY 1""")
        row = self.conn.execute("SELECT count(*) FROM dg_booking").fetchone()
        return int(row[0]) if row else 0

    # -- per-day streams --------------------------------------------------

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

    def _conversations(self) -> int:
        status = """CASE WHEN u_block < 0.005 THEN 'BLOCKED'
                         WHEN last_at > %(end)s - interval '24 hours' THEN 'ACTIVE'
                         WHEN last_at < %(end)s - interval '7 days' AND u_arch < 0.3 THEN 'ARCHIVED'
                         ELSE 'EXPIRED' END"""
        return self._exec(f"""
            INSERT INTO conversations (id, salon_id, phone_number, status, started_at, last_message_at,
                                       message_count, cost)
            SELECT {self._conv_id("salon_id", "phone_number")}, salon_id, phone_number,
                   ({status}){self._cast("conversations", "status")}, first_at, last_at, n, cost
            FROM (
                SELECT a.*, random() AS u_block, random() AS u_arch
                FROM (
                    SELECT salon_id, phone_number, min(first_at) AS first_at, max(last_at) AS last_at,
                           sum(n)::int AS n, sum(cost) AS cost
                    FROM (
                        SELECT salon_id, phone_number, min(created_at) AS first_at,
                               max(created_at) AS last_at, count(*) AS n, coalesce(sum(cost), 0) AS cost
                        FROM messages GROUP BY salon_id, phone_number
                        UNION ALL
                        SELECT salon_id, phone_number, min(created_at), max(last_activity),
                               sum(message_count), 0
                        FROM ai_conversations GROUP BY salon_id, phone_number
                    ) u
                    GROUP BY salon_id, phone_number
                    ORDER BY salon_id, phone_number
                ) a
            ) b""")

    def _intent_analytics(self) -> int:
        # The nightly job's view: one row per salon, intent and UTC day.
        return self._exec(f"""
            INSERT INTO intent_analytics (id, salon_id, intent, count, date, created_at, updated_at)
            SELECT {uuid_of(str(self.seed), "'intent'", "salon_id", "intent", "day - date '2000-01-01'")}, salon_id, intent, n, day,
                   least(%(end)s, day + interval '1 day 5 minutes'),
                   least(%(end)s, day + interval '1 day 5 minutes')
            FROM (
                SELECT salon_id, intent, created_at::date AS day, count(*)::int AS n
                FROM ai_messages
                WHERE intent IS NOT NULL
                GROUP BY 1, 2, 3
            ) x
            ORDER BY 1""")
