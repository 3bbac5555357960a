from __future__ import annotations

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
