"""The `pgbouncer` pack: PgBouncer's admin console as metrics.

One collector per pgbouncer target. Each round runs SHOW POOLS, SHOW STATS,
SHOW DATABASES, SHOW LISTS, SHOW CONFIG and SHOW VERSION on one connection
it keeps between rounds (reconnecting after a failure). The console speaks
the simple query protocol only and rejects unknown startup parameters, so
the connection is plain: autocommit, no ``options``, statements without
parameters. A stats_users role is enough (every SHOW used here is open to it).

Columns are read by name and missing ones are skipped, so older and newer
PgBouncer versions (1.18 in Debian 12, new columns since) both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from wasp.config.nodes import Node
from wasp.config.schema import Config, ConfigError
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import first_line
from wasp.model import Family, MetricSpec, MetricType, Sample

__all__ = ["METRICS", "PgBouncerCollector", "build_collectors", "families_from_show"]

log = logging.getLogger(__name__)

#: SHOW commands of one round, in order
COMMANDS = ("SHOW POOLS", "SHOW STATS", "SHOW DATABASES", "SHOW LISTS", "SHOW CONFIG",
            "SHOW VERSION")
#: options under packs.pgbouncer.options, with defaults
OPTIONS: dict[str, float] = {"interval": 15.0, "timeout": 5.0}

Rows = list[dict[str, Any]]


_POOL = ("database", "user")


def _spec(name: str, type_: MetricType, labels: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name, type_, labels, help_, target=True)


#: every metric the pack exports (the catalog and the docs read this)
METRICS: tuple[MetricSpec, ...] = (
    _spec("wasp_pgbouncer_pool_clients", "gauge", (*_POOL, "state"),
               "Client connections of the pool by state: active (linked to a server or idle), "
               "waiting (for a server), and the cancel-request states."),
    _spec("wasp_pgbouncer_pool_servers", "gauge", (*_POOL, "state"),
               "Server connections of the pool by state: active (linked to a client), idle, "
               "used (to be checked before reuse), tested, login, and the cancel states."),
    _spec("wasp_pgbouncer_pool_client_max_wait_seconds", "gauge", _POOL,
               "How long the oldest waiting client of the pool has waited (0 when none waits)."),
    _spec("wasp_pgbouncer_pool_size", "gauge", _POOL,
               "Server connections the pool may open (the database's pool_size)."),
    _spec("wasp_pgbouncer_pool_usage_ratio", "gauge", _POOL,
               "Active server connections over pool size: 1 means every server is busy "
               "(above 1 when the reserve pool is in use)."),
    _spec("wasp_pgbouncer_transactions_total", "counter", ("database",),
               "Transactions pooled (SHOW STATS total_xact_count)."),
    _spec("wasp_pgbouncer_queries_total", "counter", ("database",),
               "Queries pooled (SHOW STATS total_query_count)."),
    _spec("wasp_pgbouncer_received_bytes_total", "counter", ("database",),
               "Bytes received from clients."),
    _spec("wasp_pgbouncer_sent_bytes_total", "counter", ("database",),
               "Bytes sent to clients."),
    _spec("wasp_pgbouncer_transaction_time_seconds_total", "counter", ("database",),
               "Time spent in transactions while connected to a server."),
    _spec("wasp_pgbouncer_query_time_seconds_total", "counter", ("database",),
               "Time spent in queries while connected to a server."),
    _spec("wasp_pgbouncer_client_wait_time_seconds_total", "counter", ("database",),
               "Time clients spent waiting for a server."),
    _spec("wasp_pgbouncer_database_pool_size", "gauge", ("database",),
               "Configured pool size of the database (per user pool)."),
    _spec("wasp_pgbouncer_database_reserve_pool_size", "gauge", ("database",),
               "Extra server connections the database may open when clients wait too long."),
    _spec("wasp_pgbouncer_database_max_connections", "gauge", ("database",),
               "Maximum server connections for the database over all its pools (0 = unlimited)."),
    _spec("wasp_pgbouncer_database_current_connections", "gauge", ("database",),
               "Server connections open for the database now."),
    _spec("wasp_pgbouncer_database_paused", "gauge", ("database",),
               "1 when the database is paused (PAUSE)."),
    _spec("wasp_pgbouncer_database_disabled", "gauge", ("database",),
               "1 when the database is disabled (DISABLE): new clients are refused."),
    _spec("wasp_pgbouncer_list_items", "gauge", ("list",),
               "Entries of PgBouncer's internal lists (SHOW LISTS): databases, users, pools, "
               "free/used/login clients, free/used servers, DNS."),
    _spec("wasp_pgbouncer_max_client_connections", "gauge", (),
               "The max_client_conn setting: client connections PgBouncer accepts in all."),
    _spec("wasp_pgbouncer_version_info", "gauge", ("version",),
               "Always 1; the version label holds the PgBouncer version."),
)

# SHOW POOLS column -> state label
_CLIENT_STATES = {"cl_active": "active", "cl_waiting": "waiting",
                  "cl_active_cancel_req": "active_cancel_req",
                  "cl_waiting_cancel_req": "waiting_cancel_req"}
_SERVER_STATES = {"sv_active": "active", "sv_active_cancel": "active_cancel",
                  "sv_being_canceled": "being_canceled", "sv_idle": "idle", "sv_used": "used",
                  "sv_tested": "tested", "sv_login": "login"}
# SHOW STATS column -> (metric, scale)
_STATS = {
    "total_xact_count": ("wasp_pgbouncer_transactions_total", 1.0),
    "total_query_count": ("wasp_pgbouncer_queries_total", 1.0),
    "total_received": ("wasp_pgbouncer_received_bytes_total", 1.0),
    "total_sent": ("wasp_pgbouncer_sent_bytes_total", 1.0),
    "total_xact_time": ("wasp_pgbouncer_transaction_time_seconds_total", 1e-6),
    "total_query_time": ("wasp_pgbouncer_query_time_seconds_total", 1e-6),
    "total_wait_time": ("wasp_pgbouncer_client_wait_time_seconds_total", 1e-6),
}
# SHOW DATABASES column(s) -> metric (reserve_pool became reserve_pool_size in 1.24)
_DATABASES = {
    "pool_size": "wasp_pgbouncer_database_pool_size",
    "reserve_pool": "wasp_pgbouncer_database_reserve_pool_size",
    "reserve_pool_size": "wasp_pgbouncer_database_reserve_pool_size",
    "max_connections": "wasp_pgbouncer_database_max_connections",
    "current_connections": "wasp_pgbouncer_database_current_connections",
    "paused": "wasp_pgbouncer_database_paused",
    "disabled": "wasp_pgbouncer_database_disabled",
}


def build_collectors(cfg: Config) -> list[Collector]:
    """One collector per pgbouncer target that runs the pgbouncer pack."""
    opts = _options(cfg)
    return [
        PgBouncerCollector(t.name, t.dsn(), interval=opts["interval"],
                           timeout=opts["timeout"], connect_timeout=t.connect_timeout)
        for t in cfg.targets
        if t.type == "pgbouncer" and "pgbouncer" in t.packs
    ]


def _options(cfg: Config) -> dict[str, float]:
    given = dict(cfg.pack_settings("pgbouncer").options)
    out = dict(OPTIONS)
    for key, raw in given.items():
        node = Node(raw, cfg.path, f"packs.pgbouncer.options.{key}")
        if key not in OPTIONS:
            raise ConfigError(cfg.path, None, node.key,
                              f"unknown option; pack pgbouncer has: {', '.join(sorted(OPTIONS))}")
        out[key] = node.duration(minimum=1.0 if key == "interval" else 0.1)
    if out["timeout"] > out["interval"]:
        raise ConfigError(cfg.path, None, "packs.pgbouncer.options.timeout",
                          f"must not exceed the interval ({out['interval']:g}s)")
    return out


class PgBouncerCollector(Collector):
    """Reads one PgBouncer admin console over a connection kept between rounds."""

    def __init__(self, target: str, dsn: str, *, interval: float = 15.0, timeout: float = 5.0,
                 connect_timeout: float = 5.0) -> None:
        self.name = "pgbouncer"
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self.max_series = 5000
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Run the SHOW commands and build families from their rows."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                shown = {cmd: await _show(conn, cmd) for cmd in COMMANDS}
        except TimeoutError:
            await self.close()
            raise CollectError("timeout", f"PgBouncer console gave no answer within "
                               f"{self.timeout:g}s") from None
        except pgerrors.InsufficientPrivilege as e:
            await self.close()
            raise CollectError("permission", first_line(e)) from None
        except psycopg.Error as e:
            broken = self._conn is None or self._conn.closed or self._conn.broken
            await self.close()
            if broken or isinstance(e, psycopg.OperationalError):
                raise CollectError("connection", f"PgBouncer console: {first_line(e)}") from None
            raise CollectError("sql", f"PgBouncer console: {first_line(e)}") from None
        return families_from_show(shown)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        await self.close()
        # prepare_threshold=None: psycopg would prepare a statement run five times on one
        # connection (the extended protocol), which the admin console refuses
        self._conn = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, application_name="wasp",
            connect_timeout=max(1, round(self._connect_timeout)), prepare_threshold=None,
        )
        return self._conn

    async def close(self) -> None:
        """Close the console connection (the next round opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def _show(conn: psycopg.AsyncConnection[Any], command: str) -> Rows:
    # a statement without parameters on a text cursor goes out as a simple Query message
    async with conn.cursor() as cur:
        await cur.execute(command)
        cols = [c.name for c in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in await cur.fetchall()]


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def families_from_show(shown: Mapping[str, Rows]) -> list[Family]:
    """Families from one round of SHOW results (command -> rows as dicts)."""
    out: dict[str, list[Sample]] = {m.name: [] for m in METRICS}

    pool_size: dict[str, float] = {}
    for row in shown.get("SHOW DATABASES", []):
        db = str(row.get("name", ""))
        seen: set[str] = set()
        for col, metric in _DATABASES.items():
            v = _num(row.get(col))
            if v is None or metric in seen:
                continue
            seen.add(metric)
            out[metric].append(((db,), v))
        size = _num(row.get("pool_size"))
        if size is not None:
            pool_size[db] = size

    for row in shown.get("SHOW POOLS", []):
        key = (str(row.get("database", "")), str(row.get("user", "")))
        for col, state in _CLIENT_STATES.items():
            if (v := _num(row.get(col))) is not None:
                out["wasp_pgbouncer_pool_clients"].append(((*key, state), v))
        for col, state in _SERVER_STATES.items():
            if (v := _num(row.get(col))) is not None:
                out["wasp_pgbouncer_pool_servers"].append(((*key, state), v))
        wait = _num(row.get("maxwait"))
        if wait is not None:
            wait += (_num(row.get("maxwait_us")) or 0.0) / 1e6
            out["wasp_pgbouncer_pool_client_max_wait_seconds"].append((key, wait))
        size = pool_size.get(key[0])
        if size is not None:
            out["wasp_pgbouncer_pool_size"].append((key, size))
            active = _num(row.get("sv_active"))
            if size > 0 and active is not None:
                out["wasp_pgbouncer_pool_usage_ratio"].append((key, active / size))

    for row in shown.get("SHOW STATS", []):
        db = str(row.get("database", ""))
        for col, (metric, scale) in _STATS.items():
            if (v := _num(row.get(col))) is not None:
                out[metric].append(((db,), v * scale))

    for row in shown.get("SHOW LISTS", []):
        if (v := _num(row.get("items"))) is not None:
            out["wasp_pgbouncer_list_items"].append(((str(row.get("list", "")),), v))

    for row in shown.get("SHOW CONFIG", []):
        if row.get("key") == "max_client_conn" and (v := _num(row.get("value"))) is not None:
            out["wasp_pgbouncer_max_client_connections"].append(((), v))

    for row in shown.get("SHOW VERSION", []):
        text = str(next(iter(row.values()), ""))
        version = text.split()[-1] if text.split() else text
        out["wasp_pgbouncer_version_info"].append(((version,), 1.0))

    return [Family(m.name, m.type, m.help, m.labels, tuple(_dedupe(out[m.name])))
            for m in METRICS if out[m.name]]


def _dedupe(samples: Sequence[Sample]) -> list[Sample]:
    # the console never repeats a pool or database; guard the exposition anyway
    seen: dict[tuple[str, ...], float] = {}
    for labels, v in samples:
        seen.setdefault(labels, v)
    return list(seen.items())

