"""Reading pgBackRest's output: info JSON, verify reports, progress lines, errors.

Known traps of pgBackRest 2.45 handled here: `verify` exits 0 even when it
reports invalid files (so its output is parsed), and `info` with a wrong
passphrase may print JSON holding raw non-UTF-8 bytes and control characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STATUS_CODES",
    "BackupEntry",
    "InfoError",
    "RepoStatus",
    "StanzaInfo",
    "VerifyReport",
    "chain_labels",
    "error_text",
    "label_type",
    "parse_info",
    "parse_progress",
    "parse_verify",
    "quiet_argv",
    "wal_segment_end",
]

#: pgBackRest's own stanza/repo status codes (info JSON status.code)
STATUS_CODES = {
    0: "ok",
    1: "missing stanza path",
    2: "no valid backups",
    3: "missing stanza data",
    4: "different across repos",
    5: "database mismatch across repos",
    6: "requested backup not found",
    99: "other",
}

_ERROR_RE = re.compile(r"ERROR: \[(\d+)\]: (.*)")
_PROGRESS_RE = re.compile(r"(?:backup|restore) file .*\(([^,()]+), (\d+(?:\.\d+)?)%\)")


def error_text(output: str | bytes, limit: int = 1000) -> str:
    """The ERROR lines of pgBackRest output ('[code]: message'), else its last lines."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    errors = [f"[{m.group(1)}] {m.group(2).strip()}" for m in _ERROR_RE.finditer(output)]
    if errors:
        return "; ".join(dict.fromkeys(errors))[:limit]
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    return " / ".join(lines[-3:])[:limit]


def parse_progress(line: str) -> float | None:
    """The overall percentage in a 'backup file'/'restore file' detail line, else None."""
    m = _PROGRESS_RE.search(line)
    return float(m.group(2)) if m else None


class InfoError(Exception):
    """`pgbackrest info` printed nothing usable."""


@dataclass(frozen=True, slots=True)
class BackupEntry:
    """One completed backup as `info` lists it."""

    label: str
    type: str
    start: float
    stop: float
    size: int
    delta: int
    repo_size: int
    repo_delta: int
    repo_key: int
    references: tuple[str, ...]
    error: bool
    wal_start: str | None
    wal_stop: str | None

    @property
    def duration(self) -> float:
        """Seconds between start and stop."""
        return max(0.0, self.stop - self.start)

    @property
    def chain(self) -> tuple[str, ...]:
        """This backup and every backup it needs to restore."""
        return (*self.references, self.label)


@dataclass(frozen=True, slots=True)
class RepoStatus:
    """pgBackRest's status of one repository for a stanza."""

    key: int
    code: int
    message: str
    cipher: str


@dataclass(frozen=True, slots=True)
class StanzaInfo:
    """What `info` says about one stanza."""

    name: str
    code: int
    message: str
    repos: tuple[RepoStatus, ...]
    backups: tuple[BackupEntry, ...]
    archive_min: str | None
    archive_max: str | None
    backup_running: bool

    def by_label(self) -> dict[str, BackupEntry]:
        """Backups keyed by label."""
        return {b.label: b for b in self.backups}


def parse_info(raw: bytes | str) -> list[StanzaInfo]:
    """Parse `info --output=json`, tolerating raw bytes and control characters in messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not text.strip():
        raise InfoError("pgbackrest info printed no JSON")
    try:
        data = json.loads(text, strict=False)
    except ValueError as e:
        raise InfoError(f"pgbackrest info printed invalid JSON: {e}") from None
    if not isinstance(data, list):
        raise InfoError("pgbackrest info JSON is not a list of stanzas")
    return [_stanza(d) for d in data if isinstance(d, dict)]


def _stanza(d: dict[str, Any]) -> StanzaInfo:
    status = d.get("status") or {}
    repos = tuple(
        RepoStatus(
            key=int(r.get("key", 1)),
            code=int((r.get("status") or {}).get("code", 99)),
            message=_clean((r.get("status") or {}).get("message", "")),
            cipher=str(r.get("cipher", "")),
        )
        for r in d.get("repo") or [] if isinstance(r, dict)
    )
    backups = []
    for b in d.get("backup") or []:
        if not isinstance(b, dict):
            continue
        info = b.get("info") or {}
        repo = info.get("repository") or {}
        ts = b.get("timestamp") or {}
        arch = b.get("archive") or {}
        backups.append(BackupEntry(
            label=str(b.get("label")),
            type=str(b.get("type")),
            start=float(ts.get("start") or 0),
            stop=float(ts.get("stop") or 0),
            size=int(info.get("size") or 0),
            delta=int(info.get("delta") or 0),
            repo_size=int(repo.get("size") or 0),
            repo_delta=int(repo.get("delta") or 0),
            repo_key=int((b.get("database") or {}).get("repo-key", 1)),
            references=tuple(str(x) for x in b.get("reference") or ()),
            error=bool(b.get("error", False)),
            wal_start=arch.get("start"),
            wal_stop=arch.get("stop"),
        ))
    backups.sort(key=lambda b: (b.stop, b.label))
    mins = [str(a["min"]) for a in d.get("archive") or [] if isinstance(a, dict) and a.get("min")]
    maxs = [str(a["max"]) for a in d.get("archive") or [] if isinstance(a, dict) and a.get("max")]
    lock = ((status.get("lock") or {}).get("backup") or {})
    return StanzaInfo(
        name=str(d.get("name")),
        code=int(status.get("code", 99)),
        message=_clean(status.get("message", "")),
        repos=repos,
        backups=tuple(backups),
        archive_min=min(mins) if mins else None,
        archive_max=max(maxs) if maxs else None,
        backup_running=bool(lock.get("held", False)),
    )


def _clean(text: Any) -> str:
    # messages may hold decrypted garbage: keep them printable and short
    s = "".join(c if c.isprintable() else " " for c in str(text))
    return re.sub(r"\s+", " ", s).strip()[:500]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` found (its exit code cannot be trusted in 2.45)."""

    ok: bool
    problems: tuple[str, ...]
    invalid_files: int
    backups_invalid: tuple[str, ...]


_VERIFY_COUNT_RE = re.compile(r"^\s*(checksum invalid|size invalid|missing|other): (\d+)", re.M)
_VERIFY_BACKUP_RE = re.compile(r"backup: (\S+), status: (\w+)")
_VERIFY_ARCHIVE_RE = re.compile(r"archiveId: (\S+), total WAL checked: \d+, total valid WAL: \d+")


def parse_verify(output: str, returncode: int) -> VerifyReport:
    """Decide from the printed report whether the repository verified clean."""
    problems: list[str] = []
    invalid = sum(int(m.group(2)) for m in _VERIFY_COUNT_RE.finditer(output))
    bad_backups = tuple(m.group(1) for m in _VERIFY_BACKUP_RE.finditer(output)
                        if m.group(2) != "valid")
    if returncode != 0:
        problems.append(f"verify exited {returncode}: {error_text(output)}")
    if re.search(r"^\s*status: error", output, re.M):
        problems.append("verify reported status: error")
    if invalid:
        problems.append(f"{invalid} invalid or missing files")
    for label in bad_backups:
        problems.append(f"backup {label} is not valid")
    for m in re.finditer(r"INFO: (invalid [^\n]*|missing [^\n]*)", output):
        problems.append(m.group(1).strip())
    if _ERROR_RE.search(output):
        problems.append(error_text(output))
    return VerifyReport(not problems, tuple(dict.fromkeys(problems)), invalid, bad_backups)


def chain_labels(entries: Iterable[BackupEntry], label: str) -> tuple[str, ...]:
    """The labels a restore of `label` reads (its references and itself)."""
    for b in entries:
        if b.label == label:
            return b.chain
    return (label,)


def label_type(label: str) -> str:
    """full, diff or incr from a backup label's suffix (F, D, I)."""
    return {"F": "full", "D": "diff", "I": "incr"}.get(label[-1:], "unknown")


def wal_segment_end(segment: str, segment_size: int) -> int | None:
    """The LSN (as an integer) where WAL segment file `segment` ends; None if not a segment name."""
    name = segment[:24]
    if len(name) != 24 or not all(c in "0123456789ABCDEFabcdef" for c in name):
        return None
    log_id = int(name[8:16], 16)
    seg = int(name[16:24], 16)
    per_log = 0x100000000 // segment_size
    return (log_id * per_log + seg + 1) * segment_size


def quiet_argv(argv: Sequence[str]) -> str:
    """The command line for logs (pgBackRest options hold no secrets, but stay safe)."""
    return " ".join(re.sub(r"(pass|secret|key)=\S+", r"\1=<redacted>", a) for a in argv)
