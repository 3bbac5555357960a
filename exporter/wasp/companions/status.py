"""Status records written by the companions and read by the exporter.

A record is one JSON object in ``<status_dir>/<kind>/<name>.json``, written
atomically (temporary file in the same directory, fsync, rename), so a reader
never sees half a record. Companions write; the exporter only reads.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STATUS_DIR", "read_records", "write_record"]

log = logging.getLogger(__name__)
DEFAULT_STATUS_DIR = Path(os.environ.get("WASP_STATUS_DIR", "/var/lib/wasp/status"))


def write_record(status_dir: str | os.PathLike[str], kind: str, name: str, record: dict[str, Any]) -> Path:
    """Atomically write `record` as <status_dir>/<kind>/<name>.json; adds written_at (unix s)."""
    for part, what in ((kind, "kind"), (name, "name")):
        if not part or "/" in part or part.startswith("."):
            raise ValueError(f"invalid status record {what}: {part!r}")
    folder = Path(status_dir) / kind
    folder.mkdir(parents=True, exist_ok=True)
    body = dict(record)
    body.setdefault("written_at", time.time())
    data = json.dumps(body, sort_keys=True, indent=1, default=str).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        final = folder / f"{name}.json"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def read_records(status_dir: str | os.PathLike[str], kind: str) -> dict[str, dict[str, Any]]:
    """All readable records of one kind, by name; unreadable ones are logged and skipped."""
    folder = Path(status_dir) / kind
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            log.warning("status record %s unreadable: %s", p, e)
            continue
        if isinstance(rec, dict):
            out[p.stem] = rec
        else:
            log.warning("status record %s is not a JSON object", p)
    return out
