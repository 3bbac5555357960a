"""What fills or damages storage, from the postgres and replication packs, on a real PostgreSQL 15.

The module runs its own cluster, initialised with data checksums (a page
checksum failure can only be counted there) and with small WAL limits, so
that a replication slot holding WAL back reaches max_slot_wal_keep_size
after a few segments. Every scrape runs as a role with nothing but
pg_monitor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import num, samples, value
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.schema import parse_config
from wasp.exporter.engine import Engine
from wasp.exporter.sql import SqlCollector

DB = "storage_app"
MONITOR = "wasp_monitor"
SEGMENT = 16 * 1024 * 1024
MAX_SLOT_KEEP = 4 * SEGMENT


@pytest.fixture(scope="module")
def cluster(cluster_base: Path) -> Iterator[LocalCluster]:
    """A cluster with data checksums, max_wal_size 32MB, max_slot_wal_keep_size 64MB."""
    c = LocalCluster(datadir=cluster_base / "pgstorage", port=free_port(), settings={
        "max_wal_size": "32MB", "min_wal_size": "32MB", "max_slot_wal_keep_size": "64MB",
        "autovacuum_naptime": "1s", "checkpoint_timeout": "1h"})
    c.init(extra_args=["--data-checksums"])
    c.start()
    c.psql(resources.files("wasp").joinpath("sql/monitor_role.sql").read_text())
    c.psql(f"CREATE DATABASE {DB}")
    c.psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR};"
           f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {MONITOR};",
           dbname=DB)
    yield c
    c.destroy()


@pytest.fixture(scope="module")
def su_dsn(cluster: LocalCluster) -> str:
    """Superuser DSN of the test database."""
    return cluster.dsn(DB)


@pytest.fixture(scope="module")
def mon_dsn(cluster: LocalCluster) -> str:
    """The exporter's DSN: pg_monitor only."""
    return cluster.dsn(DB, user=MONITOR)


async def scrape(dsn: str, tmp: Path, only: set[str]) -> str:
    """Run some queries of the postgres and replication packs once; the exposition."""
    cfg = parse_config({"server": {"status_dir": str(tmp / "status")},
                        "targets": {"main": {"dsn": dsn, "packs": ["postgres", "replication"]}}})
    collectors = [SqlCollector(q, "main") for q in cfg.queries if q.name in only]
    assert {c.name for c in collectors} == only
    engine = Engine(cfg, collectors=collectors)
    try:
        rendered = await engine.run_once()
    finally:
        await engine.stop()
    text = rendered.text.decode()
    assert not [(lab, v) for lab, v in samples(text, "wasp_query_errors_total") if v], text
    return text


def sql(dsn: str, query: str, *params: Any) -> Any:
    """The first column of the first row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        row = cur.fetchone() if cur.description else None
        return row[0] if row else None


def wait_for(dsn: str, query: str, timeout: float = 30.0) -> None:
    """Poll until `query` is true."""
    deadline = time.monotonic() + timeout
    while not sql(dsn, query):
        assert time.monotonic() < deadline, f"{query!r} stayed false for {timeout:g}s"
        time.sleep(0.1)


def next_segment(dsn: str) -> None:
    """Write a row and switch to a new WAL segment: the WAL position moves on by up to 16MB."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (v int)")
        conn.execute("INSERT INTO wal_filler VALUES (1)")
        conn.execute("SELECT pg_switch_wal()")


async def test_slot_fills_pg_wal_until_its_limit(su_dsn: str, mon_dsn: str,
                                                 tmp_path: Path) -> None:
    """An unconsumed slot: pg_wal grows, safe_wal_size counts down, then the slot is lost."""
    only = {"wal_directory", "replication_slot", "replication_slot_limit"}
    # the slot starts at the last checkpoint's redo: make that this segment, whatever WAL the
    # module's other tests wrote before (else it starts a segment back and is lost sooner)
    sql(su_dsn, "CHECKPOINT")
    sql(su_dsn, "SELECT pg_create_physical_replication_slot('gone_replica', true)")
    slot = {"slot_name": "gone_replica", "slot_type": "physical"}
    try:
        text = await scrape(mon_dsn, tmp_path, only)
        assert value(text, "wasp_pg_replication_max_slot_wal_keep_size_bytes") == MAX_SLOT_KEEP
        assert value(text, "wasp_pg_max_wal_size_bytes") == 2 * SEGMENT
        assert value(text, "wasp_pg_wal_keep_size_bytes") == 0
        assert value(text, "wasp_pg_replication_slot_wal_status", wal_status="reserved", **slot) == 1
        safe_before = value(text, "wasp_pg_replication_slot_safe_wal_size_bytes", **slot)
        assert safe_before is not None and safe_before > 3 * SEGMENT
        before = value(text, "wasp_pg_wal_directory_bytes")
        assert before is not None

        for _ in range(4):  # 4 segments behind: past max_wal_size, within the slot limit
            next_segment(su_dsn)
        sql(su_dsn, "CHECKPOINT")
        low = sql(su_dsn, "SELECT sum(size) FROM pg_ls_waldir()")
        text = await scrape(mon_dsn, tmp_path, only)
        high = sql(su_dsn, "SELECT sum(size) FROM pg_ls_waldir()")
        grown = value(text, "wasp_pg_wal_directory_bytes")
        assert grown is not None and min(low, high) <= grown <= max(low, high)
        assert grown >= before + 3 * SEGMENT  # the slot keeps the segments it has not consumed
        assert num(text, "wasp_pg_wal_directory_segments") >= 5
        safe = value(text, "wasp_pg_replication_slot_safe_wal_size_bytes", **slot)
        assert safe is not None and safe < SEGMENT  # under a quarter of the limit left
        assert value(text, "wasp_pg_replication_slot_wal_status", wal_status="extended", **slot) == 1

        for _ in range(3):  # past the limit: the next checkpoint removes the WAL, the slot is lost
            next_segment(su_dsn)
        sql(su_dsn, "CHECKPOINT")
        text = await scrape(mon_dsn, tmp_path, only)
        assert value(text, "wasp_pg_replication_slot_wal_status", wal_status="lost", **slot) == 1
        assert value(text, "wasp_pg_replication_slot_safe_wal_size_bytes", **slot) is None
        assert num(text, "wasp_pg_wal_directory_bytes") < grown  # the checkpoint freed pg_wal
    finally:
        sql(su_dsn, "SELECT pg_drop_replication_slot('gone_replica')")


async def test_page_checksum_failure_is_counted(cluster: LocalCluster, su_dsn: str,
                                                mon_dsn: str, tmp_path: Path) -> None:
    """A page corrupted on disk fails its checksum when read: counted for its database."""
    only = {"server", "checksums"}
    text = await scrape(mon_dsn, tmp_path, only)
    assert value(text, "wasp_pg_data_checksums_enabled") == 1
    assert value(text, "wasp_pg_database_checksum_failures_total", database=DB) == 0
    assert value(text, "wasp_pg_database_checksum_failures_total", database="(shared)") == 0
    assert value(text, "wasp_pg_database_checksum_last_failure_timestamp_seconds",
                 database=DB) is None

    with psycopg.connect(su_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE rotting (id int, note text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO rotting SELECT g, repeat('n', 50) FROM generate_series(1, 50) g")
        path = conn.execute("SELECT pg_relation_filepath('rotting')").fetchone()[0]  # type: ignore[index]
    cluster.stop()
    with open(cluster.datadir / path, "r+b") as f:  # a byte in the middle of the first page
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    cluster.start()
    with pytest.raises(psycopg.errors.DataCorrupted), \
            psycopg.connect(su_dsn, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM rotting")
    wait_for(su_dsn, f"SELECT checksum_failures > 0 FROM pg_stat_database WHERE datname = '{DB}'")

    started = time.time()
    text = await scrape(mon_dsn, tmp_path, only)
    assert value(text, "wasp_pg_database_checksum_failures_total", database=DB) == sql(
        su_dsn, "SELECT checksum_failures FROM pg_stat_database WHERE datname = %s", DB)
    last = value(text, "wasp_pg_database_checksum_last_failure_timestamp_seconds", database=DB)
    assert last is not None and started - 120 < last <= started + 1
    assert value(text, "wasp_pg_database_checksum_failures_total", database="postgres") == 0
    sql(su_dsn, "DROP TABLE rotting")


async def test_autovacuum_behind_and_workers(su_dsn: str, mon_dsn: str, tmp_path: Path) -> None:
    """Dead rows against the table's own autovacuum threshold; busy workers; per-table XID age."""
    with psycopg.connect(su_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE stale (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = off,"
                     " autovacuum_vacuum_threshold = 100, autovacuum_vacuum_scale_factor = 0.1)")
        conn.execute("INSERT INTO stale SELECT g, 'v' FROM generate_series(1, 10000) g")
        conn.execute("ANALYZE stale")
        conn.execute("DELETE FROM stale WHERE id <= 5000")
        for _ in range(50):  # transactions that consume an XID each: the table's XID age grows
            conn.execute("SELECT txid_current()")
    wait_for(su_dsn, "SELECT n_dead_tup = 5000 FROM pg_stat_user_tables WHERE relname = 'stale'")
    age_sql = "SELECT age(relfrozenxid) FROM pg_class WHERE relname = 'stale'"

    low = sql(su_dsn, age_sql)
    text = await scrape(mon_dsn, tmp_path, {"tables", "autovacuum"})
    high = sql(su_dsn, age_sql)

    table = {"schema": "public", "table": "stale"}
    assert value(text, "wasp_pg_table_dead_tuples", **table) == 5000
    # 100 + 0.1 x 10,000 analysed rows, from the table's own settings
    assert value(text, "wasp_pg_table_autovacuum_threshold_tuples", **table) == 1100
    xid_age = value(text, "wasp_pg_table_xid_age", **table)
    assert xid_age is not None and 50 <= low <= xid_age <= high
    assert value(text, "wasp_pg_autovacuum_enabled") == 1
    assert value(text, "wasp_pg_autovacuum_max_workers") == 3

    # the older of the table and its TOAST table counts, whichever of the two it is
    toast = sql(su_dsn, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'stale'")
    ages = ("SELECT age(c.relfrozenxid) - age(t.relfrozenxid), greatest(age(c.relfrozenxid),"
            " age(t.relfrozenxid)) FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid"
            " WHERE c.relname = 'stale'")
    for freeze, older in ((f"VACUUM (FREEZE) {toast}", "table"),
                          ("VACUUM (FREEZE, PROCESS_TOAST false) stale", "toast")):
        sql(su_dsn, freeze)
        for _ in range(20):
            sql(su_dsn, "SELECT txid_current()")
        with psycopg.connect(su_dsn, autocommit=True) as conn:
            diff, low = conn.execute(ages).fetchone()  # type: ignore[misc]
        assert (diff > 0) == (older == "table"), (older, diff)
        text = await scrape(mon_dsn, tmp_path, {"tables"})
        assert low <= value(text, "wasp_pg_table_xid_age", **table) <= sql(
            su_dsn, ages.replace("age(c.relfrozenxid) - age(t.relfrozenxid), ", "")), older

    # a worker held back by its cost delay stays busy long enough to be seen
    with psycopg.connect(su_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE crawl (id int, v text) WITH (autovacuum_vacuum_threshold = 0,"
                     " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                     " autovacuum_vacuum_cost_limit = 1)")
        conn.execute("INSERT INTO crawl SELECT g, repeat('c', 100) FROM generate_series(1, 20000) g")
        conn.execute("DELETE FROM crawl")
    wait_for(su_dsn, "SELECT count(*) > 0 FROM pg_stat_activity"
             " WHERE backend_type = 'autovacuum worker' AND query LIKE '%crawl%'")
    text = await scrape(mon_dsn, tmp_path, {"autovacuum"})
    assert num(text, "wasp_pg_autovacuum_workers") >= 1
    sql(su_dsn, "DROP TABLE crawl")  # autovacuum yields its lock to the DROP
    wait_for(su_dsn, "SELECT count(*) = 0 FROM pg_stat_activity"
             " WHERE backend_type = 'autovacuum worker' AND query LIKE '%crawl%'")
    # with a naptime of 1s another table's short worker may be seen now and then: it ends
    deadline = time.monotonic() + 30
    while (n := value(await scrape(mon_dsn, tmp_path, {"autovacuum"}),
                      "wasp_pg_autovacuum_workers")) != 0:
        assert time.monotonic() < deadline, f"{n} autovacuum workers for 30s"
        await asyncio.sleep(0.5)
