"""Alerts on PostgreSQL: connections, transactions, locks, wraparound, cache, archiver."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import (
    Bound,
    Point,
    Probe,
    counter,
    gauge,
    jump,
    minutes,
    when,
)
from wasp.mixin.rules.model import Builder, Case, Fired, Series, T, series, t, two
from wasp.mixin.settings import Settings, spoken


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-postgres")
    q = b.q()
    two(b, g, "WaspPostgresConnectionsHigh", q, f"""
{q("target:wasp_pg_connections:usage_ratio")} > {{threshold}}
""", (("warning", cfg.connections_warning), ("page", cfg.connections_page)),
        "{{ $labels.target }} uses {{ $value | humanizePercentage }} of its connections",
        "Client connections on {{ $labels.target }} use {{ $value | humanizePercentage }} of "
        "max_connections (minus the superuser reserve). At 100% new connections are refused and "
        "the application fails.",
        [Case("85 of 100 connections", (
            series("wasp_pg_connections", "60x20", **t(database="app", state="idle")),
            series("wasp_pg_connections", "25x20", **t(database="app", state="active")),
            series("wasp_pg_max_connections", "103x20", **T),
            series("wasp_pg_superuser_reserved_connections", "3x20", **T),
        ), "15m", (Fired(T, 0.85, "warning"),)),
         Case("all connections taken", (
             series("wasp_pg_connections", "100x20", **t(database="app", state="active")),
             series("wasp_pg_max_connections", "103x20", **T),
             series("wasp_pg_superuser_reserved_connections", "3x20", **T),
         ), "15m", (Fired(T, 1, "warning"), Fired(T, 1, "page"))),
         Case("half used", (
             series("wasp_pg_connections", "50x20", **t(database="app", state="idle")),
             series("wasp_pg_max_connections", "103x20", **T),
             series("wasp_pg_superuser_reserved_connections", "3x20", **T),
         ), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresLongTransaction", "warning", q, f"""
{q("wasp_pg_oldest_transaction_age_seconds")} > {num(cfg.long_transaction_seconds)}
""",
        "A transaction on {{ $labels.target }} is open for {{ $value | humanizeDuration }}",
        "The oldest open transaction on {{ $labels.target }} started {{ $value | humanizeDuration }} "
        "ago. It holds back vacuum on every table (bloat, wraparound) and may hold locks.",
        [Case("a report runs for an hour", (
            series("wasp_pg_oldest_transaction_age_seconds", "0+60x60", **T),), "50m",
            (Fired(T, 3000, "warning"),)),
         Case("short transactions", (
             series("wasp_pg_oldest_transaction_age_seconds", "0 2 0 5 1 0x50", **T),), "50m")])

    q = b.q()
    b.alert(g, "WaspPostgresIdleInTransaction", "warning", q, f"""
{q("wasp_pg_oldest_idle_in_transaction_age_seconds")} > {num(cfg.idle_in_transaction_seconds)}
""",
        "A session on {{ $labels.target }} is idle in transaction for {{ $value | humanizeDuration }}",
        "A client session on {{ $labels.target }} has been idle inside an open transaction for "
        "{{ $value | humanizeDuration }}: an application bug (a missing commit, a leaked "
        "connection) that holds locks and blocks vacuum.",
        [Case("a leaked transaction", (
            series("wasp_pg_oldest_idle_in_transaction_age_seconds", "0+60x30", **T),), "15m",
            (Fired(T, 900, "warning"),)),
         Case("brief idle moments", (
             series("wasp_pg_oldest_idle_in_transaction_age_seconds", "0 1 0 2 0x30", **T),), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresLockWaits", "warning", q, f"""
{q("wasp_pg_lock_wait_longest_seconds")} > {num(cfg.lock_wait_seconds)}
""",
        "Sessions on {{ $labels.target }} wait {{ $value | humanizeDuration }} for locks",
        "A client session on {{ $labels.target }} has waited {{ $value | humanizeDuration }} for a "
        "lock (wasp_pg_blocked_sessions and wasp_pg_blocking_sessions say how many): a migration, "
        "a long transaction or a stuck session blocks the application.",
        [Case("a migration blocks bookings", (
            series("wasp_pg_lock_wait_longest_seconds", "0+60x20", **T),), "15m",
            (Fired(T, 900, "warning"),)),
         Case("short waits", (series("wasp_pg_lock_wait_longest_seconds", "0 3 0 1 0x20", **T),), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresDeadlocks", "warning", q, f"""
increase({q("wasp_pg_database_deadlocks_total")}[{cfg.deadlocks_window}]) > {num(cfg.deadlocks)}
""",
        f"{{{{ $value | humanize }}}} deadlocks in {spoken(cfg.deadlocks_window)} on "
        "{{ $labels.target }}/{{ $labels.database }}",
        "PostgreSQL detected {{ $value | humanize }} deadlocks in "
        f"{spoken(cfg.deadlocks_window)} in database "
        "{{ $labels.database }} on {{ $labels.target }}: two code paths lock the same rows in a "
        "different order. The server log has both statements.",
        [Case("a deadlock a minute", (
            series("wasp_pg_database_deadlocks_total", "0+1x60", **t(database="app")),), "50m",
            (Fired(t(database="app"), 30, "warning"),)),
         Case("one deadlock", (
             series("wasp_pg_database_deadlocks_total", "0x20 1x40", **t(database="app")),), "50m")])

    q = b.q()
    b.alert(g, "WaspPostgresXIDAgeHigh", "warning", q, f"""
{q("wasp_pg_database_xid_age")}
  / ignoring (database) group_left {q("wasp_pg_autovacuum_freeze_max_age")}
  > {num(cfg.xid_freeze_ratio)}
""",
        "XID age of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanize }}x autovacuum_freeze_max_age",
        "Database {{ $labels.database }} on {{ $labels.target }} has an XID age of "
        "{{ $value | humanize }} times autovacuum_freeze_max_age: anti-wraparound autovacuum "
        "cannot keep up (a long transaction, an old replication slot or prepared transaction "
        "holds the horizon back, or vacuum is too slow).",
        [Case("age 400M with freeze at 200M", (
            series("wasp_pg_database_xid_age", "400000000x60", **t(database="app")),
            series("wasp_pg_database_xid_age", "1000x60", **t(database="postgres")),
            series("wasp_pg_autovacuum_freeze_max_age", "200000000x60", **T),
        ), "40m", (Fired(t(database="app"), 2, "warning"),)),
         Case("age 150M, normal", (
             series("wasp_pg_database_xid_age", "150000000x60", **t(database="app")),
             series("wasp_pg_autovacuum_freeze_max_age", "200000000x60", **T),
         ), "40m")])

    q = b.q()
    b.alert(g, "WaspPostgresXIDWraparound", "page", q, f"""
{q("wasp_pg_database_xid_age")} > {num(cfg.xid_wraparound_page)}
""",
        "{{ $labels.target }}/{{ $labels.database }} approaches XID wraparound",
        "Database {{ $labels.database }} on {{ $labels.target }} is {{ $value | humanize }} "
        "transactions old; at about 2.1 billion PostgreSQL stops accepting writes to prevent "
        "wraparound. Find what holds the horizon and VACUUM (FREEZE) the oldest tables now.",
        [Case("1.2 billion", (
            series("wasp_pg_database_xid_age", "1200000000x20", **t(database="app")),), "10m",
            (Fired(t(database="app"), 1.2e9, "page"),)),
         Case("300 million", (
             series("wasp_pg_database_xid_age", "300000000x20", **t(database="app")),), "10m")])

    q = b.q()
    b.alert(g, "WaspPostgresMultiXactAgeHigh", "warning", q, f"""
{q("wasp_pg_database_mxid_age")}
  / ignoring (database) group_left {q("wasp_pg_autovacuum_multixact_freeze_max_age")}
  > {num(cfg.mxid_freeze_ratio)}
""",
        "Multixact age of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanize }}x its freeze max age",
        "Database {{ $labels.database }} on {{ $labels.target }} has a multixact age of "
        "{{ $value | humanize }} times autovacuum_multixact_freeze_max_age: multixact wraparound "
        "protection cannot keep up (row locks shared by many transactions, foreign keys).",
        [Case("multixact age 1.6 billion with freeze at 400M", (
            series("wasp_pg_database_mxid_age", "1600000000x60", **t(database="app")),
            series("wasp_pg_autovacuum_multixact_freeze_max_age", "400000000x60", **T),
        ), "40m", (Fired(t(database="app"), 4, "warning"),)),
         Case("low multixact age", (
             series("wasp_pg_database_mxid_age", "1000000x60", **t(database="app")),
             series("wasp_pg_autovacuum_multixact_freeze_max_age", "400000000x60", **T),
         ), "40m")])

    q = b.q()
    hit, read = q("wasp_pg_database_blocks_hit_total"), q("wasp_pg_database_blocks_read_total")
    b.alert(g, "WaspPostgresCacheHitRatioLow", "info", q, f"""
{q("target_database:wasp_pg_cache_hit:ratio_rate5m")} < {num(cfg.cache_hit_ratio_min)}
and
rate({hit}[5m]) + rate({read}[5m]) > {num(cfg.cache_min_blocks_per_second)}
""",
        "Cache hit ratio of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanizePercentage }}",
        "Only {{ $value | humanizePercentage }} of block reads of database {{ $labels.database }} "
        "on {{ $labels.target }} are served from shared buffers: the working set outgrew memory "
        "or a query scans a large table (see the statements dashboard).",
        [Case("80% hits at 1,000 blocks/s", (
            series("wasp_pg_database_blocks_hit_total", "0+48000x60", **t(database="app")),
            series("wasp_pg_database_blocks_read_total", "0+12000x60", **t(database="app")),
        ), "45m", (Fired(t(database="app"), 0.8, "info"),)),
         Case("low ratio on an idle database", (
             series("wasp_pg_database_blocks_hit_total", "0+60x60", **t(database="app")),
             series("wasp_pg_database_blocks_read_total", "0+60x60", **t(database="app")),
         ), "45m"),
         Case("99% hits", (
             series("wasp_pg_database_blocks_hit_total", "0+59400x60", **t(database="app")),
             series("wasp_pg_database_blocks_read_total", "0+600x60", **t(database="app")),
         ), "45m")])

    q = b.q()
    b.alert(g, "WaspPostgresPendingRestart", "info", q, f"""
{q("wasp_pg_settings_pending_restart")} > 0
""",
        "{{ $labels.target }} has settings waiting for a restart",
        "{{ $value | humanize }} settings changed on {{ $labels.target }} take effect only after a "
        "restart (pg_settings.pending_restart). Plan the restart or revert the change.",
        [Case("two settings pending", (
            series("wasp_pg_settings_pending_restart", "2x90", **T),), "80m", (Fired(T, 2, "info"),)),
         Case("nothing pending", (series("wasp_pg_settings_pending_restart", "0x90", **T),), "80m")])

    q = b.q()
    b.alert(g, "WaspPostgresArchiverFailing", "warning", q, f"""
increase({q("wasp_pg_archiver_failed_total")}[{cfg.archiver_failing_window}]) > 0
and {q("wasp_pg_archiver_enabled")} == 1
unless ignoring (stanza) {q("wasp_wal_archive_enabled")}
""",
        "WAL archiving fails on {{ $labels.target }}",
        "archive_command failed {{ $value | humanize }} times in "
        f"{spoken(cfg.archiver_failing_window)} on {{{{ $labels.target }}}}: "
        "WAL piles up in pg_wal (disk full next) and point-in-time recovery has a gap. "
        "(Targets with the backup pack get WaspWALArchiveFailing instead.)",
        [Case("archive_command fails every minute", (
            series("wasp_pg_archiver_failed_total", "0+1x60", **T),
            series("wasp_pg_archiver_enabled", "1x60", **T),), "40m", (Fired(T, 15, "warning"),)),
         Case("backup pack present: its alert speaks", (
             series("wasp_pg_archiver_failed_total", "0+1x60", **T),
             series("wasp_pg_archiver_enabled", "1x60", **T),
             series("wasp_wal_archive_enabled", "1x60", **t(stanza="main")),), "40m"),
         Case("archiving works", (
             series("wasp_pg_archiver_failed_total", "3x60", **T),
             series("wasp_pg_archiver_enabled", "1x60", **T),), "40m")])


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    app = t(database="app")

    def connections(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (gauge("wasp_pg_connections", 1000 * p["ratio"], n,
                      **t(database="app", state="active")),
                gauge("wasp_pg_max_connections", 1003, n, **T),
                gauge("wasp_pg_superuser_reserved_connections", 3, n, **T))

    def age(metric: str, field: str, labels: dict[str, str] = T) -> Probe:
        limit = float(getattr(cfg, field))
        return Probe({"age": 2 * limit}, (Bound("age", ">", field),),
                     lambda p, n, every: (gauge(metric, p["age"], n, **labels),),
                     lambda p, at: when(p["age"] > limit, "warning", labels, p["age"]))

    def freeze(metric: str, limit_metric: str, field: str, limit: float) -> Probe:
        return Probe({"ratio": 2 * float(getattr(cfg, field))}, (Bound("ratio", ">", field),),
                     lambda p, n, every: (gauge(metric, p["ratio"] * limit, n, **app),
                                          gauge(limit_metric, limit, n, **T)),
                     lambda p, at: when(p["ratio"] > float(getattr(cfg, field)), "warning", app,
                                        p["ratio"]))

    def cache(p: Point, n: int, every: int) -> tuple[Series, ...]:
        per_step = 60 * every * p["bps"]
        return (counter("wasp_pg_database_blocks_hit_total", p["ratio"] * per_step, n, **app),
                counter("wasp_pg_database_blocks_read_total", (1 - p["ratio"]) * per_step, n,
                        **app))

    archiver_window = minutes(cfg.archiver_failing_window)
    return {
        "WaspPostgresConnectionsHigh": Probe(
            {"ratio": 1}, (Bound("ratio", ">", "connections_warning"),
                           Bound("ratio", ">", "connections_page")),
            connections,
            lambda p, at: [*when(p["ratio"] > cfg.connections_warning, "warning", T, p["ratio"]),
                           *when(p["ratio"] > cfg.connections_page, "page", T, p["ratio"])]),
        "WaspPostgresLongTransaction": age("wasp_pg_oldest_transaction_age_seconds",
                                           "long_transaction_seconds"),
        "WaspPostgresIdleInTransaction": age("wasp_pg_oldest_idle_in_transaction_age_seconds",
                                             "idle_in_transaction_seconds"),
        "WaspPostgresLockWaits": age("wasp_pg_lock_wait_longest_seconds", "lock_wait_seconds"),
        "WaspPostgresDeadlocks": Probe(
            {"deadlocks": 30}, (Bound("deadlocks", ">", "deadlocks", step=1),),
            lambda p, n, every: (jump("wasp_pg_database_deadlocks_total", 5, p["deadlocks"], n,
                                      **app),),
            lambda p, at: when(p["deadlocks"] > cfg.deadlocks, "warning", app, p["deadlocks"]),
            onset=5),
        "WaspPostgresXIDAgeHigh": freeze("wasp_pg_database_xid_age",
                                         "wasp_pg_autovacuum_freeze_max_age", "xid_freeze_ratio",
                                         2e8),
        "WaspPostgresXIDWraparound": Probe(
            {"age": 1.5e9}, (Bound("age", ">", "xid_wraparound_page"),),
            lambda p, n, every: (gauge("wasp_pg_database_xid_age", p["age"], n, **app),),
            lambda p, at: when(p["age"] > cfg.xid_wraparound_page, "page", app, p["age"])),
        "WaspPostgresMultiXactAgeHigh": freeze("wasp_pg_database_mxid_age",
                                               "wasp_pg_autovacuum_multixact_freeze_max_age",
                                               "mxid_freeze_ratio", 4e8),
        "WaspPostgresCacheHitRatioLow": Probe(
            {"ratio": 0.8, "bps": 1000},
            (Bound("ratio", "<", "cache_hit_ratio_min"),
             Bound("bps", ">", "cache_min_blocks_per_second")),
            cache,
            lambda p, at: when(p["ratio"] < cfg.cache_hit_ratio_min
                               and p["bps"] > cfg.cache_min_blocks_per_second, "info", app,
                               p["ratio"]),
            onset=1, settle=5),
        "WaspPostgresPendingRestart": Probe(
            {"pending": 2}, (Bound("pending", ">", quiet=0),),
            lambda p, n, every: (gauge("wasp_pg_settings_pending_restart", p["pending"], n, **T),),
            lambda p, at: when(p["pending"] > 0, "info", T, p["pending"])),
        "WaspPostgresArchiverFailing": Probe(
            {"per_minute": 1}, (Bound("per_minute", ">", quiet=0),),
            lambda p, n, every: (counter("wasp_pg_archiver_failed_total", p["per_minute"], n, **T),
                                 gauge("wasp_pg_archiver_enabled", 1, n, **T)),
            lambda p, at: when(p["per_minute"] > 0, "warning", T,
                               p["per_minute"] * min(at, archiver_window)),
            onset=1),
    }
