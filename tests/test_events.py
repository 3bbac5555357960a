"""Settled-event counters (events: blocks) against real PostgreSQL.

Each row is counted once, by its values at settle_after age: a status change
before that moves it, a change after it does not count it again; rows of the
app pack's SLI queries land in the right outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from wasp.config.schema import ConfigError, QueryDef, parse_config
from wasp.demo.datagen.schema import create_schema
from wasp.exporter.collector import CollectContext
from wasp.exporter.db import TargetDB
from wasp.exporter.windows.events import EventCounterCollector
from wasp.model import Family

NOW = "(now() AT TIME ZONE 'UTC')"


def totals(fams: list[Family], metric: str) -> dict[tuple[str, ...], float]:
    """Samples of `metric` by label values."""
    return {lv: v for f in fams if f.name == metric for lv, v in f.samples}


async def rounds_until(c: EventCounterCollector, db: TargetDB, done: Callable[[list[Family]], bool],
                       timeout: float = 60.0) -> list[Family]:
    """Run rounds (0.3 s apart) until `done` holds; the last families."""
    deadline = time.monotonic() + timeout
    while True:
        fams = await c.collect(CollectContext(now=time.time(), status_dir=Path("/nonexistent"),
                                              db=db))
        if done(fams) or time.monotonic() > deadline:
            return fams
        await asyncio.sleep(0.3)



def events_query(settle: str = "3s", **events: Any) -> dict[str, Any]:
    return {
        "labels": ["status"],
        "events": {"table": "ev", "time_column": "created_at", "settle_after": settle,
                   "group_by": {"status": "status"}, "aggregates": {"n": "count(*)"}, **events},
        "values": [{"column": "n", "metric": "test_events_total", "type": "counter",
                    "help": "test"}],
    }


def one_query(dsn: str, q: dict[str, Any]) -> QueryDef:
    cfg = parse_config({"targets": {"main": {"dsn": dsn, "packs": []}}, "queries": {"ev": q}})
    return next(x for x in cfg.queries if x.name == "ev")


async def test_each_row_counted_once_by_its_settled_status(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ev (id int PRIMARY KEY, status text, created_at timestamp(3))")
        # history before the first mark: its label sets appear at zero, never counted
        conn.execute(f"INSERT INTO ev SELECT i, 'old', {NOW} - interval '10 minutes' "
                     "FROM generate_series(1000, 1004) i")
    c = EventCounterCollector(one_query(dsn, events_query()), "main")
    db = TargetDB("main", dsn)
    await db.open()
    try:
        first = await rounds_until(c, db, lambda f: True)
        assert totals(first, "test_events_total") == {("old",): 0.0}
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO ev SELECT i, 'SENT', {NOW} FROM generate_series(1, 5) i")
            # within settle_after: the row counts as DELIVERED
            conn.execute("UPDATE ev SET status = 'DELIVERED' WHERE id = 1")
            conn.execute(f"INSERT INTO ev VALUES (6, 'FAILED', {NOW})")
        want = {("old",): 0.0, ("SENT",): 4.0, ("DELIVERED",): 1.0, ("FAILED",): 1.0}
        fams = await rounds_until(c, db, lambda f: totals(f, "test_events_total") == want)
        assert totals(fams, "test_events_total") == want
        assert next(f for f in fams if f.name == "test_events_total").type == "counter"
        # settled: a later change is not counted again, nor the row twice
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE ev SET status = 'READ' WHERE id IN (2, 3)")
        for _ in range(3):
            fams = await rounds_until(c, db, lambda f: True)
        assert totals(fams, "test_events_total") == want
    finally:
        await db.close()


async def test_app_pack_sli_queries(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC") as conn:
        create_schema(conn, "v1")
    cfg = parse_config({"targets": {"main": {"dsn": dsn, "packs": ["app"]}}})
    queries = {q.name: q for q in cfg.queries if q.events is not None}
    assert set(queries) == {"sli_outbound_messages", "sli_webhooks", "sli_bookings"}
    db = TargetDB("main", dsn)
    await db.open()
    collectors = {}
    for n, q in queries.items():
        assert q.events is not None
        fast = dataclasses.replace(q.events, settle_after=2.0)
        collectors[n] = EventCounterCollector(dataclasses.replace(q, events=fast), "main")
    try:
        for c in collectors.values():
            await rounds_until(c, db, lambda f: True)
        def uid() -> str:
            return uuid.uuid4().hex

        with psycopg.connect(dsn, autocommit=True) as conn:
            for direction, status in (("OUTBOUND", "DELIVERED"), ("OUTBOUND", "READ"),
                                      ("OUTBOUND", "FAILED"), ("INBOUND", "DELIVERED")):
                conn.execute("INSERT INTO messages (id, salon_id, direction, phone_number, status,"
                             f" created_at) VALUES (%s, 's1', %s, '+1', %s, {NOW})",
                             (uid(), direction, status))
            for status in ("processed", "processed", "failed", "error"):
                conn.execute("INSERT INTO webhook_logs (id, event_type, payload, status, "
                             f"created_at) VALUES (%s, 'message', '{{}}', %s, {NOW})",
                             (uid(), status))
            # two overlapping bookings of one master: the second is double booked
            for code, start in (("A", "10:00"), ("B", "10:30"), ("C", "12:00")):
                conn.execute(
                    "INSERT INTO bookings (id, booking_code, salon_id, customer_phone, service, "
                    "master_id, start_ts, created_at, updated_at) VALUES (%s, %s, 's1', '+1', "
                    f"'cut', 'm1', date_trunc('day', {NOW}) + interval '1 day' + %s::time, "
                    f"{NOW} + %s * interval '1 millisecond', {NOW})",
                    (uid(), code, start, ord(code)))
        want: dict[str, tuple[str, dict[tuple[str, ...], float]]] = {
            "sli_outbound_messages": ("wasp_app_sli_outbound_messages_total",
                                      {("DELIVERED",): 1.0, ("READ",): 1.0, ("FAILED",): 1.0}),
            "sli_webhooks": ("wasp_app_sli_webhook_events_total",
                             {("processed",): 2.0, ("failed",): 2.0}),
            "sli_bookings": ("wasp_app_sli_bookings_total",
                             {("ok",): 2.0, ("double_booked",): 1.0}),
        }
        for name, (metric, expect) in want.items():
            def settled(f: list[Family], m: str = metric,
                        e: dict[tuple[str, ...], float] = expect) -> bool:
                return totals(f, m) == e
            fams = await rounds_until(collectors[name], db, settled)
            assert totals(fams, metric) == expect, name
    finally:
        await db.close()


@pytest.mark.parametrize(("change", "message"), [
    ({"aggregates": {"n": "avg(x)"}}, "must be count(...) or sum(...)"),
    ({"group_by": {"state": "status"}}, "must group by exactly the query's labels"),
    ({"settle_after": "soon"}, "settle_after"),
    ({"colour": "red"}, "colour"),
])
def test_events_block_is_validated(change: dict[str, Any], message: str) -> None:
    q = events_query()
    q["events"].update(change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        one_query("host=x", q)
    gauge = events_query()
    gauge["values"][0].update(metric="test_events", type="gauge")
    with pytest.raises(ConfigError, match="must be a counter"):
        one_query("host=x", gauge)
