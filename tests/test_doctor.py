"""wasp doctor against two real clusters: a deliberately poor one and a well-configured one.

The poor cluster has a superuser application role, no archiving, no replica, a
bloated table, the packs' indexes missing and a trust rule for any address;
every one of those checks must fail with the number it saw. The good cluster
is built with the replica and backup companions (a streaming replica with its
slot, the heartbeat, pgBackRest with archiving, a full backup and a passing
drill), PgBouncer in front, SSL, a pg_monitor role: those checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
import yaml

from helpers import value
from wasp.companions.pgcluster import LocalCluster, chown_to_postgres, free_port
from wasp.config.schema import ConfigError, load_config, parse_config
from wasp.demo.datagen.schema import create_schema
from wasp.doctor import cli as doctor_cli
from wasp.doctor.checks_db import non_local_address
from wasp.doctor.checks_ops import schedule_gap
from wasp.doctor.model import Check, Severity, Status, score
from wasp.doctor.options import parse_options
from wasp.doctor.report import json_schema
from wasp.packs import make_engine

MEMORY = "256MiB"


def run_doctor(config: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`wasp doctor --config CONFIG FLAGS` in process: (exit code, stdout)."""
    ap = argparse.ArgumentParser()
    doctor_cli.add_arguments(ap)
    rc = doctor_cli.main(ap.parse_args(["--config", str(config), *flags]))
    return rc, capsys.readouterr().out


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Checks of a JSON report by id."""
    return {c["id"]: c for c in report["checks"]}


# ---------------------------------------------------------------------------
# the poor cluster
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def poor(make_cluster: Any, cluster_base: Path) -> Path:
    """A poor cluster and a doctor configuration for it (connecting as the superuser)."""
    c: LocalCluster = make_cluster("doctor-poor")
    with (c.datadir / "pg_hba.conf").open("a") as f:
        f.write("host all all 0.0.0.0/0 trust\n")
    c.reload()
    c.psql("CREATE ROLE app LOGIN SUPERUSER")
    c.psql("CREATE DATABASE app OWNER app")
    with psycopg.connect(c.dsn("app", user="app"), autocommit=True) as conn:
        create_schema(conn, "v1")  # the application's own indexes only
        conn.execute("CREATE TABLE audit_log (id bigint PRIMARY KEY, note text) "
                     "WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO audit_log SELECT i, 'x' FROM generate_series(1, 50000) i")
        conn.execute("DELETE FROM audit_log WHERE id % 10 < 6")  # 60 % dead
    root = cluster_base / "doctor-poor-cfg"
    root.mkdir()
    path = root / "wasp.yml"
    path.write_text(yaml.safe_dump({
        "server": {"status_dir": str(root / "status")},
        "targets": {"main": {"dsn": c.dsn("app"), "packs": ["doctor"]}},
        "packs": {"doctor": {"options": {"memory": MEMORY, "timeout": "10s"}}},
    }))
    # the deletes' statistics reach pg_stat_user_tables when the backend flushes them
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with psycopg.connect(c.dsn("app")) as conn:
            row = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables "
                               "WHERE relname = 'audit_log'").fetchone()
        if row and row[0] >= 30000:
            break
        time.sleep(0.5)
    return path


def test_poor_cluster_fails_with_evidence(poor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_doctor(poor, "--json", capsys=capsys)
    assert rc == 1
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    checks = by_id(report)
    expect = {
        "security.app_role": "application role app (owner of bookings) is a superuser",
        "backup.archiving": "archive_mode=off",
        "backup.stanza": "no backup: section",
        "availability.replicas": "0 replicas streaming, 1 wanted",
        "schema.bloat": "audit_log 60% dead (30000 rows)",
        "schema.pack_indexes": "messages(created_at): Seq Scan",
        "security.hba_trust": "0.0.0.0/0 trust",
        "security.monitor_role": "wasp connects as postgres, a superuser",
        "connections.pooler": "no pgbouncer target",
    }
    for cid, evidence in expect.items():
        c = checks[cid]
        assert c["status"] == "fail", c
        assert evidence in c["evidence"], c
        assert c["fix"] and c["runbook"].startswith("docs/doctor.md#"), c
    assert "CREATE INDEX CONCURRENTLY wasp_messages_created_at_idx" in checks[
        "schema.pack_indexes"]["fix"]
    assert checks["security.hba_trust"]["value"] == 1
    assert checks["schema.bloat"]["value"] == pytest.approx(0.6, abs=0.01)
    assert report["score"] < 6
    assert report["counts"]["fail"] >= len(expect)


def test_markdown_and_text_reports(poor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, md = run_doctor(poor, "--markdown", capsys=capsys)
    assert rc == 1
    assert md.startswith("# wasp doctor: main")
    assert "| FAIL | `security.app_role` the application role is not a superuser | critical |" in md
    assert "## backups" in md and "## settings" in md
    rc, text = run_doctor(poor, capsys=capsys)
    assert rc == 1
    assert "FAIL  backup.archiving [critical]: archive_mode=off" in text
    assert "fix: ALTER SYSTEM SET archive_mode = on" in text
    assert "password=" not in md + text
    print(md)  # shown with -s


async def test_doctor_pack_exports_a_gauge_per_check(poor: Path) -> None:
    cfg = load_config(poor)
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text.decode()
    finally:
        await engine.stop()
    assert value(text, "wasp_doctor_check_status", target="main", check="security.app_role",
                 severity="critical") == 2
    assert value(text, "wasp_doctor_check_status", target="main",
                 check="settings.autovacuum") == 0
    score_ = value(text, "wasp_doctor_score", target="main")
    assert score_ is not None and 0 < score_ < 6
    assert (value(text, "wasp_doctor_checks", target="main", status="fail") or 0) >= 9
    assert value(text, "wasp_doctor_check_value", target="main", check="schema.bloat") == \
        pytest.approx(0.6, abs=0.01)


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasp.cli import main

    cfg = tmp_path / "w.yml"
    cfg.write_text("targets: {main: {dsn: 'host=127.0.0.1 password=s3cret', packs: []}}\n"
                   "packs: {doctor: {options: {memory: lots}}}\n")
    assert main(["doctor", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "packs.doctor.options.memory" in err and "16GiB" in err and "s3cret" not in err
    assert main(["doctor", "--config", str(cfg), "--target", "nope"]) == 2
    assert "no postgres target 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown option"):
        parse_options(parse_config({"targets": {"m": {"dsn": "x"}},
                                    "packs": {"doctor": {"options": {"colour": 1}}}}))


def test_pure_rules() -> None:
    assert schedule_gap("0 * * * *") == 3600
    assert schedule_gap("0 1 * * *") == 86400
    assert schedule_gap("30 3 * * 0") == 7 * 86400
    assert non_local_address("0.0.0.0/0") and non_local_address("10.0.0.0/8")
    assert non_local_address(None) is False and not non_local_address("127.0.0.1/32")
    assert not non_local_address("::1/128") and non_local_address("all")
    def mk(st: Status, sev: Severity) -> Check:
        return Check("a.b", "schema", "t", sev, st, "e")

    assert score([mk("pass", "critical"), mk("fail", "info")]) == 7.5
    assert score([mk("warn", "warning"), mk("skip", "critical")]) == 5.0


# ---------------------------------------------------------------------------
# the well-configured cluster
# ---------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def good(make_cluster: Any, cluster_base: Path) -> Iterator[Path]:
    """A primary with SSL, a streaming replica, pgBackRest with a drilled backup, PgBouncer."""
    from backup_support.env import make_backup_env
    from test_pgbouncer import Bouncer
    from wasp.companions.backup.drill import run_drill
    from wasp.companions.backup.ops import init_stanza, run_backup
    from wasp.companions.replica import cli as replica_cli
    from wasp.companions.replica.heartbeat import install as install_heartbeat
    from wasp.companions.replica.heartbeat import run as run_heartbeat

    base = cluster_base / "doctor-good"
    pki = base / "pki"
    pki.mkdir(parents=True)
    base.chmod(0o755)
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "server.key", "-out", "server.crt", "-days", "2", "-subj",
             "/CN=127.0.0.1", cwd=pki)
    for f in pki.iterdir():
        os.chmod(f, 0o600)
    pki.chmod(0o700)
    chown_to_postgres(pki)
    c: LocalCluster = make_cluster(
        "doctor-good-p", start=False, ssl="on", ssl_cert_file=f"'{pki / 'server.crt'}'",
        ssl_key_file=f"'{pki / 'server.key'}'", max_connections="50", work_mem="1MB",
        effective_cache_size="180MB", wal_log_hints="on")
    (c.datadir / "pg_hba.conf").write_text("local all all trust\n"
                                           "host all all 127.0.0.1/32 trust\n")
    c.start()
    env = make_backup_env(c, base / "backup", name="doctor")
    replica: LocalCluster | None = None
    bouncer: Bouncer | None = None
    old_pw = os.environ.get("WASP_REPLICATION_PASSWORD")
    try:
        assert init_stanza(env.ctx(), restart=True)["state"] == "ok"
        env.insert("a", 20)
        c.psql("CREATE ROLE app LOGIN NOSUPERUSER; CREATE ROLE wasp_monitor LOGIN IN ROLE "
               "pg_monitor; GRANT CONNECT ON DATABASE app TO wasp_monitor", dbname="postgres")
        c.psql("ALTER TABLE salons OWNER TO app; ALTER TABLE bookings OWNER TO app; "
               "CREATE INDEX bookings_created_at_idx ON bookings (created_at); "
               "CREATE EXTENSION pg_stat_statements", dbname="app")
        os.environ["WASP_REPLICATION_PASSWORD"] = uuid.uuid4().hex
        ap = argparse.ArgumentParser()
        ap.add_argument("--config", default=None)
        replica_cli.add_arguments(ap)
        port = free_port()
        rc = replica_cli.main(ap.parse_args([
            "setup", "--name", "r1", "--datadir", str(base / "r1"), "--port", str(port),
            "--primary-dsn", c.dsn(), "--status-dir", str(base / "status")]))
        assert rc == 0
        replica = LocalCluster(datadir=base / "r1", port=port)
        install_heartbeat(c.dsn(), user="wasp_heartbeat", password=None, dbname="app")
        assert run_heartbeat(c.dsn("app", user="wasp_heartbeat"), interval=0.1, count=1) == 1
        assert run_backup(env.ctx(), "full")["state"] == "ok"
        assert run_drill(env.ctx()).ok
        bouncer = Bouncer(base / "pgbouncer", free_port(), c)
        bouncer.start()
        doc = yaml.safe_load(env.config_path.read_text())
        doc["targets"] = {
            "main": {"dsn": c.dsn("app", user="wasp_monitor"), "packs": ["doctor"]},
            "bouncer": {"type": "pgbouncer", "dsn": bouncer.dsn(), "packs": []},
        }
        doc["packs"] = {"doctor": {"options": {"memory": MEMORY, "app_role": "app"}}}
        env.config_path.write_text(yaml.safe_dump(doc))
        yield env.config_path
    finally:
        if bouncer is not None:
            bouncer.stop()
        if replica is not None:
            replica.destroy()
        if old_pw is None:
            os.environ.pop("WASP_REPLICATION_PASSWORD", None)
        else:
            os.environ["WASP_REPLICATION_PASSWORD"] = old_pw
        os.environ.pop(env.passphrase_env, None)


@pytest.mark.slow
def test_good_cluster_passes(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_doctor(good, "--json", capsys=capsys)
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    checks = by_id(report)
    for cid in ("backup.stanza", "backup.fresh", "backup.drill", "backup.archiving",
                "backup.rpo_bytes", "availability.replicas", "availability.slots",
                "availability.heartbeat", "connections.pooler", "connections.headroom",
                "connections.idle_in_transaction", "security.app_role", "security.ssl",
                "security.scram", "security.monitor_role", "schema.pack_indexes",
                "schema.bloat", "schema.pg_stat_statements", "settings.shared_buffers",
                "settings.effective_cache_size", "settings.work_mem", "settings.autovacuum",
                "settings.wal_level"):
        assert checks[cid]["status"] == "pass", checks[cid]
    # pg_hba_file_rules is superuser-only: a pg_monitor role skips that check, never fails it
    assert checks["security.hba_trust"]["status"] == "skip"
    assert "1 streaming: r1" in checks["availability.replicas"]["evidence"]
    assert "PgBouncer answers" in checks["connections.pooler"]["evidence"]
    assert rc == 0, [c for c in report["checks"] if c["status"] == "fail"]
    assert report["score"] >= 9
    _, md = run_doctor(good, "--markdown", capsys=capsys)
    print(md)


def test_every_check_links_its_runbook_section() -> None:
    from wasp.doctor import ALL_CHECKS
    from wasp.doctor.gather import Facts, Setup

    doc = (Path(__file__).parent.parent / "docs" / "doctor.md").read_text()
    facts = Facts(now=0.0, settings={"max_connections": 10})
    for check in ALL_CHECKS:
        c = check(facts, Setup(target="t", dsn=""))
        anchor = c.runbook.split("#")[1]
        assert f'<a id="{anchor}"></a>' in doc, c.id


async def test_top_statements_hide_literals_and_passwords(dsn: str) -> None:
    from wasp.doctor.gather import Facts, top_statements
    from wasp.exporter.db import TargetDB

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE ROLE doctor_probe_role")
        # a dollar-quoted password is no '...' literal: only the filter keeps it out
        conn.execute("ALTER ROLE doctor_probe_role PASSWORD $$hunter2-role-pw$$")
        # utility statements keep their literals in pg_stat_statements
        conn.execute("COMMENT ON ROLE doctor_probe_role IS 'hunter2-comment'")
        conn.execute("DROP ROLE doctor_probe_role")
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.01), 'hunter2-literal'::text")
    db = TargetDB("t", dsn)
    await db.open()
    try:
        rows = await top_statements(db, Facts(now=0.0), 10.0, limit=100_000)
    finally:
        await db.close()
    assert rows
    text = json.dumps(rows)
    assert "hunter2" not in text, [r for r in rows if "hunter2" in r["query"]]
    assert "pg_sleep($1)" in text
