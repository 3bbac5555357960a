"""The window collector: partial aggregates kept in memory, refreshed from what changed."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from wasp.config.schema import QueryDef, WindowDef
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import DBError, Result, TargetDB
from wasp.exporter.sql import QueryCollector, families_from_rows, to_float
from wasp.exporter.windows.agg import empty, final, merge
from wasp.exporter.windows.plan import WindowPlan, plan_window
from wasp.exporter.windows.rowtable import RowTable
from wasp.model import Family

__all__ = ["FULL_EVERY", "WindowCollector", "make_window_collector"]

log = logging.getLogger(__name__)

FULL_EVERY = 3600.0


def make_window_collector(q: QueryDef, target: str) -> Collector | None:
    """A WindowCollector for `q`, or None (with a log line) when it must run in full."""
    plan = plan_window(q)
    if isinstance(plan, str):
        if q.window is not None and q.window.incremental:
            log.info("window query %s runs in full: %s", q.name, plan)
        return None
    return WindowCollector(q, target, plan)


def _escape(sql: str) -> str:
    return sql.replace("%", "%%")


class WindowCollector(QueryCollector):
    """Evaluates a declared window query incrementally."""

    def __init__(self, query: QueryDef, target: str, plan: WindowPlan, *,
                 clock: Callable[[], float] | None = None, full_every: float = FULL_EVERY) -> None:
        assert query.window is not None
        super().__init__(query, target)
        self.window: WindowDef = query.window
        self.plan = plan
        self.aggs = list(plan.aggs)
        self.clock = clock
        self.full_every = full_every
        self.labels = [k for k, _ in self.window.group_by]
        self._time_type: str | None = None
        self._prev: float | None = None  # T of the last successful refresh
        self._loaded_at = 0.0
        # buckets mode: bucket index -> group -> partials
        self._buckets: dict[int, dict[tuple[str, ...], list[Any]]] = {}
        # rows mode: a 24 h window remembers every row in it (100,000 bookings a
        # day for a large customer), in a RowTable (flat arrays): its time in
        # microseconds and one 32-bit word, the group's number << 8 | the
        # contribution's number. Groups and (for windows that only count)
        # contributions are numbered once; other contributions are kept per row.
        self._b_us = round(plan.bucket * 1e6)
        self._counts_only = all(a.fn in ("count_star", "count") for a in self.aggs)
        self._reset_rows()
        self.rows_read = 0
        self.full_loads = 0
        # a window ahead re-reads changed rows by the updated column: without an
        # index on it that is a scan of the table, dearer than the plain query,
        # which then runs instead (checked again at every hourly reload)
        self.in_full: str | None = None
        self._checked_at: float | None = None
        #: why the updated_column cannot be used (it is missing on the server), or None
        self.no_updated: str | None = None
        self._inspected_at = 0.0

    # -- time ----------------------------------------------------------------------
    def _now(self, db: TargetDB) -> float:
        if self.clock is not None:
            return self.clock()
        return time.time() + db.clock_skew

    def _param(self, t: float) -> dt.datetime:
        aware = dt.datetime.fromtimestamp(t, dt.UTC)
        return aware if self._time_type == "timestamp with time zone" else aware.replace(tzinfo=None)

    async def _inspect(self, db: TargetDB, now: float) -> None:
        """Check the table and columns on the server, as `requires` is checked.

        A missing table or time column fails the run with reason `missing`; a
        missing updated_column makes the window run in full (one log line),
        checked again at every full reload.
        """
        w = self.window
        r = await db.fetch(
            "SELECT to_regclass(%s) IS NOT NULL, "
            "(SELECT format_type(a.atttypid, NULL) FROM pg_attribute a WHERE a.attrelid = "
            " to_regclass(%s) AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped), "
            "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            " AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped)",
            timeout=self.timeout,
            params=(w.table, w.table, w.time_column, w.table, w.updated_column or ""))
        has_table, t, has_updated = r.rows[0]
        if not has_table:
            raise CollectError("missing", f"window query {self.name!r}: relation {w.table} "
                               "does not exist")
        if t is None:
            raise CollectError("missing", f"window query {self.name!r}: column "
                               f"{w.table}.{w.time_column} does not exist")
        if t not in ("timestamp without time zone", "timestamp with time zone"):
            raise CollectError("sql", f"window query {self.name!r}: {w.table}.{w.time_column} "
                               f"is {t}, not a timestamp")
        self._time_type = str(t)
        self._inspected_at = now
        missing = None
        if self.plan.mode == "rows" and not has_updated:
            missing = (f"column {w.table}.{w.updated_column} (its updated_column) does not exist "
                       "on the server")
        if missing != self.no_updated:
            if missing:
                log.warning("window query %s runs in full: %s", self.name, missing)
            else:
                log.info("window query %s: column %s.%s found, evaluated incrementally",
                         self.name, w.table, w.updated_column)
                self._prev = None  # start from a full load
        self.no_updated = missing

    # -- collector -----------------------------------------------------------------
    async def collect(self, ctx: CollectContext) -> list[Family]:
        """One refresh: read what may have changed, fold it in, export the window."""
        if ctx.db is None:
            raise CollectError("connection", f"target {self.target!r} has no database")
        try:
            return await self.refresh(ctx.db)
        except DBError as e:
            raise CollectError(e.reason, str(e)) from None

    async def _check_index(self, db: TargetDB, now: float) -> None:
        w = self.window
        r = await db.fetch(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = to_regclass(%s) AND a.attname = %s AND i.indisvalid)",
            timeout=self.timeout, params=(w.table, w.updated_column))
        self._checked_at = now
        reason = None if r.rows and r.rows[0][0] else (
            f"no index on {w.table}({w.updated_column}): finding the changed rows of a "
            "window ahead would scan the table")
        if reason != self.in_full:
            if reason:
                log.warning("window query %s runs in full: %s", self.name, reason)
            else:
                log.info("window query %s: index on %s(%s) found, evaluated incrementally",
                         self.name, w.table, w.updated_column)
                self._prev = None  # start from a full load
        self.in_full = reason

    async def refresh(self, db: TargetDB) -> list[Family]:
        """Bring the window up to now and return its families."""
        now = self._now(db)
        if self._time_type is None or now - self._inspected_at >= self.full_every:
            await self._inspect(db, now)
        if self.window.direction == "future" and (
                self._checked_at is None or now - self._checked_at >= self.full_every):
            await self._check_index(db, now)
        if self.in_full is not None or self.no_updated is not None:
            return families_from_rows(self.query, await db.fetch(self.query.sql,
                                                                 timeout=self.timeout))
        full = self._prev is None or now - self._loaded_at >= self.full_every
        if self.plan.mode == "buckets":
            ranges = self._bucket_ranges(now, full)
            self._refresh_buckets(await self._read_buckets(db, now, ranges), now, ranges)
            rows = self._bucket_rows()
        else:
            await self._refresh_rows(db, now, full)
            rows = self._rows_result()
        if full:
            self._loaded_at = now
            self.full_loads += 1
        self._prev = now
        cols = tuple(self.labels) + tuple(a.column for a in self.aggs)
        return families_from_rows(self.query, Result(cols, rows))

    # -- buckets ---------------------------------------------------------------------
    def _group_sql(self) -> str:
        return "".join(f", {expr} AS {_ident(k)}" for k, expr in self.window.group_by)

    def _bucket_ranges(self, now: float, full: bool) -> tuple[int, int] | None:
        """(head bucket, edge bucket) to re-read, or None to re-read the whole window."""
        b = self.plan.bucket
        edge_idx = math.floor((now - self.window.length) / b)
        if full or self._prev is None:
            return None
        head_idx = math.floor((self._prev - self.plan.reread) / b)
        if edge_idx + 1 >= head_idx:
            return None  # the head reaches the edge bucket: one range covers it all
        return head_idx, edge_idx

    async def _read_buckets(self, db: TargetDB, now: float,
                            ranges: tuple[int, int] | None) -> Result:
        w, b = self.window, self.plan.bucket
        t = w.time_column
        parts = [p for a in self.aggs for p in a.sql()]
        select = (f"SELECT {self._bucket_sql(db)} AS wasp_bucket"
                  f"{self._group_sql()}, " + ", ".join(parts))
        group = ", ".join(str(i) for i in range(1, len(self.labels) + 2))
        where = f"({_escape(w.where)}) AND " if w.where else ""
        edge = now - w.length
        if ranges is None:
            sql = f"{select} FROM {w.table} WHERE {where}{t} > %s GROUP BY {group}"
            params: tuple[Any, ...] = (self._param(edge),)
        else:
            head_idx, edge_idx = ranges
            sql = (f"{select} FROM {w.table} WHERE {where}"
                   f"({t} >= %s OR ({t} > %s AND {t} < %s)) GROUP BY {group}")
            params = (self._param(head_idx * b), self._param(edge),
                      self._param((edge_idx + 1) * b))
        r = await db.fetch(sql, timeout=self.timeout, params=params)
        self.rows_read += len(r.rows)
        return r

    def _bucket_sql(self, db: TargetDB) -> str:
        """The bucket of a row: its index, or (PostgreSQL 14+) the bucket's start time.

        date_bin() bins in integer arithmetic on the timestamp and costs about half
        of the per-row overhead of floor(date_part('epoch', t) / b), which converts
        to float8 and parses the unit name on every row (extract() is numeric since
        PostgreSQL 14 and dearer still). The bucket start comes back as a timestamp
        and becomes an index here (see _bucket_index).
        """
        t, b = self.window.time_column, self.plan.bucket
        if db.info is not None and db.info.version_num >= 140000:
            origin = ("timestamptz '1970-01-01 00:00:00+00'"
                      if self._time_type == "timestamp with time zone"
                      else "timestamp '1970-01-01 00:00:00'")
            return f"date_bin(interval '{b:g} seconds', {t}, {origin})"
        return f"floor(date_part('epoch', {t}) / {b:g})::bigint"

    def _bucket_index(self, v: Any) -> int:
        if isinstance(v, dt.datetime):
            aware = v if v.tzinfo is not None else v.replace(tzinfo=dt.UTC)
            return round(aware.timestamp() / self.plan.bucket)  # a whole bucket start
        return int(v)

    def _refresh_buckets(self, r: Result, now: float, ranges: tuple[int, int] | None) -> None:
        edge_idx = math.floor((now - self.window.length) / self.plan.bucket)
        if ranges is None:
            self._buckets = {}
        else:
            head_idx, _ = ranges
            # re-read buckets are replaced whole; the edge bucket holds only rows past the edge
            for idx in [i for i in self._buckets if i >= head_idx or i <= edge_idx]:
                del self._buckets[idx]
        ng = len(self.labels)
        for row in r.rows:
            idx = self._bucket_index(row[0])
            key = tuple("" if v is None else str(v) for v in row[1:1 + ng])
            # NULL partials (sum/min/max over no values) carry a zero count beside them
            part = [0.0 if v is None else _num(v) for v in row[1 + ng:]]
            groups = self._buckets.setdefault(idx, {})
            if key in groups:  # two group expressions collapsing to one label set
                merge(self.aggs, groups[key], part)
            else:
                groups[key] = part

    def _bucket_rows(self) -> list[tuple[Any, ...]]:
        totals: dict[tuple[str, ...], list[Any]] = {}
        for groups in self._buckets.values():
            for key, part in groups.items():
                acc = totals.get(key)
                if acc is None:
                    totals[key] = list(part)
                else:
                    merge(self.aggs, acc, part)
        return self._result_rows(totals)

    def _result_rows(self, totals: dict[tuple[str, ...], list[Any]]) -> list[tuple[Any, ...]]:
        if not self.labels and not totals:
            totals = {(): empty(self.aggs)}
        return [(*key, *final(self.aggs, part)) for key, part in totals.items()]

    # -- rows ------------------------------------------------------------------------
    def _rows_sql(self, now: float, full: bool) -> tuple[str, tuple[Any, ...]]:
        w = self.window
        assert w.updated_column is not None
        t = w.time_column
        args = [a.arg for a in self.aggs if a.arg is not None]
        match = f"({_escape(w.where)})" if w.where else "true"
        select = (f"SELECT {w.key_column} AS wasp_key, date_part('epoch', {t}) AS wasp_t, "
                  f"coalesce({match}, false) AS wasp_match{self._group_sql()}"
                  + "".join(f", {a}" for a in args) + f" FROM {w.table} WHERE ")
        since = None if full else self._param(self._prev - self.plan.reread)  # type: ignore[operator]
        if w.direction == "past":
            edge = self._param(now - w.length)
            if since is None:
                return f"{select}{t} > %s", (edge,)
            return f"{select}{t} > %s AND {w.updated_column} >= %s", (edge, since)
        far = self._param(now + w.length)
        if since is None:
            return f"{select}{t} >= %s AND {t} < %s", (self._param(now), far)
        # rows that changed (wherever their time moved), and the slice of time
        # that entered the window since the last refresh
        assert self._prev is not None
        return (f"{select}{w.updated_column} >= %s OR ({t} >= %s AND {t} < %s)",
                (since, self._param(self._prev + w.length), far))

    def _reset_rows(self) -> None:
        self._rows = RowTable(self._b_us)
        self._rowc: dict[int, tuple[float, ...]] = {}
        self._groups: list[tuple[str, ...]] = []
        self._gidx: dict[tuple[str, ...], int] = {}
        self._totals: dict[int, list[float]] = {}
        self._cvals: list[tuple[float, ...]] = []
        self._cidx: dict[tuple[float, ...], int] | None = {} if self._counts_only else None

    async def _refresh_rows(self, db: TargetDB, now: float, full: bool) -> None:
        if full:
            self._reset_rows()
        sql, params = self._rows_sql(now, full)
        # window bounds in whole microseconds, as rows are kept
        lo, hi = ((round((now - self.window.length) * 1e6), 0) if self.window.direction == "past"
                  else (round(now * 1e6), round((now + self.window.length) * 1e6)))
        try:
            # streamed: a first load of 100,000 rows never sits in memory at once
            # (in chunks of 500: folding one takes the event loop ~2 ms)
            await db.fetch(sql, timeout=self.timeout, params=params, chunk=500,
                           sink=lambda rows: self._fold(rows, lo, hi))
        except BaseException:
            self._prev = None  # half folded: the next refresh loads the window afresh
            raise
        self._expire(now)

    def _fold(self, rows: list[tuple[Any, ...]], lo: int, hi: int) -> None:
        """Replace each row's old contribution by its new one.

        Rows inside the window count: past, time > lo; future, lo <= time < hi
        (microseconds).
        """
        ng = len(self.labels)
        past = self.window.direction == "past"
        rows_, rowc, gidx, cidx = self._rows, self._rowc, self._gidx, self._cidx
        self.rows_read += len(rows)
        for row in rows:
            rk, t_us, matched = row[0], round(float(row[1]) * 1e6), bool(row[2])
            old = rows_.pop(rk)
            if old is not None:
                _, word, k = old
                ogi, oci = word >> 8, word & 0xFF
                self._apply(ogi, self._cvals[oci] if cidx is not None else rowc.pop(k), -1.0)
            inside = (t_us > lo) if past else (lo <= t_us < hi)
            if not (matched and inside):
                continue
            key = tuple("" if v is None else str(v) for v in row[3:3 + ng])
            gi = gidx.get(key)
            if gi is None:
                gi = gidx[key] = len(self._groups)
                self._groups.append(key)
            contrib = self._contribution(tuple(row[3 + ng:]))
            if cidx is not None:
                ci = cidx.get(contrib)
                if ci is None:
                    ci = cidx[contrib] = len(self._cvals)
                    self._cvals.append(contrib)
            else:
                ci = 0
            if gi >= 1 << 24 or ci >= 1 << 8:
                raise CollectError("sql", f"window query {self.name!r}: more than 2**24 groups "
                                   "or 256 distinct count contributions in its rows")
            k = rows_.put(rk, t_us, (gi << 8) | ci)
            if cidx is None:
                rowc[k] = contrib
            self._apply(gi, contrib, 1.0)

    def _expire(self, now: float) -> None:
        """Drop the rows whose time left the window (past: t <= now - length; future: t < now)."""
        past = self.window.direction == "past"
        edge = now - self.window.length if past else now
        for word, k in self._rows.expire(round(edge * 1e6), inclusive=past):
            ci = word & 0xFF
            contrib = self._cvals[ci] if self._cidx is not None else self._rowc.pop(k)
            self._apply(word >> 8, contrib, -1.0)

    def _contribution(self, values: tuple[Any, ...]) -> tuple[float, ...]:
        out: list[float] = []
        i = 0
        for a in self.aggs:
            if a.fn == "count_star":
                out.append(1.0)
                continue
            v = _num(values[i])
            i += 1
            if a.fn == "count":
                out.append(0.0 if v is None else 1.0)
            else:  # sum, avg
                out.extend((0.0, 0.0) if v is None else (float(v), 1.0))
        out.append(1.0)  # hidden row count: a group with no rows disappears
        return tuple(out)

    def _apply(self, gi: int, contrib: tuple[float, ...], sign: float) -> None:
        acc = self._totals.get(gi)
        if acc is None:
            acc = self._totals[gi] = [0.0] * len(contrib)
        for i, v in enumerate(contrib):
            acc[i] += sign * v
        if acc[-1] <= 0.5:
            del self._totals[gi]

    def _rows_result(self) -> list[tuple[Any, ...]]:
        return self._result_rows({self._groups[gi]: v[:-1] for gi, v in self._totals.items()})


def _num(v: Any) -> float | None:
    return None if v is None else to_float(v)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
