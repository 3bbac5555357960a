"""The built-in replication pack: its definitions, and its SQL on a real primary and standby.

Every query runs through the real SqlCollector as a role that has nothing but
pg_monitor, in a read-only session, and must return exactly the declared
columns, with text labels. Scenario behaviour (lag, slots, failover) lives in
test_replica.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.companions.replica import cli as replica
from wasp.config.schema import YAML_PACKS, load_pack, parse_config
from wasp.exporter.db import TargetDB
from wasp.exporter.sql import families_from_rows

PREFIXES = ("wasp_pg_replication_", "wasp_pg_standby_", "wasp_pg_heartbeat_", "wasp_pg_timeline_")


def test_pack_definitions() -> None:
    queries = load_pack("replication")
    assert {q.name for q in queries} >= {"replication_standby", "replication_standbys",
                                         "replication_slot", "replication_timeline",
                                         "standby_wal_receiver", "heartbeat"}
    metrics: dict[str, tuple[str, ...]] = {}
    for q in queries:
        assert q.role in ("any", "primary", "standby")
        for v in q.values:
            assert v.metric.startswith(PREFIXES), v.metric
            assert v.metric != "wasp_pg_in_recovery"  # the postgres pack's
            assert v.type == "gauge"
            labels = tuple(sorted((*q.labels, *(k for k, _ in v.const_labels))))
            assert metrics.setdefault(v.metric, labels) == labels
    roles = {q.name: q.role for q in queries}
    assert roles["replication_standby"] == roles["replication_standbys"] == "primary"
    assert roles["standby_wal_receiver"] == "standby"
    assert roles["replication_slot"] == roles["replication_timeline"] == "any"
    heartbeat = next(q for q in queries if q.name == "heartbeat")
    assert heartbeat.requires.tables == ("wasp.heartbeat",)


def test_pack_lives_with_the_other_packs() -> None:
    """One metric name, one type and label set across every built-in pack (config checks it)."""
    cfg = parse_config({"targets": {"db": {"dsn": "host=127.0.0.1", "packs": list(YAML_PACKS)}}})
    assert {q.pack for q in cfg.queries} >= {"replication"}


@pytest.fixture(scope="module")
def pair(cluster_base: Path) -> Iterator[tuple[LocalCluster, LocalCluster]]:
    """A primary with the heartbeat installed and one replica built by `wasp replica setup`."""
    base = cluster_base / "pack"
    base.mkdir()
    base.chmod(0o755)
    p = LocalCluster(datadir=base / "p", port=free_port(),
                     settings={"max_slot_wal_keep_size": "1GB"})
    p.init()
    p.start()
    r = LocalCluster(datadir=base / "r", port=free_port())
    try:
        with psycopg.connect(p.dsn(), autocommit=True) as conn:
            conn.execute("CREATE ROLE mon LOGIN IN ROLE pg_monitor")
        ap = argparse.ArgumentParser()
        ap.add_argument("--config")
        replica.add_arguments(ap)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WASP_REPLICATION_PASSWORD", "pack-test")
            for argv in (["heartbeat", "--install", "--primary-dsn", p.dsn()],
                         ["setup", "--name", "r", "--datadir", str(r.datadir), "--port",
                          str(r.port), "--primary-dsn", p.dsn(), "--status-dir",
                          str(base / "status")],
                         ["heartbeat", "--dsn", p.dsn(), "--count", "1"]):
                assert replica.main(ap.parse_args(argv)) == 0
        yield p, r
    finally:
        r.destroy()
        p.destroy()


@pytest.mark.parametrize("side", ["primary", "standby"])
async def test_every_query_runs_under_pg_monitor(pair: tuple[LocalCluster, LocalCluster],
                                                 side: str) -> None:
    p, r = pair
    node = p if side == "primary" else r
    if side == "standby":
        deadline = time.monotonic() + 20
        while True:
            with psycopg.connect(r.dsn(), autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('wasp.heartbeat') IS NOT NULL AND EXISTS"
                                " (SELECT FROM wasp.heartbeat WHERE seq > 0)").fetchone() == (
                                    True,):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)
    db = TargetDB(side, node.dsn(user="mon"))
    await db.open()
    try:
        info = await db.server_info()
        assert info.in_recovery == (side == "standby") and not info.is_superuser
        ran = set()
        for q in load_pack("replication"):
            if q.role not in ("any", side):
                continue
            result = await db.fetch(q.sql, timeout=q.timeout)
            declared = {*q.labels, *(v.column for v in q.values)}
            assert set(result.columns) == declared, q.name
            for row in result.rows:
                for lab in q.labels:
                    assert isinstance(row[result.columns.index(lab)], str), (q.name, lab)
            fams = families_from_rows(q, result)
            assert fams, q.name
            if q.name == "replication_slot_limit":  # the setting, in bytes, on both sides
                assert fams[0].samples[0][1] == 1024 ** 3
            ran.add(q.name)
    finally:
        await db.close()
    expected = {"replication_slot", "replication_slot_limit", "replication_timeline",
                "heartbeat"} | (
        {"replication_standby", "replication_standbys"} if side == "primary"
        else {"standby_wal_receiver", "standby_upstream", "standby_replay_paused"})
    assert ran == expected
