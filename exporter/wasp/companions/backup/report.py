"""`wasp backup status`: backups, WAL archive, attempts and drills, as JSON or text tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from wasp.companions.backup.ops import BackupContext, JobFailed, fetch_info, format_size, psql
from wasp.companions.backup.pgbackrest import STATUS_CODES
from wasp.companions.backup.records import load_records, verdict_of

__all__ = ["format_status", "status_report"]


def status_report(ctx: BackupContext) -> dict[str, Any]:
    """Backups, WAL archive, attempts and drills as one JSON-able object."""
    s = ctx.settings
    recs = load_records(ctx.status_dir, s.stanza)
    out: dict[str, Any] = {"stanza": s.stanza, "repo": {"type": s.repo.type, "path": s.repo.path}}
    if s.repo.type == "s3":
        out["repo"].update(bucket=s.repo.bucket, endpoint=s.repo.endpoint)
    try:
        info = fetch_info(ctx)
    except JobFailed as e:
        out["info_error"] = str(e)
        info = None
    if info is not None:
        out["status"] = {"code": info.code, "message": info.message}
        out["repos"] = [{"key": r.key, "code": r.code, "message": r.message or
                         STATUS_CODES.get(r.code, "other")} for r in info.repos]
        out["backups"] = [
            {"label": b.label, "type": b.type, "start": b.start, "stop": b.stop,
             "duration_seconds": b.duration, "database_bytes": b.size,
             "repository_bytes": b.repo_size, "references": list(b.references),
             "page_checksum_error": b.error, "drill": verdict_of(b.label, recs.drill)}
            for b in info.backups
        ]
        out["wal_archive"] = {"min": info.archive_min, "max": info.archive_max}
    try:
        row = psql(s, "SELECT archived_count, coalesce(last_archived_wal, ''), "
                      "coalesce(extract(epoch FROM last_archived_time)::text, ''), failed_count, "
                      "coalesce(last_failed_wal, ''), "
                      "coalesce(extract(epoch FROM last_failed_time)::text, '') "
                      "FROM pg_stat_archiver", timeout=10).strip().split("|")
        out.setdefault("wal_archive", {}).update(
            archived_count=int(row[0]), last_archived_wal=row[1] or None,
            last_archived_time=float(row[2]) if row[2] else None, failed_count=int(row[3]),
            last_failed_wal=row[4] or None,
            last_failed_time=float(row[5]) if row[5] else None)
    except (JobFailed, OSError, IndexError, ValueError) as e:
        out.setdefault("wal_archive", {})["database_error"] = str(e)
    out["attempts"] = {t: _brief(r) for t, r in recs.runs.items()}
    out["drill"] = _brief(recs.drill) if recs.drill else None
    out["verify"] = _brief(recs.verify) if recs.verify else None
    return out


_BRIEF_KEYS = ("state", "started_at", "finished_at", "exit_code", "error", "label", "attempts",
               "failures", "actual_type", "database_bytes", "repository_bytes", "checks_run",
               "checks_failed", "restore_seconds", "rto_seconds", "target_time", "invalid_files",
               "checks", "data_lag_seconds", "backup_seconds")


def _brief(rec: dict[str, Any] | None) -> dict[str, Any]:
    return {k: rec[k] for k in _BRIEF_KEYS if rec and k in rec}


def format_status(report: dict[str, Any]) -> str:
    """The status report as aligned text tables."""
    lines = [f"stanza {report['stanza']} ({report['repo']['type']} repository)"]
    if "info_error" in report:
        lines.append(f"  pgBackRest info FAILED: {report['info_error']}")
    else:
        st = report["status"]
        lines.append(f"  pgBackRest status: {st['code']} {st['message']}")
    rows = [("LABEL", "TYPE", "STOPPED (UTC)", "DURATION", "DB SIZE", "REPO SIZE", "DRILL")]
    for b in report.get("backups", []):
        rows.append((b["label"], b["type"], _ts(b["stop"]), f"{b['duration_seconds']:.0f}s",
                     format_size(b["database_bytes"]), format_size(b["repository_bytes"]),
                     b["drill"] + (" (page checksum error)" if b["page_checksum_error"] else "")))
    lines += ["", "Backups", *_table(rows)] if len(rows) > 1 else ["", "Backups: none"]
    w = report.get("wal_archive", {})
    lines += ["", "WAL archive",
              f"  repository min/max: {w.get('min') or '-'} / {w.get('max') or '-'}"]
    if "database_error" in w:
        lines.append(f"  database: unreachable ({w['database_error']})")
    elif w:
        lines.append(f"  last archived: {w.get('last_archived_wal') or '-'} at "
                     f"{_ts(w.get('last_archived_time'))}; failures: {w.get('failed_count')}"
                     + (f" (last {w.get('last_failed_wal')} at {_ts(w.get('last_failed_time'))})"
                        if w.get("failed_count") else ""))
    rows = [("JOB", "STATE", "STARTED (UTC)", "EXIT", "ATTEMPTS", "FAILURES", "DETAIL")]
    for t, r in report.get("attempts", {}).items():
        rows.append((f"backup {t}", r.get("state", "-"), _ts(r.get("started_at")),
                     str(r.get("exit_code", "-")), str(r.get("attempts", 0)),
                     str(r.get("failures", 0)), r.get("error") or r.get("label") or ""))
    for job in ("drill", "verify"):
        r = report.get(job)
        if r:
            detail = r.get("error") or ""
            if job == "drill" and not detail:
                detail = (f"{r.get('label')}: {r.get('checks_run', 0) - r.get('checks_failed', 0)}/"
                          f"{r.get('checks_run', 0)} checks, RTO {r.get('rto_seconds', 0):.1f}s")
            rows.append((job, r.get("state", "-"), _ts(r.get("started_at")),
                         str(r.get("exit_code", "-")), str(r.get("attempts", 0)),
                         str(r.get("failures", 0)), detail[:80]))
    lines += ["", "Jobs", *_table(rows)] if len(rows) > 1 else ["", "Jobs: none recorded"]
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _ts(t: Any) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(float(t), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
