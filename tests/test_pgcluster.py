from __future__ import annotations

import time

import psycopg
import pytest

from wasp.companions.pgcluster import ClusterError, LocalCluster, free_port


def test_shared_cluster_answers(pg: LocalCluster, dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert row is not None and row[0] >= 150000


def test_init_refuses_non_empty_dir(cluster_base) -> None:  # type: ignore[no-untyped-def]
    d = cluster_base / "notempty"
    d.mkdir()
    (d / "x").write_text("x")
    with pytest.raises(ClusterError, match="not empty"):
        LocalCluster(datadir=d, port=free_port()).init()


def test_archive_timeout_holds_right_after_a_start(make_cluster) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL 15 switches no segment for archive_timeout until its checkpointer first wakes,
    # checkpoint_timeout after the start; start() wakes it
    c: LocalCluster = make_cluster(archive_mode="on", archive_command="true", archive_timeout="1s",
                                   checkpoint_timeout="300s")
    c.stop()
    c.start()
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        first = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        deadline = time.monotonic() + 20
        while True:
            conn.execute("INSERT INTO t VALUES (1)")
            now = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            if now != first:
                break
            assert time.monotonic() < deadline, f"no segment switch in 20s after a start: {now}"
            time.sleep(0.2)
