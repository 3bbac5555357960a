"""The backup scenario shared by the posix and S3 tests.

init, full backup, writes (batch A), a point in time T, writes (batch B),
incremental backup, drill to the latest point (A and B restored), drill to T
(exactly A restored), and the metrics saying both backups are good.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg

from wasp.companions.backup.drill import ScratchCluster, run_drill
from wasp.companions.backup.ops import init_stanza, run_backup

from .env import APP_DB, BackupEnv, value


def restored_ids(scratch: ScratchCluster) -> set[str]:
    """Booking ids in a restored cluster."""
    with psycopg.connect(scratch.dsn(APP_DB)) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM bookings").fetchall()}


def backup_and_drill_scenario(env: BackupEnv) -> dict[str, Any]:
    """Run the scenario and assert what it must show; returns labels and timings."""
    ctx = env.ctx()
    init = init_stanza(ctx)
    assert init["state"] == "ok", init
    with env.app() as conn:
        conn.execute("DELETE FROM bookings")
    full = run_backup(ctx, "full")
    assert full["state"] == "ok" and full["actual_type"] == "full", full
    time.sleep(1.1)  # pgBackRest keeps whole-second stop times: T must be a later second
    a = env.insert("A")
    with env.app() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    target = row[0]
    time.sleep(0.3)
    b = env.insert("B")
    incr = run_backup(ctx, "incr")
    assert incr["state"] == "ok" and incr["actual_type"] == "incr", incr
    assert incr["database_bytes"] > 0 and incr["repository_bytes"] > 0

    seen: dict[str, set[str]] = {}
    latest = run_drill(ctx, inspect=lambda sc: seen.update(latest=restored_ids(sc)))
    assert latest.ok, (latest.error, latest.checks)
    assert latest.label == incr["label"]
    assert seen["latest"] == set(a) | set(b)
    names = {c.name for c in latest.checks}
    assert {"restore", "passphrase", "recovery", "table salons", "table bookings",
            "freshness"} <= names
    assert any(n.startswith("amcheck ") for n in names)

    pitr = run_drill(ctx, target_time=target, inspect=lambda sc: seen.update(pitr=restored_ids(sc)))
    assert pitr.ok, (pitr.error, pitr.checks)
    assert pitr.label == full["label"]
    assert seen["pitr"] == set(a), "the restored database must hold exactly the rows committed before T"
    assert any(c.name == "target" and c.ok for c in pitr.checks)
    assert not list(Path(env.settings().drill.scratch_dir).iterdir()), "scratch left behind"

    fams = env.collect()
    for type_, label in (("full", full["label"]), ("incr", incr["label"])):
        good = value(fams, "wasp_backup_last_good_timestamp_seconds", type=type_)
        assert good is not None, f"newest {type_} backup {label} not counted as good"
        assert value(fams, "wasp_backup_last_attempt_success", type=type_) == 1
    assert value(fams, "wasp_backup_repository_up") == 1
    assert value(fams, "wasp_backup_pgbackrest_status_code") == 0
    assert value(fams, "wasp_backup_drill_last_success") == 1
    assert value(fams, "wasp_backup_drill_checks_failed") == 0
    rto = value(fams, "wasp_backup_drill_restore_duration_seconds")
    assert rto is not None and rto > 0
    assert value(fams, "wasp_wal_archive_enabled") == 1
    unarchived = value(fams, "wasp_wal_archive_unarchived_bytes")
    assert unarchived is not None and 0 <= unarchived < 16 * 1024 * 1024
    return {"full": full, "incr": incr, "latest": latest, "pitr": pitr, "target": target}
