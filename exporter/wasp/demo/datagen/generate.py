"""Fill an application schema with days of realistic history, set-based and deterministic.

Every table is loaded with INSERT ... SELECT over generate_series; randomness comes
from random() after setseed(), and ids from md5 of the seed and a row key, so the
same seed, size and `end` give the same rows. All times are UTC values for
`timestamp without time zone` columns, computed from `end` (by default the
server's `now() at time zone 'utc'`), never from the session time zone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from psycopg import pq

from wasp.demo.datagen.base import Progress
from wasp.demo.datagen.schema import TABLES, inspect_schema
from wasp.demo.datagen.sqlbits import (
    uuid_of,
)
from wasp.demo.datagen.streams import _Streams
from wasp.demo.datagen.tenants import _Tenants

__all__ = ["GenerateError", "generate"]


_REQUIRED = tuple(t for t in TABLES if t != "intent_analytics")
_MAX_SALONS = 9999  # phone numbers pack the salon rank into 4 digits



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


class _Generator(_Streams, _Tenants):
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
