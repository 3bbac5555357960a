"""The log pack against a real PostgreSQL 15 writing jsonlog.

Clients come from several loopback addresses through a small TCP relay that
binds its outgoing side to 127.0.0.x (libpq cannot choose a source address),
so the server logs each connection with that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import require_tool
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.log import LogSettings
from wasp.exporter.collector import CollectContext
from wasp.model import Family
from wasp.packs.log.collector import LogCollector
from wasp.packs.log.metrics import BUCKETS

LOG_SETTINGS = {
    "logging_collector": "on",
    "log_destination": "'jsonlog'",
    "log_connections": "on",
    "log_statement": "'ddl'",
    "lc_messages": "'C'",
    "log_min_messages": "'warning'",
    "log_min_duration_sample": "0",
    "log_statement_sample_rate": "0.3",
    "log_min_duration_statement": "100",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
}
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all mallory 127.0.0.9/32 reject
host all all 127.0.0.0/8 scram-sha-256
"""


class Relay:
    """Accepts on 127.0.0.1:<port>, connects to the server from `source`."""

    def __init__(self, target_port: int, source: str) -> None:
        self.target_port = target_port
        self.source = source
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port),
                                                source_address=(self.source, 0))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def logged(make_cluster) -> Iterator[tuple[LocalCluster, Callable[[str], Relay]]]:  # type: ignore[no-untyped-def]
    """A cluster writing jsonlog with the pack's settings, and relays from 127.0.0.x."""
    c: LocalCluster = make_cluster(**LOG_SETTINGS)
    (c.datadir / "pg_hba.conf").write_text(HBA)
    c.reload()
    c.psql("CREATE ROLE alice LOGIN PASSWORD 'a'; CREATE ROLE bob LOGIN PASSWORD 'b'; "
           "CREATE ROLE carol LOGIN PASSWORD 'c'; CREATE ROLE mallory LOGIN PASSWORD 'm'")
    relays: dict[str, Relay] = {}

    def relay(source: str) -> Relay:
        if source not in relays:
            relays[source] = Relay(c.port, source)
        return relays[source]

    yield c, relay
    for r in relays.values():
        r.close()
    c.stop()


def wrong_password(c: LocalCluster, relay: Relay, user: str) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(c.dsn(user=user, password="wrong", port=str(relay.port)),
                        autocommit=True).close()


def make_collector(c: LocalCluster, **kw: object) -> LogCollector:
    s = LogSettings(directory=str(c.datadir / "log"), interval=1.0, top=3,
                    **kw)  # type: ignore[arg-type]
    return LogCollector(s, dsn=c.dsn())


def collect(col: LogCollector, status: Path) -> dict[str, Family]:
    async def go() -> list[Family]:
        try:
            return await col.collect(CollectContext(now=time.time(), status_dir=status))
        finally:
            await col.close()
    return {f.name: f for f in asyncio.run(go())}


def total(fams: dict[str, Family], name: str, **match: str) -> float:
    f = fams.get(name)
    if f is None:
        return 0.0
    idx = {n: i for i, n in enumerate(f.labelnames)}
    return sum(v for lv, v in f.samples if all(lv[idx[k]] == x for k, x in match.items()))


def settle(col: LogCollector, status: Path, name: str, want: float, *, extra_rounds: int = 2,
           deadline: float = 30.0, **match: str) -> dict[str, Family]:
    """Collect until `name` reaches `want` (the syslogger writes a moment later), then a few
    rounds more: the value must hold (nothing counted twice)."""
    end = time.monotonic() + deadline
    while True:
        fams = collect(col, status)
        got = total(fams, name, **match)
        if got >= want or time.monotonic() > end:
            break
        time.sleep(0.2)
    for _ in range(extra_rounds):
        time.sleep(0.3)
        fams = collect(col, status)
    assert total(fams, name, **match) == want
    return fams


def test_security_signals_rotation_truncation_restart(
        logged: tuple[LocalCluster, Callable[[str], Relay]], tmp_path: Path) -> None:
    c, relay = logged
    status = tmp_path / "status"
    col = make_collector(c)
    fams = collect(col, status)  # first start: the history is skipped
    assert total(fams, "wasp_log_auth_failures_total") == 0
    assert total(fams, "wasp_log_pack_ready", reason="ok") == 1

    # a burst: alice from one address, bob from another, carol from six
    def burst(n: int) -> None:
        for _ in range(n):
            wrong_password(c, relay("127.0.0.1"), "alice")
        wrong_password(c, relay("127.0.0.2"), "bob")
        for i in range(3, 9):
            wrong_password(c, relay(f"127.0.0.{i}"), "carol")

    burst(3)
    settle(col, status, "wasp_log_auth_failures_total", 10)
    burst(1)
    c.psql("SELECT pg_rotate_logfile()")  # rotation in the middle of the burst
    burst(1)
    # an exporter restart in the middle of the burst: a new process, the same status dir
    del col
    burst(1)
    col = make_collector(c)
    burst(1)
    settle(col, status, "wasp_log_auth_failures_total", 10 + 4 * 8)
    # a new log_filename (SIGHUP): a file of another name
    c.write_settings({"log_filename": "'wasp-%Y%m%d-%H%M%S.log'"})
    c.reload()
    time.sleep(0.5)
    burst(1)
    fams = settle(col, status, "wasp_log_auth_failures_total", 10 + 5 * 8)
    assert total(fams, "wasp_log_file_rotations_total") >= 2
    assert any(p.startswith("wasp-") for p in os.listdir(c.datadir / "log"))
    # truncation of the current file: what is written after it is counted, nothing twice
    current = c.psql("SELECT pg_current_logfile('jsonlog')").strip()
    os.truncate(c.datadir / current, 0)
    burst(0)
    fams = settle(col, status, "wasp_log_auth_failures_total", 10 + 5 * 8 + 7)
    assert total(fams, "wasp_log_file_truncations_total") == 1

    af = fams["wasp_log_auth_failures_total"]
    per_user = {u: total(fams, af.name, user=u) for u in ("alice", "bob", "carol")}
    assert per_user == {"alice": 3 + 5, "bob": 1 + 5 + 1, "carol": 6 * 7}
    addrs = {lv[2] for lv, _ in af.samples if lv[0] == "carol"}
    assert len(addrs - {"other"}) <= 3 and "other" in addrs  # the bound holds
    assert len({lv[2] for lv, _ in af.samples}) <= 4

    # pg_hba rejection, a GRANT and an ALTER ROLE, a superuser login, an error
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(c.dsn(user="mallory", password="m", port=str(relay("127.0.0.9").port)))
    c.psql("GRANT pg_monitor TO bob; ALTER ROLE carol CONNECTION LIMIT 3")
    with contextlib.suppress(subprocess.CalledProcessError, RuntimeError):
        c.psql("SELECT 1/0")
    fams = settle(col, status, "wasp_log_hba_rejections_total", 1, user="mallory",
                  client_addr="127.0.0.9")
    fams = settle(col, status, "wasp_log_role_changes_total", 2)
    assert total(fams, "wasp_log_role_changes_total", command="grant", user="postgres") == 1
    assert total(fams, "wasp_log_role_changes_total", command="alter_role") == 1
    assert total(fams, "wasp_log_superuser_logins_total", user="postgres", local="true") >= 1
    assert total(fams, "wasp_log_errors_total", severity="ERROR", sqlstate_class="22") == 1
    assert total(fams, "wasp_log_errors_total", severity="FATAL", sqlstate_class="28") == \
        10 + 5 * 8 + 7 + 1
    assert total(fams, "wasp_log_unparsed_lines_total") == 0

    # readiness follows the server's settings
    c.psql("ALTER SYSTEM SET log_min_duration_sample = -1")
    c.psql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    fams = collect(col, status)
    assert total(fams, "wasp_log_pack_ready", reason="sampling_off") == 0
    assert "sampling_off" in {lv[0] for lv, _ in fams["wasp_log_pack_ready"].samples}
    assert total(fams, "wasp_log_pack_check", check="sampling") == 0


def _quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """histogram_quantile as Prometheus computes it (linear within the bucket)."""
    count = cumulative[-1][1]
    rank = q * count
    prev_bound, prev = 0.0, 0.0
    for bound, c in cumulative:
        if c >= rank:
            if math.isinf(bound):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev) / (c - prev)
        prev_bound, prev = bound, c
    return prev_bound


def _bucket_index(v: float) -> int:
    return next((i for i, b in enumerate(BUCKETS) if v <= b), len(BUCKETS))


@pytest.mark.slow
def test_latency_p95_within_one_bucket_of_the_full_log(
        logged: tuple[LocalCluster, Callable[[str], Relay]], tmp_path: Path) -> None:
    c, _ = logged
    status = tmp_path / "status"
    col = make_collector(c)
    collect(col, status)
    scripts = {"fast.sql": ("SELECT 1;", 90), "mid.sql": ("SELECT pg_sleep(0.03);", 7),
               "slow.sql": ("SELECT pg_sleep(0.15);", 3)}
    args = [str(c.bindir / "pgbench"), "-n", "-h", c.host, "-p", str(c.port), "-U", "postgres",
            "-c", "4", "-t", "500", "-l", "--log-prefix", str(tmp_path / "tx")]
    for name, (sql, weight) in scripts.items():
        (tmp_path / name).write_text(sql + "\n")
        args += ["-f", f"{tmp_path / name}@{weight}"]
    args.append("postgres")
    subprocess.run(args, check=True, capture_output=True, cwd=tmp_path, timeout=300)
    # the full log of the run: pgbench's own record of every transaction (latency in us)
    # (client, transaction, latency us, script, epoch, us)
    rows = [line.split() for p in tmp_path.glob("tx.*") for line in p.read_text().splitlines()]
    lat = sorted(int(r[2]) / 1e6 for r in rows)
    assert len(lat) == 2000
    true_p95 = lat[math.ceil(0.95 * len(lat)) - 1]
    slow_true = sum(1 for r in rows if r[3] == "2")  # pg_sleep(0.15): over the 100 ms setting
    fams = settle(col, status, "wasp_log_slow_statements_total", slow_true, database="postgres",
                  user="postgres")
    h = fams["wasp_log_statement_duration_seconds"]
    buckets: dict[float, float] = {}
    for (db, user, which), v in h.samples:
        if db == "postgres" and user == "postgres" and which not in ("sum", "count"):
            buckets[float(which)] = buckets.get(float(which), 0.0) + v
    est_p95 = _quantile(0.95, sorted(buckets.items()))
    est_count = buckets[math.inf]
    print(f"true p95 {true_p95 * 1000:.2f} ms, estimated {est_p95 * 1000:.2f} ms; "
          f"statements {len(lat)}, estimated {est_count:.0f}")
    assert abs(_bucket_index(est_p95) - _bucket_index(true_p95)) <= 1
    assert 0.7 * len(lat) < est_count < 1.3 * len(lat)


def _config(c: LocalCluster, tmp_path: Path, listen: str = "127.0.0.1:9645") -> Path:
    cfg = tmp_path / "wasp.yml"
    cfg.write_text(f"""\
server: {{listen: "{listen}", status_dir: {tmp_path / "status"}}}
targets:
  db: {{dsn: "{c.dsn()}", packs: [postgres]}}
log:
  directory: {c.datadir / "log"}
  target: db
  start_at: beginning
  interval: 1s
""")
    return cfg


def test_logtail_once_serve_and_promtool(
        logged: tuple[LocalCluster, Callable[[str], Relay]], tmp_path: Path) -> None:
    c, relay = logged
    wrong_password(c, relay("127.0.0.2"), "bob")
    c.psql("SELECT pg_sleep(0.12)")
    time.sleep(0.5)
    cfg = _config(c, tmp_path)
    wasp = [sys.executable, "-m", "wasp"]
    r = subprocess.run([*wasp, "logtail", "--config", str(cfg), "--once"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert 'wasp_log_auth_failures_total{user="bob",database="postgres",client_addr="127.0.0.2"} 1' \
        in text
    assert 'wasp_log_pack_ready{reason="ok"} 1' in text
    assert "# TYPE wasp_log_statement_duration_seconds histogram" in text
    assert "wasp_query_" in text and "wasp_pg_" not in text  # the log pack alone
    check = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
        check.stdout + check.stderr
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["wasp_log_statement_duration_seconds"].type == "histogram"

    # serving: the state saved by the run above goes on, SIGTERM stops it cleanly
    port = free_port()
    proc = subprocess.Popen([*wasp, "logtail", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wrong_password(c, relay("127.0.0.2"), "bob")
        end = time.monotonic() + 30
        body = ""
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=5).read().decode()
                if 'client_addr="127.0.0.2"} 2' in body:
                    break
            time.sleep(0.3)
        assert 'wasp_log_auth_failures_total{user="bob",database="postgres",' \
            'client_addr="127.0.0.2"} 2' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "password" not in err.lower()  # no DSN in the log


def test_exporter_runs_the_log_pack_and_bad_config_exits_2(
        logged: tuple[LocalCluster, Callable[[str], Relay]], tmp_path: Path) -> None:
    c, _ = logged
    cfg = _config(c, tmp_path)
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "--config", str(cfg), "--once",
                        "--allow-superuser"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'wasp_log_pack_ready{reason="ok"} 1' in r.stdout
    assert 'wasp_query_runs_total{target="",query="log"} 1' in r.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text(cfg.read_text().replace("target: db", "target: nope"))
    r = subprocess.run([sys.executable, "-m", "wasp", "logtail", "--config", str(bad), "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "bad.yml" in r.stderr and "log.target" in r.stderr and "nope" in r.stderr
