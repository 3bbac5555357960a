"""Measure backup, drill (RTO) and live RPO on synthetic application data.

    python tests/backup_support/measure.py --days 30 --workdir /tmp/wasp-measure

Creates a PostgreSQL 15 cluster (archiving off), loads `days` of synthetic
history with wasp.demo.datagen, runs `init --restart` (turning archiving on), a full
backup, a drill; then writes at roughly the application's rate for
`--live-seconds` while sampling the WAL archive metrics every 5 s, takes an
incremental backup and drills again. Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_support.env import make_backup_env
from wasp.companions.backup.drill import run_drill
from wasp.companions.backup.ops import init_stanza, run_backup
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.demo.datagen import create_schema, generate
from wasp.exporter.collector import CollectContext
from wasp.exporter.db import TargetDB
from wasp.packs.backup import WalArchiveCollector


def _writer(dsn: str, stop: threading.Event, rate: float, counts: dict[str, int]) -> None:
    """Insert webhook logs and messages at about `rate` rows per second."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        salons = [r[0] for r in conn.execute("SELECT id FROM salons LIMIT 200").fetchall()]
        i = 0
        while not stop.is_set():
            salon = salons[i % len(salons)]
            conn.execute(
                "INSERT INTO webhook_logs (id, salon_id, event_type, payload, status, created_at) "
                "VALUES (%s, %s, 'message', %s, 'processed', now() AT TIME ZONE 'utc')",
                (uuid.uuid4().hex, salon, json.dumps({"n": i, "text": "x" * 200})))
            counts["rows"] = counts.get("rows", 0) + 1
            i += 1
            stop.wait(1.0 / rate)


async def _sample_wal(cfg_target: str, dsn: str, settings: Any, status_dir: Path,
                      seconds: float) -> list[dict[str, float]]:
    db = TargetDB(cfg_target, dsn)
    await db.open()
    collector = WalArchiveCollector(settings)
    out = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            fams = await collector.collect(CollectContext(now=time.time(), status_dir=status_dir,
                                                          db=db))
            row = {f.name: f.samples[0][1] for f in fams if f.samples}
            out.append({"t": time.time(),
                        "age": row.get("wasp_wal_archive_last_archived_age_seconds", -1),
                        "unarchived": row.get("wasp_wal_archive_unarchived_bytes", -1),
                        "ready": row.get("wasp_wal_archive_ready_segments", -1)})
            await asyncio.sleep(5)
    finally:
        await db.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/wasp-measure"))
    p.add_argument("--live-seconds", type=float, default=300)
    p.add_argument("--rate", type=float, default=5.0, help="rows per second while live")
    args = p.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    args.workdir.chmod(0o755)
    figures: dict[str, Any] = {"days": args.days, "scale": args.scale}
    cluster = LocalCluster(datadir=args.workdir / "pg", port=free_port(),
                           settings={"max_wal_size": "'4GB'", "shared_buffers": "'256MB'",
                                     "checkpoint_timeout": "'15min'"})
    cluster.init()
    cluster.start()
    try:
        drill_section = {"scratch_dir": str(args.workdir / "env" / "drill"), "database": "app",
                         "expected_rpo": "1h", "amcheck_sample": 10, "recovery_timeout": "30m"}
        env = make_backup_env(cluster, args.workdir / "env", backup={"drill": drill_section},
                              app_schema=False)
        with psycopg.connect(cluster.dsn("app"), autocommit=True) as conn:
            create_schema(conn)
            t0 = time.monotonic()
            rows = generate(conn, days=args.days, scale=args.scale,
                            progress=lambda m: print(f"  datagen: {m}", file=sys.stderr))
            figures["generate_seconds"] = round(time.monotonic() - t0, 1)
            figures["rows"] = rows
            conn.execute("VACUUM ANALYZE")
            figures["database_bytes"] = conn.execute(
                "SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        ctx = env.ctx()
        t0 = time.monotonic()
        init = init_stanza(ctx, restart=True)
        figures["init_seconds"] = round(time.monotonic() - t0, 1)
        figures["init_restarted"] = init.get("restarted")
        full = run_backup(ctx, "full")
        figures["full_backup"] = {k: full.get(k) for k in (
            "backup_seconds", "database_bytes", "repository_bytes", "duration_seconds")}
        drill = run_drill(ctx)
        figures["drill_after_full"] = {
            "ok": drill.ok, "restore_seconds": round(drill.restore_seconds, 1),
            "recovery_seconds": round(drill.recovery_seconds, 1),
            "rto_seconds": round(drill.rto_seconds, 1), "checks": len(drill.checks),
            "error": drill.error}
        stop = threading.Event()
        counts: dict[str, int] = {}
        writer = threading.Thread(target=_writer, args=(cluster.dsn("app"), stop, args.rate, counts))
        writer.start()
        try:
            samples = asyncio.run(_sample_wal("main", cluster.dsn("postgres"), env.settings(),
                                              env.status_dir, args.live_seconds))
        finally:
            stop.set()
            writer.join()
        ages = [s["age"] for s in samples if s["age"] >= 0]
        unarchived = [s["unarchived"] for s in samples if s["unarchived"] >= 0]
        figures["live"] = {
            "seconds": args.live_seconds, "rows_written": counts.get("rows", 0),
            "samples": len(samples),
            "archived_wal_age_seconds": {"max": round(max(ages), 1),
                                         "mean": round(sum(ages) / len(ages), 1)},
            "unarchived_bytes": {"max": max(unarchived),
                                 "mean": round(sum(unarchived) / len(unarchived))},
            "ready_segments_max": max(s["ready"] for s in samples),
        }
        incr = run_backup(ctx, "incr")
        figures["incr_backup"] = {k: incr.get(k) for k in (
            "backup_seconds", "database_bytes", "repository_bytes", "duration_seconds")}
        drill = run_drill(ctx)
        figures["drill_after_incr"] = {
            "ok": drill.ok, "restore_seconds": round(drill.restore_seconds, 1),
            "recovery_seconds": round(drill.recovery_seconds, 1),
            "rto_seconds": round(drill.rto_seconds, 1), "checks": len(drill.checks),
            "data_lag_seconds": drill.record.get("data_lag_seconds"), "error": drill.error}
    finally:
        cluster.destroy()
    print(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
