"""Incremental windows: the result equals the full query at every step, whatever happens."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasp.config.schema import QueryDef, parse_config
from wasp.exporter.collector import CollectContext, CollectError
from wasp.exporter.db import TargetDB
from wasp.exporter.windows import WindowCollector, parse_aggregate, plan_window
from wasp.exporter.windows.rowtable import RowTable


@pytest.mark.parametrize(
    ("expr", "fn", "arg", "default"),
    [
        ("count(*)", "count_star", None, None),
        ("sum(prompt_tokens)::bigint", "sum", "prompt_tokens", None),
        ("coalesce(avg(processing_ms), 0)::float8", "avg", "processing_ms", 0.0),
        ("max(extract(epoch FROM created_at))", "max", "extract(epoch FROM created_at)", None),
        ("count(cost)", "count", "cost", None),
        ("(min(x))", "min", "x", None),
    ],
)
def test_parse_aggregate(expr: str, fn: str, arg: str | None, default: float | None) -> None:
    a = parse_aggregate("c", expr)
    assert a is not None and (a.fn, a.arg, a.default) == (fn, arg, default)


@pytest.mark.parametrize("expr", ["percentile_cont(0.5) within group (order by x)",
                                  "count(distinct salon_id)", "sum(a) / count(b)", "max(a, b)"])
def test_unsupported_aggregates_fall_back(expr: str) -> None:
    assert parse_aggregate("c", expr) is None


# ---------------------------------------------------------------------------
# the property test
# ---------------------------------------------------------------------------
T0 = 1_800_000_000.0  # a fixed start for the fake clock (2027-01-15)
LENGTH = 600.0
LATE = 30.0
CHANGES = 120.0

# each variant: how its rows behave (kind) and the window declared over them; the
# per-row windows that only count (the *_counts variants) keep one shared tuple per
# distinct contribution instead of one per row, a path of its own (bookings by
# status, cancellations, active conversations)
VARIANTS: dict[str, dict[str, Any]] = {
    # rows never change: AI messages
    "frozen": dict(kind="frozen", changes_after_insert=0, updated_column=None,
                   aggregates={"n": "count(*)", "tokens": "sum(v)::bigint", "nv": "count(v)",
                               "lo": "min(v)", "hi": "max(v)", "mean": "coalesce(avg(v), 0)::float8"},
                   where="kind <> 'skip'"),
    # rows change for a bounded time: message delivery status
    "bounded": dict(kind="bounded", changes_after_insert=CHANGES, updated_column=None,
                    aggregates={"n": "count(*)", "tokens": "sum(v)"}, where=None),
    # rows change any time, updated_at bumped: bookings
    "updated": dict(kind="updated", changes_after_insert=None, updated_column="updated_at",
                    aggregates={"n": "count(*)", "tokens": "sum(v)", "mean": "avg(v)"},
                    where="kind <> 'skip'"),
    # a window ahead over a time that changes (bookings starting in the next
    # LENGTH seconds, rescheduled at any time), updated_at bumped
    "future": dict(kind="future", changes_after_insert=None, updated_column="updated_at", direction="future",
                   aggregates={"n": "count(*)", "tokens": "sum(v)", "mean": "avg(v)"},
                   where="kind <> 'skip'"),
    # a window over the column every change bumps (AI conversations active in the
    # last LENGTH seconds: last_activity): rows move forward in time when touched
    "touched": dict(kind="touched", changes_after_insert=None, updated_column="updated_at",
                    time_column="updated_at",
                    aggregates={"n": "count(*)", "tokens": "sum(v)"}, where="kind <> 'skip'"),
    # counts only, per row: bookings by status (count(*)), cancellations (count(CASE ...))
    "updated_counts": dict(kind="updated", changes_after_insert=None, updated_column="updated_at",
                           aggregates={"n": "count(*)", "nv": "count(v)",
                                       "big": "count(CASE WHEN v > 300 THEN 1 END)"},
                           where="kind <> 'skip'"),
    "future_counts": dict(kind="future", changes_after_insert=None, updated_column="updated_at",
                          direction="future",
                          aggregates={"n": "count(*)", "big": "count(CASE WHEN v > 300 THEN 1 END)"},
                          where="kind <> 'skip'"),
    # active conversations: count(*) over the column every change bumps
    "touched_counts": dict(kind="touched", changes_after_insert=None, updated_column="updated_at",
                           time_column="updated_at", aggregates={"n": "count(*)", "nv": "count(v)"},
                           where=None),
}


def make_query(variant: str, ttype: str) -> QueryDef:
    v = VARIANTS[variant]
    aggs: dict[str, str] = v["aggregates"]
    where = v["where"]
    sql = (f"select grp, {', '.join(f'{e} as {c}' for c, e in aggs.items())} from w "
           f"where created_at > now() - interval '{int(LENGTH)} seconds'"
           + (f" and {where}" if where else "") + " group by grp")
    cfg = parse_config({
        "targets": {"main": {"dsn": "host=unused", "packs": []}},
        "queries": {"w": {
            "sql": sql, "labels": ["grp"], "interval": "15s",
            "values": [{"column": c, "metric": f"wasp_test_w_{c}", "type": "gauge", "help": "h"}
                       for c in aggs],
            "window": {"table": "w", "time_column": v.get("time_column", "created_at"),
                       "length": f"{int(LENGTH)}s",
                       "where": where, "group_by": {"grp": "grp"}, "aggregates": aggs,
                       "changes_after_insert": v["changes_after_insert"],
                       "updated_column": v["updated_column"], "late_commit": f"{int(LATE)}s",
                       "direction": v.get("direction", "past")},
        }},
    })
    return cfg.queries[0]


def ts(t: float, ttype: str) -> dt.datetime:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d if ttype == "timestamptz" else d.replace(tzinfo=None)


def full_result(conn: psycopg.Connection[Any], q: QueryDef, now: float, ttype: str) -> dict[str, dict[str, float | None]]:
    """The window evaluated in full at `now`, written independently of the collector."""
    assert q.window is not None
    # the window at T holds the rows stamped after T - LENGTH (as the same timestamp
    # value), or for a window ahead, those stamped in [T, T + LENGTH)
    if q.window.direction == "future":
        rows = conn.execute("select id, grp, v, kind from w where created_at >= %s "
                            "and created_at < %s",
                            (ts(now, ttype), ts(now + LENGTH, ttype))).fetchall()
    else:
        rows = conn.execute(f"select id, grp, v, kind from w where {q.window.time_column} > %s",
                            (ts(now - LENGTH, ttype),)).fetchall()
    where_skip = q.window.where is not None
    out: dict[str, list[tuple[Any, ...]]] = {}
    for _id, grp, v, kind in rows:
        if where_skip and kind == "skip":
            continue
        out.setdefault(grp, []).append((v,))
    result: dict[str, dict[str, float | None]] = {}
    for grp, vs in out.items():
        vals = [x[0] for x in vs if x[0] is not None]
        r: dict[str, float | None] = {"n": float(len(vs)), "nv": float(len(vals)),
                                      "big": float(sum(1 for x in vals if x > 300)),
                                      "tokens": float(sum(vals)) if vals else None,
                                      "lo": float(min(vals)) if vals else None,
                                      "hi": float(max(vals)) if vals else None}
        r["mean"] = (sum(vals) / len(vals)) if vals else None
        result[grp] = r
    return result


def collector_result(families: Any, q: QueryDef) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for f in families:
        col = f.name.removeprefix("wasp_test_w_")
        for (grp,), val in f.samples:
            out.setdefault(grp, {})[col] = val
    return out


def compare(inc: dict[str, dict[str, float | None]], full: dict[str, dict[str, float | None]],
            q: QueryDef, step: str) -> None:
    cols = [c for c, _ in q.window.aggregates]  # type: ignore[union-attr]
    assert set(inc) == set(full), f"{step}: groups {sorted(inc)} != {sorted(full)}"
    for grp, want in full.items():
        for c in cols:
            w = want[c]
            if c == "mean" and w is None and "coalesce" in dict(q.window.aggregates)[c]:  # type: ignore[union-attr]
                w = 0.0
            got = inc[grp].get(c)
            if w is None:
                assert got is None, f"{step}: {grp}.{c} = {got}, want NULL"
            else:
                assert got is not None and math.isclose(got, w, rel_tol=1e-9, abs_tol=1e-6), (
                    f"{step}: {grp}.{c} = {got}, want {w}")


ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(1, 12), st.floats(0, 1)),
        st.tuples(st.just("late"), st.integers(1, 5), st.floats(0, LATE)),
        st.tuples(st.just("update"), st.integers(1, 6), st.floats(0, 1)),
        st.tuples(st.just("advance"), st.integers(1, 4), st.floats(0, 95)),
        st.tuples(st.just("refresh"), st.integers(0, 0), st.floats(0, 0)),
    ),
    min_size=10, max_size=50,
)


async def run_scenario(dsn: str, variant: str, ttype: str, steps: list[tuple[str, int, float]],
                       seed: int) -> None:
    rng = random.Random(seed)
    kind = VARIANTS[variant]["kind"]
    q = make_query(variant, ttype)
    plan = plan_window(q)
    assert not isinstance(plan, str), plan
    assert plan.mode == ("rows" if kind in ("updated", "future", "touched") else "buckets")
    future = kind == "future"
    clock = [T0 + rng.uniform(0, 100)]
    db = TargetDB("main", dsn, read_only=True)
    await db.open()
    # half of the scenarios know the server version: buckets by date_bin(), the
    # others by floor(date_part()), as on a server older than PostgreSQL 14
    if seed % 2:
        await db.server_info()
    wc = WindowCollector(q, "main", plan, clock=lambda: clock[0])
    assert wc._bucket_sql(db).startswith("date_bin" if seed % 2 else "floor")
    assert wc._counts_only == variant.endswith("_counts")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("drop table if exists w")
            # row keys of the three kinds the per-row state stores differently
            idtype = {"future": "uuid", "touched": "bigint"}.get(kind, "text")
            conn.execute(f"create table w (id {idtype} primary key, grp text, v int, kind text, "
                         f"created_at {ttype}, updated_at {ttype})")

            def new_id(n: int) -> Any:
                if idtype == "uuid":
                    return uuid.UUID(int=rng.getrandbits(128))
                if idtype == "bigint":
                    return n * 7919 - 10**6  # negative ones too
                return f"r{n}"

            if future:  # without it a window ahead runs in full (see the test below)
                conn.execute("create index on w (updated_at)")
            next_id = 0

            def insert(n: int, age_max: float) -> None:
                nonlocal next_id
                for _ in range(n):
                    written = clock[0] - rng.uniform(0, age_max)
                    # a window ahead: rows start from a little in the past to well
                    # beyond the window's far edge, and enter it as time moves
                    t = clock[0] + rng.uniform(-0.2, 2.5) * LENGTH if future else written
                    v = None if rng.random() < 0.15 else rng.randint(-50, 1000)
                    conn.execute("insert into w values (%s, %s, %s, %s, %s, %s)",
                                 (new_id(next_id), rng.choice("abcd"), v,
                                  rng.choice(["ok", "ok", "skip"]), ts(t, ttype),
                                  ts(written, ttype)))
                    next_id += 1

            # history before the first refresh, older than the window too
            clock[0] -= 2 * LENGTH
            for _ in range(20):
                insert(3, 0)
                clock[0] += LENGTH / 10
            for i, (op, n, x) in enumerate(steps):
                if op == "insert":
                    insert(n, 1.0)
                elif op == "late":
                    insert(n, x)  # a slow transaction commits rows stamped up to LATE ago
                elif op == "update":
                    if kind == "frozen":
                        continue
                    # bounded: rows change within CHANGES of insert; touched: mostly
                    # rows in the window are touched again (and move forward in it)
                    lo = {"bounded": clock[0] - CHANGES,
                          "touched": clock[0] - (LENGTH if rng.random() < 0.8 else 1e18)}.get(
                              kind, -1e18)
                    col = q.window.time_column if kind == "touched" else "created_at"  # type: ignore[union-attr]
                    ids = [r[0] for r in conn.execute(
                        f"select id from w where extract(epoch from {col}) >= %s", (lo,))]
                    for rid in rng.sample(ids, min(n, len(ids))):
                        conn.execute(
                            "update w set grp = %s, v = %s, kind = %s, updated_at = %s where id = %s",
                            (rng.choice("abcde"), rng.randint(0, 500), rng.choice(["ok", "skip"]),
                             ts(clock[0], ttype), rid))
                        if future and rng.random() < 0.5:  # moved: into, out of, within the window
                            t = clock[0] + rng.uniform(-0.5, 2.0) * LENGTH
                            conn.execute("update w set created_at = %s where id = %s",
                                         (ts(t, ttype), rid))
                elif op == "advance":
                    clock[0] += x * n
                if op == "refresh" or i == len(steps) - 1 or op == "advance":
                    fams = await wc.refresh(db)
                    compare(collector_result(fams, q), full_result(conn, q, clock[0], ttype), q,
                            f"step {i} ({op})")
                    assert wc.in_full is None
    finally:
        await db.close()


@pytest.mark.parametrize(("variant", "ttype"), [("frozen", "timestamp(3)"),
                                                ("frozen", "timestamptz"),
                                                ("bounded", "timestamp(3)"),
                                                ("updated", "timestamp(3)"),
                                                ("touched", "timestamptz"),
                                                ("future", "timestamp(3)"),
                                                ("future", "timestamptz"),
                                                ("updated_counts", "timestamptz"),
                                                ("future_counts", "timestamp(3)"),
                                                ("touched_counts", "timestamp(3)")])
def test_incremental_equals_full_at_every_step(dsn: str, variant: str, ttype: str) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(steps=ops, seed=st.integers(0, 2**31))
    def prop(steps: list[tuple[str, int, float]], seed: int) -> None:
        asyncio.run(run_scenario(dsn, variant, ttype, steps, seed))

    prop()


def test_incremental_reads_only_new_rows(dsn: str) -> None:
    """After the first load, a refresh reads the head and the edge bucket, not the window."""

    async def scenario() -> tuple[int, int]:
        q = make_query("frozen", "timestamp(3)")
        plan = plan_window(q)
        assert not isinstance(plan, str)
        clock = [T0]
        db = TargetDB("main", dsn)
        await db.open()
        wc = WindowCollector(q, "main", plan, clock=lambda: clock[0])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create table w (id text primary key, grp text, v int, kind text, "
                         "created_at timestamp(3), updated_at timestamp(3))")
            conn.execute("insert into w select 'r' || g, 'g' || (g %% 50), g, 'ok', "
                         "to_timestamp(%s - g * 0.05) at time zone 'utc', now() "
                         "from generate_series(1, 12000) g", (T0,))
            try:
                await wc.refresh(db)
                first = wc.rows_read
                clock[0] += 15
                await wc.refresh(db)
                return first, wc.rows_read - first
            finally:
                await db.close()

    first, second = asyncio.run(scenario())
    # the first load groups by bucket x group; the second touches a few buckets only
    assert first > 1000
    assert second < first / 5, (first, second)


def test_fetch_streams_rows_to_a_sink_in_chunks(dsn: str) -> None:
    """A streamed statement hands its rows over in chunks and keeps none itself."""

    async def scenario() -> tuple[list[int], list[int], tuple[str, ...], int]:
        db = TargetDB("main", dsn, read_only=True)
        await db.open()
        sizes: list[int] = []
        seen: list[int] = []

        def sink(rows: list[tuple[Any, ...]]) -> None:
            sizes.append(len(rows))
            seen.extend(int(r[0]) for r in rows)

        try:
            r = await db.fetch("select g, g * 2 as twice from generate_series(1, 4500) g",
                               timeout=10, sink=sink, chunk=1000)
            return sizes, seen, r.columns, len(r.rows)
        finally:
            await db.close()

    sizes, seen, cols, kept = asyncio.run(scenario())
    assert sizes == [1000, 1000, 1000, 1000, 500]
    assert seen == list(range(1, 4501))
    assert cols == ("g", "twice") and kept == 0


def test_window_ahead_without_an_index_on_the_updated_column_runs_in_full(dsn: str) -> None:
    """No index on updated_at: the plain SQL runs; once one exists, incremental again."""

    async def scenario() -> None:
        q = make_query("future", "timestamptz")
        plan = plan_window(q)
        assert not isinstance(plan, str)
        clock = [T0]
        db = TargetDB("main", dsn, read_only=True)
        await db.open()
        wc = WindowCollector(q, "main", plan, clock=lambda: clock[0], full_every=600)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("drop table if exists w")
                conn.execute("create table w (id text primary key, grp text, v int, kind text, "
                             "created_at timestamptz, updated_at timestamptz)")
                # rows ahead of the fake clock (the plain SQL uses now(): the real clock)
                conn.execute("insert into w select 'r' || g, 'g' || (g % 3), g, 'ok', "
                             "now() + g * interval '1 second', now() from generate_series(1, 50) g")
                fams = await wc.refresh(db)
                assert wc.in_full is not None and "no index on w(updated_at)" in wc.in_full
                assert wc.rows_read == 0  # the plain query ran, not the window's reads
                got = collector_result(fams, q)
                assert sum(v["n"] or 0 for v in got.values()) == 50  # the SQL's own answer
                conn.execute("create index on w (updated_at)")
                conn.execute("insert into w select 'f' || g, 'g' || (g %% 3), g, 'ok', "
                             "to_timestamp(%s + g * 20), now() from generate_series(1, 40) g",
                             (T0 + 630,))
                clock[0] += 30
                await wc.refresh(db)
                assert wc.in_full is not None  # checked again only at the next reload
                clock[0] += 600
                fams = await wc.refresh(db)
                assert wc.in_full is None and wc.rows_read > 0
                compare(collector_result(fams, q), full_result(conn, q, clock[0], "timestamptz"),
                        q, "after the index")
        finally:
            await db.close()

    asyncio.run(scenario())


def test_touched_rows_leave_the_window_from_their_new_time(dsn: str) -> None:
    """Rows touched inside the window move forward; they leave it when their new time passes."""
    steps = [("insert", 10, 0.0), ("refresh", 0, 0.0), ("advance", 1, 50.0), ("update", 6, 0.0),
             ("refresh", 0, 0.0), ("advance", 4, 95.0), ("advance", 4, 95.0), ("advance", 4, 95.0)]
    asyncio.run(run_scenario(dsn, "touched", "timestamptz", steps, 1))


def test_row_table_matches_a_dict_through_growth_and_deletions() -> None:
    """RowTable against a plain dict model: random puts, pops and expiries, three key kinds.

    The model is filled from what the test puts, never from the table: a table
    that stored a time or a word wrongly would agree with a model read back from it.
    """
    rng = random.Random(7)
    for kind in ("uuid", "int", "text"):
        table = RowTable(bucket_us=5_000_000, capacity=16)
        model: dict[Any, tuple[int, int]] = {}
        keys: list[Any] = []
        for n in range(6000):
            keys.append(uuid.UUID(int=rng.getrandbits(128)) if kind == "uuid"
                        else (rng.getrandbits(70) - 2**69) if kind == "int" else f"k{n}")
        edge = 0
        for _ in range(40_000):
            r = rng.random()
            key = rng.choice(keys)
            if r < 0.55:
                old = table.pop(key)
                want = model.pop(key, None)
                assert (old[:2] if old else None) == want
                t = edge + rng.choice([0, rng.randint(0, 600_000_000)])
                word = rng.getrandbits(32)
                table.put(key, t, word)
                model[key] = (t, word)
            elif r < 0.85:
                old = table.pop(key)
                want = model.pop(key, None)
                assert (old[:2] if old else None) == want
            elif r < 0.86:
                edge += rng.choice([0, rng.randint(0, 120_000_000)])
                inclusive = rng.random() < 0.5
                gone = sorted(w for w, _ in table.expire(edge, inclusive=inclusive))
                leaving = [k for k, (t, _) in model.items() if t < edge or (inclusive and t == edge)]
                assert gone == sorted(model.pop(k)[1] for k in leaving)
                assert all(t > edge or (t == edge and not inclusive) for t, _ in model.values())
                if rng.random() < 0.5:  # rows exactly at the edge
                    model_edge = [k for k in keys[:50] if k not in model]
                    for k in model_edge[:3]:
                        table.put(k, edge, 1)
                        model[k] = (edge, 1)
            assert len(table) == len(model)
        for key in keys:
            got = table.pop(key)
            assert (got[:2] if got else None) == model.pop(key, None)
        assert len(table) == 0 and not table._ids and not table._keys


def test_missing_updated_column_runs_in_full_without_errors(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """The declared updated_column is not on the server: the window runs in full, one log line."""

    async def scenario() -> None:
        q = make_query("updated", "timestamp")
        plan = plan_window(q)
        assert not isinstance(plan, str) and plan.mode == "rows"
        clock = [T0]
        db = TargetDB("main", dsn, read_only=True)
        await db.open()
        wc = WindowCollector(q, "main", plan, clock=lambda: clock[0], full_every=600)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("create table w (id text primary key, grp text, v int, kind text, "
                             "created_at timestamp)")  # no updated_at
                conn.execute("insert into w select 'r' || g, 'g' || (g % 3), g, 'ok', "
                             "now() AT TIME ZONE 'UTC' - g * interval '1 second' "
                             "from generate_series(1, 30) g")
                for _ in range(4):
                    fams = await wc.refresh(db)  # never "column updated_at does not exist"
                    clock[0] += 30
                assert wc.no_updated is not None and "w.updated_at" in wc.no_updated
                assert wc.rows_read == 0  # the plain SQL ran
                got = collector_result(fams, q)
                assert sum(v["n"] or 0 for v in got.values()) == 30
                said = [r for r in caplog.records if "runs in full" in r.getMessage()]
                assert len(said) == 1, [r.getMessage() for r in said]
                # the column appears: incremental again from the next full reload on
                conn.execute("alter table w add column updated_at timestamp")
                conn.execute("update w set updated_at = created_at")
                clock[0] += 600
                # rows inside the fake clock's window (the plain SQL above used the real one)
                conn.execute("insert into w select 'f' || g, 'g' || (g %% 3), g, 'ok', "
                             "to_timestamp(%s - g) AT TIME ZONE 'UTC', now() "
                             "from generate_series(1, 20) g", (clock[0],))
                fams = await wc.refresh(db)
                assert wc.no_updated is None and wc.rows_read == 20
                compare(collector_result(fams, q), full_result(conn, q, clock[0], "timestamp"),
                        q, "after the column appeared")
        finally:
            await db.close()

    caplog.set_level("INFO", logger="wasp.exporter.windows")
    asyncio.run(scenario())


def test_dropped_table_is_reported_missing(dsn: str) -> None:
    """A window over a table that is gone says the relation is missing (reason missing)."""

    async def scenario() -> None:
        q = make_query("frozen", "timestamp")
        plan = plan_window(q)
        assert not isinstance(plan, str)
        db = TargetDB("main", dsn, read_only=True)
        await db.open()
        wc = WindowCollector(q, "main", plan, clock=lambda: T0, full_every=600)
        try:
            with pytest.raises(CollectError) as err:
                await wc.collect(CollectContext(now=T0, status_dir=Path("/tmp"), db=db))
            assert err.value.reason == "missing"
            assert str(err.value) == "window query 'w': relation w does not exist"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("create table w (id text primary key, grp text, v int, kind text)")
            with pytest.raises(CollectError) as err:
                await wc.collect(CollectContext(now=T0, status_dir=Path("/tmp"), db=db))
            assert err.value.reason == "missing"
            assert "column w.created_at does not exist" in str(err.value)
        finally:
            await db.close()

    asyncio.run(scenario())
