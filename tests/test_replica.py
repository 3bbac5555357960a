"""`wasp replica` and the replication pack on real clusters: a primary and two replicas.

One topology is shared by the observation tests (built by `wasp replica setup`);
each of them leaves it as it found it, so they pass alone and in any order. The
failover cannot be undone: it is one scenario on a topology of its own. Metrics
are read through the real engine (Engine.run_once) as a pg_monitor-only role.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import num, samples, value
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.companions.replica import cli as replica
from wasp.companions.replica.heartbeat import run as heartbeat_run
from wasp.config.schema import parse_config
from wasp.packs import make_engine

PASSWORD = "rep:li\\cation pw"  # ':' and '\' test the password file escaping
MONITOR = "wasp_monitor"


@dataclass
class Topology:
    base: Path
    status_dir: Path
    nodes: dict[str, LocalCluster] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def p0(self) -> LocalCluster:
        return self.nodes["p0"]


def cli(*argv: str, capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    """Run `wasp replica ARGV` in process; returns (exit code, stdout, stderr)."""
    ap = argparse.ArgumentParser(prog="wasp replica")
    ap.add_argument("--config", default=None)
    replica.add_arguments(ap)
    args = ap.parse_args(list(argv))
    rc = replica.main(args)
    out, err = ("", "")
    if capsys is not None:
        out, err = capsys.readouterr()
    return rc, out, err


def psql(c: LocalCluster, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


def make_primary(base: Path, name: str, **settings: str) -> LocalCluster:
    """A cluster whose pg_hba lets the superuser in but has no replication rule at all."""
    c = LocalCluster(datadir=base / name, port=free_port(), settings=settings)
    c.init()
    (c.datadir / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n")
    c.start()
    return c


@contextlib.contextmanager
def build_topology(base: Path) -> Iterator[Topology]:
    """A primary p0 and two replicas r1, r2 made by `wasp replica setup`, all destroyed on exit."""
    base.mkdir()
    base.chmod(0o755)
    t = Topology(base=base, status_dir=base / "status")
    p0 = make_primary(base, "p0", wal_log_hints="on", wal_keep_size="0")
    t.nodes["p0"] = p0
    try:
        psql(p0, f"CREATE ROLE {MONITOR} LOGIN IN ROLE pg_monitor")
        psql(p0, "CREATE TABLE load (id bigserial primary key, payload text)")
        t0 = time.monotonic()
        for name in ("r1", "r2"):
            port = free_port()
            rc, _, err = cli("setup", "--name", name, "--datadir", str(base / name), "--port",
                             str(port), "--primary-dsn", p0.dsn(), "--status-dir",
                             str(t.status_dir))
            assert rc == 0, err
            t.nodes[name] = LocalCluster(datadir=base / name, port=port)
        t.timings["setup_two_replicas"] = time.monotonic() - t0
        yield t
    finally:
        for c in t.nodes.values():
            c.destroy()


@pytest.fixture(scope="module")
def topo(cluster_base: Path, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Topology]:
    """The shared topology of the observation tests; each test leaves it as it found it."""
    monkeypatch_module.setenv("WASP_REPLICATION_PASSWORD", PASSWORD)
    with build_topology(cluster_base / "replica") as t:
        yield t


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


async def scrape(t: Topology, *names: str) -> str:
    """One engine round over the named nodes (all by default), as a pg_monitor-only role."""
    targets = {n: {"dsn": c.dsn(user=MONITOR), "packs": ["replication", "replica"]}
               for n, c in t.nodes.items() if not names or n in names}
    engine = make_engine(parse_config({"server": {"status_dir": str(t.status_dir)},
                                  "targets": targets}))
    try:
        return (await engine.run_once()).text.decode()
    finally:
        await engine.stop()


def no_query_errors(text: str) -> None:
    bad = [(lab, v) for lab, v in samples(text, "wasp_query_errors_total") if v]
    assert not bad, bad


@contextlib.contextmanager
def heartbeat(t: Topology, dsn: str, interval: float = 0.5) -> Iterator[threading.Event]:
    stop = threading.Event()
    th = threading.Thread(target=heartbeat_run, args=(dsn,),
                          kwargs={"interval": interval, "stop": stop}, daemon=True)
    th.start()
    try:
        yield stop
    finally:
        stop.set()
        th.join(10)


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psycopg.Error):
            v = check()
            if v:
                return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# setup and the picture right after it
# ---------------------------------------------------------------------------
async def test_setup_builds_two_streaming_replicas(topo: Topology) -> None:
    assert topo.timings["setup_two_replicas"] < 60
    text = await scrape(topo)
    assert value(text, "wasp_pg_replication_connected_standbys", target="p0") == 2
    assert value(text, "wasp_pg_replication_streaming_standbys", target="p0") == 2
    for r in ("r1", "r2"):
        lab = {"target": "p0", "application_name": r, "slot_name": r, "client_addr": "127.0.0.1"}
        assert value(text, "wasp_pg_replication_standby_state", state="streaming", **lab) == 1
        assert value(text, "wasp_pg_replication_standby_state", state="catchup", **lab) == 0
        assert value(text, "wasp_pg_replication_standby_sync_state", sync_state="async", **lab) == 1
        assert value(text, "wasp_pg_replication_slot_active", target="p0", slot_name=r) == 1
        assert value(text, "wasp_pg_replication_slot_wal_status", target="p0", slot_name=r,
                     wal_status="reserved") == 1
        assert value(text, "wasp_pg_standby_wal_receiver_streaming", target=r) == 1
        assert value(text, "wasp_pg_standby_wal_receiver_info", target=r, status="streaming",
                     upstream_port=str(topo.p0.port), slot_name=r) == 1
        assert value(text, "wasp_pg_timeline_id", target=r) == 1
        assert value(text, "wasp_pg_standby_replay_paused", target=r) == 0
        # primary-only queries say nothing on a standby, and the other way round
        assert value(text, "wasp_pg_replication_connected_standbys", target=r) is None
    assert value(text, "wasp_pg_standby_replay_delay_seconds", target="p0") is None
    assert value(text, "wasp_pg_timeline_id", target="p0") == 1
    assert value(text, "wasp_replica_action_last_success", action="setup", replica="r1") == 1
    no_query_errors(text)
    # the password never lands in the configuration, only in the 0600 password file
    r1 = topo.nodes["r1"].datadir
    assert PASSWORD not in (r1 / "postgresql.auto.conf").read_text()
    assert oct((r1 / "wasp_replication.pgpass").stat().st_mode & 0o777) == "0o600"
    hba = (topo.p0.datadir / "pg_hba.conf").read_text()
    assert hba.count("wasp_replication") == 1
    # the primary's socket lock, copied by pg_basebackup, is gone: naming a pid that may still
    # be taken (a zombie in a container), it would keep the replica from starting later
    for r in ("r1", "r2"):
        node = topo.nodes[r]
        assert sorted(p.name for p in node.datadir.glob(".s.PGSQL.*.lock")) == [
            f".s.PGSQL.{node.port}.lock"]
    assert hba.splitlines()[0].startswith("host\treplication\twasp_replication\t127.0.0.1/32")


def test_status_table_and_json(topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli("status", "--primary-dsn", topo.p0.dsn(), "--status-dir",
                       str(topo.status_dir), capsys=capsys)
    assert rc == 0, err
    assert "standbys of primary (2 connected)" in out
    first_table = out.split("\n\n")[0]
    lines = {ln.split()[0]: ln.split() for ln in first_table.splitlines()}
    assert lines["r1"][2:6] == ["standby", "1", f"127.0.0.1:{topo.p0.port}", "streaming"]
    rc, out, _ = cli("status", "--json", "--primary-dsn", topo.p0.dsn(), "--status-dir",
                     str(topo.status_dir), capsys=capsys)
    data = json.loads(out)
    by = {n["name"]: n for n in data["nodes"]}
    assert by["primary"]["role"] == "primary" and by["r2"]["role"] == "standby"
    assert {s["application_name"] for s in by["primary"]["replication_standby"]} == {"r1", "r2"}
    assert {a["action"] for a in data["actions"]} == {"setup"}


# ---------------------------------------------------------------------------
# bad input: a clear error and nothing touched
# ---------------------------------------------------------------------------
def _untouched(topo: Topology, hba_before: str, slots_before: set[str]) -> None:
    assert (topo.p0.datadir / "pg_hba.conf").read_text() == hba_before
    assert {r[0] for r in psql(topo.p0, "SELECT slot_name FROM pg_replication_slots")} == slots_before


def test_setup_refuses_bad_input(topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    hba = (topo.p0.datadir / "pg_hba.conf").read_text()
    slots = {r[0] for r in psql(topo.p0, "SELECT slot_name FROM pg_replication_slots")}
    busy = topo.base / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    common = ("--primary-dsn", topo.p0.dsn(), "--status-dir", str(topo.status_dir))
    rc, _, err = cli("setup", "--name", "r9", "--datadir", str(busy), "--port", str(free_port()),
                     *common, capsys=capsys)
    assert rc == 2 and "is not empty" in err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    rc, _, err = cli("setup", "--name", "r9", "--datadir", str(topo.base / "r9"), "--port",
                     str(topo.p0.port), *common, capsys=capsys)
    assert rc == 2 and "already in use" in err
    assert not (topo.base / "r9").exists()
    rc, _, err = cli("setup", "--name", "R-9", "--datadir", str(topo.base / "r9"), "--port",
                     str(free_port()), *common, capsys=capsys)
    assert rc == 2 and "replica name" in err
    rc, _, err = cli("setup", "--name", "r9", "--datadir", str(topo.base / "r9"), "--port",
                     str(free_port()), "--primary-dsn", topo.p0.dsn() + " password=x",
                     capsys=capsys)
    assert rc == 2 and "must not contain a password" in err
    rc, _, err = cli("setup", "--name", "r9", "--datadir", str(topo.base / "r9"), "--port",
                     str(free_port()), "--password-env", "WASP_NO_SUCH_VARIABLE", *common,
                     capsys=capsys)
    assert rc == 2 and "WASP_NO_SUCH_VARIABLE" in err
    _untouched(topo, hba, slots)
    assert not (topo.base / "r9").exists()
    assert not any(p.name.startswith("setup-r9") for p in (topo.status_dir / "replica").iterdir())


def test_setup_refuses_primary_without_wal_level_replica(
        topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    bare = make_primary(topo.base, "minimal", wal_level="minimal", max_wal_senders="0")
    try:
        hba = (bare.datadir / "pg_hba.conf").read_text()
        rc, _, err = cli("setup", "--name", "r9", "--datadir", str(topo.base / "r9"), "--port",
                         str(free_port()), "--primary-dsn", bare.dsn(), "--status-dir",
                         str(topo.status_dir), capsys=capsys)
        assert rc == 1
        assert "wal_level is 'minimal'" in err and "restart" in err and "max_wal_senders" in err
        assert (bare.datadir / "pg_hba.conf").read_text() == hba
        assert psql(bare, "SELECT 1 FROM pg_roles WHERE rolname = 'wasp_replication'") == []
        assert psql(bare, "SELECT 1 FROM pg_replication_slots") == []
        assert not (topo.base / "r9").exists()
    finally:
        bare.destroy()


# ---------------------------------------------------------------------------
# lag under load, a stopped replica, a broken link
# ---------------------------------------------------------------------------
async def test_lag_moves_under_write_load_and_returns_to_zero(topo: Topology) -> None:
    r2 = topo.nodes["r2"]
    psql(topo.p0, "INSERT INTO load (payload) VALUES ('before the pause')")
    wait_for("r2 to replay a commit", lambda: psql(
        r2, "SELECT 1 FROM load WHERE payload = 'before the pause'"))
    psql(r2, "SELECT pg_wal_replay_pause()")
    stop = threading.Event()
    written = [0]

    def load() -> None:
        with psycopg.connect(topo.p0.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO load (payload) SELECT repeat('x', 200)"
                             " FROM generate_series(1, 2000)")
                written[0] += 1

    th = threading.Thread(target=load, daemon=True)
    th.start()
    seen: dict[str, float] = {}
    try:
        for _ in range(3):
            time.sleep(0.7)
            text = await scrape(topo)
            for metric in ("sent_lag_bytes", "write_lag_bytes", "flush_lag_bytes",
                           "replay_lag_bytes", "write_lag_seconds", "replay_lag_seconds"):
                for lab, v in samples(text, f"wasp_pg_replication_standby_{metric}"):
                    key = f"{lab['application_name']}:{metric}"
                    seen[key] = max(seen.get(key, 0.0), v)
            gap = value(text, "wasp_pg_standby_replay_gap_bytes", target="r2")
            seen["r2:gap"] = max(seen.get("r2:gap", 0.0), gap or 0.0)
            assert value(text, "wasp_pg_standby_replay_paused", target="r2") == 1
            assert num(text, "wasp_pg_standby_replay_delay_seconds", target="r2") > 0
    finally:
        stop.set()
        th.join(30)
        psql(r2, "SELECT pg_wal_replay_resume()")
    assert written[0] > 0
    # replay paused on r2: its replay lag and receive/replay gap grew with the load
    assert seen["r2:replay_lag_bytes"] > 100_000
    assert seen["r2:gap"] > 100_000
    # r1 kept up, yet PostgreSQL measured a replay lag while WAL kept coming
    assert seen["r1:write_lag_seconds"] > 0 or seen["r1:replay_lag_seconds"] > 0

    async def caught_up() -> bool:
        text = await scrape(topo)
        return all(
            value(text, f"wasp_pg_replication_standby_{m}_lag_bytes", application_name=r) == 0
            for r in ("r1", "r2") for m in ("sent", "flush", "replay")
        ) and all(value(text, "wasp_pg_standby_replay_gap_bytes", target=r) == 0
                  and value(text, "wasp_pg_standby_replay_delay_seconds", target=r) == 0
                  for r in ("r1", "r2"))

    deadline = time.monotonic() + 30
    while not await caught_up():
        assert time.monotonic() < deadline, "lag did not return to zero"
        time.sleep(0.5)


async def test_stopped_replica_keeps_its_slot_and_catches_up(topo: Topology) -> None:
    r1 = topo.nodes["r1"]
    r1.stop()
    wait_for("r1 to disconnect", lambda: not psql(
        topo.p0, "SELECT 1 FROM pg_stat_replication WHERE application_name = 'r1'"))
    for _ in range(3):
        psql(topo.p0, "INSERT INTO load (payload) SELECT repeat('y', 200) FROM generate_series(1, 5000)")
        psql(topo.p0, "SELECT pg_switch_wal()")
    psql(topo.p0, "CHECKPOINT")
    text = await scrape(topo, "p0")
    assert value(text, "wasp_pg_replication_slot_active", slot_name="r1") == 0
    assert value(text, "wasp_pg_replication_slot_active", slot_name="r2") == 1
    assert num(text, "wasp_pg_replication_slot_wal_retained_bytes", slot_name="r1") > 3 * 2**20
    # max_slot_wal_keep_size = -1 (default): the WAL is reserved, whatever the size
    assert value(text, "wasp_pg_replication_slot_wal_status", slot_name="r1",
                 wal_status="reserved") == 1
    assert value(text, "wasp_pg_replication_slot_safe_wal_size_bytes", slot_name="r1") is None
    assert value(text, "wasp_pg_replication_connected_standbys") == 1
    assert value(text, "wasp_pg_replication_standby_state", application_name="r1",
                 state="streaming") is None
    r1.start()
    wait_for("r1 to catch up", lambda: psql(
        topo.p0, "SELECT 1 FROM pg_stat_replication WHERE application_name = 'r1'"
                 " AND state = 'streaming' AND replay_lsn = pg_current_wal_lsn()"))
    text = await scrape(topo, "p0", "r1")
    assert value(text, "wasp_pg_replication_connected_standbys") == 2
    assert value(text, "wasp_pg_replication_slot_active", slot_name="r1") == 1
    assert num(text, "wasp_pg_replication_slot_wal_retained_bytes", slot_name="r1") < 2**20
    assert value(text, "wasp_pg_standby_replay_gap_bytes", target="r1") == 0


async def test_heartbeat_reveals_a_broken_link_that_lsn_lag_hides(topo: Topology) -> None:
    rc, _, err = cli("heartbeat", "--install", "--primary-dsn", topo.p0.dsn(),
                     "--password-env", "WASP_REPLICATION_PASSWORD")
    assert rc == 0, err
    r2 = topo.nodes["r2"]
    with heartbeat(topo, topo.p0.dsn(user="wasp_heartbeat"), interval=0.5):
        wait_for("a fresh heartbeat on r2", lambda: psql(
            r2, "SELECT 1 FROM wasp.heartbeat WHERE clock_timestamp() - beat_at < '2s'"))
        original = psql(r2, "SHOW primary_conninfo")[0][0]
        dead = free_port()
        broken = original.replace(f"port={topo.p0.port}", f"port={dead}")
        assert broken != original
        psql(r2, f"ALTER SYSTEM SET primary_conninfo = {psycopg.sql.quote(broken)}")
        psql(r2, "SELECT pg_reload_conf()")
        try:
            wait_for("r2's receiver to stop streaming", lambda: not psql(
                r2, "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"))
            time.sleep(4)
            text = await scrape(topo)
            # both processes run, LSN arithmetic says all is well ...
            assert value(text, "wasp_pg_standby_replay_gap_bytes", target="r2") == 0
            assert value(text, "wasp_pg_standby_replay_delay_seconds", target="r2") == 0
            assert value(text, "wasp_pg_standby_wal_receiver_streaming", target="r2") == 0
            # ... the heartbeat does not
            assert num(text, "wasp_pg_heartbeat_age_seconds", target="r2") > 3.5
            assert num(text, "wasp_pg_heartbeat_age_seconds", target="r1") < 2.5
            assert num(text, "wasp_pg_heartbeat_age_seconds", target="p0") < 2.5
            assert value(text, "wasp_pg_replication_connected_standbys", target="p0") == 1
        finally:
            psql(r2, f"ALTER SYSTEM SET primary_conninfo = {psycopg.sql.quote(original)}")
            psql(r2, "SELECT pg_reload_conf()")
        wait_for("r2 to stream again", lambda: psql(
            r2, "SELECT 1 FROM wasp.heartbeat WHERE clock_timestamp() - beat_at < '2s'"))
        text = await scrape(topo, "r2")
        assert num(text, "wasp_pg_heartbeat_age_seconds", target="r2") < 2.5


@pytest.mark.slow
async def test_idle_primary_is_not_lag(topo: Topology) -> None:
    """No writes for a minute: the standbys' replay delay stays 0 all along."""
    delays = []
    end = time.monotonic() + 60
    while time.monotonic() < end:
        text = await scrape(topo, "r1", "r2")
        delays += [value(text, "wasp_pg_standby_replay_delay_seconds", target=r) for r in ("r1", "r2")]
        time.sleep(5)
    assert len(delays) >= 20
    assert set(delays) == {0.0}


# ---------------------------------------------------------------------------
# failover: promote r1, repoint r2, rejoin p0
# ---------------------------------------------------------------------------
def test_promote_refuses_while_the_primary_accepts_writes(
        topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli("promote", "--name", "r2", "--status-dir", str(topo.status_dir),
                     capsys=capsys)
    assert rc == 1 and "still accepts writes" in err
    assert psql(topo.nodes["r2"], "SELECT pg_is_in_recovery()") == [(True,)]
    assert not (topo.status_dir / "replica" / "promote-r2.json").exists()


@pytest.fixture
def failover_topo(cluster_base: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    """A topology of its own for the failover: it ends with r1 as the primary."""
    monkeypatch.setenv("WASP_REPLICATION_PASSWORD", PASSWORD)
    with build_topology(cluster_base / f"failover-{uuid.uuid4().hex[:8]}") as t:
        rc, _, err = cli("heartbeat", "--install", "--primary-dsn", t.p0.dsn(),
                         "--password-env", "WASP_REPLICATION_PASSWORD")
        assert rc == 0, err
        yield t


async def test_failover_promote_repoint_and_rejoin(
        failover_topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole failover, in order: promote r1, repoint r2, rewind p0, then rebuild p0."""
    topo = failover_topo
    p0, r1 = topo.nodes["p0"], topo.nodes["r1"]
    hb_dsn = (f"host=127.0.0.1,127.0.0.1 port={p0.port},{r1.port} user=wasp_heartbeat "
              "dbname=postgres target_session_attrs=read-write connect_timeout=2")
    with heartbeat(topo, hb_dsn, interval=0.5):
        psql(p0, "INSERT INTO load (payload) VALUES ('last write before failover')")
        p0.stop()  # a clean shutdown: the standbys receive everything
        t0 = time.monotonic()
        rc, out, err = cli("promote", "--name", "r1", "--old-primary-datadir", str(p0.datadir),
                           "--status-dir", str(topo.status_dir), capsys=capsys)
        topo.timings["promote"] = time.monotonic() - t0
        assert rc == 0, err
        assert "timeline 1 -> 2" in out
        assert "accepted lag: 0 bytes (pg_controldata (clean shutdown))" in out
        assert "slots created for: r2" in out
        assert f"wasp replica rejoin --name r2 --primary-dsn 'host=127.0.0.1 port={r1.port}" in out
        assert "PgBouncer" in out
        text = await scrape(topo, "r1", "r2")
        assert value(text, "wasp_pg_timeline_id", target="r1") == 2
        assert value(text, "wasp_pg_standby_wal_receiver_streaming", target="r1") is None
        assert value(text, "wasp_pg_replication_connected_standbys", target="r1") == 0
        assert value(text, "wasp_pg_replication_slot_active", target="r1", slot_name="r2") == 0
        assert value(text, "wasp_replica_failover_last_accepted_lag_bytes", replica="r1") == 0
        assert value(text, "wasp_replica_failover_last_timeline_id", replica="r1") == 2
        assert value(text, "wasp_replica_failover_last_forced", replica="r1") == 0
        assert value(text, "wasp_replica_failover_last_timestamp_seconds",
                     replica="r1") == pytest.approx(time.time(), abs=60)

        # the other replica follows the new primary on the new timeline
        common = ("--primary-dsn", r1.dsn(), "--status-dir", str(topo.status_dir))
        rc, out, err = cli("rejoin", "--name", "r2", *common, capsys=capsys)
        assert rc == 0, err
        assert "method: repoint" in out
        # the old primary comes back as a replica (pg_rewind: it has wal_log_hints)
        psql_started = time.monotonic()
        rc, out, err = cli("rejoin", "--name", "p0", "--datadir", str(p0.datadir), "--port",
                           str(p0.port), *common, capsys=capsys)
        topo.timings["rejoin_old_primary"] = time.monotonic() - psql_started
        assert rc == 0, err
        assert "method: rewind" in out
        assert sorted(p.name for p in p0.datadir.glob(".s.PGSQL.*.lock")) == [
            f".s.PGSQL.{p0.port}.lock"]
        wait_for("heartbeats through the new primary", lambda: psql(
            p0, "SELECT 1 FROM wasp.heartbeat WHERE clock_timestamp() - beat_at < '2s'"
                f" AND source LIKE '%:{r1.port}'"))
        text = await scrape(topo)
    no_query_errors(text)
    assert value(text, "wasp_pg_replication_connected_standbys", target="r1") == 2
    for n in ("p0", "r2"):
        assert value(text, "wasp_pg_timeline_id", target=n) == 2
        assert value(text, "wasp_pg_standby_wal_receiver_info", target=n, status="streaming",
                     upstream_port=str(r1.port), slot_name=n) == 1
        assert value(text, "wasp_pg_replication_standby_state", target="r1", application_name=n,
                     state="streaming") == 1
        assert num(text, "wasp_pg_heartbeat_age_seconds", target=n) < 3
    assert psql(p0, "SELECT payload FROM load WHERE payload LIKE 'last write%'") == [
        ("last write before failover",)]
    assert value(text, "wasp_replica_action_last_success", action="rejoin", replica="p0") == 1
    rec = json.loads((topo.status_dir / "replica" / "promote-r1.json").read_text())
    assert rec["accepted_lag_bytes"] == 0 and rec["timeline"] == 2 and rec["ok"] is True
    # the heartbeat had been beating until the old primary stopped: a short window
    assert 0 <= rec["heartbeat_age_seconds"] < 5

    # rejoin without rewind: a stopped standby, rebuilt by a fresh base backup; where it
    # lives comes from the records (no --datadir/--port), its old files stay aside
    p0.stop()
    rc, out, err = cli("rejoin", "--name", "p0", "--no-rewind", "--primary-dsn", r1.dsn(),
                       "--status-dir", str(topo.status_dir), capsys=capsys)
    assert rc == 0, err
    assert "method: basebackup" in out
    aside = [d for d in topo.base.iterdir() if d.name.startswith("p0.before-rejoin-")]
    assert len(aside) == 1 and (aside[0] / "PG_VERSION").exists()
    assert psql(p0, "SELECT pg_is_in_recovery()") == [(True,)]
    assert psql(p0, "SELECT count(*) FROM load WHERE payload LIKE 'last write%'") == [(1,)]
    print(f"\ntimings: {json.dumps({k: round(v, 2) for k, v in topo.timings.items()})}")
