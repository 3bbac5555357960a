"""The fleet: many targets from one exporter, /probe, /sd, shards behind a real Prometheus, budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from helpers import require_tool, samples, value
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.fleet import parse_shard
from wasp.exporter.fleet import hashmod

N_DBS = 50


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, bytes(r.read())
    except urllib.error.HTTPError as e:
        return e.code, bytes(e.read())


class Exporter:
    """`wasp exporter` as a subprocess on a loopback port."""

    def __init__(self, cfg: dict[str, Any], tmp: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        path = tmp / f"wasp-{self.port}.yml"
        path.write_text(yaml.safe_dump(cfg))
        self.log = open(tmp / f"wasp-{self.port}.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wasp", "exporter", "--config", str(path),
             "--listen", f"127.0.0.1:{self.port}", "--allow-superuser", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_ready(self, deadline: float = 120) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.output()
            try:
                if get(self.base + "/readyz", 2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("the exporter never became ready:\n" + self.output())

    def metrics(self) -> bytes:
        return get(self.base + "/metrics")[1]

    def wait_metrics(self, ok: Any, deadline: float = 30) -> bytes:
        """/metrics once `ok(text)` holds (the exposition is rendered in the background)."""
        end = time.monotonic() + deadline
        while not ok(text := self.metrics()):
            assert time.monotonic() < end, text.decode()[-3000:]
            time.sleep(0.5)
        return text

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def fleet_dbs(pg: LocalCluster, make_cluster: Any) -> Iterator[list[tuple[str, str]]]:
    """N_DBS databases over two clusters, each with a small table: [(target name, dsn)]."""
    second: LocalCluster = make_cluster("fleet2", max_connections="200")
    out: list[tuple[str, str]] = []
    for i in range(N_DBS):
        c = pg if i % 2 == 0 else second
        name = f"fleet_{i:02d}"
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(c.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE TABLE bookings (id text primary key, status text)")
            conn.execute(f"INSERT INTO bookings SELECT g::text, 'CONFIRMED' FROM generate_series(1, {i + 1}) g")
        out.append((f"db{i:02d}", c.dsn(name)))
    yield out
    for i in range(N_DBS):
        c = pg if i % 2 == 0 else second
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "fleet_{i:02d}" WITH (FORCE)')


BOOKINGS = {"sql": "SELECT count(*) AS n FROM bookings", "interval": "2s", "timeout": "1500ms",
            "values": [{"column": "n", "metric": "fleet_bookings", "type": "gauge",
                        "help": "bookings in the target"}]}


def fleet_config(targets: list[tuple[str, str]], tmp: Path, **fleet: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"status_dir": str(tmp / "status"), "max_concurrent_queries": 8},
        "targets": {name: {"dsn": dsn, "packs": [], "connect_timeout": "2s"}
                    for name, dsn in targets},
        "queries": {"bookings": BOOKINGS},
    }
    if fleet:
        cfg["fleet"] = fleet
    return cfg


def test_hashmod_matches_the_documented_algorithm() -> None:
    # md5("db00") = 4d6e... ; its last 8 bytes as a big-endian integer, mod N
    import hashlib
    for name in ("db00", "db17", "a-much-longer-target-name.example:5432/app"):
        tail = int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big")
        for n in (1, 2, 3, 7):
            assert hashmod(name, n) == tail % n
    shares = [hashmod(f"db{i:02d}", 2) for i in range(N_DBS)]
    assert 10 < sum(shares) < 40  # both halves get a share
    assert parse_shard("1/2") is not None and parse_shard("2/2") is None and parse_shard("x") is None


def test_fifty_targets_one_hung_one_down_the_others_on_time(
        fleet_dbs: list[tuple[str, str]], pg: LocalCluster, tmp_path: Path) -> None:
    hung_name, hung_dsn = fleet_dbs[0]
    targets = [*fleet_dbs, ("down", f"host=127.0.0.1 port={free_port()} dbname=x user=x")]
    cfg = fleet_config(targets, tmp_path)
    cfg["server"]["max_concurrent_queries"] = 4  # the default: fewer slots than hung queries
    for i in range(4):  # more queries on the hung target than it has connections
        cfg["queries"][f"locked_{i}"] = {
            **BOOKINGS, "targets": [hung_name], "timeout": "1900ms",
            "values": [{"column": "n", "metric": f"fleet_locked_{i}", "type": "gauge", "help": "x"}]}
    exp = Exporter(cfg, tmp_path)
    locker = psycopg.connect(hung_dsn)  # holds an exclusive lock: the target's query hangs
    try:
        exp.wait_ready()
        text = exp.metrics()
        for i, (name, _) in enumerate(fleet_dbs):
            assert value(text, "fleet_bookings", target=name) == i + 1, name
        assert value(text, "fleet_locked_3", target=hung_name) == 1
        assert value(text, "wasp_target_up", target="down") == 0
        locker.execute("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
        before = {lab["target"]: v for lab, v in samples(text, "wasp_query_runs_total")
                  if lab["query"] == "bookings"}
        t0 = time.monotonic()
        scrape_times = []
        while time.monotonic() - t0 < 12:
            s = time.monotonic()
            text = exp.metrics()
            scrape_times.append(time.monotonic() - s)
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        after = {lab["target"]: v for lab, v in samples(text, "wasp_query_runs_total")
                 if lab["query"] == "bookings"}
        # every healthy target kept its 2 s interval (generous: half the ideal count)
        expected = elapsed / 2
        slow = {n: after[n] - before[n] for n, _ in fleet_dbs[1:]
                if after[n] - before[n] < expected * 0.6}
        assert not slow, f"targets that fell behind while {hung_name} hung: {slow}"
        errors = {lab["reason"]: v for lab, v in samples(text, "wasp_query_errors_total")
                  if lab["target"] == hung_name and lab["query"] == "bookings"}
        assert errors["timeout"] >= 1, errors
        assert max(scrape_times) < 2.0, scrape_times
    finally:
        locker.close()
        exp.stop()


def test_probe_serves_one_target_and_refuses_what_it_may_not(
        fleet_dbs: list[tuple[str, str]], pg: LocalCluster, tmp_path: Path) -> None:
    fleet = {"probe_idle": "10s", "auth_modules": {"local": {
        "user": "postgres", "allowed_hosts": "^127\\.0\\.0\\.1$",
        "allowed_databases": "^fleet_[0-9]+$", "allowed_ports": [pg.port], "packs": []}}}
    exp = Exporter(fleet_config(fleet_dbs[:3], tmp_path, **fleet), tmp_path)
    try:
        exp.wait_ready()
        status, body = get(exp.base + "/probe?target=db01")
        assert status == 200
        assert value(body, "fleet_bookings", target="db01") == 2
        assert {lab["target"] for lab, _ in samples(body, "fleet_bookings")} == {"db01"}
        assert value(body, "wasp_target_up", target="db01") == 1
        # refused, with the reason
        status, body = get(exp.base + "/probe?target=nope")
        assert status == 404 and b"unknown target 'nope'" in body
        bad_host = urllib.parse.quote("10.1.2.3:5432/fleet_02")
        status, body = get(exp.base + f"/probe?target={bad_host}&auth_module=local")
        assert status == 400 and b"host '10.1.2.3' is not allowed by auth_module local" in body
        status, body = get(exp.base + f"/probe?target=127.0.0.1:{pg.port}/postgres&auth_module=local")
        assert status == 400 and b"database 'postgres' is not allowed" in body
        status, body = get(exp.base + f"/probe?target=127.0.0.1:{pg.port}/fleet_02&auth_module=nobody")
        assert status == 400 and b"unknown auth_module 'nobody' (known: local)" in body
        # a target not in the file: up 0 with a reason first, then its series
        url = exp.base + f"/probe?target=127.0.0.1:{pg.port}/fleet_04&auth_module=local"
        status, body = get(url)
        name = f"127.0.0.1:{pg.port}/fleet_04"
        assert status == 200 and value(body, "wasp_target_up", target=name) == 0, body
        deadline = time.monotonic() + 60
        while value(body, "fleet_bookings", target=name) is None:
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            body = get(url)[1]
        assert value(body, "fleet_bookings", target=name) == 5
        text = exp.wait_metrics(lambda m: value(m, "wasp_fleet_targets", source="probe") == 1)
        assert value(text, "wasp_probe_requests_total", result="bad_request") == 3
        assert value(text, "wasp_probe_requests_total", result="not_found") == 1
        # dropped when nobody asks for it
        deadline = time.monotonic() + 60
        while value(exp.metrics(), "wasp_fleet_targets", source="probe") != 0:
            assert time.monotonic() < deadline, exp.output()
            time.sleep(1)
        assert "dropped: not probed for" in exp.output()
    finally:
        exp.stop()


def test_connection_budget_holds_across_targets(
        fleet_dbs: list[tuple[str, str]], pg: LocalCluster, tmp_path: Path) -> None:
    # only the targets on the shared cluster, so one pg_stat_activity sees all our sessions
    mine = [t for i, t in enumerate(fleet_dbs) if i % 2 == 0][:12]
    cfg = fleet_config(mine, tmp_path, max_connections=3)
    exp = Exporter(cfg, tmp_path)
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wasp'"
                                 " AND datname LIKE 'fleet_%'").fetchone()
                peak = max(peak, n[0] if n else 0)
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        exp.wait_ready()
        text = exp.wait_metrics(lambda m: all(value(m, "fleet_bookings", target=n) is not None
                                              for n, _ in mine))
        time.sleep(4)
        assert value(text, "wasp_fleet_connection_budget") == 3
        assert (value(text, "wasp_fleet_connections_open") or 0) <= 3
    finally:
        stop.set()
        watcher.join()
        exp.stop()
    assert 1 <= peak <= 3, peak


@pytest.mark.slow
def test_two_shards_behind_prometheus_scrape_every_target_once(
        fleet_dbs: list[tuple[str, str]], tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    targets = fleet_dbs[:20]
    exporters = [Exporter(fleet_config(targets, tmp_path), tmp_path, "--shard", f"{i}/2")
                 for i in range(2)]
    prom_dir = Path(tempfile.mkdtemp(prefix="wasp-fleet-prom-", dir=tmp_path))
    port = free_port()
    try:
        for e in exporters:
            e.wait_ready()
        # each exporter's /sd lists its own share only
        shares = [json.loads(get(e.base + "/sd")[1]) for e in exporters]
        listed = [g["labels"]["__param_target"] for s in shares for g in s]
        assert sorted(listed) == sorted(n for n, _ in targets)
        jobs = []
        for i, e in enumerate(exporters):
            jobs.append({
                "job_name": f"wasp-shard-{i}", "scrape_interval": "1s",
                "http_sd_configs": [{"url": e.base + "/sd", "refresh_interval": "5s"}],
                "relabel_configs": [
                    {"source_labels": ["__param_target"], "modulus": 2,
                     "target_label": "__tmp_hash", "action": "hashmod"},
                    {"source_labels": ["__tmp_hash"], "regex": str(i), "action": "keep"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                ]})
        (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(
            {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
             "scrape_configs": jobs}))
        proc = subprocess.Popen(
            [prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={prom_dir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = urllib.parse.quote('count by (instance) (fleet_bookings)')
            deadline = time.monotonic() + 90
            result: list[Any] = []
            while time.monotonic() < deadline:
                try:
                    result = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?query={q}")[1])[
                        "data"]["result"]
                except (OSError, KeyError, ValueError):
                    result = []
                if len(result) == len(targets):
                    break
                time.sleep(1)
            seen = {r["metric"]["instance"]: r["value"][1] for r in result}
            assert set(seen) == {n for n, _ in targets}, seen
            assert set(seen.values()) == {"1"}  # each target scraped by exactly one job
            q = urllib.parse.quote("count(up == 1)")
            up = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?query={q}")[1])
            assert up["data"]["result"][0]["value"][1] == str(len(targets))
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        for e in exporters:
            e.stop()
