"""The log pack's collector: read new lines, count them, save the state, report readiness.

A round (off the event loop, in a thread) reads every new complete line of
the followed files, counts it, and writes the read positions together with
the counters to ``<status_dir>/log/state.json`` in one atomic write. After a
restart the counters go on from the saved values and reading from the saved
positions, so a line is counted exactly once whichever moment the process
stopped at (a line counted after the last save is read again and counted
against the saved counters, which do not hold it).

When the configuration names a target, each round also asks the server for
its logging settings, its current jsonlog file and its superusers on a
connection of its own (the log is read even while the server is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from wasp.companions.status import read_records, write_record
from wasp.config.log import LogSettings, SamplingSettings
from wasp.exporter.collector import CollectContext, Collector
from wasp.exporter.db import first_line
from wasp.model import Family
from wasp.packs.log.follow import Follower, Round
from wasp.packs.log.metrics import LogStats
from wasp.packs.log.parse import ParseError, parse_line

__all__ = ["LogCollector", "ServerView", "check_settings"]

log = logging.getLogger(__name__)

STATE_KIND, STATE_NAME = "log", "state"
SETTINGS = ("log_destination", "logging_collector", "lc_messages", "log_min_duration_sample",
            "log_statement_sample_rate", "log_min_duration_statement", "log_duration",
            "log_connections", "log_statement")
#: checks in the order their failure names the ready reason
CHECKS = (("jsonlog", "jsonlog_off"), ("logging_collector", "logging_collector_off"),
          ("lc_messages", "lc_messages"), ("sampling", "sampling_off"),
          ("log_duration_off", "log_duration_on"), ("log_connections", "log_connections_off"),
          ("log_statement_ddl", "log_statement_off"))


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the server said about its logging."""

    settings: dict[str, str]
    current_logfile: str | None = None
    superusers: frozenset[str] = field(default_factory=frozenset)


def check_settings(s: dict[str, str]) -> dict[str, bool]:
    """Each check of the server's settings -> whether it holds."""
    def num(name: str) -> float:
        try:
            return float(s.get(name, "-1"))
        except ValueError:
            return -1.0
    lc = s.get("lc_messages", "")
    return {
        "jsonlog": "jsonlog" in [d.strip() for d in s.get("log_destination", "").split(",")],
        "logging_collector": s.get("logging_collector") == "on",
        "lc_messages": lc in ("", "C", "POSIX") or lc.startswith(("C.", "en")),
        "sampling": num("log_min_duration_sample") >= 0 and num("log_statement_sample_rate") > 0,
        "log_duration_off": s.get("log_duration", "off") == "off",
        "log_connections": s.get("log_connections") == "on",
        "log_statement_ddl": s.get("log_statement") in ("ddl", "mod", "all"),
    }


def sampling_from(s: dict[str, str]) -> SamplingSettings:
    """The sampling settings in a server's pg_settings values."""
    return SamplingSettings(
        min_duration_statement=float(s.get("log_min_duration_statement", "-1")),
        min_duration_sample=float(s.get("log_min_duration_sample", "-1")),
        sample_rate=float(s.get("log_statement_sample_rate", "1")))


class LogCollector(Collector):
    """Follows the jsonlog files of one server (see wasp.packs.log.follow)."""

    def __init__(self, settings: LogSettings, *, dsn: str | None = None,
                 connect_timeout: float = 5.0) -> None:
        self.name = "log"
        self.target = None
        self.interval = settings.interval
        self.timeout = settings.timeout
        self.max_series = 50_000
        self.settings = settings
        self.follower, self.stats = self._fresh()
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._server: ServerView | None = None
        self._loaded = False
        #: the reason the last look at the server failed (logged once per change)
        self._server_error: str | None = None

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Ask the server (when a target is set), then read and count in a thread."""
        if self._dsn is not None:
            await self._look_at_server()
        return await asyncio.to_thread(self.round, ctx.status_dir, ctx.now)

    # -- the server ---------------------------------------------------------------
    async def _look_at_server(self) -> None:
        try:
            async with asyncio.timeout(max(1.0, min(self.timeout, 10.0))):
                self._server = await self._query_server()
        except (psycopg.Error, TimeoutError, OSError) as e:
            await self.close()
            why = first_line(e) if not isinstance(e, TimeoutError) else "no answer"
            if why != self._server_error:
                log.warning("log pack: cannot read the server's logging settings: %s "
                            "(reading the log files goes on)", why)
            self._server_error = why
            return
        self._server_error = None

    async def _query_server(self) -> ServerView:
        assert self._dsn is not None
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, application_name="wasp",
                connect_timeout=max(1, round(self._connect_timeout)),
                options="-c default_transaction_read_only=on -c statement_timeout=5000")
        conn = self._conn
        cur = await conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                 [list(SETTINGS)])
        settings = {str(n): str(v) for n, v in await cur.fetchall()}
        cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper")
        supers = frozenset(str(r[0]) for r in await cur.fetchall())
        current = None
        try:
            cur = await conn.execute("SELECT pg_current_logfile('jsonlog')")
            row = await cur.fetchone()
            current = str(row[0]) if row and row[0] else None
        except psycopg.errors.InsufficientPrivilege:
            pass  # needs pg_monitor; the pattern still finds the files
        return ServerView(settings, current, supers)

    async def close(self) -> None:
        """Close the settings connection (the next round opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- a round ------------------------------------------------------------------
    def round(self, status_dir: str | os.PathLike[str], now: float) -> list[Family]:
        """Read what is new, count it, save the state; the families of the counters."""
        if not self._loaded:
            self._load(status_dir)
        server = self._server
        if server is not None:
            self.stats.superusers = set(self.settings.superusers) | server.superusers
            with contextlib.suppress(ValueError):
                self.stats.sampling = sampling_from(server.settings)
        rnd = Round()
        stats = self.stats
        for raw in self.follower.read(rnd, server.current_logfile if server else None):
            try:
                ev = parse_line(raw)
            except ParseError as e:
                stats.unparsed(e.reason)
                continue
            stats.line(ev, now)
        stats.unparsed("too_long", rnd.too_long)
        for name, n in (("wasp_log_read_bytes_total", rnd.consumed),
                        ("wasp_log_file_rotations_total", rnd.new_files),
                        ("wasp_log_file_truncations_total", rnd.truncations)):
            if n:
                stats.add(name, (), float(n))
        for err in rnd.errors:
            log.warning("log pack: %s", err)
        self._save(status_dir)
        files = len(self.follower.positions)
        checks = check_settings(server.settings) if server is not None else {}
        return stats.families(ready=self._ready(files, checks), checks=checks, files=files)

    def _ready(self, files: int, checks: dict[str, bool]) -> tuple[str, bool]:
        if files == 0:
            return "no_log_files", False
        if self._dsn is not None:
            if self._server is None:
                return "settings_unknown", False
            for check, reason in CHECKS:
                if not checks.get(check, False):
                    return reason, False
            return "ok", True
        s = self.settings.sampling
        if s is None:
            return "settings_unknown", False
        if s.min_duration_sample < 0 or s.sample_rate <= 0:
            return "sampling_off", False
        return "ok", True

    def _load(self, status_dir: str | os.PathLike[str]) -> None:
        self._loaded = True
        rec = read_records(status_dir, STATE_KIND).get(STATE_NAME)
        if rec is None:
            return
        if rec.get("directory") != self.settings.directory:
            log.info("log pack: saved state is for %s; starting over", rec.get("directory"))
            return
        try:
            self.follower.restore(rec["follow"])
            self.stats.restore(rec["stats"])
        except (KeyError, ValueError, TypeError) as e:
            log.warning("log pack: saved state %s unreadable (%s); starting over",
                        Path(status_dir) / STATE_KIND / f"{STATE_NAME}.json", e)
            self.follower, self.stats = self._fresh()

    def _fresh(self) -> tuple[Follower, LogStats]:
        s = self.settings
        follower = Follower(s.directory, s.pattern, max_line_bytes=s.max_line_bytes,
                            max_bytes_per_round=s.max_bytes_per_round,
                            start_at_end=s.start_at == "end")
        stats = LogStats(top=s.top, evict_after=s.evict_after, superusers=s.superusers)
        if s.sampling is not None:
            stats.sampling = s.sampling
        return follower, stats

    def _save(self, status_dir: str | os.PathLike[str]) -> None:
        try:
            write_record(status_dir, STATE_KIND, STATE_NAME, {
                "directory": self.settings.directory,
                "follow": self.follower.state(),
                "stats": self.stats.state(),
            })
        except OSError as e:
            # counting goes on in memory; a restart before the next good save reads again
            log.warning("log pack: cannot save the read positions in %s: %s", status_dir,
                        e.strerror or e)

