"""A configured SQL query as a collector: rows -> metric families."""

from __future__ import annotations

import datetime as dt
import decimal
from collections import defaultdict
from typing import Any

from wasp.config.schema import QueryDef, ValueDef
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import DBError, Result
from wasp.model import Family, Sample

__all__ = ["QueryCollector", "SqlCollector", "families_from_rows", "to_float"]


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
