"""Status records of the backup companion, and what they prove.

Records live in ``<status_dir>/backup/`` (see wasp.companions.status), one per stanza and
job: ``<stanza>.run.<type>`` (the last backup attempt of that type, with
running totals of attempts and failures), ``<stanza>.drill``, ``<stanza>.verify``
and ``<stanza>.init``. A record is written when a job starts (state
``running``) and again when it ends (``ok`` or ``failed``, exit code, error).

pgBackRest's `info` lists completed backups only; a backup is *good* when it
is listed there, has no page checksum error, and the newest drill that
restored it (directly, or as part of the chain of a later backup) passed.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasp.companions.backup.pgbackrest import BackupEntry, StanzaInfo
from wasp.companions.status import read_records, write_record

__all__ = [
    "BACKUP_TYPES",
    "KIND",
    "JobRecord",
    "StanzaRecords",
    "drill_verdicts",
    "load_records",
    "newest_good",
]

KIND = "backup"
BACKUP_TYPES = ("full", "diff", "incr")
#: verdicts kept in the drill record (older labels are long expired)
MAX_VERDICTS = 500


def record_name(stanza: str, job: str) -> str:
    """The record name of one job: run.full, run.diff, run.incr, drill, verify, init."""
    return f"{stanza}.{job}"


class JobRecord:
    """One job's record, written when it starts and again when it ends."""

    def __init__(self, status_dir: str | os.PathLike[str], stanza: str, job: str,
                 **fields: Any) -> None:
        self.status_dir = Path(status_dir)
        self.name = record_name(stanza, job)
        prev = read_records(self.status_dir, KIND).get(self.name, {})
        self.previous = prev
        attempts = int(prev.get("attempts", 0)) + 1
        failures = int(prev.get("failures", 0))
        previous_state = prev.get("state")
        if previous_state == "running":
            # the last attempt never finished (killed, host crash): it failed
            failures += 1
            previous_state = "failed"
        self.started = time.time()
        self.data: dict[str, Any] = {
            "stanza": stanza,
            "job": job,
            "state": "running",
            "started_at": self.started,
            "finished_at": None,
            "exit_code": None,
            "error": None,
            "attempts": attempts,
            "failures": failures,
            "previous_state": previous_state,
            "last_success_at": prev.get("last_success_at"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **fields,
        }
        for k in ("verdicts",):
            if k in prev and k not in self.data:
                self.data[k] = prev[k]
        self._write()

    def update(self, **fields: Any) -> None:
        """Add fields to the running record (written at the end)."""
        self.data.update(fields)

    def finish(self, *, ok: bool, exit_code: int, error: str | None = None, **fields: Any) -> dict[str, Any]:
        """Write the final state; a failure always increments `failures`."""
        now = time.time()
        self.data.update(fields)
        self.data.update(
            state="ok" if ok else "failed",
            finished_at=now,
            duration_seconds=round(now - self.started, 3),
            exit_code=exit_code,
            error=error,
        )
        if ok:
            self.data["last_success_at"] = now
        else:
            self.data["failures"] = int(self.data["failures"]) + 1
        self._write()
        return self.data

    def _write(self) -> None:
        write_record(self.status_dir, KIND, self.name, self.data)


@dataclass(frozen=True, slots=True)
class StanzaRecords:
    """Every record of one stanza."""

    runs: dict[str, dict[str, Any]]
    drill: dict[str, Any] | None
    verify: dict[str, Any] | None
    init: dict[str, Any] | None


def load_records(status_dir: str | os.PathLike[str], stanza: str) -> StanzaRecords:
    """Read the records of `stanza` (missing ones are None / absent)."""
    recs = read_records(status_dir, KIND)
    runs = {t: recs[record_name(stanza, f"run.{t}")] for t in BACKUP_TYPES
            if record_name(stanza, f"run.{t}") in recs}
    return StanzaRecords(
        runs=runs,
        drill=recs.get(record_name(stanza, "drill")),
        verify=recs.get(record_name(stanza, "verify")),
        init=recs.get(record_name(stanza, "init")),
    )


def drill_verdicts(drill: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """label -> {"ok": bool, "at": unix time} from the drill record."""
    if not drill:
        return {}
    v = drill.get("verdicts")
    return {str(k): d for k, d in v.items() if isinstance(d, dict)} if isinstance(v, dict) else {}


def merge_verdicts(old: dict[str, dict[str, Any]], labels: Iterable[str], *, ok: bool,
                   at: float, keep: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Set the verdict of `labels`; drop labels not in `keep` (expired) and cap the size."""
    out = dict(old)
    for label in labels:
        out[label] = {"ok": ok, "at": at}
    if keep is not None:
        keep_set = set(keep) | set(labels)
        out = {k: v for k, v in out.items() if k in keep_set}
    if len(out) > MAX_VERDICTS:
        out = dict(sorted(out.items(), key=lambda kv: float(kv[1].get("at", 0)))[-MAX_VERDICTS:])
    return out


def is_good(entry: BackupEntry, verdicts: dict[str, dict[str, Any]]) -> bool:
    """Completed, no page checksum error, and the latest drill covering it passed."""
    v = verdicts.get(entry.label)
    return bool(v and v.get("ok")) and not entry.error


def newest_good(info: StanzaInfo, drill: dict[str, Any] | None) -> dict[tuple[int, str], BackupEntry]:
    """(repo key, type) -> the newest good backup of that type."""
    verdicts = drill_verdicts(drill)
    out: dict[tuple[int, str], BackupEntry] = {}
    for b in info.backups:  # sorted oldest first
        if is_good(b, verdicts):
            out[(b.repo_key, b.type)] = b
    return out


def newest_completed(info: StanzaInfo) -> dict[tuple[int, str], BackupEntry]:
    """(repo key, type) -> the newest completed backup of that type."""
    out: dict[tuple[int, str], BackupEntry] = {}
    for b in info.backups:
        out[(b.repo_key, b.type)] = b
    return out


def verdict_of(label: str, drill: dict[str, Any] | None) -> str:
    """'good', 'failed' or 'untested' for the status table."""
    v = drill_verdicts(drill).get(label)
    if v is None:
        return "untested"
    return "good" if v.get("ok") else "failed"
