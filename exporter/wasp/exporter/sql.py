"""A configured SQL query as a collector: rows -> metric families.

A query with a `top:` block (config/top.py) runs as a TopCollector: one row per
entity comes back, a StableTop decides which entities keep their own series
(with hysteresis, so the set does not churn between rounds), the rest are
summed into one `(other)` row, and the entity's descriptive labels go to one
info series keyed by the entity.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from wasp.config.schema import QueryDef, ValueDef
from wasp.config.top import TopDef
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import DBError, Result
from wasp.model import Family, Sample

__all__ = ["QueryCollector", "SqlCollector", "StableTop", "TopCollector", "families_from_rows",
           "to_float"]


class QueryCollector(Collector):
    """A collector defined by a QueryDef: schedule, limits and role come from the query."""

    def __init__(self, query: QueryDef, target: str) -> None:
        self.query = query
        self.name = query.name
        self.target = target
        self.interval = query.interval
        self.timeout = query.timeout
        self.max_series = query.max_series
        self.role = query.role


class SqlCollector(QueryCollector):
    """Runs one QueryDef's SQL in full against one target."""

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Run the SQL once and build families from its rows."""
        if ctx.db is None:
            raise CollectError("connection", f"target {self.target!r} has no database")
        try:
            result = await ctx.db.fetch(self.query.sql, timeout=self.timeout)
        except DBError as e:
            raise CollectError(e.reason, str(e)) from None
        return families_from_rows(self.query, result)


def to_float(v: Any) -> float | None:
    """A SQL value as a sample value; None for NULL; ValueError when not numeric."""
    if v is None:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float, decimal.Decimal)):
        return float(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return float(v.timestamp())
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    raise ValueError(f"{type(v).__name__} value {str(v)[:40]!r} is not numeric")


def families_from_rows(query: QueryDef, result: Result) -> list[Family]:
    """Turn one result into a family per value column (merged by metric name)."""
    idx = {c: i for i, c in enumerate(result.columns)}
    missing = [c for c in (*query.labels, *(v.column for v in query.values)) if c not in idx]
    if missing:
        raise CollectError(
            "sql",
            f"query {query.name!r} returned no column(s) {', '.join(map(repr, missing))} "
            f"(it returned: {', '.join(result.columns) or 'nothing'})",
        )
    label_idx = [idx[lab] for lab in query.labels]
    by_metric: dict[str, tuple[ValueDef, dict[tuple[str, ...], float]]] = {}
    order: dict[str, tuple[str, ...]] = {}
    for v in query.values:
        if v.metric not in by_metric:
            by_metric[v.metric] = (v, {})
            order[v.metric] = (*(k for k, _ in v.const_labels), *query.labels)
    seen_dupe: dict[str, int] = defaultdict(int)
    for row in result.rows:
        labels = tuple("" if row[i] is None else str(row[i]) for i in label_idx)
        for v in query.values:
            try:
                value = to_float(row[idx[v.column]])
            except ValueError as e:
                raise CollectError("sql", f"query {query.name!r} column {v.column!r}: {e}") from None
            if value is None:
                continue
            key = tuple(val for _, val in v.const_labels) + labels
            samples = by_metric[v.metric][1]
            if key in samples:
                seen_dupe[v.metric] += 1
                continue
            samples[key] = value
    if seen_dupe:
        dupes = ", ".join(f"{m} ({n})" for m, n in seen_dupe.items())
        raise CollectError("sql", f"query {query.name!r} returned duplicate label sets for {dupes}; "
                           "add the distinguishing column to labels or aggregate in SQL")
    out = []
    for metric, (v, samples) in by_metric.items():
        s: tuple[Sample, ...] = tuple(samples.items())
        out.append(Family(metric, v.type, v.help, order[metric], s))
    return out


class StableTop:
    """The entities that keep their own series: a top N with hysteresis.

    An entity enters after holding a place in the top `size` for `enter_after`
    seconds, and only into a free place; it leaves after being out of the top
    for `leave_after`. The first round fills the places at once. So a place
    changes hands at most once per `leave_after`, whatever the ranks do.
    """

    def __init__(self, size: int, enter_after: float, leave_after: float) -> None:
        self.size = size
        self.enter_after = enter_after
        self.leave_after = leave_after
        self.exported: dict[str, None] = {}  # insertion-ordered set
        self._in_since: dict[str, float] = {}
        self._out_since: dict[str, float] = {}
        self._started = False
        #: entities that ever entered the set (each one is a set of new series)
        self.entered = 0

    def update(self, ranked: Sequence[str], now: float) -> list[str]:
        """Take this round's ranking (best first); return the exported entities."""
        top = ranked[:self.size]
        top_set = set(top)
        self._in_since = {k: self._in_since.get(k, now) for k in top}
        for k in list(self.exported):
            if k in top_set:
                self._out_since.pop(k, None)
            elif now - self._out_since.setdefault(k, now) >= self.leave_after:
                del self.exported[k]
                del self._out_since[k]
        for k in top:
            if len(self.exported) >= self.size:
                break
            if k not in self.exported and (
                    not self._started or now - self._in_since[k] >= self.enter_after):
                self.exported[k] = None
                self.entered += 1
        self._started = True
        return list(self.exported)


class TopCollector(SqlCollector):
    """A query with `top:`: a stable top N of its rows get series, the rest one `(other)` row."""

    def __init__(self, query: QueryDef, target: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(query, target)
        assert query.top is not None
        self.top: TopDef = query.top
        self.clock = clock
        self.stable = StableTop(self.top.size, self.top.enter_after, self.top.leave_after)
        self._info: dict[str, tuple[str, ...]] = {}

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Run the SQL, update the stable set, build families."""
        if ctx.db is None:
            raise CollectError("connection", f"target {self.target!r} has no database")
        try:
            result = await ctx.db.fetch(self.query.sql, timeout=self.timeout)
        except DBError as e:
            raise CollectError(e.reason, str(e)) from None
        return self.families(result)

    def families(self, result: Result) -> list[Family]:
        """Families of one result: the stable set's rows, the `(other)` row, the info series."""
        top, q = self.top, self.query
        idx = {c: i for i, c in enumerate(result.columns)}
        wanted = (top.key, top.rank_by, *top.sum, *top.info_labels)
        missing = [c for c in wanted if c not in idx]
        if missing:
            raise CollectError("sql", f"query {q.name!r} returned no column(s) "
                               f"{', '.join(map(repr, missing))}")
        ki, ri = idx[top.key], idx[top.rank_by]
        rows: dict[str, tuple[Any, ...]] = {}
        for row in result.rows:
            key = "" if row[ki] is None else str(row[ki])
            if key in rows or key == top.other:
                raise CollectError("sql", f"query {q.name!r} returned {top.key}={key!r} twice")
            rows[key] = row
            if top.info_labels and all(row[idx[c]] is not None for c in top.info_labels):
                # kept for an exported entity whose row comes without them (ranked far down)
                self._info[key] = tuple(str(row[idx[c]]) for c in top.info_labels)

        def score(k: str) -> float:
            v = to_float(rows[k][ri])
            return -math.inf if v is None or math.isnan(v) else v

        ranked = sorted(rows, key=lambda k: (-score(k), k))
        exported = set(self.stable.update(ranked, self.clock()))
        kept = [r for k, r in rows.items() if k in exported]
        rest = [r for k, r in rows.items() if k not in exported]
        if rest:
            other: list[Any] = [None] * len(result.columns)
            other[ki] = top.other
            for col in top.sum:
                vals = [v for r in rest if (v := to_float(r[idx[col]])) is not None]
                other[idx[col]] = sum(vals) if vals else None
            kept.append(tuple(other))
        out = families_from_rows(q, Result(result.columns, kept))
        self._info = {k: v for k, v in self._info.items() if k in exported}
        if top.info_metric:
            samples: tuple[Sample, ...] = tuple(
                ((k, *self._info[k]), 1.0) for k in sorted(exported) if k in self._info)
            out.append(Family(top.info_metric, "gauge", top.info_help,
                              (top.key, *top.info_labels), samples))
        return out
