"""Gather the facts the checks judge: SQL probes, PgBouncer, pgBackRest, the machine.

Everything here only reads. SQL runs through the exporter's read-only,
time-limited sessions (``TargetDB``), one statement per probe; a probe the
role may not run (pg_hba_file_rules without superuser, pg_stat_statements not
installed) leaves its fact ``None`` and the check that needs it is skipped,
never failed. The DSNs are secrets: no message here ever holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from wasp.companions.backup.pgbackrest import (
    InfoError,
    PgBackRest,
    error_text,
    parse_info,
    wal_segment_end,
)
from wasp.companions.backup.records import load_records, newest_completed, newest_good
from wasp.config.backup import BackupSettings, resolve_secrets
from wasp.exporter.db import DBError, TargetDB

__all__ = ["PACK_INDEXES", "Facts", "Setup", "gather", "machine_memory", "top_statements"]

#: (table, leading column) of the indexes the built-in packs need (exporter/wasp/sql/app_indexes.sql)
PACK_INDEXES: tuple[tuple[str, str], ...] = (
    ("messages", "created_at"), ("ai_messages", "created_at"), ("webhook_logs", "created_at"),
    ("bookings", "created_at"), ("bookings", "start_ts"), ("bookings", "updated_at"),
    ("reminders", "scheduled_at"),
)
#: columns that would let the app pack re-read only changed rows
CHEAP_COLUMNS: tuple[tuple[str, str], ...] = (("messages", "updated_at"),
                                              ("webhook_logs", "updated_at"))
SETTINGS = (
    "shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "autovacuum",
    "track_counts", "max_connections", "superuser_reserved_connections", "ssl",
    "password_encryption", "archive_mode", "archive_command", "wal_level", "max_wal_size",
    "checkpoint_timeout", "idle_in_transaction_session_timeout",
)
_UNIT = {"8kB": 8192.0, "kB": 1024.0, "MB": 1024.0**2, "GB": 1024.0**3, "s": 1.0,
         "ms": 0.001, "min": 60.0}
IDLE_IN_TRANSACTION_LIMIT = 300.0


@dataclass(frozen=True)
class Setup:
    """What to examine: a target, and where its pooler, backups and records are."""

    target: str
    dsn: str = field(repr=False)
    pgbouncer_dsn: str | None = field(default=None, repr=False)
    backup: BackupSettings | None = None
    status_dir: Path = Path("/var/lib/wasp/status")
    app_role: str | None = None
    memory_bytes: float | None = None
    min_replicas: int = 1
    timeout: float = 10.0


@dataclass
class Facts:
    """What the probes saw; None where a probe could not read."""

    now: float
    settings: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] | None = None
    app_role: dict[str, Any] | None = None
    activity: dict[str, Any] | None = None
    replicas: list[dict[str, Any]] | None = None
    slots: list[dict[str, Any]] | None = None
    heartbeat_age: float | None = None
    heartbeat_installed: bool | None = None
    archiver: dict[str, Any] | None = None
    hba: list[dict[str, Any]] | None = None
    tables: list[dict[str, Any]] | None = None
    unused_indexes: list[dict[str, Any]] | None = None
    index_leads: set[tuple[str, str]] | None = None
    index_plans: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    columns: set[tuple[str, str]] | None = None
    pgss_version: str | None = None
    top_statements: list[dict[str, Any]] | None = None
    bgwriter: dict[str, Any] | None = None
    memory_bytes: float | None = None
    memory_source: str = ""
    pooler: dict[str, Any] | None = None
    backup: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)


async def _rows(db: TargetDB, facts: Facts, probe: str, sql: str, timeout: float,
                params: tuple[Any, ...] | None = None) -> list[dict[str, Any]] | None:
    try:
        r = await db.fetch(sql, timeout=timeout, params=params)
    except DBError as e:
        facts.errors[probe] = f"{e.reason}: {e}"
        return None
    return [dict(zip(r.columns, row, strict=True)) for row in r.rows]


def _setting_value(setting: str, unit: str | None) -> Any:
    if unit in _UNIT:
        try:
            return float(setting) * _UNIT[unit]
        except ValueError:
            return setting
    return setting


def _cidr(netmask: str | None, address: str | None) -> str | None:
    # pg_hba_file_rules splits 10.0.0.0/8 into address and netmask: join them back
    if address is None or netmask is None:
        return address
    try:
        bits = int(ipaddress.ip_address(netmask)).bit_count()
    except ValueError:
        return address
    return f"{address}/{bits}"


def machine_memory() -> float | None:
    """MemTotal of this machine in bytes (None when /proc/meminfo is unreadable)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024.0
    return None


async def gather(db: TargetDB, setup: Setup, *, now: float | None = None) -> Facts:
    """Run every probe once; never raises for a probe that fails."""
    facts = Facts(now=time.time() if now is None else now)
    t = setup.timeout
    rows = await _rows(db, facts, "settings",
                       "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", t,
                       (list(SETTINGS),))
    if rows is None:  # the server does not answer: nothing else will
        return facts
    facts.settings = {r["name"]: _setting_value(r["setting"], r["unit"]) for r in rows}
    got = await _rows(db, facts, "server", """
        SELECT current_user AS user, r.rolsuper AS superuser,
               pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor,
               current_database() AS database, pg_is_in_recovery() AS in_recovery
          FROM pg_roles r WHERE r.rolname = current_user""", t)
    facts.server = got[0] if got else None
    got = await _rows(db, facts, "app_role", """
        WITH owner AS (SELECT tableowner FROM pg_tables WHERE tablename = 'bookings'
                        ORDER BY schemaname = current_schema() DESC LIMIT 1)
        SELECT r.rolname AS role, r.rolsuper AS superuser,
               (%s::text IS NULL) AS from_owner
          FROM pg_roles r WHERE r.rolname = coalesce(%s::text, (SELECT tableowner FROM owner))""",
                      t, (setup.app_role, setup.app_role))
    facts.app_role = got[0] if got else ({"role": setup.app_role, "superuser": None,
                                          "missing": True} if setup.app_role else None)
    got = await _rows(db, facts, "activity", """
        SELECT count(*) AS connections,
               count(*) FILTER (WHERE state LIKE 'idle in transaction%%'
                   AND clock_timestamp() - state_change > make_interval(secs => %s))
                   AS idle_in_transaction,
               coalesce(max(EXTRACT(epoch FROM clock_timestamp() - state_change))
                   FILTER (WHERE state LIKE 'idle in transaction%%'), 0)::float8
                   AS oldest_idle_in_transaction
          FROM pg_stat_activity WHERE backend_type = 'client backend'""", t,
                      (IDLE_IN_TRANSACTION_LIMIT,))
    facts.activity = got[0] if got else None
    facts.replicas = await _rows(db, facts, "replicas", """
        SELECT application_name AS name, state,
               coalesce(EXTRACT(epoch FROM replay_lag), 0)::float8 AS replay_lag_seconds
          FROM pg_stat_replication""", t)
    facts.slots = await _rows(db, facts, "slots", """
        SELECT slot_name AS name, active, wal_status,
               CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 END
                    AS retained_bytes
          FROM pg_replication_slots""", t)
    got = await _rows(db, facts, "heartbeat",
                      "SELECT to_regclass('wasp.heartbeat') IS NOT NULL AS installed", t)
    facts.heartbeat_installed = bool(got[0]["installed"]) if got else None
    if facts.heartbeat_installed:
        got = await _rows(db, facts, "heartbeat_age", """
            SELECT EXTRACT(epoch FROM clock_timestamp() - beat_at)::float8 AS age
              FROM wasp.heartbeat WHERE id = 1""", t)
        facts.heartbeat_age = got[0]["age"] if got else None
    await _archiver(db, facts, t)
    facts.hba = await _rows(db, facts, "hba", """
        SELECT line_number AS line, type, database, user_name AS users, address, netmask,
               auth_method AS method
          FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number""", t)
    for rule in facts.hba or []:
        rule["address"] = _cidr(rule.pop("netmask"), rule["address"])
    facts.tables = await _rows(db, facts, "tables", """
        SELECT relname AS table, n_live_tup::float8 AS live, n_dead_tup::float8 AS dead,
               seq_scan::float8 AS seq_scan, seq_tup_read::float8 AS seq_tup_read,
               coalesce(idx_scan, 0)::float8 AS idx_scan,
               pg_total_relation_size(relid)::float8 AS bytes
          FROM pg_stat_user_tables ORDER BY relname""", t)
    facts.unused_indexes = await _rows(db, facts, "unused_indexes", """
        SELECT s.relname AS table, s.indexrelname AS index,
               pg_relation_size(s.indexrelid)::float8 AS bytes
          FROM pg_stat_user_indexes s JOIN pg_index i USING (indexrelid)
         WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
         ORDER BY 3 DESC, 2""", t)
    got = await _rows(db, facts, "indexes", """
        SELECT c.relname AS table, a.attname AS column
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE pg_table_is_visible(c.oid) AND i.indpred IS NULL""", t)
    facts.index_leads = {(r["table"], r["column"]) for r in got} if got is not None else None
    wanted = sorted({tb for tb, _ in PACK_INDEXES + CHEAP_COLUMNS})
    got = await _rows(db, facts, "columns", """
        SELECT c.relname AS table, a.attname AS column
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE pg_table_is_visible(c.oid) AND c.relkind IN ('r', 'p')
           AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped""", t, (wanted,))
    facts.columns = {(r["table"], r["column"]) for r in got} if got is not None else None
    for table, column in PACK_INDEXES:
        if facts.columns is not None and (table, column) in facts.columns:
            await _plan(db, facts, table, column, t)
    got = await _rows(db, facts, "pg_stat_statements",
                      "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'",
                      t)
    facts.pgss_version = got[0]["extversion"] if got else None
    if facts.pgss_version:
        facts.top_statements = await top_statements(db, facts, t)
    got = await _rows(db, facts, "bgwriter", """
        SELECT checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS requested
          FROM pg_stat_bgwriter""", t)
    facts.bgwriter = got[0] if got else None
    if setup.memory_bytes is not None:
        facts.memory_bytes, facts.memory_source = setup.memory_bytes, "configured"
    else:
        facts.memory_bytes, facts.memory_source = machine_memory(), "this machine's MemTotal"
    if setup.pgbouncer_dsn is not None:
        facts.pooler = await _pooler(setup.pgbouncer_dsn, t)
    if setup.backup is not None:
        facts.backup = await _backup(setup.backup, setup.status_dir, t)
    return facts


async def top_statements(db: TargetDB, facts: Facts, t: float, *, limit: int = 5
                         ) -> list[dict[str, Any]] | None:
    """The statements with the most total time: literals as ?, password statements left out."""
    return await _rows(db, facts, "top_statements", r"""
        SELECT left(regexp_replace(regexp_replace(query, '\s+', ' ', 'g'),
                                   '''[^'']*''', '?', 'g'), 100) AS query,
               calls::float8 AS calls, (total_exec_time / 1000)::float8 AS total_seconds,
               (mean_exec_time / 1000)::float8 AS mean_seconds
          FROM pg_stat_statements
         WHERE query !~* '(password|passphrase|secret)'
         ORDER BY total_exec_time DESC LIMIT %s""", t, (limit,))


async def _archiver(db: TargetDB, facts: Facts, t: float) -> None:
    got = await _rows(db, facts, "archiver", """
        SELECT archived_count::float8 AS archived, failed_count::float8 AS failed,
               last_archived_wal,
               EXTRACT(epoch FROM clock_timestamp() - last_archived_time)::float8 AS age,
               coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)
                   AS failing,
               CASE WHEN pg_is_in_recovery() THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END AS lsn,
               pg_size_bytes(current_setting('wal_segment_size'))::bigint AS segment_size
          FROM pg_stat_archiver""", t)
    if not got:
        return
    a = got[0]
    wal = a["last_archived_wal"]
    end = wal_segment_end(wal, int(a["segment_size"])) if wal else None
    a["unarchived_bytes"] = (max(0.0, a["lsn"] - end) if end is not None and a["lsn"] is not None
                             else None)
    facts.archiver = a


async def _plan(db: TargetDB, facts: Facts, table: str, column: str, t: float) -> None:
    # the shape of the packs' window queries: "rows of the last hour" (names are constants)
    got = await _rows(db, facts, f"plan {table}", (
        f'EXPLAIN (FORMAT JSON) SELECT count(*) FROM "{table}" '
        f"WHERE \"{column}\" > (now() AT TIME ZONE 'UTC') - interval '1 hour'"), t)
    if not got:
        return
    plan = got[0].get("QUERY PLAN")
    if isinstance(plan, str):
        plan = json.loads(plan)
    node = plan[0]["Plan"] if isinstance(plan, list) and plan else {}
    scans = []
    stack = [node]
    while stack:
        n = stack.pop()
        if "Relation Name" in n:
            scans.append(n["Node Type"])
        stack.extend(n.get("Plans", []))
    facts.index_plans[(table, column)] = {"scan": scans[0] if scans else node.get("Node Type"),
                                          "cost": float(node.get("Total Cost", 0.0))}


async def _pooler(dsn: str, t: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(t):
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         application_name="wasp")
            try:
                cur = await conn.execute("SHOW POOLS")
                cols = [c.name for c in cur.description or ()]
                pools = [dict(zip(cols, r, strict=True)) for r in await cur.fetchall()]
            finally:
                await conn.close()
    except TimeoutError:
        return {"up": False, "error": f"no answer within {t:g}s"}
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return {"up": False, "error": first}
    return {"up": True, "pools": len([p for p in pools if p.get("database") != "pgbouncer"]),
            "waiting": sum(int(p.get("cl_waiting") or 0) for p in pools)}


async def _backup(s: BackupSettings, status_dir: Path, t: float) -> dict[str, Any]:
    out: dict[str, Any] = {"stanza": s.stanza, "schedule": {
        k: getattr(s.schedule, k) for k in ("full", "diff", "incr", "drill")}}
    records = await asyncio.to_thread(load_records, status_dir, s.stanza)
    out["drill"] = ({k: records.drill.get(k) for k in ("state", "finished_at", "last_success_at",
                                                        "label")}
                    if records.drill else None)
    secrets = await asyncio.to_thread(resolve_secrets, s)
    try:
        r = await PgBackRest(s, secrets).capture_async(
            "info", "--output=json", "--log-level-file=off", timeout=max(5.0, t * 3))
    except OSError as e:
        out["error"] = f"cannot run {s.pgbackrest}: {e.strerror or e}"
        return out
    try:
        stanzas = parse_info(r.stdout)
    except InfoError as e:
        out["error"] = f"pgbackrest info exited {r.returncode}: {error_text(r.stderr) or e}"
        return out
    info = next((st for st in stanzas if st.name == s.stanza), None)
    out["stanza_exists"] = info is not None and bool(info.repos) and all(
        rp.code in (0, 2) for rp in info.repos)
    if info is not None:
        out["status"] = info.message
        out["backups"] = len(info.backups)
        good = newest_good(info, records.drill)
        newest = max(good.values(), key=lambda b: b.stop, default=None)
        out["newest_good"] = ({"label": newest.label, "stop": newest.stop}
                              if newest is not None else None)
        done = max(newest_completed(info).values(), key=lambda b: b.stop, default=None)
        out["newest"] = ({"label": done.label, "stop": done.stop, "type": done.type}
                         if done is not None else None)
    return out
