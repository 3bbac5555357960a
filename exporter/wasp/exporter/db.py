"""Database access for one target: a small pool, read-only UTC sessions, timeouts.

Nothing here knows about Prometheus. Every session is opened with
``application_name=wasp``, ``TimeZone=UTC`` and
``default_transaction_read_only=on``; each statement runs with the caller's
``statement_timeout`` and ``lock_timeout``, through the extended protocol (one
statement per call: a configured query cannot smuggle a second one in).

A target that is not known to be up is probed on a connection of its own
(`probe`), not through the pool: the pool only says that no connection came
within its timeout, the driver's own error says why (`ConnectError.cause`:
auth, refused, timeout, dns, tls, too_many_connections, missing, other). The
password never appears in a message: it is cut out of every error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import psycopg_pool
from psycopg import errors as pgerrors

from wasp.exporter.budget import BudgetPool, ConnectionBudget

__all__ = ["CONNECT_CAUSES", "ConnectError", "DBError", "Result", "ServerInfo", "TargetDB",
           "connect_cause"]

log = logging.getLogger(__name__)

Reason = Literal["timeout", "sql", "connection", "permission", "missing"]
#: why a connection could not be made
ConnectCause = Literal["auth", "refused", "timeout", "dns", "tls", "too_many_connections",
                       "missing", "other"]
CONNECT_CAUSES: tuple[ConnectCause, ...] = (
    "auth", "refused", "timeout", "dns", "tls", "too_many_connections", "missing", "other")

#: receives the rows of a streamed statement, a chunk at a time
Sink = Callable[[list[tuple[Any, ...]]], None]

# libpq 17 delivers rows in chunks; older ones one row at a time
_CHUNKED = psycopg.pq.version() >= 170000


class DBError(Exception):
    """A statement failed; `reason` says how (timeout, sql, connection, permission, missing)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class ConnectError(DBError):
    """No connection could be made; `cause` says why (auth, refused, timeout, dns, ...)."""

    def __init__(self, cause: ConnectCause, message: str) -> None:
        super().__init__("connection", message)
        self.cause: ConnectCause = cause


# libpq's messages (they carry no SQLSTATE before the server answers), most specific first
_CAUSES: tuple[tuple[ConnectCause, tuple[str, ...]], ...] = (
    ("too_many_connections", ("too many clients", "remaining connection slots are reserved",
                              "too many connections")),
    ("auth", ("password authentication failed", "authentication failed", "no password supplied",
              "no pg_hba.conf entry", "pg_hba.conf rejects")),
    ("dns", ("could not translate host name", "name or service not known",
             "temporary failure in name resolution", "nodename nor servname")),
    ("refused", ("connection refused",)),
    ("timeout", ("timeout expired", "timed out", "connection timeout")),
    ("tls", ("ssl", "certificate", "tls")),
)
_SQLSTATE_CAUSES: dict[str, ConnectCause] = {
    "53300": "too_many_connections", "28P01": "auth", "28000": "auth", "3D000": "missing",
}


def connect_cause(e: BaseException) -> ConnectCause:
    """Why a connection attempt failed, from the driver's error."""
    state = getattr(e, "sqlstate", None)
    if state in _SQLSTATE_CAUSES:
        return _SQLSTATE_CAUSES[state]
    text = str(e).lower()
    if "does not exist" in text:
        if 'role "' in text:
            return "auth"
        if 'database "' in text:
            return "missing"
    for cause, needles in _CAUSES:
        if any(n in text for n in needles):
            return cause
    return "other"


@dataclass(frozen=True, slots=True)
class Result:
    """Column names and rows of one statement."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the exporter needs to know about a server to choose its queries."""

    version_num: int
    in_recovery: bool
    is_superuser: bool
    database: str
    user: str


class TargetDB:
    """One target's connection pool and statement runner."""

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        pool_max: int = 2,
        connect_timeout: float = 5.0,
        application_name: str = "wasp",
        read_only: bool = True,
        lock_timeout: float | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.name = name
        self._dsn = dsn
        try:
            password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError:
            password = None
        self._secret = str(password) if password else None
        self.connect_timeout = connect_timeout
        self.lock_timeout = lock_timeout
        opts = "-c TimeZone=UTC"
        if read_only:
            opts += " -c default_transaction_read_only=on"
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": application_name,
            "options": opts,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        self._budget = budget
        self._pool: psycopg_pool.AsyncConnectionPool[Any] | BudgetPool
        if budget is not None:  # connections shared with other targets under one budget
            self._pool = BudgetPool(budget, dsn, kwargs=self._kwargs, max_size=pool_max)
        else:
            self._pool = psycopg_pool.AsyncConnectionPool(
                dsn,
                min_size=0,
                max_size=pool_max,
                kwargs=self._kwargs,
                open=False,
                name=f"wasp-{name}",
                timeout=connect_timeout,
                max_idle=300,
                reconnect_timeout=0,  # the engine decides when to try again
            )
        # statement_timeout currently set on each pooled connection (ms)
        self._timeouts: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self._busy: set[psycopg.AsyncConnection[Any]] = set()
        self._opened = False
        self.info: ServerInfo | None = None
        self.info_at = 0.0
        #: server clock minus local clock, in seconds (window queries evaluate at server time)
        self.clock_skew = 0.0

    async def open(self) -> None:
        """Open the pool without waiting for the server (a target may be down at start)."""
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def close(self) -> None:
        """Cancel running statements on the server, then close every connection."""
        await self.cancel_running()
        if self._opened:
            await self._pool.close(timeout=5.0)
            self._opened = False

    async def cancel_running(self) -> None:
        """Ask the server to cancel what our sessions run right now."""
        for conn in list(self._busy):
            with contextlib.suppress(Exception):
                await conn.cancel_safe(timeout=2.0)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self._pool.connection(timeout=self.connect_timeout) as conn:
                self._busy.add(conn)
                try:
                    yield conn
                finally:
                    self._busy.discard(conn)
        except psycopg_pool.PoolTimeout as e:
            raise ConnectError("other", f"no connection to target {self.name!r} "
                               f"within {self.connect_timeout:g}s") from e

    async def fetch(self, sql: str, *, timeout: float, params: Sequence[Any] | None = None,
                    keep_session_timeout: bool = False, sink: Sink | None = None,
                    chunk: int = 2000) -> Result:
        """Run one statement with `timeout` seconds of statement_timeout; return its rows.

        With `keep_session_timeout`, a session that already has a statement_timeout
        keeps it (the client-side deadline still applies): for short probes, which
        would otherwise re-set the session's timeout twice per call.

        With `sink`, the rows are not collected: they stream from the server and
        `sink` receives them `chunk` rows at a time (memory stays bounded by the
        chunk, not the result), and the returned Result has the columns only.
        """
        delivered = 0
        counting: Sink | None = None
        if sink is not None:
            def counting(rows: list[tuple[Any, ...]]) -> None:
                nonlocal delivered
                delivered += len(rows)
                sink(rows)

        for attempt in (1, 2):
            try:
                async with self._connection() as conn:
                    return await self._run(conn, sql, timeout, params, keep_session_timeout,
                                           counting, chunk)
            except DBError as e:
                # a pooled connection that died with its server: retry once on a fresh
                # one (not once a sink has rows: they would be delivered twice; not when
                # no connection came at all: that would only wait out the timeout again)
                if (e.reason == "connection" and not isinstance(e, ConnectError)
                        and attempt == 1 and self._opened and not delivered):
                    continue
                raise self._scrubbed(e) from None
        raise AssertionError("unreachable")

    async def _run(self, conn: psycopg.AsyncConnection[Any], sql: str, timeout: float,
                   params: Sequence[Any] | None, keep_session_timeout: bool = False,
                   sink: Sink | None = None, chunk: int = 2000) -> Result:
        ms = max(1, int(timeout * 1000))
        try:
            current = self._timeouts.get(conn)
            if current != ms and not (keep_session_timeout and current is not None):
                lock_ms = int((self.lock_timeout or timeout) * 1000)
                await conn.execute(
                    f"SET statement_timeout = {ms}; SET lock_timeout = {min(lock_ms, ms)}"
                )
                self._timeouts[conn] = ms
            # binary cursor => extended protocol => exactly one statement
            async with conn.cursor(binary=True) as cur:
                try:
                    async with asyncio.timeout(timeout + max(2.0, timeout * 0.5)):
                        if sink is None:
                            await cur.execute(sql, params, prepare=False)
                            rows = await cur.fetchall() if cur.description else []
                        else:
                            rows = []
                            buf: list[tuple[Any, ...]] = []
                            async for row in cur.stream(sql, params,
                                                        size=chunk if _CHUNKED else 1):
                                buf.append(row)
                                if len(buf) >= chunk:
                                    sink(buf)
                                    buf = []
                            if buf:
                                sink(buf)
                except TimeoutError:
                    # the server did not answer in time: cancel there too, drop the session
                    with contextlib.suppress(Exception):
                        await conn.cancel_safe(timeout=2.0)
                    await conn.close()
                    raise DBError("timeout", f"no answer within {timeout:g}s (cancelled)") from None
                cols = tuple(c.name for c in cur.description or ())
            return Result(cols, rows)
        except pgerrors.QueryCanceled as e:
            raise DBError("timeout", f"cancelled after statement_timeout {timeout:g}s: "
                          f"{first_line(e)}") from None
        except pgerrors.LockNotAvailable as e:
            raise DBError("timeout", f"lock_timeout: {first_line(e)}") from None
        except (pgerrors.UndefinedTable, pgerrors.UndefinedColumn, pgerrors.UndefinedFunction,
                pgerrors.UndefinedObject) as e:
            raise DBError("missing", first_line(e)) from None
        except pgerrors.InsufficientPrivilege as e:
            raise DBError("permission", first_line(e)) from None
        except pgerrors.ReadOnlySqlTransaction as e:
            raise DBError("sql", first_line(e)) from None
        except psycopg.OperationalError as e:
            if conn.closed or conn.broken:
                raise DBError("connection", first_line(e)) from None
            raise DBError("sql", first_line(e)) from None
        except psycopg.Error as e:
            if conn.broken:
                raise DBError("connection", first_line(e)) from None
            raise DBError("sql", first_line(e)) from None

    def _scrubbed(self, e: DBError) -> DBError:
        """`e` with the password (should a message ever quote it) cut out."""
        if self._secret and self._secret in str(e):
            text = str(e).replace(self._secret, "***")
            if isinstance(e, ConnectError):
                return ConnectError(e.cause, text)
            return DBError(e.reason, text)
        return e

    async def probe(self, *, timeout: float = 5.0) -> ServerInfo:
        """Connect once on a connection of our own (not the pool) and read the server facts.

        Raises ConnectError with the driver's reason (refused fails at once, an
        unanswered connect after `connect_timeout`), or DBError for the query.
        """
        if self._budget is not None:  # the probe's session counts like any other
            try:
                await self._budget.take(time.monotonic() + self.connect_timeout)
            except psycopg_pool.PoolTimeout as e:
                raise ConnectError("other", f"cannot connect to target {self.name!r}: {e}") from None
        try:
            try:
                async with asyncio.timeout(self.connect_timeout + timeout + 1.0):
                    conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
            except (psycopg.Error, TimeoutError, OSError) as e:
                what = first_line(e) if not isinstance(e, TimeoutError) else "timeout expired"
                raise self._scrubbed(ConnectError(
                    connect_cause(e) if not isinstance(e, TimeoutError) else "timeout",
                    f"cannot connect to target {self.name!r}: {what}")) from None
            try:
                return await self._server_info(conn, timeout)
            finally:
                await conn.close()
        finally:
            if self._budget is not None:
                await self._budget.give_back()

    async def server_info(self, *, timeout: float = 5.0) -> ServerInfo:
        """Probe the server through the pool (also the target's `up`): version, recovery, superuser."""
        async with self._connection() as conn:
            return await self._server_info(conn, timeout)

    async def _server_info(self, conn: psycopg.AsyncConnection[Any], timeout: float) -> ServerInfo:
        before = time.time()
        try:
            r = await self._run(
                conn,
                "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), "
                "coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false), "
                "current_database(), current_user, extract(epoch FROM clock_timestamp())::float8",
                timeout, None, keep_session_timeout=True,
            )
        except DBError as e:
            raise self._scrubbed(e) from None
        after = time.time()
        v, rec, su, db, user, server_now = r.rows[0]
        if after - before < 1.0:
            self.clock_skew = float(server_now) - (before + after) / 2
        self.info = ServerInfo(int(v), bool(rec), bool(su), str(db), str(user))
        self.info_at = time.time()
        return self.info


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
