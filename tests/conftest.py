"""Shared fixtures: one real PostgreSQL 15 cluster per session, a database per test."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from wasp.companions.pgcluster import LocalCluster, free_port


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """`wasp` run in-process sets the root logger's handlers to the stderr of that moment,
    which pytest closes after the test; put the handlers and level back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def cluster_base() -> Iterator[Path]:
    """A world-searchable scratch folder for clusters (PostgreSQL runs as postgres when we are root)."""
    base = Path(tempfile.mkdtemp(prefix="wasp-test-", dir=os.environ.get("WASP_TEST_TMP", "/tmp")))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def make_cluster(cluster_base: Path) -> Iterator[object]:
    """Factory: make_cluster(name, **settings) -> a started LocalCluster, destroyed at session end."""
    made: list[LocalCluster] = []

    def factory(name: str | None = None, *, start: bool = True, **settings: str) -> LocalCluster:
        c = LocalCluster(
            datadir=cluster_base / (name or f"pg-{uuid.uuid4().hex[:8]}"),
            port=free_port(),
            settings=dict(settings),
        )
        c.init()
        if start:
            c.start()
        made.append(c)
        return c

    yield factory
    for c in made:
        c.destroy()


@pytest.fixture(scope="session")
def pg(make_cluster) -> LocalCluster:  # type: ignore[no-untyped-def]
    """The shared session cluster (pg_stat_statements loaded)."""
    c: LocalCluster = make_cluster("shared")
    return c


@pytest.fixture
def dbname(pg: LocalCluster) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dsn(pg: LocalCluster, dbname: str) -> str:
    """Superuser DSN of the per-test database."""
    return pg.dsn(dbname)
