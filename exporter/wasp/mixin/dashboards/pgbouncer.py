"""The PgBouncer board: pools, waiting clients, servers, throughput."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    RED,
    Dashboard,
    Panel,
    Target,
    agg,
    alert_steps,
    rate,
    red_at,
    sel,
    stat,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["PGBOUNCER"]


def bouncer_usage(s: Settings) -> Panel:
    """Active servers over pool size, per pool."""
    return ts("Pool usage (active servers / pool size)",
              Target(sel("wasp_pgbouncer_pool_usage_ratio"), "{{target}} {{database}}/{{user}}"),
              unit="percentunit", w=12, thresholds=alert_steps((s.pool_usage_ratio, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def bouncer_waiting(s: Settings) -> Panel:
    """Clients waiting for a server."""
    return ts("Clients waiting",
              Target(sel("target_database:wasp_pgbouncer_clients_waiting:sum"),
                     "{{target}} {{database}}"), w=6)


def bouncer_max_wait(s: Settings) -> Panel:
    """Longest current client wait."""
    return ts("Longest client wait",
              Target(agg("max", "wasp_pgbouncer_pool_client_max_wait_seconds",
                         ("target", "database")), "{{target}} {{database}}"),
              unit="s", w=6, thresholds=alert_steps((s.client_wait_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def bouncer_servers(s: Settings) -> Panel:
    """Server connections by state."""
    return ts("Server connections by state",
              Target(agg("sum", "wasp_pgbouncer_pool_servers", ("target", "state")),
                     "{{target}} {{state}}"), w=12,
              custom={"stacking": {"group": "A", "mode": "normal"}})


def bouncer_clients(s: Settings) -> Panel:
    """Client connections by state, against max_client_conn."""
    return ts("Client connections vs max_client_conn",
              Target(agg("sum", "wasp_pgbouncer_pool_clients", ("target", "state")),
                     "{{target}} {{state}}"),
              Target(sel("wasp_pgbouncer_max_client_connections"), "{{target}} max_client_conn"),
              w=12)


def bouncer_tps(s: Settings) -> Panel:
    """Transactions and queries per second."""
    return ts("Transactions / queries per second",
              Target(rate("wasp_pgbouncer_transactions_total", ("target", "database")),
                     "{{target}} {{database}} tx"),
              Target(rate("wasp_pgbouncer_queries_total", ("target", "database")),
                     "{{target}} {{database}} queries"), unit="ops", w=12)


def bouncer_query_time(s: Settings) -> Panel:
    """Mean query time and client wait per query."""
    t = rate("wasp_pgbouncer_query_time_seconds_total", ("target", "database"))
    n = rate("wasp_pgbouncer_queries_total", ("target", "database"))
    return ts("Mean query time",
              Target(f"{t} / {n}", "{{target}} {{database}}"), unit="s", w=12)


def bouncer_bytes(s: Settings) -> Panel:
    """Bytes received from and sent to clients."""
    return ts("Network",
              Target(rate("wasp_pgbouncer_received_bytes_total", ("target",)),
                     "{{target}} received"),
              Target(rate("wasp_pgbouncer_sent_bytes_total", ("target",)), "{{target}} sent"),
              unit="Bps", w=12)


def bouncer_paused(s: Settings) -> Panel:
    """Paused or disabled databases."""
    return stat("Paused / disabled databases",
                Target(agg("sum", "wasp_pgbouncer_database_paused", ("target",)),
                       "{{target}} paused"),
                Target(agg("sum", "wasp_pgbouncer_database_disabled", ("target",)),
                       "{{target}} disabled"),
                w=12, h=8, thresholds=red_at((1, RED)), options={"graphMode": "none"})


PGBOUNCER = Dashboard(
    "wasp-pgbouncer", "wasp / PgBouncer",
    "Pools, waiting clients, servers and throughput (the pgbouncer pack).",
    (bouncer_usage, bouncer_waiting, bouncer_max_wait, bouncer_servers, bouncer_clients,
     bouncer_tps, bouncer_query_time, bouncer_bytes, bouncer_paused),
    tags=("pgbouncer",),
)
