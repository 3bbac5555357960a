"""Alerts on PgBouncer: pool saturation, waiting clients, clients near max_client_conn, a paused database."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, T, series, t


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

    _capacity(b, g)


def _capacity(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspPgBouncerClientsNearMax"
    b.alert(g, name, "warning", q, f"""
sum without (list) ({q("wasp_pgbouncer_list_items", list="used_clients")})
  / {q("wasp_pgbouncer_max_client_connections")} > {num(cfg.pgbouncer_clients_ratio)}
""",
        "PgBouncer {{ $labels.target }} has {{ $value | humanizePercentage }} of max_client_conn in use",
        "Client connections to PgBouncer {{ $labels.target }} use {{ $value | humanizePercentage }} "
        "of max_client_conn: at 100% new clients are refused (\"no more connections allowed\"). "
        "An application leaks connections, or max_client_conn is too low for the app servers.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pgbouncer_list_items", f"{81 if firing else 79}x{n}",
                   **t(list="used_clients")),
            series("wasp_pgbouncer_max_client_connections", f"100x{n}", **T)), T, 0.81))

    q = b.q()
    name = "WaspPgBouncerDatabasePaused"
    db = t(database="salon")
    b.alert(g, name, "warning", q, f"""
{q("wasp_pgbouncer_database_paused")} == 1
""",
        "PgBouncer database {{ $labels.database }} on {{ $labels.target }} is paused",
        "Database {{ $labels.database }} on PgBouncer {{ $labels.target }} has been paused "
        "(PAUSE) for a while: its clients queue and the application stalls. RESUME it when the "
        "maintenance is over.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pgbouncer_database_paused", f"{1 if firing else 0}x{n}", **db),), db, 1))
