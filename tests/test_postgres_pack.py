"""The built-in postgres pack against a real PostgreSQL 15, under the wasp_monitor role.

The module runs its own cluster: archiving has to be on (it needs a restart)
and pg_stat_statements.max has to hold the 5,000 statements without
evicting any while totals are compared.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from helpers import names, num, samples, value
from wasp.companions.pgcluster import LocalCluster, chown_to_postgres
from wasp.config.schema import load_pack, parse_config
from wasp.exporter.collector import CollectContext
from wasp.exporter.db import TargetDB
from wasp.exporter.engine import Engine
from wasp.exporter.sql import SqlCollector, TopCollector

DB = "pack_app"
MONITOR = "wasp_monitor"
#: metrics whose source only a superuser may read: absent under pg_monitor
SUPERUSER_ONLY = {"wasp_pg_login_roles_without_password", "wasp_pg_hba_trust_rules"}
#: metrics of a cluster with data checksums (this module's has none; test_postgres_storage's has)
CHECKSUMS_ONLY = {"wasp_pg_database_checksum_failures_total",
                  "wasp_pg_database_checksum_last_failure_timestamp_seconds"}


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(make_cluster, cluster_base: Path) -> Iterator[LocalCluster]:  # type: ignore[no-untyped-def]
    """A cluster with archiving (the first attempt fails, the rest succeed) and room in pgss."""
    arch = cluster_base / "pgpack-archive"
    arch.mkdir()
    chown_to_postgres(arch)
    command = (f"'test -f {arch}/.failed-once && cp %p {arch}/%f "
               f"|| {{ touch {arch}/.failed-once; exit 1; }}'")
    c: LocalCluster = make_cluster("pgpack", archive_mode="on", archive_command=command,
                                   **{"pg_stat_statements.max": "10000"})
    c.psql(resources.files("wasp").joinpath("sql/monitor_role.sql").read_text())
    c.psql(f"CREATE DATABASE {DB}")
    c.psql("CREATE EXTENSION pg_stat_statements;"
           f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR};"
           f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {MONITOR};"
           "SELECT pg_stat_reset();", dbname=DB)
    yield c
    c.destroy()


@pytest.fixture(scope="module")
def su_dsn(cluster: LocalCluster) -> str:
    """Superuser DSN of the application database (for the test's own work)."""
    return cluster.dsn(DB)


@pytest.fixture(scope="module")
def mon_dsn(cluster: LocalCluster) -> str:
    """The exporter's DSN: the least-privilege role."""
    return cluster.dsn(DB, user=MONITOR)


async def scrape(dsn: str, tmp: Path, *, only: set[str] | None = None,
                 options: dict[str, Any] | None = None) -> str:
    """Run the pack (or some of its queries) once and return the exposition."""
    data: dict[str, Any] = {
        "server": {"status_dir": str(tmp / "status")},
        "targets": {"main": {"dsn": dsn, "packs": ["postgres"]}},
    }
    if options:
        data["packs"] = {"postgres": {"options": options}}
    cfg = parse_config(data)
    collectors = None
    if only is not None:
        collectors = [TopCollector(q, "main") if q.top else SqlCollector(q, "main")
                      for q in cfg.queries if q.name in only]
        assert {c.name for c in collectors} == only
    engine = Engine(cfg, collectors=collectors)
    try:
        rendered = await engine.run_once()
    finally:
        await engine.stop()
    return rendered.text.decode()


def sql(dsn: str, query: str, *params: Any) -> Any:
    """The first column of the first row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        row = cur.fetchone() if cur.description else None
        return row[0] if row else None


def wait_for(dsn: str, query: str, expected: Any, timeout: float = 15.0) -> None:
    """Poll until `query` returns `expected` (stats are flushed asynchronously)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = sql(dsn, query)
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{query!r} returned {got!r}, not {expected!r}, after {timeout:g}s")


def pack_metrics() -> set[str]:
    """Every metric name the pack defines."""
    return {v.metric for q in load_pack("postgres") for v in q.values}


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
def test_monitor_role_has_only_pg_monitor(cluster: LocalCluster) -> None:
    """The role the tests scrape with is no superuser and only a member of pg_monitor."""
    out = cluster.psql(
        "SELECT rolsuper, rolcanlogin, rolinherit, "
        "(SELECT string_agg(b.rolname, ',') FROM pg_auth_members m "
        " JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid) "
        f"FROM pg_roles r WHERE rolname = '{MONITOR}'")
    assert out.strip() == "f|t|t|pg_monitor"
    # running the script twice is harmless
    cluster.psql(resources.files("wasp").joinpath("sql/monitor_role.sql").read_text())


async def test_every_metric_present_under_pg_monitor(cluster: LocalCluster, su_dsn: str,
                                                     mon_dsn: str, tmp_path: Path) -> None:
    """Each metric of the pack is exported by a pg_monitor-only role, without errors, and lints clean."""
    with psycopg.connect(su_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE every_booking (id int PRIMARY KEY, note text, at timestamptz)")
        conn.execute("CREATE INDEX every_booking_at ON every_booking (at)")
        conn.execute("INSERT INTO every_booking SELECT g, 'n' || g, now() FROM generate_series(1, 2000) g")
        conn.execute("VACUUM ANALYZE every_booking")
        conn.execute("SELECT count(*) FROM every_booking WHERE id = 5")
        # WAL to archive: the first attempt fails by design, the retry succeeds
        conn.execute("SELECT pg_switch_wal()")
    wait_for(su_dsn, "SELECT archived_count > 0 AND failed_count > 0 FROM pg_stat_archiver", True)

    text = await scrape(mon_dsn, tmp_path)

    assert not [(lab, v) for lab, v in samples(text, "wasp_query_errors_total") if v], text
    assert all(v == 1 for _, v in samples(text, "wasp_query_enabled"))
    missing = pack_metrics() - SUPERUSER_ONLY - CHECKSUMS_ONLY - names(text)
    assert not missing
    # without data checksums no failure can be detected: absent, and said so
    assert not CHECKSUMS_ONLY & names(text)
    assert value(text, "wasp_pg_data_checksums_enabled") == 0
    # what pg_monitor cannot read is absent and said so, not an error
    assert not SUPERUSER_ONLY & names(text)
    for check in ("login_roles_without_password", "hba_trust_rules"):
        assert value(text, "wasp_pg_security_check_available", check=check) == 0

    promtool = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
    assert promtool.returncode == 0 and not (promtool.stdout + promtool.stderr).strip(), promtool


async def test_superuser_checks_when_readable(su_dsn: str, tmp_path: Path) -> None:
    """A role that may read pg_authid and pg_hba_file_rules gets the two counts, matching SQL."""
    text = await scrape(su_dsn, tmp_path, only={"security_auth"})
    for check in ("login_roles_without_password", "hba_trust_rules"):
        assert value(text, "wasp_pg_security_check_available", check=check) == 1
    assert value(text, "wasp_pg_login_roles_without_password") == sql(
        su_dsn, "SELECT count(*) FROM pg_authid WHERE rolcanlogin AND rolpassword IS NULL")
    trust = sql(su_dsn, "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'")
    assert trust > 0  # the test cluster is initdb --auth=trust
    assert value(text, "wasp_pg_hba_trust_rules") == trust


async def test_connections_by_state_and_transaction_ages(cluster: LocalCluster, su_dsn: str,
                                                         mon_dsn: str, tmp_path: Path) -> None:
    """Sessions the test leaves idle in transaction show by state, application and age."""
    conns = [psycopg.connect(su_dsn, application_name="pack-test-app") for _ in range(5)]
    try:
        for c in conns[:3]:
            c.execute("SELECT 1")  # opens a transaction and leaves it idle
        for c in conns[3:]:
            c.autocommit = True
            c.execute("SELECT 1")
        time.sleep(1.1)
        check = cluster.dsn("postgres")
        in_xact = sql(check, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                      "AND state = 'idle in transaction'", DB)
        assert in_xact == 3

        text = await scrape(mon_dsn, tmp_path, only={"activity", "connections", "applications"})

        assert value(text, "wasp_pg_connections", database=DB, state="idle in transaction") == 3
        assert num(text, "wasp_pg_connections", database=DB, state="idle") >= 2
        # every state of every database is there, zeros included
        assert value(text, "wasp_pg_connections", database="postgres",
                     state="idle in transaction (aborted)") == 0
        assert value(text, "wasp_pg_application_connections", application="pack-test-app") == 5
        assert num(text, "wasp_pg_oldest_idle_in_transaction_age_seconds") >= 1.0
        assert num(text, "wasp_pg_oldest_transaction_age_seconds") >= 1.0
        assert value(text, "wasp_pg_lock_waiting_sessions") == 0
        # loopback TCP without SSL: every session the test opened
        assert num(text, "wasp_pg_connections_without_ssl") >= 5
    finally:
        for c in conns:
            c.close()


async def test_applications_are_bounded(su_dsn: str, mon_dsn: str, tmp_path: Path) -> None:
    """More application names than top_applications: the rest land in one "(other)" series."""
    conns = [psycopg.connect(su_dsn, application_name=f"many-{i}") for i in range(6)]
    try:
        text = await scrape(mon_dsn, tmp_path, only={"applications"},
                            options={"top_applications": 3})
    finally:
        for c in conns:
            c.close()
    got = {lab["application"]: v for lab, v in samples(text, "wasp_pg_application_connections")}
    assert len(got) == 4
    assert got["(other)"] >= 3
    assert sum(got.values()) >= 7  # six of the test's and the exporter's own


async def test_deadlock_shows_in_counter(su_dsn: str, mon_dsn: str, tmp_path: Path) -> None:
    """A deadlock the test provokes adds one to the database's deadlock counter."""
    q = f"SELECT deadlocks FROM pg_stat_database WHERE datname = '{DB}'"
    before = num(await scrape(mon_dsn, tmp_path, only={"databases"}),
                   "wasp_pg_database_deadlocks_total", database=DB)
    assert before == sql(su_dsn, q)
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE dl (id int PRIMARY KEY, v int)")
        c.execute("INSERT INTO dl VALUES (1, 0), (2, 0)")
    a = await psycopg.AsyncConnection.connect(su_dsn)
    b = await psycopg.AsyncConnection.connect(su_dsn)
    try:
        for ac, first in ((a, 1), (b, 2)):
            await ac.execute("SET deadlock_timeout = '100ms'")
            await ac.execute("UPDATE dl SET v = v + 1 WHERE id = %s", (first,))
        results = await asyncio.gather(
            a.execute("UPDATE dl SET v = v + 1 WHERE id = 2"),
            b.execute("UPDATE dl SET v = v + 1 WHERE id = 1"),
            return_exceptions=True,
        )
        assert sum(isinstance(r, pgerrors.DeadlockDetected) for r in results) == 1, results
    finally:
        await a.close()  # a backend flushes its statistics when it exits
        await b.close()
    wait_for(su_dsn, q, before + 1)

    text = await scrape(mon_dsn, tmp_path, only={"databases"})
    assert num(text, "wasp_pg_database_deadlocks_total", database=DB) == before + 1


async def test_lock_wait_shows_waiting_blocked_blocking(su_dsn: str, mon_dsn: str,
                                                        tmp_path: Path) -> None:
    """A session waiting on another's row lock is waiting, blocked, and its holder blocking."""
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE lw (id int PRIMARY KEY, v int)")
        c.execute("INSERT INTO lw VALUES (1, 0)")
    holder = await psycopg.AsyncConnection.connect(su_dsn)
    waiter = await psycopg.AsyncConnection.connect(su_dsn)
    try:
        await holder.execute("UPDATE lw SET v = 1 WHERE id = 1")
        hpid = holder.info.backend_pid
        waiting = asyncio.create_task(waiter.execute("UPDATE lw SET v = 2 WHERE id = 1"))
        deadline = time.monotonic() + 10
        while not sql(su_dsn, "SELECT count(*) > 0 FROM pg_stat_activity "
                      "WHERE %s = ANY(pg_blocking_pids(pid))", hpid):
            assert time.monotonic() < deadline, "the waiter never waited"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)

        text = await scrape(mon_dsn, tmp_path, only={"activity"})

        assert value(text, "wasp_pg_lock_waiting_sessions") == 1
        assert value(text, "wasp_pg_blocked_sessions") == 1
        assert value(text, "wasp_pg_blocking_sessions") == 1
        assert num(text, "wasp_pg_lock_wait_longest_seconds") >= 0.5
        await holder.rollback()
        await waiting
        await waiter.rollback()
    finally:
        await holder.close()
        await waiter.close()


async def test_dead_tuples_after_bulk_delete(su_dsn: str, mon_dsn: str, tmp_path: Path) -> None:
    """A bulk delete shows as dead tuples of that table, equal to pg_stat_user_tables."""
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE purge_me (id int PRIMARY KEY, payload text) "
                  "WITH (autovacuum_enabled = off)")
        c.execute("INSERT INTO purge_me SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g")
    # the insert's counts must land before ANALYZE sets the live count, or they add up twice
    wait_for(su_dsn, "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'purge_me'", 10000)
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("ANALYZE purge_me")
        c.execute("DELETE FROM purge_me WHERE id <= 4000")
    wait_for(su_dsn, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'purge_me'", 4000)

    text = await scrape(mon_dsn, tmp_path, only={"tables"})

    labels = {"schema": "public", "table": "purge_me"}
    assert value(text, "wasp_pg_table_dead_tuples", **labels) == 4000
    assert value(text, "wasp_pg_table_live_tuples", **labels) == 6000
    assert value(text, "wasp_pg_table_size_bytes", **labels) == sql(
        su_dsn, "SELECT pg_table_size('purge_me')")
    # analyzed before the delete: the estimate sees the same rows in the same pages
    assert num(text, "wasp_pg_table_bloat_ratio", **labels) < 0.2
    assert num(text, "wasp_pg_table_last_analyze_age_seconds", kind="manual", **labels) >= 0
    # vacuum frees the space without giving it back: 40% of the pages are now bloat
    sql(su_dsn, "VACUUM ANALYZE purge_me")
    text = await scrape(mon_dsn, tmp_path, only={"tables"})
    assert 0.3 < num(text, "wasp_pg_table_bloat_ratio", **labels) < 0.5
    assert num(text, "wasp_pg_table_last_vacuum_age_seconds", kind="manual", **labels) >= 0


async def test_tables_and_indexes_are_bounded(su_dsn: str, mon_dsn: str, tmp_path: Path) -> None:
    """Past top_tables/top_indexes the rest is one "(other)" series; sums stay right."""
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA many")
        for i in range(8):
            c.execute(f"CREATE TABLE many.t{i} (id int PRIMARY KEY)")
            c.execute(f"INSERT INTO many.t{i} SELECT generate_series(1, {(i + 1) * 500})")
    many = "SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE schemaname = 'many'"
    wait_for(su_dsn, many, 18000)
    sql(su_dsn, "ANALYZE")  # sizes in the catalog, for the ranking
    live = sql(su_dsn, "SELECT sum(n_live_tup) FROM pg_stat_user_tables")
    text = await scrape(mon_dsn, tmp_path, only={"tables", "indexes"},
                        options={"top_tables": 3, "top_indexes": 2})
    tables = samples(text, "wasp_pg_table_live_tuples")
    assert len(tables) == 4
    assert ("(other)", "(other)") in {(lab["schema"], lab["table"]) for lab, _ in tables}
    assert sum(v for _, v in tables) == live
    indexes = samples(text, "wasp_pg_index_size_bytes")
    assert len(indexes) == 3
    assert [lab["index"] for lab, _ in indexes].count("(other)") == 1


async def test_statements_top_n_plus_other_and_totals(su_dsn: str, mon_dsn: str,
                                                      tmp_path: Path) -> None:
    """5,000 distinct statements: N + 1 series per metric, and calls sum to pgss' total."""
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("DO $$ BEGIN FOR i IN 1..200 LOOP "
                  "EXECUTE format('CREATE TABLE IF NOT EXISTS stmt_%s (id int)', i); "
                  "END LOOP; END $$")
        with c.pipeline():
            for t in range(1, 201):
                for n in range(1, 26):  # an IN list of n constants is its own statement
                    c.execute(f"SELECT count(*) FROM stmt_{t} WHERE id IN "
                              f"({', '.join(str(k) for k in range(n))})")
        assert sql(su_dsn, "SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s",
                   "SELECT count(*) FROM stmt_%") == 5000
    top = 20
    # once so every statement the exporter runs already has its entry, then for real
    await scrape(mon_dsn, tmp_path, only={"statements"})
    text = await scrape(mon_dsn, tmp_path, only={"statements"})
    total_after = sql(su_dsn, "SELECT sum(calls) FROM pg_stat_statements")

    for metric in ("wasp_pg_statement_calls_total", "wasp_pg_statement_exec_time_seconds_total",
                   "wasp_pg_statement_rows_total", "wasp_pg_statement_shared_blocks_hit_total",
                   "wasp_pg_statement_shared_blocks_read_total"):
        assert len(samples(text, metric)) == top + 1, metric
    # a mean is not summed: (other) has none
    assert len(samples(text, "wasp_pg_statement_mean_exec_time_seconds")) == top
    calls = samples(text, "wasp_pg_statement_calls_total")
    # the only statement that ran after the exporter's snapshot is the exporter's query itself
    assert sum(v for _, v in calls) == total_after - 1
    assert num(text, "wasp_pg_statement_calls_total", queryid="(other)") > 0
    # the fingerprint is in one info series per exported queryid, not on every metric
    assert all(set(lab) == {"target", "queryid"} for lab, _ in calls)
    info = samples(text, "wasp_pg_statement_info")
    assert sorted(lab["queryid"] for lab, _ in info) == sorted(
        lab["queryid"] for lab, _ in calls if lab["queryid"] != "(other)")
    for lab, v in info:
        assert v == 1 and 0 < len(lab["fingerprint"]) <= 60 and "\n" not in lab["fingerprint"]


async def test_statement_fingerprints_hide_literals_and_comments(su_dsn: str, mon_dsn: str,
                                                                 tmp_path: Path) -> None:
    """Utility statements keep their literals in pgss; the fingerprint drops them and comments."""
    with psycopg.connect(su_dsn, autocommit=True) as c:
        c.execute("SELECT pg_stat_statements_reset()")
        c.execute("CREATE TABLE IF NOT EXISTS fp (id int)")
        c.execute("COMMENT ON TABLE fp IS 'the s3cret literal'")
        c.execute("/* from the booking api */ SELECT   count(*)\n  FROM fp -- trailing\n")
    text = await scrape(mon_dsn, tmp_path, only={"statements"},
                        options={"top_statements": 50, "fingerprint_length": 200})
    prints = {lab["fingerprint"] for lab, _ in samples(text, "wasp_pg_statement_info")}
    assert "COMMENT ON TABLE fp IS ?" in prints
    assert "SELECT count(*) FROM fp" in prints
    assert not [p for p in prints if "s3cret" in p or "booking api" in p]


def test_every_metric_is_documented() -> None:
    """docs/packs.md lists each metric of the pack."""
    doc = (Path(__file__).parent.parent / "docs" / "packs.md").read_text()
    assert not {m for m in pack_metrics() if f"`{m}`" not in doc}


async def test_statement_series_stay_bounded_over_an_hour_of_churn(su_dsn: str, mon_dsn: str,
                                                                   tmp_path: Path) -> None:
    """An hour of changing workload (a simulated minute per round): a place in the top N
    changes hands at most once per leave_after, however the ranks move."""
    top, leave = 10, 900.0
    cfg = parse_config({"server": {"status_dir": str(tmp_path)},
                        "targets": {"main": {"dsn": mon_dsn, "packs": ["postgres"]}},
                        "packs": {"postgres": {"options": {"top_statements": top}}}})
    q = next(q for q in cfg.queries if q.name == "statements")
    assert q.top is not None and q.top.leave_after == leave and q.top.enter_after == 300
    clock = [0.0]
    coll = TopCollector(q, "main", clock=lambda: clock[0])
    db = TargetDB("main", mon_dsn)
    await db.open()
    rng = __import__("random").Random(7)
    tables = 60
    with psycopg.connect(su_dsn, autocommit=True) as c:
        for i in range(tables):
            c.execute(f"CREATE TABLE IF NOT EXISTS churn_{i} (id int)")
        c.execute("SELECT pg_stat_statements_reset()")
    naive: set[str] = set()  # what a plain top N would have given series to
    stable: set[str] = set()
    prints: dict[str, str] = {}
    try:
        with psycopg.connect(su_dsn, autocommit=True) as c:
            for minute in range(60):
                # a hot set that drifts every few minutes, and noise everywhere
                hot = {(minute // 4 * 5 + k) % tables for k in range(12)}
                with c.pipeline():
                    for i in range(tables):
                        for _ in range(rng.randint(8, 14) if i in hot else rng.randint(0, 3)):
                            c.execute(f"SELECT count(*) FROM churn_{i}")
                ranked = await db.fetch(
                    "SELECT queryid::text FROM pg_stat_statements GROUP BY queryid "
                    "ORDER BY sum(total_exec_time) DESC, queryid LIMIT %s", timeout=10,
                    params=(top,))
                naive.update(r[0] for r in ranked.rows)
                fams = await coll.collect(CollectContext(now=clock[0], status_dir=tmp_path, db=db))
                by_name = {f.name: f for f in fams}
                keys = {lab[0] for lab, _ in by_name["wasp_pg_statement_calls_total"].samples}
                keys.discard("(other)")
                assert len(keys) <= top
                stable.update(keys)
                for lab, _ in by_name["wasp_pg_statement_info"].samples:
                    assert prints.setdefault(lab[0], lab[1]) == lab[1]  # one fingerprint per queryid
                assert {lab[0] for lab, _ in by_name["wasp_pg_statement_info"].samples} == keys
                clock[0] += 60
    finally:
        await db.close()
    # each of the `top` places can change hands once per leave_after: 10 + 10 * 60/15
    bound = top + top * int(3600 / leave)
    print(f"statements with series over the hour: stable {len(stable)}, plain top-{top} {len(naive)}, "
          f"bound {bound}")
    assert len(stable) <= coll.stable.entered <= bound
    assert len(naive) > len(stable)  # the workload did churn
