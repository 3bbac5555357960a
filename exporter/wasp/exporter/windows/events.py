"""Counters of settled events: each row counted once, by its outcome at a fixed age.

An events query (``events:`` in its definition) keeps a mark M, a time in the
table's clock. A round at server time T reads the slice of rows with
``M <= time < T - settle_after``, adds their aggregates to running totals per
label set, and moves M to ``T - settle_after``. A row is therefore counted in
exactly one round, with the values it had when it was ``settle_after`` old:
by then its outcome can no longer change (a delivery receipt has arrived, a
webhook handler has finished), and transactions that committed late (shorter
than ``settle_after``) are already visible. Database work per round is the
rows of one interval, through the index on the time column.

The counters start at zero with the process (the mark starts at the first
round's ``T - settle_after``; ``rate()`` takes restarts in its stride). The
first round reads the hour before the mark to export the label sets it
finds at zero, so that the first events of a series are not lost to
``rate()``. A failed round leaves the mark where it was: the next round reads
the longer slice, and nothing is counted twice or lost.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from wasp.config.events import EventsDef
from wasp.config.schema import QueryDef
from wasp.exporter.collector import CollectContext, CollectError
from wasp.exporter.db import DBError, Result
from wasp.exporter.sql import QueryCollector, families_from_rows, to_float
from wasp.model import Family

__all__ = ["SEED_LOOKBACK", "EventCounterCollector"]

#: how far before the first mark the first round looks for label sets to export at zero
SEED_LOOKBACK = 3600.0
_BOUND = "SELECT (now() AT TIME ZONE 'UTC') - make_interval(secs => %s)"


class EventCounterCollector(QueryCollector):
    """Runs one events query: a slice per round, added to counters kept in memory."""

    def __init__(self, query: QueryDef, target: str) -> None:
        assert query.events is not None
        super().__init__(query, target)
        self.events: EventsDef = query.events
        self.mark: dt.datetime | None = None
        self.totals: dict[tuple[str, ...], list[float]] = {}
        self._sql = self.events.slice_sql()
        self._labels = [k for k, _ in self.events.group_by]
        self._values = [k for k, _ in self.events.aggregates]

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Read the newly settled slice and return the running totals."""
        if ctx.db is None:
            raise CollectError("connection", f"target {self.target!r} has no database")
        try:
            bound = await ctx.db.fetch(_BOUND, timeout=self.timeout,
                                       params=(self.events.settle_after,))
            hi: dt.datetime = bound.rows[0][0]
            if self.mark is None:
                seed = await ctx.db.fetch(self._sql, timeout=self.timeout,
                                          params=(hi - dt.timedelta(seconds=SEED_LOOKBACK), hi))
                self._add(seed, zero=True)
            elif hi > self.mark:
                self._add(await ctx.db.fetch(self._sql, timeout=self.timeout,
                                             params=(self.mark, hi)))
        except DBError as e:
            raise CollectError(e.reason, str(e)) from None
        self.mark = hi if self.mark is None else max(self.mark, hi)
        rows: list[tuple[Any, ...]] = [(*k, *v) for k, v in sorted(self.totals.items())]
        return families_from_rows(self.query, Result((*self._labels, *self._values), rows))

    def _add(self, result: Result, *, zero: bool = False) -> None:
        idx = {c: i for i, c in enumerate(result.columns)}
        missing = [c for c in (*self._labels, *self._values) if c not in idx]
        if missing:
            raise CollectError("sql", f"query {self.name!r} returned no column(s) "
                               f"{', '.join(map(repr, missing))}")
        adds: dict[tuple[str, ...], list[float]] = {}
        for row in result.rows:
            key = tuple("" if row[idx[c]] is None else str(row[idx[c]]) for c in self._labels)
            try:
                vals = [to_float(row[idx[c]]) or 0.0 for c in self._values]
            except ValueError as e:
                raise CollectError("sql", f"query {self.name!r}: {e}") from None
            adds[key] = vals
        # validated whole before any is applied: a bad row never counts half a slice
        for key, vals in adds.items():
            total = self.totals.setdefault(key, [0.0] * len(self._values))
            if not zero:
                for i, v in enumerate(vals):
                    total[i] += v
