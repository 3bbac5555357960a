"""The exporter core against a real PostgreSQL: values, isolation, timeouts, restarts, scrapes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from helpers import config, gauge_query, samples, value
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.schema import parse_config
from wasp.exporter.collector import CollectContext, Collector
from wasp.exporter.engine import Engine
from wasp.exporter.web import make_app
from wasp.model import Family
from wasp.packs import make_engine


def sql(dsn: str, text: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(text)
        return cur.fetchall() if cur.description else []


async def test_values_equal_sql_with_labels(dsn: str) -> None:
    sql(dsn, "create table bookings (salon_id text, status text, cost float8)")
    sql(dsn, "insert into bookings select 's' || (g % 7), (array['CONFIRMED','CANCELLED','NO_SHOW'])[1 + g % 3],"
             " g * 0.25 from generate_series(1, 500) g")
    q = {
        "sql": "select salon_id, status, count(*) as n, sum(cost) as cost from bookings group by 1, 2",
        "labels": ["salon_id", "status"],
        "values": [
            {"column": "n", "metric": "wasp_test_bookings", "type": "gauge", "help": "count"},
            {"column": "cost", "metric": "wasp_test_cost_usd", "type": "gauge", "help": "cost",
             "unit": "usd"},
        ],
    }
    engine = Engine(parse_config(config(dsn, {"bk": q})))
    try:
        text = (await engine.run_once()).text
    finally:
        await engine.stop()
    truth = sql(dsn, "select salon_id, status, count(*), sum(cost) from bookings group by 1, 2")
    assert len(truth) == 21
    for salon, status, n, cost in truth:
        assert value(text, "wasp_test_bookings", salon_id=salon, status=status, target="main") == n
        assert value(text, "wasp_test_cost_usd", salon_id=salon, status=status) == pytest.approx(cost)
    assert len(samples(text, "wasp_test_bookings")) == 21


async def test_bad_sql_is_isolated(dsn: str) -> None:
    cfg = parse_config(config(dsn, {
        "good": gauge_query("select 42 as n", "wasp_test_good"),
        "bad": gauge_query("select n from no_such_table", "wasp_test_bad"),
        "wrongcol": gauge_query("select 1 as m", "wasp_test_wrongcol"),
    }))
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text
    finally:
        await engine.stop()
    assert value(text, "wasp_test_good") == 42
    assert value(text, "wasp_test_bad") is None
    assert value(text, "wasp_query_errors_total", query="bad", reason="missing") == 1
    assert value(text, "wasp_query_errors_total", query="wrongcol", reason="sql") == 1
    assert value(text, "wasp_query_errors_total", query="good", reason="sql") == 0
    assert value(text, "wasp_query_last_success_timestamp_seconds", query="good") is not None
    assert value(text, "wasp_query_last_success_timestamp_seconds", query="bad") is None


async def test_timeout_cancels_on_server(dsn: str, pg: LocalCluster, dbname: str) -> None:
    cfg = parse_config(config(dsn, {
        "slow": gauge_query("select 1 as n from pg_sleep(30)", "wasp_test_slow",
                            timeout="1s", interval="60s"),
    }))
    engine = make_engine(cfg)
    t0 = time.monotonic()
    try:
        text = (await engine.run_once()).text
    finally:
        await engine.stop()
    assert time.monotonic() - t0 < 10
    assert value(text, "wasp_query_errors_total", query="slow", reason="timeout") == 1
    left = sql(pg.dsn(), f"select count(*) from pg_stat_activity where datname = '{dbname}' "
                         "and query like '%pg_sleep(30)%' and pid <> pg_backend_pid()")
    assert left[0][0] == 0


async def test_sessions_are_read_only(dsn: str) -> None:
    sql(dsn, "create table t (x int)")
    cfg = parse_config(config(dsn, {
        "writer": gauge_query("insert into t values (1) returning x as n", "wasp_test_w1"),
        "cte": gauge_query("with i as (insert into t values (2) returning x) select count(*) as n from i",
                           "wasp_test_w2"),
        "smuggle": gauge_query("select 1 as n; insert into t values (3)", "wasp_test_w3"),
        "settings": gauge_query(
            "select (current_setting('TimeZone') = 'UTC' and current_setting('application_name') = 'wasp'"
            " and current_setting('transaction_read_only') = 'on')::int as n", "wasp_test_session"),
    }))
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text
    finally:
        await engine.stop()
    assert sql(dsn, "select count(*) from t")[0][0] == 0
    for q in ("writer", "cte", "smuggle"):
        assert value(text, "wasp_query_errors_total", query=q, reason="sql") == 1, q
    assert value(text, "wasp_test_session") == 1


async def test_series_cap_exports_cap_and_counts_dropped(dsn: str) -> None:
    cfg = parse_config(config(dsn, {
        "many": gauge_query("select g::text as i, g as n from generate_series(1, 100) g",
                            "wasp_test_many", labels=["i"], max_series=10),
    }))
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text
    finally:
        await engine.stop()
    assert len(samples(text, "wasp_test_many")) == 10
    assert value(text, "wasp_query_series_dropped_total", query="many") == 90
    assert value(text, "wasp_query_series", query="many") == 10


async def test_rows_that_disappear_stop_being_exported_and_stale_data_expires(dsn: str) -> None:
    sql(dsn, "create table s (k text, v int); insert into s values ('a', 1), ('b', 2)")
    cfg = parse_config(config(dsn, {
        "s": gauge_query("select k, v as n from s", "wasp_test_s", labels=["k"]),
    }, stale_after="2s"))
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text
        assert {lab["k"] for lab, _ in samples(text, "wasp_test_s")} == {"a", "b"}
        sql(dsn, "delete from s where k = 'b'")
        text = (await engine.run_once()).text
        assert {lab["k"] for lab, _ in samples(text, "wasp_test_s")} == {"a"}
        sql(dsn, "drop table s")
        text = (await engine.run_once()).text
        assert value(text, "wasp_test_s", k="a") == 1  # last good set, still young
        assert value(text, "wasp_query_errors_total", query="s", reason="missing") == 1
        await asyncio.sleep(2.3)
        text = engine.render_now().text
        assert value(text, "wasp_test_s", k="a") is None  # too old: dropped
    finally:
        await engine.stop()


class SlowCollector(Collector):
    """A collector whose round outlasts its interval."""

    def __init__(self) -> None:
        self.name = "slow_py"
        self.target = None
        self.interval = 0.2
        self.timeout = 5.0
        self.rounds = 0

    async def collect(self, ctx: CollectContext) -> list[Family]:
        self.rounds += 1
        await asyncio.sleep(1.0)
        return [Family("wasp_test_slow_py", "gauge", "h", (), (((), 1.0),))]


async def test_overrunning_query_is_skipped_not_stacked(dsn: str) -> None:
    cfg = parse_config(config(dsn, {}))
    slow = SlowCollector()
    engine = Engine(cfg, collectors=[slow])
    await engine.start()
    await asyncio.sleep(1.5)
    await engine.stop()
    st = engine.states[slow.key]
    assert slow.rounds == 2  # one finished at ~1.0 s, the second started then
    assert st.skipped >= 4
    assert value(engine.render_now().text, "wasp_query_skipped_total", query="slow_py") == st.skipped


async def serve(engine: Engine) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, f"http://127.0.0.1:{port}"


async def test_down_at_start_then_up_then_restart(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster("restart", start=False)
    cfg = parse_config(config(c.dsn(), {"one": gauge_query("select 1 as n", "wasp_test_one",
                                                               interval="1s", timeout="1s")}))
    engine = make_engine(cfg)
    runner, base = await serve(engine)
    await engine.start()

    async def up() -> float | None:
        async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
            return value(await r.read(), "wasp_target_up", target="main")

    async def wait_for(expected: float, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await up() == expected:
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"wasp_target_up never became {expected} within {within}s")

    try:
        await wait_for(0, 15)
        async with aiohttp.ClientSession() as s, s.get(base + "/healthz") as r:
            assert r.status == 200
        await asyncio.to_thread(c.start)
        await wait_for(1, 45)
        await asyncio.to_thread(c.stop, "immediate")
        await wait_for(0, 30)
        await asyncio.to_thread(c.start)
        await wait_for(1, 45)
        async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
            assert value(await r.read(), "wasp_test_one") == 1
    finally:
        await engine.stop()
        await runner.cleanup()
        await asyncio.to_thread(c.stop)


async def test_concurrent_scrapes_cause_no_statements(pg: LocalCluster, dbname: str) -> None:
    role = f"wasp_scrape_{dbname}"
    sql(pg.dsn(dbname), f"create role {role} login in role pg_monitor; create extension if not exists pg_stat_statements")
    dsn = pg.dsn(dbname, user=role)
    cfg = parse_config(config(dsn, {
        f"q{i}": gauge_query(f"select {i} as n", f"wasp_test_q{i}", interval="300s") for i in range(5)
    }))
    engine = make_engine(cfg)
    runner, base = await serve(engine)
    await engine.start()

    def calls() -> int:
        return int(sql(pg.dsn(dbname), "select coalesce(sum(calls), 0) from pg_stat_statements s "
                       f"join pg_roles r on r.oid = s.userid where r.rolname = '{role}'")[0][0])

    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                async with s.get(base + "/readyz") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("exporter never became ready")
            await asyncio.sleep(0.3)
            before = calls()

            async def scrape(gz: bool) -> bytes:
                headers = {"Accept-Encoding": "gzip" if gz else "identity"}
                async with s.get(base + "/metrics", headers=headers) as r:
                    assert r.status == 200
                    assert r.headers.get("Content-Encoding") == ("gzip" if gz else None)
                    return await r.read()

            bodies = await asyncio.gather(*(scrape(i % 2 == 0) for i in range(50)))
            after = calls()
    finally:
        await engine.stop()
        await runner.cleanup()
    assert before > 0  # the statements of the first round were counted
    assert after == before
    assert all(value(b, "wasp_test_q3") == 3 for b in bodies)


def test_exposition_passes_promtool(dsn: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""
server: {{status_dir: {tmp_path}}}
targets: {{main: {{dsn_env: WASP_TEST_DSN, packs: []}}}}
queries:
  mix:
    sql: select 'a"b\\\\c' as l, 1.5 as g, 7 as c
    labels: [l]
    values:
      - {{column: g, metric: wasp_test_ratio, type: gauge, help: "a ratio", unit: ratio}}
      - {{column: c, metric: wasp_test_events_total, type: counter, help: "events\\nover two lines"}}
""")
    env = dict(os.environ, WASP_TEST_DSN=dsn)
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--once",
                        "--allow-superuser"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    # SQL 'a"b\\c' is a, quote, b, two backslashes, c: escaped on the wire, intact when parsed
    assert value(r.stdout, "wasp_test_ratio", l='a"b\\\\c') == 1.5
    assert 'l="a\\"b\\\\\\\\c"' in r.stdout
    check = subprocess.run(["promtool", "check", "metrics"], input=r.stdout, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", (
        check.stdout + check.stderr)


def test_sigterm_stops_cleanly_and_cancels(pg: LocalCluster, dbname: str, tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""
server: {{listen: "127.0.0.1:{port}", status_dir: {tmp_path}}}
targets: {{main: {{dsn_env: WASP_TEST_DSN, packs: []}}}}
queries:
  sleeper:
    interval: 60s
    timeout: 50s
    sql: select 1 as n from pg_sleep(40)
    values: [{{column: n, metric: wasp_test_sleeper, type: gauge, help: h}}]
""")
    env = dict(os.environ, WASP_TEST_DSN=pg.dsn(dbname))
    proc = subprocess.Popen([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg),
                             "--allow-superuser"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probe = (f"select count(*) from pg_stat_activity where datname = '{dbname}' "
             "and application_name = 'wasp' and query like '%pg_sleep(40)%' and state = 'active'")
    try:
        deadline = time.monotonic() + 20
        while sql(pg.dsn(), probe)[0][0] == 0:
            assert time.monotonic() < deadline, "the query never started"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    time.sleep(0.3)
    assert sql(pg.dsn(), probe)[0][0] == 0
    err = proc.stderr.read() if proc.stderr else ""
    assert "shutting down" in err and "engine stopped" in err


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a server that hangs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


def test_once_with_down_targets_is_bounded(tmp_path: Path) -> None:
    """Unreachable targets with the app and postgres packs: each tried once, all at once."""
    connect_timeout = 5.0
    silent = socket.socket()  # accepts TCP connections and never answers (a server that hangs)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""
server: {{status_dir: {tmp_path}}}
targets:
  refused: {{dsn: "host=127.0.0.1 port={free_port()} user=u password=pw", packs: [app, postgres],
             connect_timeout: {connect_timeout:g}s}}
""" + "".join(f"""
  silent{i}: {{dsn: "host=127.0.0.1 port={port} user=u password=pw", packs: [app, postgres],
             connect_timeout: {connect_timeout:g}s}}""" for i in range(4)) + "\n")
    # what starting the process and loading the packs costs on this (loaded) machine
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "wasp", "check-config", str(cfg)], check=True,
                   capture_output=True, timeout=120)
    baseline = time.monotonic() - start
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    # every connection attempt waits in the listen queue: one per silent target, not one more
    silent.setblocking(False)
    attempts = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            silent.accept()[0].close()
            attempts += 1
    silent.close()
    assert attempts == 4, f"{attempts} connection attempts to the four silent targets"
    assert r.returncode == 1, r.stderr
    # one after the other they would take at least 4 connect timeouts; all at once, one (the
    # margin is for a loaded machine)
    assert took - baseline < 3 * connect_timeout, f"--once took {took:.1f}s ({baseline:.1f}s to start)"
    for target, reason in (("refused", "refused"), *((f"silent{i}", "timeout") for i in range(4))):
        assert value(r.stdout, "wasp_target_up", target=target) == 0
        assert value(r.stdout, "wasp_target_connection_errors_total", target=target,
                     reason=reason) == 1
        down = [line for line in r.stderr.splitlines() if f"target {target} is down ({reason})" in line]
        assert len(down) == 1, r.stderr
    failed = samples(r.stdout, "wasp_query_errors_total")
    assert sum(v for lab, v in failed if lab["reason"] == "connection") > 80  # every query said so
    assert "password=pw" not in r.stderr


async def test_ready_with_one_target_down(dsn: str, silent_port: int) -> None:
    """One target hangs: /readyz turns 200 once the other completed a round and the down one
    was tried (once, not once per query); up 0 for the down one."""
    cfg = parse_config({
        "server": {"status_dir": "/tmp/wasp-test-status"},
        "targets": {"good": {"dsn": dsn, "packs": ["postgres"]},
                    "down": {"dsn": f"host=127.0.0.1 port={silent_port} user=u", "packs": ["postgres"],
                             "connect_timeout": "2s"}},
        "queries": {"one": gauge_query("select 1 as n", "wasp_test_one", targets=["good"])},
    })
    engine = make_engine(cfg)
    runner, base = await serve(engine)
    await engine.start()
    try:
        deadline = time.monotonic() + 20  # one connect timeout (2 s) and a loaded machine
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(base + "/readyz") as r:
                    if r.status == 200:
                        break
                assert time.monotonic() < deadline, await r.text()
                await asyncio.sleep(0.3)
            async with s.get(base + "/metrics") as r:
                text = await r.read()
        assert value(text, "wasp_target_up", target="down") == 0
        assert value(text, "wasp_target_up", target="good") == 1
        assert value(text, "wasp_test_one", target="good") == 1
        assert value(text, "wasp_exporter_ready") == 1
        good = [st for st in engine.states.values() if st.collector.target == "good"]
        assert all(st.completed_once or st.disabled for st in good)
    finally:
        await engine.stop()
        await runner.cleanup()


async def test_a_hung_target_keeps_to_its_own_slots(dsn: str) -> None:
    """A target whose queries hang holds at most its pool_max of the global query slots: its
    queued queries wait for the target's slot without taking a global one, so another
    target's query keeps its interval."""
    hang = "select 1 as n from pg_sleep(4.5)"
    cfg = parse_config({
        "server": {"status_dir": "/tmp/wasp-test-status", "max_concurrent_queries": 2},
        "targets": {"good": {"dsn": dsn, "packs": []},
                    "hung": {"dsn": dsn, "packs": [], "pool_max": 1}},
        "queries": {
            "fast": gauge_query("select 1 as n", "wasp_test_fast", targets=["good"],
                                interval="1s"),
            **{f"hang_{i}": gauge_query(hang, f"wasp_test_hang_{i}", targets=["hung"],
                                        interval="5s", timeout="5s") for i in range(3)}},
    })
    engine = make_engine(cfg)
    await engine.start()
    try:
        fast = next(st for st in engine.states.values() if st.collector.target == "good")
        await asyncio.sleep(1.5)  # the hung target's three queries are all under way by now
        before, t0 = fast.runs, time.monotonic()
        await asyncio.sleep(6)
        ran, elapsed = fast.runs - before, time.monotonic() - t0
        # one run a second; half of that allows for a loaded machine. Were the hung target's
        # queued queries holding the two global slots, the fast query would wait ~4.5 s.
        assert ran >= elapsed / 2, f"{ran} runs in {elapsed:.1f}s"
    finally:
        await engine.stop()


def _server_pids(c: LocalCluster) -> list[int]:
    """The postmaster and its children."""
    postmaster = int((c.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


async def test_series_older_than_stale_after_go_while_the_server_is_stopped(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """The server stops answering (SIGSTOP): the series go by age, before the hanging run fails."""
    c: LocalCluster = make_cluster()
    cfg = parse_config(config(c.dsn(), {"one": gauge_query("select 1 as n", "wasp_test_one",
                                                               interval="4s", timeout="4s")},
                              stale_after="2s"))
    engine = make_engine(cfg)
    st = engine.states["main/one"]
    await engine.start()
    stopped: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while value(engine.render_now().text, "wasp_test_one", target="main") != 1:
            assert time.monotonic() < deadline, st.last_error
            await asyncio.sleep(0.2)
        stopped = _server_pids(c)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        while value(engine.render_now().text, "wasp_test_one", target="main") == 1:
            assert time.monotonic() - stopped_at < 30, "the series were never dropped"
            await asyncio.sleep(0.1)
        gone_after = time.monotonic() - stopped_at
        assert st.last_success_mono is not None
        # the run in flight still hangs on the stopped server: no failure recorded yet
        assert not st.errors, st.errors
        assert st.task is not None and not st.task.done()
        # stale_after 2 s, but the last run succeeded: kept until its next is overdue (8 s)
        assert 2.0 < gone_after < 9.0
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await engine.stop()
