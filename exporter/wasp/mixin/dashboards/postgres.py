"""The PostgreSQL board: server, connections, throughput, vacuum, WAL, tables, statements."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    TOP_N,
    YELLOW,
    Dashboard,
    Panel,
    Row,
    Target,
    agg,
    alert_steps,
    bad_below_one,
    gauge,
    ok_mapping,
    rate,
    red_at,
    sel,
    stat,
    table,
    top_table,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["POSTGRES"]


def pg_up(s: Settings) -> Panel:
    """Whether the exporter reaches each target."""
    return stat("Up", Target(sel("wasp_target_up"), "{{target}}"), thresholds=bad_below_one(),
                mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def pg_version(s: Settings) -> Panel:
    """Server version of each target."""
    return stat("Version", Target(sel("wasp_pg_server_info"), "{{target}}: {{version}}"),
                options={"colorMode": "none", "graphMode": "none", "textMode": "name"})


def pg_uptime(s: Settings) -> Panel:
    """Time since the postmaster started."""
    return stat("Uptime", Target(sel("wasp_pg_uptime_seconds"), "{{target}}"), unit="s",
                thresholds=[(None, ORANGE), (3600, GREEN)], options={"graphMode": "none"})


def pg_role(s: Settings) -> Panel:
    """Primary or standby."""
    return stat("Role", Target(sel("wasp_pg_in_recovery"), "{{target}}"),
                mappings=[{"options": {"0": {"color": BLUE, "index": 0, "text": "primary"},
                                       "1": {"color": "purple", "index": 1, "text": "standby"}},
                           "type": "value"}],
                options={"graphMode": "none"})


def pg_pending_restart(s: Settings) -> Panel:
    """Settings waiting for a restart."""
    return stat("Settings pending restart",
                Target(sel("wasp_pg_settings_pending_restart"), "{{target}}"),
                thresholds=red_at((1, YELLOW)), options={"graphMode": "none"})


def pg_connection_usage(s: Settings) -> Panel:
    """Client connections over max_connections."""
    return gauge("Connections used",
                 Target(sel("target:wasp_pg_connections:usage_ratio"), "{{target}}"),
                 w=4, h=4, thresholds=alert_steps((s.connections_warning, "warning"),
                                                  (s.connections_page, "page")),
                 description="Client connections over max_connections minus the superuser "
                 "reserve, as WaspPostgresConnectionsHigh sees them.")


def pg_connections(s: Settings) -> Panel:
    """Client connections by state, against max_connections."""
    return ts("Connections by state vs max_connections",
              Target(agg("sum", "wasp_pg_connections", ("target", "state")),
                     "{{target}} {{state}}"),
              Target(sel("wasp_pg_max_connections"), "{{target}} max_connections"),
              w=12, custom={"stacking": {"group": "A", "mode": "none"}},
              overrides=[{"matcher": {"id": "byRegexp", "options": ".*max_connections"},
                          "properties": [{"id": "custom.lineStyle",
                                          "value": {"dash": [10, 10], "fill": "dash"}},
                                         {"id": "color", "value": {"fixedColor": RED,
                                                                   "mode": "fixed"}}]}])


def pg_oldest_xact(s: Settings) -> Panel:
    """Oldest open transaction and longest idle-in-transaction."""
    return ts("Oldest transaction / idle in transaction",
              Target(sel("wasp_pg_oldest_transaction_age_seconds"), "{{target}} oldest xact"),
              Target(sel("wasp_pg_oldest_idle_in_transaction_age_seconds"),
                     "{{target}} idle in xact"),
              unit="s", w=12,
              thresholds=alert_steps((s.idle_in_transaction_seconds, "warning"),
                                     (s.long_transaction_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def pg_locks(s: Settings) -> Panel:
    """Sessions waiting for locks, blocked and blocking."""
    return ts("Locks: waiting / blocked / blocking",
              Target(sel("wasp_pg_lock_waiting_sessions"), "{{target}} waiting"),
              Target(sel("wasp_pg_blocked_sessions"), "{{target}} blocked"),
              Target(sel("wasp_pg_blocking_sessions"), "{{target}} blocking"))


def pg_lock_wait(s: Settings) -> Panel:
    """Longest current lock wait."""
    return ts("Longest lock wait", Target(sel("wasp_pg_lock_wait_longest_seconds"), "{{target}}"),
              unit="s", thresholds=alert_steps((s.lock_wait_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def pg_commits(s: Settings) -> Panel:
    """Commits and rollbacks per second."""
    return ts("Commits / rollbacks per second",
              Target(rate("wasp_pg_database_commits_total", ("target",)), "{{target}} commits"),
              Target(rate("wasp_pg_database_rollbacks_total", ("target",)),
                     "{{target}} rollbacks"), unit="ops")


def pg_cache_hit(s: Settings) -> Panel:
    """Buffer cache hit ratio."""
    return ts("Cache hit ratio",
              Target(sel("target_database:wasp_pg_cache_hit:ratio_rate5m"),
                     "{{target}} {{database}}"),
              unit="percentunit", max=1,
              thresholds=[(None, YELLOW), (s.cache_hit_ratio_min, GREEN)],
              custom={"thresholdsStyle": {"mode": "line"}},
              description="The recording rule WaspPostgresCacheHitRatioLow reads (info below "
              "the line, with enough reads).")


def pg_temp_bytes(s: Settings) -> Panel:
    """Temporary file bytes written per second."""
    return ts("Temp bytes written",
              Target(rate("wasp_pg_database_temp_bytes_total", ("target", "database")),
                     "{{target}} {{database}}"), unit="Bps")


def pg_deadlocks(s: Settings) -> Panel:
    """Deadlocks detected."""
    return ts("Deadlocks",
              Target(rate("wasp_pg_database_deadlocks_total", ("target", "database"),
                          fn="increase"), "{{target}} {{database}}"),
              description="Deadlocks in each rate interval.",
              custom={"drawStyle": "bars"})


def pg_tuples(s: Settings) -> Panel:
    """Rows fetched, returned, inserted, updated and deleted per second."""
    ops = ("fetched", "returned", "inserted", "updated", "deleted")
    return ts("Tuples per second",
              *(Target(rate(f"wasp_pg_database_tuples_{op}_total", ("target",)),
                       f"{{{{target}}}} {op}") for op in ops), unit="ops", w=12)


def pg_db_size(s: Settings) -> Panel:
    """Database sizes."""
    return ts("Database size",
              Target(sel("wasp_pg_database_size_bytes"), "{{target}} {{database}}"),
              unit="bytes", w=12)


def pg_xid_age(s: Settings) -> Panel:
    """Transaction ID age against autovacuum_freeze_max_age."""
    xid = agg("max", "wasp_pg_database_xid_age", ("target",))
    return ts("XID age vs autovacuum_freeze_max_age",
              Target(xid, "{{target}} xid age"),
              Target(sel("wasp_pg_autovacuum_freeze_max_age"), "{{target}} freeze max age"),
              description="Autovacuum forces a freeze at autovacuum_freeze_max_age; "
              "wraparound is at 2^31.")


def pg_xid_ratio(s: Settings) -> Panel:
    """XID age as a share of the wraparound limit."""
    xid = agg("max", "wasp_pg_database_xid_age", ("target",))
    return gauge("XID wraparound used", Target(f"{xid} / 2^31", "{{target}}"),
                 thresholds=alert_steps((s.xid_wraparound_page / 2**31, "page")))


def pg_checkpoints(s: Settings) -> Panel:
    """Checkpoints per minute by kind."""
    return ts("Checkpoints per minute",
              Target(f"60 * {rate('wasp_pg_checkpoints_total', ('target', 'kind'))}",
                     "{{target}} {{kind}}"), w=6)


def pg_wal_rate(s: Settings) -> Panel:
    """WAL generated per second."""
    return ts("WAL bytes per second",
              Target(rate("wasp_pg_wal_bytes_total", ("target",)), "{{target}}"),
              unit="Bps", w=6)


def pg_archiver(s: Settings) -> Panel:
    """Archiver: pending files and failures."""
    return ts("Archiver: pending files / failures",
              Target(sel("wasp_pg_archiver_pending_files"), "{{target}} pending"),
              Target(rate("wasp_pg_archiver_failed_total", ("target",), fn="increase"),
                     "{{target}} failed"), w=6)


def pg_archiver_age(s: Settings) -> Panel:
    """Time since the last WAL file was archived."""
    return stat("Last WAL archived",
                Target(sel("wasp_pg_archiver_last_archived_age_seconds"), "{{target}}"),
                unit="s", w=6, h=8, thresholds=red_at((300, ORANGE), (900, RED)),
                description="Grows on an idle database too; read it with the pending files.")


def pg_top_table_size(s: Settings) -> Panel:
    """Largest tables."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_size_bytes', table='!=(other)')})"
    return top_table(f"Top {TOP_N} tables by size", "wasp_pg_table_size_bytes",
                     ("target", "schema", "table"), expr, unit="bytes")


def pg_top_dead_tuples(s: Settings) -> Panel:
    """Tables with the most dead tuples."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_dead_tuples', table='!=(other)')})"
    return top_table(f"Top {TOP_N} tables by dead tuples", "wasp_pg_table_dead_tuples",
                     ("target", "schema", "table"), expr, unit="short")


def pg_top_bloat(s: Settings) -> Panel:
    """Tables with the highest estimated bloat."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_bloat_ratio')})"
    return top_table(f"Top {TOP_N} tables by estimated bloat", "wasp_pg_table_bloat_ratio",
                     ("target", "schema", "table"), expr, unit="percentunit",
                     description="An estimate that reads a little high; worry above 0.5.")


def pg_unused_indexes(s: Settings) -> Panel:
    """Indexes never scanned since the statistics reset."""
    return stat("Unused indexes",
                Target(sel("wasp_pg_unused_indexes"), "{{target}} count"),
                Target(sel("wasp_pg_unused_indexes_size_bytes"), "{{target}} size"),
                w=8, h=8, options={"colorMode": "none", "graphMode": "none"},
                overrides=[{"matcher": {"id": "byRegexp", "options": ".* size"},
                            "properties": [{"id": "unit", "value": "bytes"}]}],
                description="Constraint indexes are left out; 'never' is since the last "
                "statistics reset.")


def pg_top_statements(s: Settings) -> Panel:
    """Statements by execution time, with calls and mean time (text from the info metric)."""
    text = f"on (target, queryid) group_left (fingerprint) {sel('wasp_pg_statement_info')}"
    exec_rate = rate("wasp_pg_statement_exec_time_seconds_total", ("target", "queryid"),
                     queryid="!=(other)")
    calls = rate("wasp_pg_statement_calls_total", ("target", "queryid"), queryid="!=(other)")
    mean = sel("wasp_pg_statement_mean_exec_time_seconds", queryid="!=(other)")
    p = table(f"Top {TOP_N} statements by execution time",
              Target(f"topk({TOP_N}, {exec_rate}) * {text}"), Target(f"{calls} * {text}"),
              Target(f"{mean} * {text}"), w=24, h=10,
              description="Execution seconds per second (share of one core), calls per "
              "second and mean time since the statistics began.")
    p.transformations.insert(0, {"id": "filterByValue", "options": {
        "filters": [{"config": {"id": "isNull", "options": {}}, "fieldName": "Value #A"}],
        "match": "any", "type": "exclude"}})
    p.transformations[-1]["options"]["renameByName"] = {
        "Value #A": "exec s/s", "Value #B": "calls/s", "Value #C": "mean"}
    p.options["sortBy"] = [{"desc": True, "displayName": "exec s/s"}]
    p.overrides = [
        {"matcher": {"id": "byName", "options": "mean"},
         "properties": [{"id": "unit", "value": "s"}]},
        {"matcher": {"id": "byName", "options": "calls/s"},
         "properties": [{"id": "unit", "value": "ops"}]},
        {"matcher": {"id": "byName", "options": "exec s/s"},
         "properties": [{"id": "unit", "value": "percentunit"}]}]
    return p


POSTGRES = Dashboard(
    "wasp-postgres", "wasp / PostgreSQL",
    "Server health, connections, transactions, vacuum and wraparound, WAL, tables and "
    "statements (the postgres pack).",
    (lambda s: Row("Server"), pg_up, pg_version, pg_uptime, pg_role, pg_pending_restart,
     pg_connection_usage,
     lambda s: Row("Connections and locks"), pg_connections, pg_oldest_xact, pg_locks,
     pg_lock_wait, pg_deadlocks,
     lambda s: Row("Throughput"), pg_commits, pg_cache_hit, pg_temp_bytes, pg_tuples, pg_db_size,
     lambda s: Row("Vacuum, checkpoints and WAL"), pg_xid_age, pg_xid_ratio, pg_checkpoints,
     pg_wal_rate, pg_archiver, pg_archiver_age,
     lambda s: Row("Tables and indexes"), pg_top_table_size, pg_top_dead_tuples, pg_top_bloat,
     pg_unused_indexes,
     lambda s: Row("Statements"), pg_top_statements),
    tags=("postgres",),
)
