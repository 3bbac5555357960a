"""The `backup` pack: pgBackRest's view, the companion's records, and the live WAL archive.

Three collectors, none of which ever runs a backup:

* ``backup_info`` runs ``pgbackrest info --output=json`` (asynchronously, with a
  timeout) and joins it with the drill records: per stanza, repository and
  type, the newest completed and the newest *good* (drill-proven) backup, its
  duration and sizes, how many are kept, and pgBackRest's status code. A
  repository pgBackRest cannot read (missing or wrong passphrase, garbage
  JSON) becomes ``wasp_backup_repository_up 0`` with the status code, an error
  counter and a log line; the other collectors carry on.
* ``backup_records`` reads the companion's status records: every attempt with
  its exit code (a failing nightly backup never appears in `info`), drills with
  their result, restore time (the measured RTO) and failed checks, verifies.
* ``wal_archive`` asks the database (primary only): age of the newest archived
  WAL file, archive failures, ``.ready`` files waiting, and the WAL bytes not
  yet archived (current LSN minus the end of the last archived segment): the
  live RPO in bytes, which, unlike the age, stays at zero on an idle database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from wasp.companions.backup.pgbackrest import (
    InfoError,
    PgBackRest,
    RepoStatus,
    StanzaInfo,
    error_text,
    parse_info,
    wal_segment_end,
)
from wasp.companions.backup.records import (
    BACKUP_TYPES,
    StanzaRecords,
    load_records,
    newest_completed,
    newest_good,
)
from wasp.config.backup import BackupSettings, resolve_secrets, target_problem
from wasp.config.schema import Config
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import DBError
from wasp.model import Family, MetricSpec, MetricType, Sample, check_metric_name

__all__ = [
    "METRICS",
    "BackupInfoCollector",
    "BackupRecordsCollector",
    "WalArchiveCollector",
    "build_collectors",
    "families_from_info",
    "families_from_records",
    "families_from_wal",
]

log = logging.getLogger(__name__)


def _wal_spec(name: str, type_: MetricType, labels: tuple[str, ...], help_: str) -> MetricSpec:
    # the WAL archive collector is bound to the stanza's target: the engine adds `target`
    return MetricSpec(name, type_, labels, help_, target=True)


_R = ("stanza", "repo")
_RT = ("stanza", "repo", "type")
_T = ("stanza", "type")
_S = ("stanza",)

METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    # pgbackrest info (collector backup_info)
    MetricSpec("wasp_backup_repository_up", "gauge", _R,
               "1 when pgBackRest read the repository (status ok or no backups yet), 0 when it "
               "could not (missing or wrong passphrase, unreachable storage, unreadable output)."),
    MetricSpec("wasp_backup_pgbackrest_status_code", "gauge", _R,
               "pgBackRest's status code for the stanza on this repository: 0 ok, 1 missing "
               "stanza path, 2 no valid backups, 3 missing stanza data, 4 different across "
               "repos, 5 database mismatch, 6 backup not found, 99 other; -1 when info printed "
               "no usable JSON."),
    MetricSpec("wasp_backup_repository_errors_total", "counter", _R,
               "Rounds in which pgBackRest info could not read the repository."),
    MetricSpec("wasp_backup_in_progress", "gauge", _S,
               "1 while pgBackRest holds the stanza's backup lock (a backup or expire runs)."),
    MetricSpec("wasp_backup_last_completed_timestamp_seconds", "gauge", _RT,
               "Stop time of the newest completed backup of this type (pgBackRest info)."),
    MetricSpec("wasp_backup_last_completed_age_seconds", "gauge", _RT,
               "Seconds since the newest completed backup of this type stopped."),
    MetricSpec("wasp_backup_last_good_timestamp_seconds", "gauge", _RT,
               "Stop time of the newest good backup of this type: completed, no page checksum "
               "error, and proven by a passing restore drill (of itself or a later backup "
               "that depends on it)."),
    MetricSpec("wasp_backup_last_good_age_seconds", "gauge", _RT,
               "Seconds since the newest good (drill-proven) backup of this type stopped."),
    MetricSpec("wasp_backup_last_duration_seconds", "gauge", _RT,
               "Duration of the newest completed backup of this type."),
    MetricSpec("wasp_backup_last_database_size_bytes", "gauge", _RT,
               "Database size covered by the newest completed backup of this type."),
    MetricSpec("wasp_backup_last_database_delta_bytes", "gauge", _RT,
               "Database bytes the newest completed backup of this type copied (its delta)."),
    MetricSpec("wasp_backup_last_repository_size_bytes", "gauge", _RT,
               "Repository bytes (compressed, encrypted) of the newest completed backup set "
               "of this type."),
    MetricSpec("wasp_backup_last_repository_delta_bytes", "gauge", _RT,
               "Repository bytes the newest completed backup of this type added."),
    MetricSpec("wasp_backup_kept_backups", "gauge", _RT,
               "Backups of this type kept in the repository after expiry."),
    MetricSpec("wasp_backup_page_checksum_error_backups", "gauge", _R,
               "Kept backups in which pgBackRest found page checksum errors (never good)."),
    # status records (collector backup_records)
    MetricSpec("wasp_backup_attempts_total", "counter", _T,
               "Backup attempts of this type started by the companion."),
    MetricSpec("wasp_backup_failures_total", "counter", _T,
               "Backup attempts of this type that failed (including ones that never finished)."),
    MetricSpec("wasp_backup_last_attempt_timestamp_seconds", "gauge", _T,
               "Start time of the last backup attempt of this type."),
    MetricSpec("wasp_backup_last_attempt_success", "gauge", _T,
               "1 when the last finished backup attempt of this type succeeded (backup and "
               "expire), 0 when it failed."),
    MetricSpec("wasp_backup_last_attempt_exit_code", "gauge", _T,
               "Exit code of the last finished backup attempt of this type (pgBackRest's code "
               "on its failures, 0 on success)."),
    MetricSpec("wasp_backup_last_attempt_running", "gauge", _T,
               "1 while a backup attempt of this type runs (by its record)."),
    MetricSpec("wasp_backup_last_success_timestamp_seconds", "gauge", _T,
               "End time of the last successful backup attempt of this type."),
    MetricSpec("wasp_backup_drill_last_timestamp_seconds", "gauge", _S,
               "End time of the last restore drill."),
    MetricSpec("wasp_backup_drill_last_success", "gauge", _S,
               "1 when the last restore drill passed every check, 0 when it failed."),
    MetricSpec("wasp_backup_drill_last_success_timestamp_seconds", "gauge", _S,
               "End time of the last passing restore drill."),
    MetricSpec("wasp_backup_drill_restore_duration_seconds", "gauge", _S,
               "Measured RTO of the last drill that restored: restore plus WAL recovery until "
               "the restored cluster accepted writes."),
    MetricSpec("wasp_backup_drill_checks", "gauge", _S,
               "Checks run by the last restore drill."),
    MetricSpec("wasp_backup_drill_checks_failed", "gauge", _S,
               "Checks that failed in the last restore drill (a failed restore counts as one)."),
    MetricSpec("wasp_backup_drill_data_lag_seconds", "gauge", _S,
               "In the last drill, the backup stop (or target) time minus the newest restored "
               "row's creation time."),
    MetricSpec("wasp_backup_drill_runs_total", "counter", _S, "Restore drills started."),
    MetricSpec("wasp_backup_drill_failures_total", "counter", _S, "Restore drills that failed."),
    MetricSpec("wasp_backup_verify_last_timestamp_seconds", "gauge", _S,
               "End time of the last repository verify."),
    MetricSpec("wasp_backup_verify_last_success", "gauge", _S,
               "1 when the last verify found every file valid (judged by its report, not its "
               "exit code)."),
    MetricSpec("wasp_backup_verify_invalid_files", "gauge", _S,
               "Invalid or missing files the last verify reported."),
    # database (collector wal_archive)
    _wal_spec("wasp_wal_archive_enabled", "gauge", _S, "1 when archive_mode is on or always."),
    _wal_spec("wasp_wal_archive_last_archived_timestamp_seconds", "gauge", _S,
               "Time the newest WAL file was archived (pg_stat_archiver)."),
    _wal_spec("wasp_wal_archive_last_archived_age_seconds", "gauge", _S,
               "Seconds since the newest WAL file was archived; grows on an idle database too."),
    _wal_spec("wasp_wal_archive_archived_total", "counter", _S,
               "WAL files archived (pg_stat_archiver; resets with its statistics)."),
    _wal_spec("wasp_wal_archive_failures_total", "counter", _S,
               "Failed WAL archive attempts (pg_stat_archiver; resets with its statistics)."),
    _wal_spec("wasp_wal_archive_last_failed_timestamp_seconds", "gauge", _S,
               "Time of the last failed WAL archive attempt."),
    _wal_spec("wasp_wal_archive_ready_segments", "gauge", _S,
               "WAL files waiting to be archived (.ready files in pg_wal/archive_status)."),
    _wal_spec("wasp_wal_archive_unarchived_bytes", "gauge", _S,
               "WAL bytes written but not yet archived: current LSN minus the end of the last "
               "archived segment. The live RPO in bytes; unlike the age it does not grow "
               "while the database is idle."),
)}

for _m in METRICS.values():
    _problem = check_metric_name(_m.name, _m.type)
    if _problem:  # pragma: no cover - a naming mistake fails at import
        raise AssertionError(_problem)


def _families(samples: Mapping[str, list[Sample]]) -> list[Family]:
    out = []
    for name, ss in samples.items():
        if not ss:
            continue
        spec = METRICS[name]
        out.append(Family(name, spec.type, spec.help, spec.labels, tuple(ss)))
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    return None


def build_collectors(cfg: Config) -> list[Collector]:
    """The backup pack's collectors (none without a backup: section)."""
    s: BackupSettings | None = cfg.section("backup")
    if s is None:
        log.warning("the backup pack is enabled but the configuration has no backup: section")
        return []
    out: list[Collector] = [BackupInfoCollector(s), BackupRecordsCollector(s)]
    if s.target is not None:
        problem = target_problem(cfg, s.target)
        if problem:
            # `wasp backup` refuses this configuration; the exporter keeps the rest running
            log.error("%s: backup.target: %s; the wal_archive collector is disabled",
                      cfg.path, problem)
        else:
            out.append(WalArchiveCollector(s))
    return out


# ---------------------------------------------------------------------------
# pgbackrest info
# ---------------------------------------------------------------------------
class BackupInfoCollector(Collector):
    """Runs `pgbackrest info --output=json` and joins it with the drill verdicts."""

    def __init__(self, settings: BackupSettings) -> None:
        self.settings = settings
        self.name = "backup_info"
        self.target = None
        self.interval = settings.info_interval
        self.timeout = settings.info_timeout
        self.errors: dict[tuple[str, str], int] = {}
        self._last_problem: str | None = None

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """One round: info (never raises for a broken repository) plus records."""
        s = self.settings
        info, problem, code = await self._info()
        records = await asyncio.to_thread(load_records, ctx.status_dir, s.stanza)
        key = (s.stanza, s.repo_key)
        if problem is not None:
            self.errors[key] = self.errors.get(key, 0) + 1
            if problem != self._last_problem:
                log.warning("backup: stanza %s repo%s unreadable: %s", s.stanza, s.repo_key, problem)
        elif self._last_problem is not None:
            log.info("backup: stanza %s repo%s readable again", s.stanza, s.repo_key)
        self._last_problem = problem
        return families_from_info(s.stanza, s.repo_key, info, records, now=ctx.now,
                                  fallback_code=code, errors=self.errors)

    async def _info(self) -> tuple[StanzaInfo | None, str | None, int]:
        s = self.settings
        secrets = await asyncio.to_thread(resolve_secrets, s)
        pgb = PgBackRest(s, secrets)
        try:
            r = await pgb.capture_async("info", "--output=json", "--log-level-file=off",
                                        timeout=max(1.0, self.timeout - 1.0))
        except OSError as e:
            raise CollectError("missing", f"cannot run {s.pgbackrest}: {e}") from None
        if r.timed_out:
            raise CollectError("timeout", f"pgbackrest info took longer than {self.timeout:g}s")
        try:
            stanzas = parse_info(r.stdout)
        except InfoError as e:
            detail = error_text(r.stderr) or str(e)
            hint = f"; {', '.join(secrets.missing)} not readable" if secrets.missing else ""
            return None, f"pgbackrest info exited {r.returncode}: {detail}{hint}", -1
        for st in stanzas:
            if st.name == s.stanza:
                bad = [rp for rp in st.repos if rp.code not in (0, 2)]
                if bad:
                    return st, f"status {bad[0].code}: {bad[0].message}", bad[0].code
                return st, None, st.code
        return None, f"pgbackrest info does not list stanza {s.stanza!r}", -1


def families_from_info(stanza: str, repo: str, info: StanzaInfo | None, records: StanzaRecords,
                       *, now: float, fallback_code: int = -1,
                       errors: Mapping[tuple[str, str], int] | None = None) -> list[Family]:
    """Families of the backup_info collector from one info result and the records."""
    s: dict[str, list[Sample]] = {name: [] for name in METRICS}
    errors = errors or {}
    s["wasp_backup_repository_errors_total"].append(((stanza, repo), float(errors.get((stanza, repo), 0))))
    if info is None:
        s["wasp_backup_repository_up"].append(((stanza, repo), 0.0))
        s["wasp_backup_pgbackrest_status_code"].append(((stanza, repo), float(fallback_code)))
        return _families(s)
    repos: dict[str, RepoStatus | None] = {str(r.key): r for r in info.repos} or {repo: None}
    for key, r in sorted(repos.items()):
        code = r.code if r is not None else info.code
        s["wasp_backup_repository_up"].append(((stanza, key), 1.0 if code in (0, 2) else 0.0))
        s["wasp_backup_pgbackrest_status_code"].append(((stanza, key), float(code)))
    s["wasp_backup_in_progress"].append(((stanza,), 1.0 if info.backup_running else 0.0))
    readable = {k for k, r in repos.items() if r is None or r.code in (0, 2)}
    completed = newest_completed(info)
    good = newest_good(info, records.drill)
    for (rkey, type_), b in sorted(completed.items()):
        if str(rkey) not in readable:
            continue
        lab = (stanza, str(rkey), type_)
        s["wasp_backup_last_completed_timestamp_seconds"].append((lab, b.stop))
        s["wasp_backup_last_completed_age_seconds"].append((lab, max(0.0, now - b.stop)))
        s["wasp_backup_last_duration_seconds"].append((lab, b.duration))
        s["wasp_backup_last_database_size_bytes"].append((lab, float(b.size)))
        s["wasp_backup_last_database_delta_bytes"].append((lab, float(b.delta)))
        s["wasp_backup_last_repository_size_bytes"].append((lab, float(b.repo_size)))
        s["wasp_backup_last_repository_delta_bytes"].append((lab, float(b.repo_delta)))
    for (rkey, type_), b in sorted(good.items()):
        if str(rkey) not in readable:
            continue
        lab = (stanza, str(rkey), type_)
        s["wasp_backup_last_good_timestamp_seconds"].append((lab, b.stop))
        s["wasp_backup_last_good_age_seconds"].append((lab, max(0.0, now - b.stop)))
    for key in sorted(readable):
        for type_ in BACKUP_TYPES:
            n = sum(1 for b in info.backups if str(b.repo_key) == key and b.type == type_)
            s["wasp_backup_kept_backups"].append(((stanza, key, type_), float(n)))
        bad = sum(1 for b in info.backups if str(b.repo_key) == key and b.error)
        s["wasp_backup_page_checksum_error_backups"].append(((stanza, key), float(bad)))
    return _families(s)


# ---------------------------------------------------------------------------
# status records
# ---------------------------------------------------------------------------
class BackupRecordsCollector(Collector):
    """Reads the backup companion's status records."""

    def __init__(self, settings: BackupSettings, *, interval: float = 15.0) -> None:
        self.settings = settings
        self.name = "backup_records"
        self.target = None
        self.interval = interval
        self.timeout = min(5.0, interval)

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Read the records off the event loop and build families."""
        try:
            records = await asyncio.to_thread(load_records, ctx.status_dir, self.settings.stanza)
        except OSError as e:
            raise CollectError("other", f"cannot read backup records: {e}") from None
        return families_from_records(self.settings.stanza, records)


def families_from_records(stanza: str, records: StanzaRecords) -> list[Family]:
    """Attempts, drills and verifies from the status records."""
    s: dict[str, list[Sample]] = {name: [] for name in METRICS}
    lab: tuple[str, ...]
    for type_, rec in sorted(records.runs.items()):
        lab = (stanza, type_)
        _add(s, "wasp_backup_attempts_total", lab, rec.get("attempts"))
        _add(s, "wasp_backup_failures_total", lab, rec.get("failures"))
        _add(s, "wasp_backup_last_attempt_timestamp_seconds", lab, rec.get("started_at"))
        running = rec.get("state") == "running"
        s["wasp_backup_last_attempt_running"].append((lab, 1.0 if running else 0.0))
        state = rec.get("previous_state") if running else rec.get("state")
        if state in ("ok", "failed"):
            s["wasp_backup_last_attempt_success"].append((lab, 1.0 if state == "ok" else 0.0))
        if not running:
            _add(s, "wasp_backup_last_attempt_exit_code", lab, rec.get("exit_code"))
        _add(s, "wasp_backup_last_success_timestamp_seconds", lab, rec.get("last_success_at"))
    d = records.drill
    if d:
        lab = (stanza,)
        _add(s, "wasp_backup_drill_runs_total", lab, d.get("attempts"))
        _add(s, "wasp_backup_drill_failures_total", lab, d.get("failures"))
        _add(s, "wasp_backup_drill_last_success_timestamp_seconds", lab, d.get("last_success_at"))
        if d.get("state") in ("ok", "failed"):
            _add(s, "wasp_backup_drill_last_timestamp_seconds", lab, d.get("finished_at"))
            s["wasp_backup_drill_last_success"].append((lab, 1.0 if d["state"] == "ok" else 0.0))
            _add(s, "wasp_backup_drill_checks", lab, d.get("checks_run"))
            _add(s, "wasp_backup_drill_checks_failed", lab, d.get("checks_failed"))
            if _num(d.get("rto_seconds")):
                _add(s, "wasp_backup_drill_restore_duration_seconds", lab, d.get("rto_seconds"))
            _add(s, "wasp_backup_drill_data_lag_seconds", lab, d.get("data_lag_seconds"))
    v = records.verify
    if v and v.get("state") in ("ok", "failed"):
        lab = (stanza,)
        _add(s, "wasp_backup_verify_last_timestamp_seconds", lab, v.get("finished_at"))
        s["wasp_backup_verify_last_success"].append((lab, 1.0 if v["state"] == "ok" else 0.0))
        _add(s, "wasp_backup_verify_invalid_files", lab, v.get("invalid_files"))
    return _families(s)


def _add(s: dict[str, list[Sample]], name: str, labels: tuple[str, ...], value: Any) -> None:
    v = _num(value)
    if v is not None:
        s[name].append((labels, v))


# ---------------------------------------------------------------------------
# WAL archive, from the database
# ---------------------------------------------------------------------------
WAL_SQL = """
SELECT (current_setting('archive_mode') <> 'off') AS enabled,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS current_lsn,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS segment_size,
       a.last_archived_wal,
       extract(epoch FROM a.last_archived_time)::float8 AS last_archived_time,
       extract(epoch FROM now() - a.last_archived_time)::float8 AS last_archived_age,
       a.archived_count,
       a.failed_count,
       extract(epoch FROM a.last_failed_time)::float8 AS last_failed_time,
       (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') AS ready
  FROM pg_stat_archiver a
"""


class WalArchiveCollector(Collector):
    """pg_stat_archiver, .ready files and unarchived WAL bytes on the primary."""

    role = "primary"

    def __init__(self, settings: BackupSettings, *, interval: float = 15.0) -> None:
        assert settings.target is not None
        self.settings = settings
        self.name = "wal_archive"
        self.target = settings.target
        self.interval = interval
        self.timeout = min(5.0, interval)
        # the end of the last archived segment, kept while the newest archived
        # file is not a segment (a .history file after a promotion)
        self._segment_end: float | None = None

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """One query; the unarchived bytes are computed from its LSNs."""
        if ctx.db is None:
            raise CollectError("connection", f"target {self.target!r} has no database")
        try:
            result = await ctx.db.fetch(WAL_SQL, timeout=self.timeout)
        except DBError as e:
            raise CollectError(e.reason, str(e)) from None
        if not result.rows:
            raise CollectError("sql", "pg_stat_archiver returned no row")
        row = dict(zip(result.columns, result.rows[0], strict=True))
        end = None
        if row.get("last_archived_wal") and row.get("segment_size"):
            end = wal_segment_end(str(row["last_archived_wal"]), int(row["segment_size"]))
        if end is not None:
            self._segment_end = float(end)
        return families_from_wal(self.settings.stanza, row, self._segment_end)


def families_from_wal(stanza: str, row: Mapping[str, Any], segment_end: float | None) -> list[Family]:
    """WAL archive families from one pg_stat_archiver row."""
    s: dict[str, list[Sample]] = {name: [] for name in METRICS}
    lab = (stanza,)
    _add(s, "wasp_wal_archive_enabled", lab, bool(row.get("enabled")))
    _add(s, "wasp_wal_archive_last_archived_timestamp_seconds", lab, row.get("last_archived_time"))
    _add(s, "wasp_wal_archive_last_archived_age_seconds", lab, row.get("last_archived_age"))
    _add(s, "wasp_wal_archive_archived_total", lab, row.get("archived_count"))
    _add(s, "wasp_wal_archive_failures_total", lab, row.get("failed_count"))
    _add(s, "wasp_wal_archive_last_failed_timestamp_seconds", lab, row.get("last_failed_time"))
    _add(s, "wasp_wal_archive_ready_segments", lab, row.get("ready"))
    current = _num(row.get("current_lsn"))
    if current is not None and segment_end is not None:
        # after a promotion the new timeline may start inside the last archived segment
        s["wasp_wal_archive_unarchived_bytes"].append((lab, max(0.0, current - segment_end)))
    return _families(s)


def metric_names() -> Iterable[str]:
    """Every metric name of the pack."""
    return METRICS.keys()

