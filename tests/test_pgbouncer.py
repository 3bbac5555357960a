"""The pgbouncer pack against a real PgBouncer (the Debian package) in front of the test cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import names, num, value
from wasp.companions.pgcluster import (
    LocalCluster,
    chown_to_postgres,
    free_port,
    port_in_use,
    run_as_postgres,
)
from wasp.config.schema import ConfigError, parse_config
from wasp.exporter.engine import Engine
from wasp.model import check_metric_name
from wasp.packs import make_engine
from wasp.packs.pgbouncer import METRICS, families_from_show

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
STATS_USER = "wasp_stats"  # a console-only user: stats_users may run SHOW, nothing else
POOL = "pooltest"
POOL_SIZE = 2



@dataclass
class Bouncer:
    """A PgBouncer process on a loopback port, run as the postgres user (it refuses root)."""

    workdir: Path
    port: int
    upstream: LocalCluster
    max_client_conn: int = 100

    @property
    def pidfile(self) -> Path:
        """Where the daemon writes its pid."""
        return self.workdir / "pgbouncer.pid"

    def dsn(self, dbname: str = "pgbouncer", user: str = STATS_USER) -> str:
        """A DSN through PgBouncer (the admin console by default)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} connect_timeout=5"

    def start(self) -> None:
        """Write the configuration, start the daemon and wait until it listens."""
        self.workdir.mkdir(exist_ok=True)
        (self.workdir / "userlist.txt").write_text(f'"postgres" ""\n"{STATS_USER}" ""\n')
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{POOL} = host=127.0.0.1 port={self.upstream.port} dbname=postgres "
            f"pool_size={POOL_SIZE} reserve_pool=0\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.workdir}/userlist.txt\n"
            "admin_users = postgres\n"
            f"stats_users = {STATS_USER}\n"
            "pool_mode = transaction\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "stats_period = 1\n"
            f"logfile = {self.workdir}/pgbouncer.log\n"
            f"pidfile = {self.pidfile}\n"
        )
        chown_to_postgres(self.workdir)
        run_as_postgres([PGBOUNCER, "-d", self.workdir / "pgbouncer.ini"], timeout=30)
        deadline = time.monotonic() + 10
        while not port_in_use(self.port):
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the daemon we started (by its pid) and wait until the port is free."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self) -> str:
        """The end of PgBouncer's log, for failure messages."""
        with contextlib.suppress(OSError):
            return (self.workdir / "pgbouncer.log").read_text()[-2000:]
        return ""


@pytest.fixture(scope="module")
def bouncer(pg: LocalCluster, cluster_base: Path) -> Iterator[Bouncer]:
    """One PgBouncer for the module, in front of the session cluster."""
    b = Bouncer(cluster_base / f"pgbouncer-{uuid.uuid4().hex[:8]}", free_port(), pg)
    b.start()
    yield b
    b.stop()


def bouncer_config(dsn: str, tmp: Path, **pack: Any) -> dict[str, Any]:
    """A configuration with one pgbouncer target named `bouncer`."""
    data: dict[str, Any] = {
        "server": {"status_dir": str(tmp / "status")},
        "targets": {"bouncer": {"type": "pgbouncer", "dsn": dsn}},
    }
    if pack:
        data["packs"] = {"pgbouncer": pack}
    return data


async def scrape(engine: Engine) -> str:
    """One round of every collector, as text."""
    return (await engine.run_once()).text.decode()


def show(dsn: str, command: str) -> list[dict[str, Any]]:
    """Rows of one SHOW command on the console."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(command)
        cols = [c.name for c in cur.description or ()]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
async def test_waiting_clients_show_with_max_wait(bouncer: Bouncer, tmp_path: Path) -> None:
    """Clients queued behind a full pool are waiting, with a max wait above zero."""
    holders = [await psycopg.AsyncConnection.connect(bouncer.dsn(POOL, "postgres"))
               for _ in range(POOL_SIZE)]
    waiters = [await psycopg.AsyncConnection.connect(bouncer.dsn(POOL, "postgres"), autocommit=True)
               for _ in range(2)]
    engine = make_engine(parse_config(bouncer_config(bouncer.dsn(), tmp_path)))
    try:
        for h in holders:  # each holds a server for its open transaction
            await h.execute("SELECT 1")
        waiting = [asyncio.create_task(w.execute("SELECT 1")) for w in waiters]
        deadline = time.monotonic() + 10
        while not any(r["database"] == POOL and r["cl_waiting"] == 2
                      for r in show(bouncer.dsn(), "SHOW POOLS")):
            assert time.monotonic() < deadline, show(bouncer.dsn(), "SHOW POOLS")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)

        text = await scrape(engine)

        pool = {"database": POOL, "user": "postgres"}
        assert value(text, "wasp_target_up", target="bouncer") == 1
        assert value(text, "wasp_pgbouncer_pool_clients", state="waiting", **pool) == 2
        assert value(text, "wasp_pgbouncer_pool_clients", state="active", **pool) == POOL_SIZE
        assert num(text, "wasp_pgbouncer_pool_client_max_wait_seconds", **pool) >= 0.3
        assert value(text, "wasp_pgbouncer_pool_servers", state="active", **pool) == POOL_SIZE
        assert value(text, "wasp_pgbouncer_pool_size", **pool) == POOL_SIZE
        assert value(text, "wasp_pgbouncer_pool_usage_ratio", **pool) == 1.0
        assert value(text, "wasp_pgbouncer_database_pool_size", database=POOL) == POOL_SIZE

        for h in holders:
            await h.commit()
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
        deadline = time.monotonic() + 10
        while not any(r["database"] == POOL and r["total_xact_count"] >= 4
                      for r in show(bouncer.dsn(), "SHOW STATS")):
            assert time.monotonic() < deadline, show(bouncer.dsn(), "SHOW STATS")
            await asyncio.sleep(0.1)

        text = await scrape(engine)  # the same console connection, reused

        assert value(text, "wasp_pgbouncer_pool_clients", state="waiting", **pool) == 0
        assert value(text, "wasp_pgbouncer_pool_client_max_wait_seconds", **pool) == 0
        assert num(text, "wasp_pgbouncer_transactions_total", database=POOL) >= 4
        assert num(text, "wasp_pgbouncer_queries_total", database=POOL) >= 4
        assert num(text, "wasp_pgbouncer_received_bytes_total", database=POOL) > 0
        assert num(text, "wasp_pgbouncer_sent_bytes_total", database=POOL) > 0
        assert num(text, "wasp_pgbouncer_client_wait_time_seconds_total", database=POOL) > 0
        # every metric of the pack, and a clean lint
        assert not {m.name for m in METRICS} - names(text)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check
    finally:
        await engine.stop()
        for c in holders + waiters:
            await c.close()


async def test_clients_against_max_client_conn_and_a_paused_database(
        pg: LocalCluster, cluster_base: Path, tmp_path: Path) -> None:
    """Clients count against max_client_conn (the next one is refused); PAUSE shows until RESUME."""
    b = Bouncer(cluster_base / f"pgbouncer-{uuid.uuid4().hex[:8]}", free_port(), pg,
                max_client_conn=6)
    b.start()
    engine = make_engine(parse_config(bouncer_config(b.dsn(), tmp_path)))
    clients: list[psycopg.AsyncConnection[Any]] = []
    try:
        text = await scrape(engine)  # the exporter's console connection is a client too
        assert value(text, "wasp_pgbouncer_max_client_connections") == 6
        assert value(text, "wasp_pgbouncer_list_items", list="used_clients") == 1
        for _ in range(4):
            clients.append(await psycopg.AsyncConnection.connect(b.dsn(POOL, "postgres"),
                                                                 autocommit=True))
        text = await scrape(engine)
        assert value(text, "wasp_pgbouncer_list_items", list="used_clients") == 5
        assert value(text, "wasp_pgbouncer_database_paused", database=POOL) == 0
        admin = await psycopg.AsyncConnection.connect(b.dsn("pgbouncer", "postgres"),
                                                      autocommit=True)
        clients.append(admin)  # the sixth and last client max_client_conn allows
        with pytest.raises(psycopg.OperationalError, match="max_client_conn"):
            await psycopg.AsyncConnection.connect(b.dsn(POOL, "postgres"))

        await admin.execute(f"PAUSE {POOL}")
        text = await scrape(engine)
        assert value(text, "wasp_pgbouncer_database_paused", database=POOL) == 1
        assert value(text, "wasp_pgbouncer_database_paused", database="pgbouncer") == 0
        await admin.execute(f"RESUME {POOL}")
        text = await scrape(engine)
        assert value(text, "wasp_pgbouncer_database_paused", database=POOL) == 0
    finally:
        await engine.stop()
        for c in clients:
            await c.close()
        b.stop()


async def test_down_then_back_reconnects(pg: LocalCluster, cluster_base: Path,
                                         tmp_path: Path) -> None:
    """A PgBouncer that goes away is up 0 with a connection error; when back, up 1 again."""
    b = Bouncer(cluster_base / f"pgbouncer-{uuid.uuid4().hex[:8]}", free_port(), pg)
    b.start()
    engine = make_engine(parse_config(bouncer_config(b.dsn(), tmp_path)))
    try:
        assert value(await scrape(engine), "wasp_target_up", target="bouncer") == 1
        b.stop()
        text = await scrape(engine)
        assert value(text, "wasp_target_up", target="bouncer") == 0
        assert value(text, "wasp_query_errors_total", query="pgbouncer", reason="connection") == 1
        # the last good families stay until stale_after, they are not dropped at once
        assert "wasp_pgbouncer_list_items" in names(text)
        b.start()
        text = await scrape(engine)
        assert value(text, "wasp_target_up", target="bouncer") == 1
        assert value(text, "wasp_pgbouncer_version_info", target="bouncer") == 1
    finally:
        await engine.stop()
        b.stop()


async def test_one_console_connection_serves_many_rounds(bouncer: Bouncer, tmp_path: Path) -> None:
    """Round after round on the kept connection: nothing is prepared (the console refuses it)."""
    engine = make_engine(parse_config(bouncer_config(bouncer.dsn(), tmp_path)))
    try:
        for _ in range(8):
            text = await scrape(engine)
            assert value(text, "wasp_target_up", target="bouncer") == 1
        assert value(text, "wasp_query_errors_total", query="pgbouncer", reason="connection") == 0
    finally:
        await engine.stop()


async def test_refused_role_is_a_connection_failure(bouncer: Bouncer, tmp_path: Path) -> None:
    """A user PgBouncer does not allow on its console leaves the target down, not crashed."""
    engine = make_engine(parse_config(bouncer_config(bouncer.dsn(user="nobody"), tmp_path)))
    try:
        text = await scrape(engine)
    finally:
        await engine.stop()
    assert value(text, "wasp_target_up", target="bouncer") == 0
    assert value(text, "wasp_query_errors_total", query="pgbouncer", reason="connection") == 1


def test_options_are_validated(tmp_path: Path) -> None:
    """packs.pgbouncer.options: known keys with durations; errors name the key."""
    dsn = "host=127.0.0.1 port=1 dbname=pgbouncer"
    engine = make_engine(parse_config(bouncer_config(dsn, tmp_path, options={"interval": "30s"})))
    assert [st.collector.interval for st in engine.states.values()] == [30.0]
    with pytest.raises(ConfigError, match=r"packs\.pgbouncer\.options\.period"):
        make_engine(parse_config(bouncer_config(dsn, tmp_path, options={"period": 5})))
    with pytest.raises(ConfigError, match="must not exceed the interval"):
        make_engine(parse_config(bouncer_config(dsn, tmp_path, options={"interval": 5, "timeout": 9})))


def test_columns_of_other_versions() -> None:
    """Missing columns are skipped and a renamed one (reserve_pool_size, 1.24) is read."""
    fams = families_from_show({
        "SHOW DATABASES": [{"name": "app", "pool_size": 20, "reserve_pool_size": 5,
                            "max_connections": 0, "current_connections": 3, "paused": 0,
                            "disabled": 0, "server_lifetime": 3600}],
        "SHOW POOLS": [{"database": "app", "user": "booking", "cl_active": 7, "cl_waiting": 1,
                        "sv_active": 20, "sv_idle": 0, "maxwait": 2, "maxwait_us": 500000}],
        "SHOW VERSION": [{"version": "PgBouncer 1.24.1"}],
    })
    got = {f.name: dict(f.samples) for f in fams}
    assert got["wasp_pgbouncer_database_reserve_pool_size"] == {("app",): 5.0}
    assert got["wasp_pgbouncer_pool_client_max_wait_seconds"] == {("app", "booking"): 2.5}
    assert got["wasp_pgbouncer_pool_usage_ratio"] == {("app", "booking"): 1.0}
    assert set(got["wasp_pgbouncer_pool_clients"]) == {("app", "booking", "active"),
                                                       ("app", "booking", "waiting")}
    assert got["wasp_pgbouncer_version_info"] == {("1.24.1",): 1.0}
    assert "wasp_pgbouncer_transactions_total" not in got


def test_metric_names_follow_conventions() -> None:
    """Every metric of the pack: prefix, base units, _total only on counters."""
    for m in METRICS:
        assert m.name.startswith("wasp_pgbouncer_")
        assert check_metric_name(m.name, m.type) is None, m.name


def test_every_metric_is_documented() -> None:
    """docs/packs.md lists each metric of the pack."""
    doc = (Path(__file__).parent.parent / "docs" / "packs.md").read_text()
    assert not {m.name for m in METRICS if f"`{m.name}`" not in doc}
