"""`wasp replica heartbeat`: one row on the primary, updated every few seconds.

The exporter's sessions are read-only, so the heartbeat is its own small
process with its own role that may update exactly this row. Read on a standby,
the row's age is the true end-to-end delay: it tells an idle primary (fresh
heartbeat, no lag) from a broken link (receive and replay positions agree, yet
the heartbeat ages), which WAL positions alone cannot.
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from wasp.companions.replica.pg import (
    ROLE_NAME_RE,
    ReplicaError,
    UsageError,
    admin_connect,
    clean_dsn,
    ensure_role,
)

__all__ = ["beat", "install", "run"]

log = logging.getLogger(__name__)

UPDATE = """
UPDATE wasp.heartbeat
   SET beat_at = clock_timestamp(), seq = seq + 1,
       source = coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')
 WHERE id = 1
RETURNING seq
"""


def install(admin_dsn: str, *, user: str, password: str | None, dbname: str | None = None
            ) -> list[str]:
    """Create the heartbeat table (readable by pg_monitor) and the role that updates it."""
    if not ROLE_NAME_RE.match(user):
        raise UsageError(f"heartbeat user {user!r} is not a plain role name")
    dsn, ep = clean_dsn(admin_dsn, what="the primary DSN")
    ddl = resources.files("wasp").joinpath("sql/heartbeat.sql").read_text()
    with admin_connect(dsn, dbname=dbname) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), current_database()").fetchone()
        assert row is not None
        if row[0]:
            raise ReplicaError(f"{ep} is a standby; install the heartbeat on the primary")
        done = [f"table wasp.heartbeat ready in database {row[1]}"]
        with conn.transaction():
            conn.execute(ddl)
            verb = ensure_role(conn, user, password=password, attributes="LOGIN")
            ident = sql.Identifier(user)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA wasp TO {}").format(ident))
            conn.execute(sql.SQL("GRANT SELECT, UPDATE ON wasp.heartbeat TO {}").format(ident))
            conn.execute(sql.SQL("ALTER ROLE {} SET synchronous_commit = local").format(ident))
        done.append(f"role {user} {verb} (may update wasp.heartbeat only)")
    return done


def beat(conn: psycopg.Connection[Any]) -> int:
    """Update the heartbeat row once; returns its sequence number."""
    row = conn.execute(UPDATE).fetchone()
    if row is None:
        raise ReplicaError("wasp.heartbeat has no row; run `wasp replica heartbeat --install`")
    return int(row[0])


def _connect(dsn: str, interval: float) -> psycopg.Connection[Any] | None:
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, round(interval)),
                               application_name="wasp-heartbeat")
    except psycopg.OperationalError as e:
        log.warning("heartbeat: cannot connect: %s", str(e).strip().splitlines()[0])
        return None
    timeout_ms = int(max(1.0, interval) * 1000)
    conn.execute(f"SET statement_timeout = {timeout_ms}")
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row and row[0]:
        log.warning("heartbeat: the server is a standby; waiting for a primary "
                    "(list every node in the DSN with target_session_attrs=read-write)")
        conn.close()
        return None
    return conn


def run(dsn: str, *, interval: float = 5.0, count: int | None = None,
        stop: threading.Event | None = None) -> int:
    """Beat every `interval` seconds until stopped (or `count` beats); returns beats written."""
    dsn, _ = clean_dsn(dsn, what="the heartbeat DSN", several=True)
    stop = stop or threading.Event()
    conn: psycopg.Connection[Any] | None = None
    written = 0
    failing = False
    try:
        while not stop.is_set() and (count is None or written < count):
            started = time.monotonic()
            if conn is None or conn.closed:
                conn = _connect(dsn, interval)
            if conn is not None:
                try:
                    beat(conn)
                    written += 1
                    if failing:
                        log.info("heartbeat: writing again")
                    failing = False
                except psycopg.errors.UndefinedTable:
                    raise ReplicaError("wasp.heartbeat does not exist in this database; run "
                                       "`wasp replica heartbeat --install` first") from None
                except psycopg.Error as e:
                    if not failing:
                        log.warning("heartbeat: update failed: %s",
                                    str(e).strip().splitlines()[0])
                    failing = True
                    conn.close()
                    conn = None
            if count is not None and written >= count:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if conn is not None:
            conn.close()
    return written
