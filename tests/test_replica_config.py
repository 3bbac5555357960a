"""The replica: configuration section, the CLI's usage errors and the replica pack's collectors."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.companions.replica import cli as replica
from wasp.companions.status import write_record
from wasp.config.nodes import load_yaml
from wasp.config.replica import PatroniSettings
from wasp.config.schema import ConfigError, load_config, parse_config
from wasp.exporter.collector import CollectContext, CollectError
from wasp.model import check_metric_name
from wasp.packs.replica import (
    PatroniCollector,
    ReplicaRecordsCollector,
    build_collectors,
    families_from_cluster,
)


def _cfg(section: str, tmp_path: Path) -> Path:
    p = tmp_path / "wasp.yml"
    p.write_text(f"server:\n  status_dir: {tmp_path / 'status'}\n"
                 "targets:\n  db:\n    dsn: host=127.0.0.1\n    packs: [replication, replica]\n"
                 + section)
    return p


def test_section_parses(tmp_path: Path) -> None:
    cfg = load_config(_cfg("""replica:
  primary_dsn_env: PRIMARY
  password_file: /etc/wasp/rep.pw
  replica_address: 10.0.0.0/24
  nodes:
    r1: {datadir: /srv/r1, port: 5433}
  heartbeat: {dsn_env: HB, interval: 2s}
  patroni: {url: "http://127.0.0.1:8008/", timeout: 2s, interval: 10s}
""", tmp_path))
    s = cfg.section("replica")
    assert s.primary_dsn_env == "PRIMARY" and s.password_file == "/etc/wasp/rep.pw"
    assert s.node("r1").port == 5433 and s.node("r1").host == "127.0.0.1"
    assert s.heartbeat.interval == 2.0 and s.heartbeat.user == "wasp_heartbeat"
    assert s.patroni.urls == ("http://127.0.0.1:8008",) and s.patroni.timeout == 2.0
    names = {c.name for c in build_collectors(cfg)}
    assert names == {"replica_records", "patroni_cluster"}


@pytest.mark.parametrize(("section", "line", "key", "message"), [
    ("replica:\n  colour: blue\n", 8, "replica.colour", "unknown key"),
    ("replica:\n  auth: kerberos\n", 8, "replica.auth", "must be password or cert"),
    ("replica:\n  nodes:\n    r1: {port: 5433}\n", 9, "replica.nodes.r1", "'datadir'"),
    ("replica:\n  nodes:\n    r1: {datadir: /x, port: 99999}\n", 9, "replica.nodes.r1.port",
     "<= 65535"),
    ("replica:\n  heartbeat:\n    interval: soon\n", 9, "replica.heartbeat.interval",
     "duration"),
    ("replica:\n  patroni:\n    url: 127.0.0.1:8008\n", 9, "replica.patroni.url",
     "not an http(s) URL"),
    ("replica:\n  patroni: {}\n", 8, "replica.patroni", "give url"),
    ("replica:\n  patroni:\n    url: http://x:8008\n    timeout: 30s\n", 10,
     "replica.patroni.timeout", "must not exceed"),
])
def test_section_errors_name_file_line_and_key(tmp_path: Path, section: str, line: int,
                                               key: str, message: str) -> None:
    path = _cfg(section, tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.file == str(path) and e.value.line == line and e.value.key == key
    assert message in e.value.message


def _run(*argv: str) -> int:
    ap = argparse.ArgumentParser(prog="wasp replica")
    ap.add_argument("--config", default=None)
    replica.add_arguments(ap)
    return replica.main(ap.parse_args(list(argv)))


def test_every_action_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("setup", "status", "promote", "rejoin", "heartbeat"):
        with pytest.raises(SystemExit) as e:
            _run(action, "--help")
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"wasp replica {action}" in out and len(out) > 400


def test_usage_errors_exit_2(cluster_base: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = cluster_base / "usage"
    tmp_path.mkdir()
    monkeypatch.delenv("WASP_PRIMARY_DSN", raising=False)
    monkeypatch.delenv("WASP_REPLICATION_PASSWORD", raising=False)
    sd = ("--status-dir", str(tmp_path))
    assert _run("setup", "--name", "r1", "--datadir", str(tmp_path / "r1"), "--port",
                str(free_port()), *sd) == 2
    assert "no primary" in capsys.readouterr().err
    assert _run("setup", "--name", "r1", "--datadir", str(tmp_path / "r1"), "--port",
                str(free_port()), "--primary-dsn", "host=127.0.0.1", *sd) == 2
    assert "needs a password" in capsys.readouterr().err
    assert _run("promote", "--name", "r1", *sd) == 2
    assert "give --datadir and --port" in capsys.readouterr().err
    assert _run("status", *sd) == 2
    assert "no node known" in capsys.readouterr().err
    assert _run("heartbeat") == 2
    assert "--dsn" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("targets:\n  db: {dsn: x}\nreplica:\n  auth: nope\n")
    assert _run("--config", str(bad), "status") == 2
    assert f"{bad}:4: replica.auth" in capsys.readouterr().err
    assert not any(tmp_path.glob("r1*"))


def test_promote_and_rejoin_refuse_what_they_cannot_do(
        pg: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sd = ("--status-dir", str(tmp_path / "status"))
    assert _run("promote", "--name", "shared", "--datadir", str(pg.datadir), "--port",
                str(pg.port), *sd) == 1
    assert "already a primary" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("WASP_REPLICATION_PASSWORD", "x")
    assert _run("rejoin", "--name", "r1", "--datadir", str(empty), "--port", str(free_port()),
                "--primary-dsn", pg.dsn(), *sd) == 2
    assert "holds no PostgreSQL cluster; use setup" in capsys.readouterr().err
    assert not (tmp_path / "status").exists()


async def test_records_become_metrics(tmp_path: Path) -> None:
    now = time.time()
    write_record(tmp_path, "replica", "setup-r1", {
        "action": "setup", "replica": "r1", "ok": True, "finished_at": now - 100,
        "duration_seconds": 2.5})
    write_record(tmp_path, "replica", "rejoin-p0", {
        "action": "rejoin", "replica": "p0", "ok": False, "finished_at": now - 50,
        "duration_seconds": 1.0, "error": "pg_rewind failed"})
    for name, at, lag in (("r1", now - 40, 8192), ("r2", now - 10, None)):
        write_record(tmp_path, "replica", f"promote-{name}", {
            "action": "promote", "replica": name, "ok": True, "finished_at": at,
            "duration_seconds": 0.4, "accepted_lag_bytes": lag, "forced": lag is None,
            "timeline": 3, "heartbeat_age_seconds": 4.5})
    (tmp_path / "replica" / "junk.json").write_text("{not json")
    fams = {f.name: f for f in await ReplicaRecordsCollector().collect(
        CollectContext(now=now, status_dir=tmp_path))}
    for f in fams.values():
        assert check_metric_name(f.name, f.type) is None
    assert dict(fams["wasp_replica_action_last_success"].samples) == {
        ("promote", "r1"): 1.0, ("promote", "r2"): 1.0, ("rejoin", "p0"): 0.0,
        ("setup", "r1"): 1.0}
    assert dict(fams["wasp_replica_action_last_duration_seconds"].samples)[("setup", "r1")] == 2.5
    # the last failover is r2's; its lag was unknown, and it was forced
    assert fams["wasp_replica_failover_last_timestamp_seconds"].samples == ((("r2",), now - 10),)
    assert fams["wasp_replica_failover_last_accepted_lag_bytes"].samples == ()
    assert fams["wasp_replica_failover_last_lag_known"].samples == ((("r2",), 0.0),)
    assert fams["wasp_replica_failover_last_forced"].samples == ((("r2",), 1.0),)
    assert fams["wasp_replica_failover_last_heartbeat_age_seconds"].samples == ((("r2",), 4.5),)
    empty = await ReplicaRecordsCollector().collect(
        CollectContext(now=now, status_dir=tmp_path / "none"))
    assert all(not f.samples for f in empty)


def test_patroni_document_to_families() -> None:
    doc = json.loads("""{"members": [
      {"name": "a", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432,
       "timeline": 4},
      {"name": "b", "role": "replica", "state": "streaming", "host": "10.0.0.2", "port": 5432,
       "timeline": 4, "lag": 1024},
      {"name": "c", "role": "replica", "state": "stopped", "host": "10.0.0.3", "port": 5432,
       "lag": "unknown"}], "pause": true, "scope": "main"}""")
    fams = {f.name: f for f in families_from_cluster(doc, scope="main")}
    assert fams["wasp_patroni_paused"].samples == ((("main",), 1.0),)
    assert dict(fams["wasp_patroni_member_lag_bytes"].samples) == {("main", "a"): 0.0,
                                                                    ("main", "b"): 1024.0}
    assert dict(fams["wasp_patroni_member_running"].samples) == {
        ("main", "a"): 1.0, ("main", "b"): 1.0, ("main", "c"): 0.0}
    assert ("main", "c") not in dict(fams["wasp_patroni_member_timeline_id"].samples)


async def test_patroni_unreachable_is_a_collect_error(tmp_path: Path) -> None:
    c = PatroniCollector(PatroniSettings(urls=(f"http://127.0.0.1:{free_port()}",), timeout=1.0))
    with pytest.raises(CollectError) as e:
        await c.collect(CollectContext(now=time.time(), status_dir=tmp_path))
    assert e.value.reason == "connection"
    assert "Patroni REST API unreachable" in str(e.value)


def test_section_node_is_validated_through_parse_config() -> None:
    data = load_yaml("targets:\n  db: {dsn: x}\nreplica:\n  nodes:\n    R1: {datadir: /x, port: 1}\n",
                     "inline.yml")
    with pytest.raises(ConfigError) as e:
        parse_config(data, "inline.yml")
    assert e.value.key == "replica.nodes.R1" and e.value.line == 5
