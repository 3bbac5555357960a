"""A target's liveness: when to try it, what a failure was, what its queries require.

A target up is pinged through its pool every PING_INTERVAL; one down (or never
tried) is probed on a connection of its own, which gives the driver's reason
for a failure (auth, refused, timeout, dns, tls, too_many_connections,
missing). After a failure the next attempt waits out a backoff (1 s doubling
to MAX_BACKOFF), so the queries of a down target fail at once instead of each
trying again; within one round (`one_round`) a target is tried once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

from wasp.config.schema import Requires, TargetConfig
from wasp.exporter.db import ConnectError, DBError, TargetDB

__all__ = ["MAX_BACKOFF", "PING_INTERVAL", "TargetState", "check_requires"]

log = logging.getLogger("wasp.exporter.engine")

PING_INTERVAL = 15.0
MAX_BACKOFF = 30.0


@dataclass
class TargetState:
    """A target's pool, liveness and backoff."""

    config: TargetConfig
    db: TargetDB | None
    up: bool = False
    checked_once: bool = False
    backoff: float = 1.0
    next_ping: float = 0.0
    semaphore: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    ping_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_error: str | None = None
    #: why the last connection attempt failed (auth, refused, timeout, dns, ...)
    down_cause: str | None = None
    #: failed connection attempts by cause
    connect_errors: collections.Counter[str] = field(default_factory=collections.Counter)

    async def ensure_up(self, *, one_round: bool = False) -> bool:
        """Ping the (postgres) target when due; returns whether it is up."""
        assert self.db is not None
        async with self.ping_lock:
            now = time.monotonic()
            if self.checked_once and (one_round or now < self.next_ping):
                return self.up
            timeout = min(5.0, self.config.connect_timeout + 1)
            try:
                if self.up:
                    info = await self.db.server_info(timeout=timeout)
                else:
                    info = await self.db.probe(timeout=timeout)
            except DBError as e:
                self.failed(e, one_round=one_round)
            else:
                if not self.up:
                    log.info("target %s is up (server %d, %s)", self.config.name,
                             info.version_num, "standby" if info.in_recovery else "primary")
                self.up = True
                self.backoff = 1.0
                self.last_error = None
                self.down_cause = None
                self.next_ping = time.monotonic() + PING_INTERVAL
            self.checked_once = True
            return self.up

    def failed(self, e: DBError, *, one_round: bool = False) -> None:
        """Mark the target down after a failed attempt; the next one waits out the backoff."""
        cause = e.cause if isinstance(e, ConnectError) else (
            "other" if e.reason == "connection" else e.reason)
        if self.up or not self.checked_once or cause != self.down_cause:
            log.warning("target %s is down (%s): %s%s", self.config.name, cause, e,
                        "" if one_round else "; trying again with backoff")
        if isinstance(e, ConnectError):
            self.connect_errors[cause] += 1
        self.up = False
        self.down_cause = cause
        self.last_error = str(e)
        self.next_ping = time.monotonic() + self.backoff
        self.backoff = min(MAX_BACKOFF, self.backoff * 2)


async def check_requires(db: TargetDB, req: Requires) -> str | None:
    """What `req` finds missing on the target (None when all is there)."""
    problems: list[str] = []
    info = db.info or await db.server_info()
    if req.min_server_version and info.version_num < req.min_server_version:
        problems.append(f"server version {info.version_num} < {req.min_server_version}")
    if req.superuser and not info.is_superuser:
        problems.append("needs superuser")
    if req.tables or req.columns or req.extensions:
        r = await db.fetch(
            "SELECT 't', n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NULL "
            "UNION ALL "
            "SELECT 'c', c FROM unnest(%s::text[]) c WHERE NOT EXISTS ("
            "  SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(split_part(c, '.', 1))"
            "  AND a.attname = split_part(c, '.', 2) AND NOT a.attisdropped AND a.attnum > 0) "
            "UNION ALL "
            "SELECT 'e', e FROM unnest(%s::text[]) e WHERE NOT EXISTS ("
            "  SELECT 1 FROM pg_extension x WHERE x.extname = e)",
            timeout=10.0,
            params=(list(req.tables), list(req.columns), list(req.extensions)),
        )
        what = {"t": "table", "c": "column", "e": "extension"}
        problems.extend(f"{what[k]} {n} missing" for k, n in r.rows)
    return "; ".join(problems) or None
