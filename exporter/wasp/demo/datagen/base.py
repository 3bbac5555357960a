"""The generator's plumbing: its settings, per-step seeds, statements and SQL helpers."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from wasp.demo.datagen.profile import (
    SALON_SKEW,
    buckets,
)
from wasp.demo.datagen.schema import SchemaInfo
from wasp.demo.datagen.sqlbits import (
    salon_weight,
    uuid_of,
)

Progress = Callable[[str], None]


class _Base:
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
