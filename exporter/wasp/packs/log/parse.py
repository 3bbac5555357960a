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

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["ROLE_COMMANDS", "Event", "ParseError", "Record", "classify", "parse_line", "role_commands",
           "timestamp_seconds"]

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
    #: the line's own time stamp as written ("2026-12-04 16:42:11.143 UTC")
    timestamp: str = ""


class ParseError(ValueError):
    """A line that is not a jsonlog record; `reason` labels the unparsed counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Record(msgspec.Struct):
    """The fields of a jsonlog record the pack reads (the others are skipped unparsed)."""

    message: str
    error_severity: str = ""
    state_code: str = ""
    user: str = ""
    dbname: str = ""
    remote_host: str = ""
    timestamp: str = ""


# msgspec decodes only these fields, about 8 times faster than json.loads of the whole record
_DECODER = msgspec.json.Decoder(Record)


def parse_line(raw: bytes) -> Event:
    """The event of one line (without its newline); ParseError when it is not a jsonlog record."""
    try:
        rec = _DECODER.decode(raw)
    except msgspec.DecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("encoding") from None
        raise ParseError("json") from None
    return classify(rec)


def timestamp_seconds(text: str) -> float:
    """A jsonlog time stamp as unix seconds (0 when it is not in UTC or not readable)."""
    # jsonlog writes log_timezone's abbreviation, which Python cannot map unless it is UTC
    if not text.endswith(" UTC"):
        return 0.0
    try:
        return datetime.fromisoformat(text[:-4] + "+00:00").timestamp()
    except ValueError:
        return 0.0


def classify(rec: Record) -> Event:
    """The event of one decoded record."""
    msg = rec.message
    sev = rec.error_severity
    state = rec.state_code
    kind: Kind = "other"
    text = ""
    duration_ms = 0.0
    if sev == "FATAL" and state == "28P01":
        kind = "auth_failure"
    elif sev == "FATAL" and state == "28000":
        kind = "hba_reject" if msg.startswith(_HBA) else "auth_failure"
    elif sev == "LOG":
        if msg.startswith(("connection authorized: ", "replication connection authorized: ")):
            kind = "login"
        elif msg.startswith("duration: "):
            m = _DURATION.match(msg)
            if m is not None:
                kind, text, duration_ms = "duration", m.group(2) or "", float(m.group(1))
        elif _STATEMENT.match(msg):
            kind, text = "statement", msg.split(": ", 1)[1]
    elif sev in ("ERROR", "FATAL", "PANIC"):
        kind = "error"
    return Event(kind, sev, state, rec.user, rec.dbname, rec.remote_host, text, duration_ms,
                 rec.timestamp)


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
