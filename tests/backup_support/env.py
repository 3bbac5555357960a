"""A backup test environment: a wasp configuration for one cluster, a tiny app schema, rows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from wasp.companions.backup.cli import load_settings
from wasp.companions.backup.ops import BackupContext
from wasp.companions.pgcluster import LocalCluster
from wasp.config.backup import BackupSettings
from wasp.config.schema import Config, load_config
from wasp.exporter.collector import CollectContext
from wasp.exporter.db import TargetDB
from wasp.model import Family
from wasp.packs.backup import build_collectors

APP_DB = "app"
APP_SCHEMA = """
CREATE TABLE salons (
  id text PRIMARY KEY,
  name text NOT NULL,
  created_at timestamp(3) NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'utc')
);
CREATE TABLE bookings (
  id text PRIMARY KEY,
  salon_id text NOT NULL REFERENCES salons (id),
  batch text NOT NULL,
  created_at timestamp(3) NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'utc')
);
CREATE INDEX bookings_salon_id_created_at_idx ON bookings (salon_id, created_at);
INSERT INTO salons (id, name) SELECT 's' || i, 'Salon ' || i FROM generate_series(1, 20) i;
"""


@dataclass
class BackupEnv:
    """One cluster, its wasp configuration file and the folders pgBackRest uses."""

    cluster: LocalCluster
    root: Path
    config_path: Path
    status_dir: Path
    passphrase_env: str
    passphrase: str
    data: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> BackupSettings:
        """The parsed backup section."""
        return load_settings(str(self.config_path))[0]

    def cfg(self) -> Config:
        """The whole configuration."""
        return load_config(self.config_path)

    def ctx(self) -> BackupContext:
        """A fresh context (secrets are read now)."""
        return BackupContext(self.settings(), self.status_dir)

    def app(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the application database."""
        return psycopg.connect(self.cluster.dsn(APP_DB), autocommit=True)

    def insert(self, batch: str, n: int = 10) -> list[str]:
        """Insert and commit `n` bookings of `batch`; their ids."""
        ids = [f"{batch}-{uuid.uuid4().hex[:10]}" for _ in range(n)]
        with self.app() as conn:
            conn.execute(
                "INSERT INTO bookings (id, salon_id, batch) "
                "SELECT i, 's' || (1 + (random() * 19)::int), %s FROM unnest(%s::text[]) i",
                (batch, ids))
        return ids

    def switch_wal(self) -> None:
        """Close the current WAL segment and wait until it is archived."""
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            seg = row[0]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
                if got and got[0] and got[0][:24] >= seg:
                    return
                time.sleep(0.2)
        raise AssertionError(f"WAL segment {seg} was not archived within 60s")

    def collect(self) -> dict[str, Family]:
        """One round of every backup-pack collector; families by name."""
        return asyncio.run(_collect(self.cfg(), self.status_dir))


async def _collect(cfg: Config, status_dir: Path) -> dict[str, Family]:
    out: dict[str, Family] = {}
    db: TargetDB | None = None
    try:
        for c in build_collectors(cfg):
            if c.target is not None and db is None:
                db = TargetDB(c.target, cfg.target(c.target).dsn())
                await db.open()
            ctx = CollectContext(now=time.time(), status_dir=status_dir,
                                 db=db if c.target is not None else None)
            for fam in await asyncio.wait_for(c.collect(ctx), c.timeout + 10):
                out[fam.name] = fam
    finally:
        if db is not None:
            await db.close()
    return out


def value(fams: dict[str, Family], name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels` (None when absent)."""
    fam = fams.get(name)
    if fam is None:
        return None
    found = [v for lv, v in fam.samples
             if all(dict(zip(fam.labelnames, lv, strict=True)).get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, f"{len(found)} samples of {name} match {labels}"
    return found[0] if found else None


def make_backup_env(cluster: LocalCluster, root: Path, *, repo: dict[str, Any] | None = None,
                    backup: dict[str, Any] | None = None, name: str = "main",
                    app_schema: bool = True) -> BackupEnv:
    """Write a wasp configuration for `cluster` under `root` and create the app database."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    env_name = f"WASP_TEST_PASSPHRASE_{uuid.uuid4().hex[:8].upper()}"
    passphrase = uuid.uuid4().hex + uuid.uuid4().hex
    os.environ[env_name] = passphrase
    section: dict[str, Any] = {
        "stanza": name,
        "target": "main",
        "pg_path": str(cluster.datadir),
        "pg_port": cluster.port,
        "pg_socket_path": str(cluster.socket_dir),
        "config_dir": str(root / "pgbackrest"),
        "lock_path": str(root / "lock"),
        "log_path": str(root / "log"),
        "spool_path": str(root / "spool"),
        "archive_timeout": "60s",
        # fail fast in tests: pgBackRest waits 60s for WAL, retries a job after 15s
        "options": {"archive-timeout": "8", "job-retry": "0", "compress-type": "lz4"},
        "repo": repo or {"type": "posix", "path": str(root / "repo")},
        "encryption": {"passphrase_env": env_name},
        "retention": {"full": 2},
        "drill": {
            "scratch_dir": str(root / "drill"),
            "database": APP_DB,
            "tables": ["salons", "bookings"],
            "expected_rpo": "1h",
            "amcheck_sample": 4,
            "recovery_timeout": "120s",
            "settings": {"shared_buffers": "32MB"},
        },
    }
    section.update(backup or {})
    doc = {
        "server": {"status_dir": str(root / "status")},
        "targets": {"main": {"dsn": cluster.dsn("postgres"), "packs": ["backup"]}},
        "backup": section,
    }
    config_path = root / "wasp.yml"
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {APP_DB}")
    with psycopg.connect(cluster.dsn(APP_DB), autocommit=True) as conn:
        if app_schema and not conn.execute("SELECT to_regclass('bookings')").fetchone()[0]:  # type: ignore[index]
            conn.execute(APP_SCHEMA)
    return BackupEnv(cluster, root, config_path, root / "status", env_name, passphrase)


@contextlib.contextmanager
def env_var(name: str, value: str | None) -> Iterator[None]:
    """Set (or unset with None) an environment variable for a block."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
