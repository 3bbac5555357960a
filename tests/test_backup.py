"""The backup companion and pack against a real PostgreSQL 15 and a real pgBackRest (posix repo).

One cluster and one stanza for the module; each fault test puts things back as
it found them. Order matters only in that the scenario runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backup_support.env import BackupEnv, env_var, make_backup_env, value
from backup_support.scenario import backup_and_drill_scenario
from wasp.companions.backup import cli as backup_cli
from wasp.companions.backup.drill import run_drill
from wasp.companions.backup.ops import JobFailed, fetch_info, run_backup, verify_repo
from wasp.companions.backup.records import load_records
from wasp.companions.pgcluster import LocalCluster


@pytest.fixture(scope="module")
def env(make_cluster: Any, cluster_base: Path) -> Iterator[BackupEnv]:
    """A cluster with archive_mode on and a wasp configuration for it."""
    cluster: LocalCluster = make_cluster("backup-posix", archive_mode="on")
    e = make_backup_env(cluster, cluster_base / "backup-posix-env")
    yield e
    cluster.destroy()
    os.environ.pop(e.passphrase_env, None)


@pytest.fixture(scope="module")
def scenario(env: BackupEnv) -> dict[str, Any]:
    """init, full, writes, incr, drill to latest and to a point in time."""
    return backup_and_drill_scenario(env)


def cli(env: BackupEnv, *argv: str) -> int:
    """Run `wasp backup --config <env> ARGV...` through the module's own parser."""
    parser = argparse.ArgumentParser(prog="wasp backup")
    parser.add_argument("--config")
    backup_cli.add_arguments(parser)
    args = parser.parse_args(["--config", str(env.config_path), *argv])
    return backup_cli.main(args)


@pytest.mark.slow
def test_scenario_posix(scenario: dict[str, Any]) -> None:
    assert scenario["latest"].rto_seconds > 0
    assert scenario["pitr"].label == scenario["full"]["label"]


@pytest.mark.slow
def test_init_wrote_config_without_secrets(env: BackupEnv, scenario: dict[str, Any]) -> None:
    s = env.settings()
    conf = s.config_file.read_text()
    assert env.passphrase not in conf
    assert stat.S_IMODE(s.secrets_file.stat().st_mode) == 0o600
    assert env.passphrase in s.secrets_file.read_text()
    settings = dict(r.split("|") for r in env.cluster.psql(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('archive_mode', 'archive_command', 'archive_timeout')").splitlines())
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "60"
    assert "archive-push %p" in settings["archive_command"]
    assert env.passphrase not in settings["archive_command"]
    recs = load_records(env.status_dir, s.stanza)
    assert recs.init and recs.init["state"] == "ok"
    # pgBackRest's own logs never hold the passphrase
    for log in Path(s.log_path).glob("*.log"):
        assert env.passphrase not in log.read_text(errors="replace"), log


@pytest.mark.slow
def test_status_json_and_exit_codes(env: BackupEnv, scenario: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    # a drilled backup of our own: retention in another test may have expired the scenario's
    ctx = env.ctx()
    fresh = run_backup(ctx, "incr")
    assert run_drill(ctx).ok
    capsys.readouterr()
    assert cli(env, "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    labels = {b["label"]: b for b in report["backups"]}
    assert labels[fresh["label"]]["drill"] == "good"
    assert report["drill"]["state"] == "ok" and report["wal_archive"]["failed_count"] >= 0
    assert cli(env, "status") == 0
    text = capsys.readouterr().out
    assert "Backups" in text and fresh["label"] in text and "good" in text
    assert cli(env, "verify") == 0
    assert cli(env, "drill", "--time", "yesterday") == 2
    bad = env.root / "bad.yml"
    bad.write_text(env.config_path.read_text().replace("archive_timeout: 60s",
                                                       "archive_timeout: 10m"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    backup_cli.add_arguments(parser)
    assert backup_cli.main(parser.parse_args(["--config", str(bad), "status"])) == 2
    assert "backup.archive_timeout: must be at most 60s" in capsys.readouterr().err


@pytest.mark.slow
def test_database_down_during_backup(env: BackupEnv, scenario: dict[str, Any]) -> None:
    ctx = env.ctx()
    before = load_records(env.status_dir, "main").runs["full"]
    good_before = value(env.collect(), "wasp_backup_last_good_timestamp_seconds", type="full")
    errors: list[BaseException] = []

    def backup() -> None:
        try:
            run_backup(ctx, "full")
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=backup)
    thread.start()
    try:
        # pgBackRest holds one session from pg_backup_start to pg_backup_stop: once the
        # start returned, it is copying files
        deadline = time.monotonic() + 30
        seen = False
        with psycopg.connect(env.cluster.dsn(), autocommit=True) as conn:
            while time.monotonic() < deadline and not seen:
                seen = bool(conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                    "'pgBackRest%' AND state = 'idle' AND query LIKE '%pg_backup_start%'"
                ).fetchone()[0])  # type: ignore[index]
                time.sleep(0.01)
        assert seen, "pgBackRest never started the backup"
        env.cluster.stop("fast")
        thread.join(180)
    finally:
        env.cluster.start()
    assert errors and isinstance(errors[0], JobFailed), errors
    rec = load_records(env.status_dir, "main").runs["full"]
    assert rec["state"] == "failed" and rec["exit_code"] not in (0, None)
    assert rec["failures"] == before["failures"] + 1 and rec["error"]
    fams = env.collect()
    assert value(fams, "wasp_backup_last_attempt_success", type="full") == 0
    assert value(fams, "wasp_backup_last_attempt_exit_code", type="full") == rec["exit_code"]
    assert value(fams, "wasp_backup_failures_total", type="full") == rec["failures"]
    assert value(fams, "wasp_backup_last_good_timestamp_seconds", type="full") == good_before


def _chmod_tree(root: Path, mode: int) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(mode)


@pytest.mark.slow
def test_archive_destination_unwritable(env: BackupEnv, scenario: dict[str, Any]) -> None:
    s = env.settings()
    archive = Path(s.repo.path) / "archive" / s.stanza
    env.switch_wal()  # what earlier tests wrote is archived now, not while this one reads
    before = env.collect()
    failures0 = value(before, "wasp_wal_archive_failures_total") or 0
    archived_at0 = value(before, "wasp_wal_archive_last_archived_timestamp_seconds")
    incr_good0 = value(before, "wasp_backup_last_good_timestamp_seconds", type="incr")
    _chmod_tree(archive, 0o555)
    try:
        env.insert("lost-while-broken", 5)
        with psycopg.connect(env.cluster.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()
                if row and row[0] > failures0:
                    break
                time.sleep(0.3)
        time.sleep(2)
        with pytest.raises(JobFailed) as err:
            run_backup(env.ctx(), "incr")
        assert "archive" in str(err.value).lower() or "WAL" in str(err.value)
        fams = env.collect()
        assert (value(fams, "wasp_wal_archive_failures_total") or 0) > failures0
        assert value(fams, "wasp_wal_archive_last_archived_timestamp_seconds") == archived_at0
        assert (value(fams, "wasp_wal_archive_last_archived_age_seconds") or 0) >= 2
        assert (value(fams, "wasp_wal_archive_ready_segments") or 0) >= 1
        assert (value(fams, "wasp_wal_archive_unarchived_bytes") or 0) > 0
        assert value(fams, "wasp_backup_last_attempt_success", type="incr") == 0
        assert value(fams, "wasp_backup_last_good_timestamp_seconds", type="incr") == incr_good0
    finally:
        _chmod_tree(archive, 0o750)
    env.insert("after-repair", 1)
    env.switch_wal()
    fams = env.collect()
    assert value(fams, "wasp_wal_archive_ready_segments") == 0


@pytest.mark.slow
def test_passphrase_missing_or_wrong(env: BackupEnv, scenario: dict[str, Any]) -> None:
    s = env.settings()
    good0 = value(env.collect(), "wasp_backup_last_good_timestamp_seconds", type="incr")
    drills0 = load_records(env.status_dir, "main").drill
    assert drills0 is not None
    # wrong: pgBackRest 2.45 prints JSON with raw bytes and exits 0 from info
    with env_var(env.passphrase_env, "not-the-passphrase"):
        fams = env.collect()
        assert value(fams, "wasp_backup_repository_up") == 0
        assert value(fams, "wasp_backup_pgbackrest_status_code") == 99
        assert value(fams, "wasp_backup_repository_errors_total") == 1
        assert "wasp_backup_last_good_timestamp_seconds" not in fams
        result = run_drill(env.ctx())
        assert not result.ok and "cannot read repo1" in (result.error or "")
        with pytest.raises(JobFailed):
            run_backup(env.ctx(), "incr")
    # missing: neither the variable nor the secrets include file
    hidden = s.secrets_file.with_name("hidden.conf.off")
    s.secrets_file.rename(hidden)
    try:
        with env_var(env.passphrase_env, None):
            fams = env.collect()
            assert value(fams, "wasp_backup_repository_up") == 0
            assert value(fams, "wasp_backup_pgbackrest_status_code") == -1
            result = run_drill(env.ctx())
            assert not result.ok and "cannot be read" in (result.error or "")
            with pytest.raises(JobFailed) as err:
                run_backup(env.ctx(), "incr")
            assert "repo1-cipher-pass" in str(err.value)
    finally:
        hidden.rename(s.secrets_file)
    fams = env.collect()
    assert value(fams, "wasp_backup_repository_up") == 1
    assert value(fams, "wasp_backup_drill_last_success") == 0
    assert value(fams, "wasp_backup_last_good_timestamp_seconds", type="incr") == good0
    assert value(fams, "wasp_backup_last_attempt_success", type="incr") == 0


@pytest.mark.slow
def test_corrupted_repository_file(env: BackupEnv, scenario: dict[str, Any]) -> None:
    ctx = env.ctx()
    fresh = run_backup(ctx, "incr")  # a backup of our own, so earlier tests do not matter
    assert run_drill(ctx).ok
    info = fetch_info(ctx)
    latest = info.backups[-1]
    assert latest.label == fresh["label"]
    folder = Path(env.settings().repo.path) / "backup" / "main" / latest.label / "pg_data"
    victim = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    original = victim.read_bytes()
    middle = len(original) // 2
    victim.write_bytes(original[:middle] + bytes(b ^ 0xFF for b in original[middle:middle + 64])
                       + original[middle + 64:])
    try:
        with pytest.raises(JobFailed, match="verify found problems"):
            verify_repo(ctx)
        result = run_drill(ctx)
        assert not result.ok and result.label == latest.label
        assert "restore" in (result.error or "")
        fams = env.collect()
        assert value(fams, "wasp_backup_verify_last_success") == 0
        assert (value(fams, "wasp_backup_verify_invalid_files") or 0) >= 1
        assert value(fams, "wasp_backup_drill_last_success") == 0
        assert (value(fams, "wasp_backup_drill_checks_failed") or 0) >= 1
        good = value(fams, "wasp_backup_last_good_timestamp_seconds", type=latest.type)
        assert good is None or good < latest.stop, "a backup that failed its drill counts as good"
    finally:
        victim.write_bytes(original)
    verify_repo(ctx)
    assert run_drill(ctx).ok


@pytest.mark.slow
def test_retention_keeps_n_full_backups(env: BackupEnv, scenario: dict[str, Any]) -> None:
    s = env.settings()
    ctx = env.ctx()
    for i in range(s.retention.full + 1):
        env.insert(f"R{i}", 2)
        run_backup(ctx, "full")
    info = fetch_info(ctx)
    fulls = [b for b in info.backups if b.type == "full"]
    assert len(fulls) == s.retention.full
    oldest = min(b.wal_start or "" for b in info.backups)
    assert info.archive_min is not None and info.archive_min >= oldest
    archive = Path(s.repo.path) / "archive" / s.stanza
    segments = [p.name[:24] for p in archive.rglob("*") if p.is_file()
                and len(p.name) > 24 and p.name[:24].isalnum() and p.name[8:9] != "."]
    assert segments and min(segments) >= oldest, "WAL older than the oldest kept backup remains"
    fams = env.collect()
    assert value(fams, "wasp_backup_kept_backups", type="full") == s.retention.full


@pytest.mark.slow
def test_init_turns_archiving_on_only_with_restart(make_cluster: Any, cluster_base: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cluster: LocalCluster = make_cluster("backup-restart")  # archive_mode off
    e = make_backup_env(cluster, cluster_base / "backup-restart-env", name="restart")
    try:
        assert cli(e, "init") == 1
        assert "restart" in capsys.readouterr().err
        rec = load_records(e.status_dir, "restart").init
        assert rec is not None and rec["state"] == "failed"
        assert cli(e, "init", "--restart") == 0
        assert cluster.psql("SHOW archive_mode").strip() == "on"
        assert load_records(e.status_dir, "restart").init["restarted"] is True  # type: ignore[index]
        assert cli(e, "run", "--type", "full") == 0
        assert cli(e, "drill") == 1  # an empty application table fails the drill
        assert "FAIL table bookings: empty" in capsys.readouterr().out
        e.insert("x", 3)
        assert cli(e, "run", "--type", "incr") == 0
        assert cli(e, "drill") == 0
        out = capsys.readouterr().out
        assert "drill passed" in out and "ok   freshness" in out
        with env_var(e.passphrase_env, None):
            assert cli(e, "drill") == 1
    finally:
        cluster.destroy()
        os.environ.pop(e.passphrase_env, None)
