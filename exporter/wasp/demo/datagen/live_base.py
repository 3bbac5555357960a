"""The live writer's state and helpers: its connection, salons, counters and schedule."""

from __future__ import annotations

import heapq
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from wasp.demo.datagen.schema import SchemaInfo, inspect_schema

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


class _WriterBase:
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

    def follow_ups(self, items: list[tuple[Any, ...]]) -> None:
        """Answers to due AI exchanges (the inserts side writes them)."""
        raise NotImplementedError
