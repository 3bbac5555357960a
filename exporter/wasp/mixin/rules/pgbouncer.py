"""Alerts on PgBouncer: pool saturation and waiting clients."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.model import Builder, Case, Fired, series, t


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-pgbouncer")
    q = b.q()
    b.alert(g, "WaspPgBouncerPoolSaturated", "warning", q, f"""
{q("wasp_pgbouncer_pool_usage_ratio")} > {num(cfg.pool_usage_ratio)}
""",
        "PgBouncer pool {{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} is {{ $value | humanizePercentage }} busy",
        "{{ $value | humanizePercentage }} of the server connections of pool "
        "{{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} are busy: clients will "
        "start waiting. Slow queries hold servers, or pool_size is too small.",
        [Case("pool full", (
            series("wasp_pgbouncer_pool_usage_ratio", "1x30", **t(database="app", user="app")),), "20m",
            (Fired(t(database="app", user="app"), 1, "warning"),)),
         Case("pool half used", (
             series("wasp_pgbouncer_pool_usage_ratio", "0.5x30", **t(database="app", user="app")),), "20m")])

    q = b.q()
    b.alert(g, "WaspPgBouncerClientsWaiting", "warning", q, f"""
{q("wasp_pgbouncer_pool_client_max_wait_seconds")} > {num(cfg.client_wait_seconds)}
and ignoring (state) {q("wasp_pgbouncer_pool_clients", state="waiting")} > 0
""",
        "Clients wait {{ $value | humanizeDuration }} for a server in PgBouncer pool {{ $labels.database }}/{{ $labels.user }}",
        "Clients of PgBouncer pool {{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} "
        "wait up to {{ $value | humanizeDuration }} for a server connection: application requests "
        "stall. Look for long transactions on the database, then pool_size.",
        [Case("clients wait 12 s", (
            series("wasp_pgbouncer_pool_client_max_wait_seconds", "12x20", **t(database="app", user="app")),
            series("wasp_pgbouncer_pool_clients", "30x20", **t(database="app", user="app", state="waiting")),
            series("wasp_pgbouncer_pool_clients", "50x20", **t(database="app", user="app", state="active")),
        ), "15m", (Fired(t(database="app", user="app"), 12, "warning"),)),
         Case("brief waits", (
             series("wasp_pgbouncer_pool_client_max_wait_seconds", "0.2x20", **t(database="app", user="app")),
             series("wasp_pgbouncer_pool_clients", "2x20", **t(database="app", user="app", state="waiting")),
         ), "15m")])
