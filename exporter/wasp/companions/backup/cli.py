"""pgBackRest backups, WAL archiving and restore drills, reported through the exporter.

  init      write pgBackRest's configuration, set up WAL archiving, create and check the stanza
  run       take a full, differential or incremental backup, then expire old ones
  drill     restore a backup into a scratch cluster and check it: the proof a backup is good
  verify    check every file in the repository (pgbackrest verify, judged by its report)
  status    backups, WAL archive, attempts and drills, as a table or JSON
  crontab   print the configured schedule as crontab lines
  schedule  run the schedule in the foreground (for a container without cron)

Every job writes a status record that the exporter's `backup` pack reads.
Exit codes: 0 ok, 1 the job failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from wasp.config.backup import (
    BackupSettings,
    parse_section,
    section_error,
    target_problem,
)
from wasp.config.nodes import ConfigError

__all__ = ["BackupSettings", "add_arguments", "load_settings", "main", "parse_section"]

log = logging.getLogger("wasp.backup")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = os.environ.get("WASP_CONFIG", "/etc/wasp/wasp.yml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the backup subcommands to `parser`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="backup_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "init", help="configure pgBackRest and WAL archiving, create and check the stanza",
        description="Write pgBackRest's configuration (secrets in a separate 0600 file), set "
        "archive_mode, archive_command (asynchronous archive-push) and archive_timeout on the "
        "database, create the stanza and run `pgbackrest check`. Safe to run again.")
    p.add_argument("--restart", action="store_true",
                   help="restart PostgreSQL (pg_ctl -D backup.pg_path) when archive_mode needs it")
    p.set_defaults(backup_func=_cmd_init)

    p = sub.add_parser(
        "run", help="take a backup, then expire old backups and WAL",
        description="Run `pgbackrest backup --type TYPE`, then `expire`. Shows a progress bar on "
        "a terminal and log lines otherwise. The attempt is recorded whatever happens.")
    p.add_argument("--type", choices=("full", "diff", "incr"), default="incr",
                   help="backup type (default incr; pgBackRest takes a full when none exists)")
    p.add_argument("--lock-wait", type=float, default=3600.0, metavar="SECONDS",
                   help="wait this long for another backup job of the stanza (default 3600)")
    p.set_defaults(backup_func=_cmd_run)

    p = sub.add_parser(
        "drill", help="restore a backup into a scratch cluster and check it",
        description="Restore the latest backup (or --set LABEL, or --time for a point in time) "
        "into backup.drill.scratch_dir, start it on a free port with archiving off, wait for "
        "recovery, check tables, data freshness and indexes (amcheck), measure the restore "
        "time, then stop and remove it. Only a passing drill makes a backup count as good.")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--set", dest="label", metavar="LABEL", help="restore this backup")
    target.add_argument("--time", dest="target_time", metavar="TIMESTAMP",
                        help="recover to this point in time (ISO 8601; UTC when no offset)")
    p.add_argument("--keep", action="store_true",
                   help="leave the restored cluster running after a passing drill (for a look)")
    p.add_argument("--lock-wait", type=float, default=3600.0, metavar="SECONDS",
                   help="wait this long for another backup job of the stanza (default 3600)")
    p.set_defaults(backup_func=_cmd_drill)

    p = sub.add_parser(
        "verify", help="verify every file in the repository",
        description="Run `pgbackrest verify` and read its report: pgBackRest 2.45 exits 0 even "
        "when files are invalid. Exit 1 when any backup or WAL file is invalid or missing.")
    p.add_argument("--lock-wait", type=float, default=3600.0, metavar="SECONDS",
                   help="wait this long for another backup job of the stanza (default 3600)")
    p.set_defaults(backup_func=_cmd_verify)

    p = sub.add_parser(
        "status", help="backups, WAL archive, attempts and drills",
        description="Show what pgBackRest's info lists, the WAL archiver of the database, and "
        "the status records of backup attempts, drills and verifies. Exit 1 when pgBackRest "
        "cannot read the repository.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(backup_func=_cmd_status)

    p = sub.add_parser(
        "crontab", help="print the schedule as crontab lines",
        description="Print crontab lines for backup.schedule (defaults: daily full, hourly "
        "incremental, weekly drill), in UTC.")
    p.add_argument("--user", metavar="USER",
                   help="add a user field (for a file in /etc/cron.d), e.g. root")
    p.add_argument("--wasp", metavar="PATH", default=None,
                   help="the wasp executable to call (default: the one on PATH)")
    p.set_defaults(backup_func=_cmd_crontab)

    p = sub.add_parser(
        "schedule", help="run the schedule in the foreground (containers without cron)",
        description="Every minute, run the jobs of backup.schedule that are due, one at a time. "
        "Stop with SIGTERM or SIGINT.")
    p.set_defaults(backup_func=_cmd_schedule)


def load_settings(path: str | None) -> tuple[BackupSettings, Path]:
    """The backup section and the status directory of the wasp configuration at `path`."""
    from wasp.config.schema import load_config

    file = path or DEFAULT_CONFIG
    cfg = load_config(file)
    s = cfg.section("backup")
    if s is None:
        raise ConfigError(file, None, "backup", "the configuration has no backup: section")
    if s.target is not None:
        problem = target_problem(cfg, s.target)
        if problem:
            raise section_error(s, "target", problem)
    return s, Path(cfg.server.status_dir)


def main(args: argparse.Namespace) -> int:
    """Run the chosen backup action; returns the exit code."""
    try:
        settings, status_dir = load_settings(getattr(args, "config", None))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from wasp.companions.backup.ops import BackupContext, JobFailed

    ctx = BackupContext(settings, status_dir)
    # SIGTERM (docker stop, systemd) ends a job like Ctrl-C: pgBackRest stopped, attempt recorded
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        rc: int = args.backup_func(ctx, args)
    except JobFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE if e.usage else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return rc


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _cmd_init(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.ops import init_stanza

    rec = init_stanza(ctx, restart=args.restart)
    print(f"stanza {ctx.settings.stanza} ready: archive_command = {rec['archive_command']}")
    return EXIT_OK


def _cmd_run(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.ops import run_backup

    rec = run_backup(ctx, args.type, lock_wait=args.lock_wait)
    print(f"backup {rec.get('label')} ({rec.get('actual_type')}) completed in "
          f"{rec.get('backup_seconds', 0):.1f}s")
    return EXIT_OK


def _cmd_drill(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.drill import run_drill

    target = None
    if args.target_time:
        try:
            target = dt.datetime.fromisoformat(args.target_time.replace("Z", "+00:00"))
        except ValueError:
            print(f"error: --time {args.target_time!r} is not an ISO 8601 timestamp",
                  file=sys.stderr)
            return EXIT_USAGE
    result = run_drill(ctx, label=args.label, target_time=target, keep=args.keep,
                       lock_wait=args.lock_wait)
    for c in result.checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    if result.ok:
        print(f"drill passed: backup {result.label}, restore {result.restore_seconds:.1f}s, "
              f"recovery {result.recovery_seconds:.1f}s, RTO {result.rto_seconds:.1f}s")
        if result.scratch is not None:
            print(f"restored cluster left running: {result.scratch.dsn(ctx.settings.drill.database)}")
        return EXIT_OK
    print(f"drill FAILED: {result.error}", file=sys.stderr)
    return EXIT_FAILED


def _cmd_verify(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.ops import verify_repo

    verify_repo(ctx, lock_wait=args.lock_wait)
    print(f"verify: repository of stanza {ctx.settings.stanza} is valid")
    return EXIT_OK


def _cmd_status(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.report import format_status, status_report

    report = status_report(ctx)
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True, default=str))
    else:
        print(format_status(report))
    return EXIT_FAILED if "info_error" in report else EXIT_OK


def _schedule_map(s: BackupSettings) -> dict[str, str | None]:
    sch = s.schedule
    return {"full": sch.full, "diff": sch.diff, "incr": sch.incr, "drill": sch.drill,
            "verify": sch.verify}


def _cmd_crontab(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.config.cron import crontab_lines

    wasp = args.wasp or shutil.which("wasp") or "wasp"
    config = os.path.abspath(getattr(args, "config", None) or DEFAULT_CONFIG)
    for line in crontab_lines(_schedule_map(ctx.settings), wasp=wasp, config=config,
                              user=args.user):
        print(line)
    return EXIT_OK


def _cmd_schedule(ctx: Any, args: argparse.Namespace) -> int:
    from wasp.companions.backup.drill import run_drill
    from wasp.companions.backup.ops import JobFailed, run_backup, verify_repo
    from wasp.config.cron import run_scheduler

    def run_job(job: str) -> int:
        try:
            if job in ("full", "diff", "incr"):
                run_backup(ctx, job)
            elif job == "verify":
                verify_repo(ctx)
            else:
                return EXIT_OK if run_drill(ctx).ok else EXIT_FAILED
        except JobFailed as e:
            log.error("%s failed: %s", job, e)
            return EXIT_FAILED
        return EXIT_OK

    run_scheduler(_schedule_map(ctx.settings), run_job)
    return EXIT_OK
