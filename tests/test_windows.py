"""Incremental windows: the result equals the full query at every step, whatever happens."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasp.config import QueryDef, parse_config
from wasp.db import TargetDB
from wasp.windows import WindowCollector, parse_aggregate, plan_window


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

VARIANTS = {
    # rows never change: AI messages
    "frozen": dict(changes_after_insert=0, updated_column=None,
                   aggregates={"n": "count(*)", "tokens": "sum(v)::bigint", "nv": "count(v)",
                               "lo": "min(v)", "hi": "max(v)", "mean": "coalesce(avg(v), 0)::float8"},
                   where="kind <> 'skip'"),
    # rows change for a bounded time: message delivery status
    "bounded": dict(changes_after_insert=CHANGES, updated_column=None,
                    aggregates={"n": "count(*)", "tokens": "sum(v)"}, where=None),
    # rows change any time, updated_at bumped: bookings
    "updated": dict(changes_after_insert=None, updated_column="updated_at",
                    aggregates={"n": "count(*)", "tokens": "sum(v)", "mean": "avg(v)"},
                    where="kind <> 'skip'"),
}


def make_query(variant: str, ttype: str) -> QueryDef:
    v = VARIANTS[variant]
    aggs: dict[str, str] = v["aggregates"]  # type: ignore[assignment]
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
            "window": {"table": "w", "time_column": "created_at", "length": f"{int(LENGTH)}s",
                       "where": where, "group_by": {"grp": "grp"}, "aggregates": aggs,
                       "changes_after_insert": v["changes_after_insert"],
                       "updated_column": v["updated_column"], "late_commit": f"{int(LATE)}s"},
        }},
    })
    return cfg.queries[0]


def ts(t: float, ttype: str) -> dt.datetime:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d if ttype == "timestamptz" else d.replace(tzinfo=None)


def full_result(conn: psycopg.Connection[Any], q: QueryDef, now: float, ttype: str) -> dict[str, dict[str, float | None]]:
    """The window evaluated in full at `now`, written independently of the collector."""
    assert q.window is not None
    # the window at T holds the rows stamped after T - LENGTH (as the same timestamp value)
    rows = conn.execute("select id, grp, v, kind from w where created_at > %s",
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
    q = make_query(variant, ttype)
    plan = plan_window(q)
    assert not isinstance(plan, str), plan
    assert plan.mode == ("rows" if variant == "updated" else "buckets")
    clock = [T0 + rng.uniform(0, 100)]
    db = TargetDB("main", dsn, read_only=True)
    await db.open()
    wc = WindowCollector(q, "main", plan, clock=lambda: clock[0])
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("drop table if exists w")
            conn.execute(f"create table w (id text primary key, grp text, v int, kind text, "
                         f"created_at {ttype}, updated_at {ttype})")
            next_id = 0

            def insert(n: int, age_max: float) -> None:
                nonlocal next_id
                for _ in range(n):
                    t = clock[0] - rng.uniform(0, age_max)
                    v = None if rng.random() < 0.15 else rng.randint(-50, 1000)
                    conn.execute("insert into w values (%s, %s, %s, %s, %s, %s)",
                                 (f"r{next_id}", rng.choice("abcd"), v,
                                  rng.choice(["ok", "ok", "skip"]), ts(t, ttype), ts(t, ttype)))
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
                    if variant == "frozen":
                        continue
                    lo = clock[0] - CHANGES if variant == "bounded" else -1e18
                    ids = [r[0] for r in conn.execute(
                        "select id from w where extract(epoch from created_at) >= %s", (lo,))]
                    for rid in rng.sample(ids, min(n, len(ids))):
                        conn.execute(
                            "update w set grp = %s, v = %s, kind = %s, updated_at = %s where id = %s",
                            (rng.choice("abcde"), rng.randint(0, 500), rng.choice(["ok", "skip"]),
                             ts(clock[0], ttype), rid))
                elif op == "advance":
                    clock[0] += x * n
                if op == "refresh" or i == len(steps) - 1 or op == "advance":
                    fams = await wc.refresh(db)
                    compare(collector_result(fams, q), full_result(conn, q, clock[0], ttype), q,
                            f"step {i} ({op})")
    finally:
        await db.close()


@pytest.mark.parametrize(("variant", "ttype"), [("frozen", "timestamp(3)"),
                                                ("frozen", "timestamptz"),
                                                ("bounded", "timestamp(3)"),
                                                ("updated", "timestamp(3)")])
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
