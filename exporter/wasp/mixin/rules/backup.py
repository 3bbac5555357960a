"""Alerts on backups: age, drills, repository, WAL archiving, verify, corrupt pages, a stuck
backup, missing backup metrics."""

from __future__ import annotations

import math

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import (
    Bound,
    Fires,
    Point,
    Probe,
    counter,
    gauge,
    minutes,
    timestamp,
    when,
)
from wasp.mixin.rules.fourcases import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, S, Series, T, series, st, t
from wasp.mixin.settings import Settings, spoken, spoken_seconds


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-backup")
    q = b.q()
    b.alert(g, "WaspBackupTooOld", "warning", q, f"""
{q("wasp_backup_last_completed_age_seconds", type="full")} > {num(cfg.full_completed_max_seconds)}
or
{q("wasp_backup_last_completed_age_seconds", type="incr")} > {num(cfg.incr_completed_max_seconds)}
""",
        "The newest {{ $labels.type }} backup of {{ $labels.stanza }} is {{ $value | humanizeDuration }} old",
        "The newest completed {{ $labels.type }} backup of stanza {{ $labels.stanza }} (repo "
        "{{ $labels.repo }}) stopped {{ $value | humanizeDuration }} ago: scheduled backups do not "
        "run or do not finish (cron, lock, disk, repository).",
        [Case("the nightly full did not run", (
            series("wasp_backup_last_completed_age_seconds", "100000+60x30", **st(repo="1", type="full")),
            series("wasp_backup_last_completed_age_seconds", "600x30", **st(repo="1", type="incr")),
        ), "20m", (Fired(st(repo="1", type="full"), 101200, "warning"),)),
         Case("fresh backups", (
             series("wasp_backup_last_completed_age_seconds", "40000x30", **st(repo="1", type="full")),
             series("wasp_backup_last_completed_age_seconds", "3000x30", **st(repo="1", type="incr")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspBackupNotProven", "warning", q, f"""
{q("wasp_backup_last_good_age_seconds", type="full")} > {num(cfg.good_full_max_seconds)}
or ignoring (type)
({q("wasp_backup_repository_up")} == 1) * 0 + Inf
  unless ignoring (type) {q("wasp_backup_last_good_age_seconds", type="full")}
""",
        "No drill-proven full backup of {{ $labels.stanza }} for {{ $value | humanizeDuration }}",
        "The newest good full backup of stanza {{ $labels.stanza }} (repo {{ $labels.repo }}), one "
        "a restore drill proved, stopped {{ $value | humanizeDuration }} ago (+Inf: none ever). "
        "Until a drill passes, no backup is known to restore.",
        [Case("the weekly drill did not prove a backup for 9 days", (
            series("wasp_backup_last_good_age_seconds", "777600+60x90", **st(repo="1", type="full")),
            series("wasp_backup_repository_up", "1x90", **st(repo="1")),
        ), "80m", (Fired(st(repo="1", type="full"), 782400, "warning"),)),
         Case("backups exist but no drill ever passed", (
             series("wasp_backup_repository_up", "1x90", **st(repo="1")),
         ), "80m", (Fired(st(repo="1"), math.inf, "warning"),)),
         Case("proven two days ago", (
             series("wasp_backup_last_good_age_seconds", "172800+60x90", **st(repo="1", type="full")),
             series("wasp_backup_repository_up", "1x90", **st(repo="1")),
         ), "80m")])

    q = b.q()
    b.alert(g, "WaspBackupFailed", "warning", q, f"""
{q("wasp_backup_last_attempt_success")} == 0
""",
        "The last {{ $labels.type }} backup of {{ $labels.stanza }} failed",
        "The last {{ $labels.type }} backup attempt of stanza {{ $labels.stanza }} failed "
        "(wasp_backup_last_attempt_exit_code has pgBackRest's exit code; the status record and "
        "`wasp backup status` the error).",
        [Case("incremental failed", (
            series("wasp_backup_last_attempt_success", "1x5 0x20", **st(type="incr")),), "15m",
            (Fired(st(type="incr"), 0, "warning"),)),
         Case("all succeeded", (
             series("wasp_backup_last_attempt_success", "1x20", **st(type="incr")),), "15m")])

    q = b.q()
    b.alert(g, "WaspRestoreDrillFailed", "warning", q, f"""
{q("wasp_backup_drill_last_success")} == 0
""",
        "The last restore drill of {{ $labels.stanza }} failed",
        "The last restore drill of stanza {{ $labels.stanza }} failed "
        "(wasp_backup_drill_checks_failed checks): the backup it restored is not good, and neither "
        "are the ones it depends on. Run `wasp backup status` for the failed checks.",
        [Case("drill failed", (
            series("wasp_backup_drill_last_success", "0x20", **S),), "15m", (Fired(S, 0, "warning"),)),
         Case("drill passed", (series("wasp_backup_drill_last_success", "1x20", **S),), "15m")])

    q = b.q()
    b.alert(g, "WaspRestoreDrillTooOld", "warning", q, f"""
time() - {q("wasp_backup_drill_last_success_timestamp_seconds")} > {num(cfg.drill_max_seconds)}
""",
        "No passing restore drill of {{ $labels.stanza }} for {{ $value | humanizeDuration }}",
        "The last passing restore drill of stanza {{ $labels.stanza }} ended "
        "{{ $value | humanizeDuration }} ago: the weekly drill does not run or keeps failing.",
        [Case("last pass 9 days ago", (
            series("wasp_backup_drill_last_success_timestamp_seconds", "-777600x90", **S),), "80m",
            (Fired(S, 782400, "warning"),)),
         Case("passed yesterday", (
             series("wasp_backup_drill_last_success_timestamp_seconds", "-86400x90", **S),), "80m")])

    q = b.q()
    b.alert(g, "WaspRestoreDrillTooSlow", "warning", q, f"""
{q("wasp_backup_drill_restore_duration_seconds")} > {num(cfg.rto_seconds)}
""",
        "Restoring {{ $labels.stanza }} took {{ $value | humanizeDuration }} in the last drill",
        "The last restore drill of stanza {{ $labels.stanza }} needed {{ $value | humanizeDuration }} "
        f"to restore and recover, more than the {spoken_seconds(cfg.rto_seconds)} promised (the "
        "RTO): a real restore would take as long. Look at the repository's throughput, "
        "process-max and the size of the WAL to replay since the full backup.",
        [Case("restore in 20 minutes", (
            series("wasp_backup_drill_restore_duration_seconds", "1200x20", **S),), "15m")])

    q = b.q()
    b.alert(g, "WaspBackupRepositoryUnreadable", "page", q, f"""
{q("wasp_backup_repository_up")} == 0
""",
        "pgBackRest cannot read repository {{ $labels.repo }} of {{ $labels.stanza }}",
        "pgBackRest info cannot read repository {{ $labels.repo }} of stanza {{ $labels.stanza }} "
        "(wasp_backup_pgbackrest_status_code says why: passphrase, storage, stanza). Backups, WAL "
        "archiving and restores all depend on it.",
        [Case("wrong passphrase", (
            series("wasp_backup_repository_up", "0x30", **st(repo="1")),), "20m",
            (Fired(st(repo="1"), 0, "page"),)),
         Case("readable", (series("wasp_backup_repository_up", "1x30", **st(repo="1")),), "20m")])

    q = b.q()
    un = q("wasp_wal_archive_unarchived_bytes")
    b.alert(g, "WaspWALArchiveBehind", "page", q, f"""
{un} > {num(cfg.wal_unarchived_bytes)}
or
({un} > 0 and {q("wasp_wal_archive_last_archived_age_seconds")} > {num(cfg.rpo_seconds)})
""",
        "{{ $value | humanize1024 }}B of WAL not archived on {{ $labels.target }}",
        "{{ $value | humanize1024 }}B of WAL written on {{ $labels.target }} (stanza "
        "{{ $labels.stanza }}) are not in the archive yet: losing the server now loses them (the "
        "RPO). archive-push fails or is too slow.",
        [Case("archiving stopped under load", (
            series("wasp_wal_archive_unarchived_bytes", "0+16777216x30", **t(stanza="main")),
            series("wasp_wal_archive_last_archived_age_seconds", "0+60x30", **t(stanza="main")),
        ), "20m", (Fired(t(stanza="main"), 20 * 16777216, "page"),)),
         Case("a few bytes stuck for an hour", (
             series("wasp_wal_archive_unarchived_bytes", "8192x60", **t(stanza="main")),
             series("wasp_wal_archive_last_archived_age_seconds", "0+60x60", **t(stanza="main")),
         ), "40m", (Fired(t(stanza="main"), 8192, "page"),)),
         Case("idle database: old archive, nothing pending", (
             series("wasp_wal_archive_unarchived_bytes", "0x60", **t(stanza="main")),
             series("wasp_wal_archive_last_archived_age_seconds", "0+60x60", **t(stanza="main")),
         ), "40m")])

    q = b.q()
    b.alert(g, "WaspWALArchiveFailing", "warning", q, f"""
increase({q("wasp_wal_archive_failures_total")}[{cfg.wal_archive_failing_window}]) > 0
""",
        "WAL archiving to {{ $labels.stanza }} fails on {{ $labels.target }}",
        "archive-push failed {{ $value | humanize }} times in "
        f"{spoken(cfg.wal_archive_failing_window)} on {{{{ $labels.target }}}} "
        "(stanza {{ $labels.stanza }}): WAL accumulates in pg_wal and the RPO grows. The "
        "PostgreSQL log and pgBackRest's archive-push log say why.",
        [Case("every attempt fails", (
            series("wasp_wal_archive_failures_total", "0+1x60", **t(stanza="main")),), "40m",
            (Fired(t(stanza="main"), 15, "warning"),)),
         Case("an old failure", (
             series("wasp_wal_archive_failures_total", "0x5 1x60", **t(stanza="main")),), "40m")])

    _failures(b, g)


def _failures(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspBackupVerifyFailed"
    stanza = st()
    b.alert(g, name, "warning", q, f"""
{q("wasp_backup_verify_last_success")} == 0
""",
        "The last verify of {{ $labels.stanza }}'s repository found invalid files",
        "`wasp backup verify` checked every file of stanza {{ $labels.stanza }}'s repository "
        "against its checksum and found invalid or missing ones "
        "(wasp_backup_verify_invalid_files): a backup or WAL file that cannot be restored. "
        "Take a new full backup, then find what damaged the repository.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_backup_verify_last_success", f"{0 if firing else 1}x{n}", **stanza),),
            stanza, 0))

    q = b.q()
    name = "WaspBackupPageChecksumErrors"
    repo = st(repo="1")
    b.alert(g, name, "warning", q, f"""
{q("wasp_backup_page_checksum_error_backups")} > 0
""",
        "{{ $value }} backups of {{ $labels.stanza }} hold pages with checksum errors",
        "pgBackRest found data pages with a wrong checksum while backing up stanza "
        "{{ $labels.stanza }} (repo {{ $labels.repo }}) in {{ $value }} kept backups: the "
        "database has corrupt pages (wasp_pg_database_checksum_failures_total) and those backups "
        "carry them. None of them counts as good.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_backup_page_checksum_error_backups", f"{1 if firing else 0}x{n}",
                   **repo),), repo, 1))

    q = b.q()
    name = "WaspBackupStuck"
    full = st(type="full")
    stuck = cfg.backup_stuck_seconds
    b.alert(g, name, "warning", q, f"""
time() - {q("wasp_backup_last_attempt_timestamp_seconds")} > {num(stuck)}
and {q("wasp_backup_last_attempt_running")} == 1
""",
        "A {{ $labels.type }} backup of {{ $labels.stanza }} runs for {{ $value | humanizeDuration }}",
        "The {{ $labels.type }} backup of stanza {{ $labels.stanza }} started "
        "{{ $value | humanizeDuration }} ago and has not finished: it hangs (storage, network, a "
        "lock) or its process died without a record. While it holds the stanza's lock no other "
        "backup runs.",
        # the attempt started this long before the test's time 0: ten minutes short of stuck
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_backup_last_attempt_timestamp_seconds",
                   f"{num(-(stuck - 600) if firing else -(stuck - 2400))}x{n}", **full),
            series("wasp_backup_last_attempt_running", f"1x{n}", **full)),
            full, lambda at: 60 * at + stuck - 600, lead=11))

    q = b.q()
    name = "WaspBackupMetricsAbsent"
    b.alert(g, name, "warning", q, f"""
absent({q("wasp_backup_repository_up")})
""",
        "No backup metrics",
        "No exporter reports wasp_backup_repository_up: the backup pack is not configured, "
        "or its collector cannot run. Without it nothing here says whether a backup exists, "
        "so every other backup alert stays silent.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_target_up", f"1x{n}", **T),
            *(() if firing else (series("wasp_backup_repository_up", f"1x{n}", **st(repo="1")),)),
        ), dict(cfg.selector), 1))


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    repo, main = st(repo="1"), t(stanza="main")
    failing_window = minutes(cfg.wal_archive_failing_window)

    def too_old(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (gauge("wasp_backup_last_completed_age_seconds", p["full"], n,
                      **st(repo="1", type="full")),
                gauge("wasp_backup_last_completed_age_seconds", p["incr"], n,
                      **st(repo="1", type="incr")))

    def too_old_fires(p: Point, at: int) -> Fires:
        return [*when(p["full"] > cfg.full_completed_max_seconds, "warning",
                      st(repo="1", type="full"), p["full"]),
                *when(p["incr"] > cfg.incr_completed_max_seconds, "warning",
                      st(repo="1", type="incr"), p["incr"])]

    def archive(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (gauge("wasp_wal_archive_unarchived_bytes", p["bytes"], n, **main),
                gauge("wasp_wal_archive_last_archived_age_seconds", p["age"], n, **main))

    def archive_fires(p: Point, at: int) -> Fires:
        behind = p["bytes"] > cfg.wal_unarchived_bytes or (p["bytes"] > 0
                                                           and p["age"] > cfg.rpo_seconds)
        return when(behind, "page", main, p["bytes"])

    def flag(metric: str, labels: dict[str, str], severity: str = "warning") -> Probe:
        return Probe({"ok": 0}, (Bound("ok", "==", quiet=1),),
                     lambda p, n, every: (gauge(metric, p["ok"], n, **labels),),
                     lambda p, at: when(p["ok"] == 0, severity, labels, 0))

    stuck, full = cfg.backup_stuck_seconds, st(type="full")
    return {
        "WaspBackupStuck": Probe(
            {"age": 2 * stuck, "running": 1},
            (Bound("age", ">", "backup_stuck_seconds"),
             Bound("running", "==", literal=1, quiet=0)),
            lambda p, n, every: (
                timestamp("wasp_backup_last_attempt_timestamp_seconds", p["age"], n, every,
                          **full),
                gauge("wasp_backup_last_attempt_running", p["running"], n, **full)),
            lambda p, at: when(p["age"] > stuck and p["running"] == 1, "warning", full,
                               p["age"])),
        # absent() has no threshold: the backup metrics are there (quiet) or not (fires); an
        # exporter answers either way
        "WaspBackupMetricsAbsent": Probe(
            {"present": 0}, (Bound("present", "==", literal=0, quiet=1),),
            lambda p, n, every: (
                gauge("wasp_target_up", 1, n, **T),
                *((gauge("wasp_backup_repository_up", 1, n, **repo),) if p["present"] else ())),
            lambda p, at: when(p["present"] == 0, "warning", dict(cfg.selector), 1)),
        "WaspBackupTooOld": Probe(
            {"full": 200000, "incr": 600},
            (Bound("full", ">", "full_completed_max_seconds"),
             Bound("incr", ">", "incr_completed_max_seconds", at={"full": 40000})),
            too_old, too_old_fires),
        "WaspBackupNotProven": Probe(
            {"age": 2 * cfg.good_full_max_seconds}, (Bound("age", ">", "good_full_max_seconds"),),
            lambda p, n, every: (gauge("wasp_backup_last_good_age_seconds", p["age"], n,
                                       **st(repo="1", type="full")),
                                 gauge("wasp_backup_repository_up", 1, n, **repo)),
            lambda p, at: when(p["age"] > cfg.good_full_max_seconds, "warning",
                               st(repo="1", type="full"), p["age"])),
        "WaspBackupVerifyFailed": Probe(
            {"ok": 0}, (Bound("ok", "==", quiet=1),),
            lambda p, n, every: (gauge("wasp_backup_verify_last_success", p["ok"], n, **st()),),
            lambda p, at: when(p["ok"] == 0, "warning", st(), 0)),
        "WaspBackupPageChecksumErrors": Probe(
            {"backups": 2}, (Bound("backups", ">", quiet=0),),
            lambda p, n, every: (gauge("wasp_backup_page_checksum_error_backups", p["backups"], n,
                                       **st(repo="1")),),
            lambda p, at: when(p["backups"] > 0, "warning", st(repo="1"), p["backups"])),
        "WaspBackupFailed": flag("wasp_backup_last_attempt_success", st(type="incr")),
        "WaspRestoreDrillFailed": flag("wasp_backup_drill_last_success", S),
        "WaspRestoreDrillTooOld": Probe(
            {"age": 2 * cfg.drill_max_seconds}, (Bound("age", ">", "drill_max_seconds"),),
            lambda p, n, every: (timestamp("wasp_backup_drill_last_success_timestamp_seconds",
                                           p["age"], n, every, **S),),
            lambda p, at: when(p["age"] > cfg.drill_max_seconds, "warning", S, p["age"])),
        "WaspRestoreDrillTooSlow": Probe(
            {"seconds": 2 * cfg.rto_seconds}, (Bound("seconds", ">", "rto_seconds"),),
            lambda p, n, every: (gauge("wasp_backup_drill_restore_duration_seconds", p["seconds"],
                                       n, **S),),
            lambda p, at: when(p["seconds"] > cfg.rto_seconds, "warning", S, p["seconds"])),
        "WaspBackupRepositoryUnreadable": flag("wasp_backup_repository_up", repo, "page"),
        "WaspWALArchiveBehind": Probe(
            {"bytes": 2 * cfg.wal_unarchived_bytes, "age": 0},
            (Bound("bytes", ">", "wal_unarchived_bytes"),
             Bound("age", ">", "rpo_seconds", at={"bytes": 8192})),
            archive, archive_fires),
        "WaspWALArchiveFailing": Probe(
            {"per_minute": 1}, (Bound("per_minute", ">", quiet=0),),
            lambda p, n, every: (counter("wasp_wal_archive_failures_total", p["per_minute"], n,
                                         **main),),
            lambda p, at: when(p["per_minute"] > 0, "warning", main,
                               p["per_minute"] * min(at, failing_window)),
            onset=1),
    }
