"""One jsonlog line -> one event the statistics understand.

PostgreSQL 15 writes one JSON object per line (``log_destination = 'jsonlog'``).
The fields used here: ``error_severity``, ``state_code``, ``message``,
``user``, ``dbname``, ``remote_host``, ``timestamp``. Events are told apart by
SQLSTATE where one exists (28P01 wrong password, 28000 refused) and by the
message prefixes the server writes in English (``lc_messages = 'C'``, which
the pack checks on the server): ``connection authorized:``, ``statement:``,
``duration: N ms``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

__all__ = ["ROLE_COMMANDS", "Event", "ParseError", "classify", "parse_line", "role_commands"]

Kind = Literal["auth_failure", "hba_reject", "login", "statement", "duration", "error", "other"]

#: the statements counted as role and privilege changes -> the command label
ROLE_COMMANDS: dict[tuple[str, ...], str] = {
    ("CREATE", "ROLE"): "create_role", ("CREATE", "USER"): "create_role",
    ("CREATE", "GROUP"): "create_role",
    ("ALTER", "ROLE"): "alter_role", ("ALTER", "USER"): "alter_role",
    ("ALTER", "GROUP"): "alter_role",
    ("DROP", "ROLE"): "drop_role", ("DROP", "USER"): "drop_role", ("DROP", "GROUP"): "drop_role",
    ("GRANT",): "grant", ("REVOKE",): "revoke",
    ("ALTER", "DEFAULT", "PRIVILEGES"): "alter_default_privileges",
}

_DURATION = re.compile(r"duration: (\d+(?:\.\d+)?) ms(?:  (\w+)[ :])?")
_STATEMENT = re.compile(r"(?:statement|execute [^:]*): ", re.S)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_WORDS = re.compile(r"[A-Za-z]+")
_HBA = ("no pg_hba.conf entry", "pg_hba.conf rejects")


@dataclass(frozen=True, slots=True)
class Event:
    """What one log line says, reduced to what the pack counts."""

    kind: Kind
    severity: str = ""
    sqlstate: str = ""
    user: str = ""
    database: str = ""
    client: str = ""
    #: statement text (kind statement) or the duration kind (statement, execute, bare)
    text: str = ""
    #: milliseconds (kind duration)
    duration_ms: float = 0.0
    #: the line's own time stamp, unix seconds (0 when absent)
    timestamp: float = 0.0


class ParseError(ValueError):
    """A line that is not a jsonlog record; `reason` labels the unparsed counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(raw: bytes) -> Event:
    """The event of one line (without its newline); ParseError when it is not a jsonlog record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("encoding") from None
    try:
        rec = json.loads(text)
    except ValueError:
        raise ParseError("json") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("message"), str):
        raise ParseError("json")
    return classify(rec)


def _str(rec: dict[str, Any], key: str) -> str:
    v = rec.get(key)
    return v if isinstance(v, str) else ""


def _timestamp(text: str) -> float:
    # "2026-12-04 16:42:11.143 UTC": jsonlog always writes UTC when log_timezone is UTC;
    # other zones come as abbreviations Python cannot map, so those lines carry no time
    if not text.endswith(" UTC"):
        return 0.0
    try:
        return datetime.fromisoformat(text[:-4] + "+00:00").timestamp()
    except ValueError:
        return 0.0


def classify(rec: dict[str, Any]) -> Event:
    """The event of one decoded record."""
    msg: str = rec["message"]
    sev = _str(rec, "error_severity")
    state = _str(rec, "state_code")
    ev = Event("other", severity=sev, sqlstate=state, user=_str(rec, "user"),
               database=_str(rec, "dbname"), client=_str(rec, "remote_host"),
               timestamp=_timestamp(_str(rec, "timestamp")))
    if sev == "FATAL" and state == "28P01":
        return replace(ev, kind="auth_failure")
    if sev == "FATAL" and state == "28000":
        return replace(ev, kind="hba_reject" if msg.startswith(_HBA) else "auth_failure")
    if sev == "LOG":
        if msg.startswith(("connection authorized: ", "replication connection authorized: ")):
            return replace(ev, kind="login")
        if msg.startswith("duration: "):
            m = _DURATION.match(msg)
            if m is not None:
                return replace(ev, kind="duration", text=m.group(2) or "",
                               duration_ms=float(m.group(1)))
        if _STATEMENT.match(msg):
            return replace(ev, kind="statement", text=msg.split(": ", 1)[1])
    if sev in ("ERROR", "FATAL", "PANIC"):
        return replace(ev, kind="error")
    return ev


def role_commands(sql: str) -> list[str]:
    """The role and privilege commands in a statement text (several when it holds several)."""
    out = []
    for part in _COMMENTS.sub(" ", sql).split(";"):
        words = [w.upper() for w in _WORDS.findall(part[:64])][:3]
        for n in (3, 2, 1):
            cmd = ROLE_COMMANDS.get(tuple(words[:n]))
            if cmd is not None:
                out.append(cmd)
                break
    return out
