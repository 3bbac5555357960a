"""Checks of the database groups: security, schema and performance, settings.

Pure functions of the gathered facts; each returns one Check. The settings
checks judge memory settings against the machine's memory with the usual
PostgreSQL sizing rules (the evidence states the rule it applied).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from wasp.doctor.gather import CHEAP_COLUMNS, PACK_INDEXES, Facts, Setup
from wasp.doctor.model import Check, Severity

__all__ = ["DB_CHECKS", "non_local_address"]

MiB = 1024.0 * 1024.0
GiB = 1024.0 * MiB
BLOAT_RATIO, BLOAT_MIN_DEAD = 0.2, 10_000.0
UNUSED_INDEX_MIN_BYTES = 1 * MiB
LARGE_TABLE_ROWS = 100_000.0


def _mib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def _c(id_: str, title: str, sev: Severity) -> Callable[..., Check]:
    group = id_.split(".")[0]

    def make(status: str, evidence: str, fix: str = "", value: float | None = None) -> Check:
        return Check(id_, group, title, sev, status, evidence, fix, value)  # type: ignore[arg-type]
    return make


# ---------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------
def app_role(f: Facts, s: Setup) -> Check:
    c = _c("security.app_role", "the application role is not a superuser", "critical")
    r = f.app_role
    if r is None:
        return c("skip", "no application role found (set packs.doctor.options.app_role)")
    if r.get("missing"):
        return c("fail", f"application role {r['role']} does not exist", "check app_role", 1)
    how = "owner of bookings" if r.get("from_owner") else "configured"
    if r["superuser"]:
        return c("fail", f"application role {r['role']} ({how}) is a superuser",
                 f"create a role that owns the schema without SUPERUSER, then "
                 f"ALTER ROLE {r['role']} NOSUPERUSER;", 1)
    return c("pass", f"application role {r['role']} ({how}) is not a superuser", value=0)


def ssl(f: Facts, s: Setup) -> Check:
    c = _c("security.ssl", "SSL is on", "critical")
    v = f.settings.get("ssl")
    if v is None:
        return c("skip", "ssl setting not readable")
    if v == "on":
        return c("pass", "ssl=on", value=1)
    return c("fail", f"ssl={v}: passwords and data cross the network in clear",
             "set ssl_cert_file and ssl_key_file, ALTER SYSTEM SET ssl = on; "
             "SELECT pg_reload_conf(); then hostssl rules in pg_hba.conf", 0)


def scram(f: Facts, s: Setup) -> Check:
    c = _c("security.scram", "passwords use scram-sha-256", "warning")
    enc = f.settings.get("password_encryption")
    weak = [r for r in f.hba or [] if r["method"] in ("md5", "password")]
    if enc != "scram-sha-256":
        return c("fail", f"password_encryption={enc}",
                 "ALTER SYSTEM SET password_encryption = 'scram-sha-256'; reset passwords", 0)
    if weak:
        lines = ", ".join(f"line {r['line']} {r['method']}" for r in weak)
        return c("warn", f"pg_hba.conf still allows weaker methods: {lines}",
                 "replace md5/password with scram-sha-256 in pg_hba.conf", 0)
    tail = "" if f.hba is not None else " (pg_hba.conf not readable)"
    return c("pass", f"password_encryption=scram-sha-256{tail}", value=1)


def non_local_address(address: str | None) -> bool:
    """True when a pg_hba address may match a client on another machine."""
    if address is None:  # local (Unix socket) rules have no address
        return False
    if address in ("samehost", "localhost"):
        return False
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return True  # all, samenet, a host name
    return not net.is_loopback


def hba_trust(f: Facts, s: Setup) -> Check:
    c = _c("security.hba_trust", "no trust rule for non-local addresses", "critical")
    if f.hba is None:
        return c("skip", "pg_hba_file_rules not readable by this role (superuser only)")
    bad = [r for r in f.hba if r["method"] == "trust" and r["type"] != "local"
           and non_local_address(r["address"])]
    if not bad:
        return c("pass", f"{len(f.hba)} rules, no trust for a non-local address", value=0)
    lines = ", ".join(f"line {r['line']} ({r['type']} {r['address'] or 'all'} trust)"
                      for r in bad)
    return c("fail", f"{len(bad)} trust rules accept remote clients without a password: {lines}",
             "replace trust with scram-sha-256 (hostssl) in pg_hba.conf; SELECT pg_reload_conf();",
             float(len(bad)))


def monitor_role(f: Facts, s: Setup) -> Check:
    c = _c("security.monitor_role", "monitoring connects through a pg_monitor role", "warning")
    sv = f.server
    if sv is None:
        return c("skip", "current role not readable")
    if sv["superuser"]:
        return c("fail", f"wasp connects as {sv['user']}, a superuser",
                 "psql -f exporter/wasp/sql/monitor_role.sql; connect as wasp_monitor", 0)
    if not sv["pg_monitor"]:
        return c("warn", f"wasp connects as {sv['user']}, not a member of pg_monitor",
                 f"GRANT pg_monitor TO {sv['user']};", 0)
    return c("pass", f"wasp connects as {sv['user']} (pg_monitor, not superuser)", value=1)


# ---------------------------------------------------------------------------
# schema and performance
# ---------------------------------------------------------------------------
def pack_indexes(f: Facts, s: Setup) -> Check:
    c = _c("schema.pack_indexes", "the indexes the packs need exist", "warning")
    if f.index_leads is None or f.columns is None:
        return c("skip", "pg_index not readable")
    wanted = [(t, col) for t, col in PACK_INDEXES if (t, col) in f.columns]
    if not wanted:
        return c("skip", "none of the application's tables are in this database")
    missing = [(t, col) for t, col in wanted if (t, col) not in f.index_leads]

    def plan(t: str, col: str) -> str:
        p = f.index_plans.get((t, col))
        return (f"{p['scan']}, cost {p['cost']:.0f}" if p
                else "plan not readable by this role (EXPLAIN needs SELECT on the table)")
    if not missing:
        shown = "; ".join(f"{t}({col}): {plan(t, col)}" for t, col in wanted)
        return c("pass", f"{len(wanted)} present; the last hour reads as {shown}", value=0)
    shown = "; ".join(f"{t}({col}): {plan(t, col)}" for t, col in missing)
    sql = " ".join(f"CREATE INDEX CONCURRENTLY wasp_{t}_{col}_idx ON {t} ({col});"
                   for t, col in missing)
    return c("fail", f"{len(missing)} of {len(wanted)} missing; the last hour reads as {shown}",
             f"{sql} (exporter/wasp/sql/app_indexes.sql)", float(len(missing)))


def unused_indexes(f: Facts, s: Setup) -> Check:
    c = _c("schema.unused_indexes", "no large unused indexes", "info")
    if f.unused_indexes is None:
        return c("skip", "pg_stat_user_indexes not readable")
    big = [i for i in f.unused_indexes if i["bytes"] >= UNUSED_INDEX_MIN_BYTES]
    total = sum(i["bytes"] for i in big)
    if not big:
        return c("pass", f"{len(f.unused_indexes)} never-scanned indexes, none over "
                 f"{_mib(UNUSED_INDEX_MIN_BYTES)}", value=0)
    top = ", ".join(f"{i['index']} ({_mib(i['bytes'])})" for i in big[:3])
    return c("warn", f"{len(big)} never-scanned indexes hold {_mib(total)}: {top}",
             f"after checking replicas use them neither: DROP INDEX CONCURRENTLY "
             f"{big[0]['index']};", total)


def bloat(f: Facts, s: Setup) -> Check:
    c = _c("schema.bloat", "no bloated tables", "warning")
    if f.tables is None:
        return c("skip", "pg_stat_user_tables not readable")
    bad = []
    for t in f.tables:
        total = t["live"] + t["dead"]
        if t["dead"] >= BLOAT_MIN_DEAD and total and t["dead"] / total >= BLOAT_RATIO:
            bad.append((t["dead"] / total, t))
    if not bad:
        return c("pass", f"{len(f.tables)} tables, none over {BLOAT_RATIO:.0%} dead rows",
                 value=0)
    bad.sort(key=lambda x: -x[0])
    ratio, t = bad[0]
    top = ", ".join(f"{x['table']} {r:.0%} dead ({x['dead']:.0f} rows)" for r, x in bad[:3])
    return c("fail", f"{len(bad)} bloated tables: {top}",
             f"VACUUM (VERBOSE, ANALYZE) {t['table']}; and check autovacuum keeps up "
             f"(autovacuum_vacuum_scale_factor for large tables)", ratio)


def pg_stat_statements(f: Facts, s: Setup) -> Check:
    c = _c("schema.pg_stat_statements", "pg_stat_statements is installed", "warning")
    if f.pgss_version:
        return c("pass", f"pg_stat_statements {f.pgss_version}", value=1)
    return c("fail", "pg_stat_statements is not installed: no per-statement timings",
             "shared_preload_libraries = 'pg_stat_statements' (restart); "
             "CREATE EXTENSION pg_stat_statements;", 0)


def top_statements(f: Facts, s: Setup) -> Check:
    c = _c("schema.top_statements", "top statements by total time", "info")
    if not f.top_statements:
        return c("skip", "pg_stat_statements not installed or not readable")
    top = "; ".join(f"{r['total_seconds']:.1f} s in {r['calls']:.0f} calls: {r['query'][:60]}"
                    for r in f.top_statements[:3])
    return c("pass", top, value=float(f.top_statements[0]["total_seconds"]))


def seq_scans(f: Facts, s: Setup) -> Check:
    c = _c("schema.seq_scans", "no sequential scans on large tables", "warning")
    if f.tables is None:
        return c("skip", "pg_stat_user_tables not readable")
    bad = [t for t in f.tables if t["live"] >= LARGE_TABLE_ROWS and t["seq_scan"] > 0
           and t["seq_tup_read"] / t["seq_scan"] >= LARGE_TABLE_ROWS / 2
           and t["seq_scan"] > t["idx_scan"]]
    if not bad:
        return c("pass", f"no table over {LARGE_TABLE_ROWS:.0f} rows is read mostly by "
                 "sequential scans", value=0)
    top = ", ".join(f"{t['table']} ({t['seq_scan']:.0f} seq scans, "
                    f"{t['seq_tup_read'] / t['seq_scan']:.0f} rows each)" for t in bad[:3])
    return c("warn", f"{len(bad)} large tables read by sequential scans: {top}",
             "find the statements in pg_stat_statements and index their filters",
             float(len(bad)))


def cheap_columns(f: Facts, s: Setup) -> Check:
    c = _c("schema.updated_at", "messages and webhook logs have updated_at", "info")
    if f.columns is None:
        return c("skip", "pg_attribute not readable")
    present = {t for t, _ in f.columns}
    wanted = [(t, col) for t, col in CHEAP_COLUMNS if t in present]
    if not wanted:
        return c("skip", "messages and webhook_logs are not in this database")
    missing = [(t, col) for t, col in wanted if (t, col) not in f.columns]
    if not missing:
        return c("pass", "updated_at present: the app pack can re-read changed rows only",
                 value=0)
    names = ", ".join(f"{t}.{col}" for t, col in missing)
    return c("warn", f"missing {names}: status changes force full re-reads of the windows",
             "; ".join(f"ALTER TABLE {t} ADD COLUMN {col} timestamp(3) (set by the "
                       f"application on every status change, @updatedAt in Prisma)"
                       for t, col in missing), float(len(missing)))


# ---------------------------------------------------------------------------
# settings against the machine's memory
# ---------------------------------------------------------------------------
def _memory(f: Facts, c: Callable[..., Check]) -> float | Check:
    if f.memory_bytes is None:
        return c("skip", "machine memory unknown (set packs.doctor.options.memory)")
    return f.memory_bytes


def shared_buffers(f: Facts, s: Setup) -> Check:
    c = _c("settings.shared_buffers", "shared_buffers fits the memory", "warning")
    mem = _memory(f, c)
    if isinstance(mem, Check):
        return mem
    sb = float(f.settings.get("shared_buffers", 0))
    r = sb / mem
    ev = (f"shared_buffers {_mib(sb)} is {r:.0%} of {_mib(mem)} ({f.memory_source}); "
          "the rule: 15-40 % (the OS cache holds the rest)")
    if 0.15 <= r <= 0.4:
        return c("pass", ev, value=r)
    return c("warn", ev, f"ALTER SYSTEM SET shared_buffers = '{int(mem * 0.25 / MiB)}MB'; "
             "(restart)", r)


def effective_cache_size(f: Facts, s: Setup) -> Check:
    c = _c("settings.effective_cache_size", "effective_cache_size matches the memory", "info")
    mem = _memory(f, c)
    if isinstance(mem, Check):
        return mem
    v = float(f.settings.get("effective_cache_size", 0))
    r = v / mem
    ev = (f"effective_cache_size {_mib(v)} is {r:.0%} of the memory; the rule: 50-80 % "
          "(what the planner may expect cached)")
    if 0.5 <= r <= 0.8:
        return c("pass", ev, value=r)
    return c("warn", ev, f"ALTER SYSTEM SET effective_cache_size = '{int(mem * 0.7 / MiB)}MB'; "
             "SELECT pg_reload_conf();", r)


def work_mem(f: Facts, s: Setup) -> Check:
    c = _c("settings.work_mem", "work_mem times max_connections fits the memory", "warning")
    mem = _memory(f, c)
    if isinstance(mem, Check):
        return mem
    wm = float(f.settings.get("work_mem", 0))
    conns = float(f.settings.get("max_connections", 100))
    r = wm * conns / mem
    ev = (f"work_mem {_mib(wm)} x max_connections {conns:.0f} = {_mib(wm * conns)}, "
          f"{r:.0%} of the memory; the rule: under 25 % (each sort or hash may take it)")
    if r <= 0.25:
        return c("pass", ev, value=r)
    return c("warn", ev, f"ALTER SYSTEM SET work_mem = '{max(1, int(mem * 0.25 / conns / MiB))}MB';"
             " or fewer connections behind PgBouncer", r)


def autovacuum(f: Facts, s: Setup) -> Check:
    c = _c("settings.autovacuum", "autovacuum is on", "critical")
    av, tc = f.settings.get("autovacuum"), f.settings.get("track_counts")
    if av == "on" and tc == "on":
        return c("pass", "autovacuum=on, track_counts=on", value=1)
    return c("fail", f"autovacuum={av}, track_counts={tc}: dead rows pile up and "
             "transaction ids wrap around", "ALTER SYSTEM SET autovacuum = on; "
             "ALTER SYSTEM SET track_counts = on; SELECT pg_reload_conf();", 0)


def checkpoints(f: Facts, s: Setup) -> Check:
    c = _c("settings.checkpoints", "checkpoints run on time, not forced by WAL volume", "warning")
    bg = f.bgwriter
    mws = float(f.settings.get("max_wal_size", 0))
    ct = float(f.settings.get("checkpoint_timeout", 0))
    if bg is None:
        return c("skip", "pg_stat_bgwriter not readable")
    total = bg["timed"] + bg["requested"]
    r = bg["requested"] / total if total else 0.0
    ev = (f"{bg['requested']:.0f} of {total:.0f} checkpoints forced ({r:.0%}); "
          f"max_wal_size {_mib(mws)}, checkpoint_timeout {ct:.0f} s; the rule: under 20 % "
          "forced, max_wal_size >= 1 GiB")
    if (total < 10 or r < 0.2) and mws >= GiB:
        return c("pass", ev, value=r)
    return c("warn", ev, "ALTER SYSTEM SET max_wal_size = '4GB'; SELECT pg_reload_conf();", r)


def wal_level(f: Facts, s: Setup) -> Check:
    c = _c("settings.wal_level", "wal_level allows replicas and archiving", "warning")
    v = f.settings.get("wal_level")
    if v in ("replica", "logical"):
        return c("pass", f"wal_level={v}", value=1)
    return c("fail", f"wal_level={v}: no replica, no archive", "ALTER SYSTEM SET wal_level = "
             "replica; (restart)", 0)


DB_CHECKS: tuple[Callable[[Facts, Setup], Check], ...] = (
    app_role, ssl, scram, hba_trust, monitor_role,
    pack_indexes, unused_indexes, bloat, pg_stat_statements, top_statements, seq_scans,
    cheap_columns,
    shared_buffers, effective_cache_size, work_mem, autovacuum, checkpoints, wal_level,
)
