"""Alerts on PgBouncer: pool saturation, waiting clients, clients near max_client_conn, a paused database."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import Bound, Point, Probe, gauge, when
from wasp.mixin.rules.fourcases import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, Series, T, series, t
from wasp.mixin.settings import Settings


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
    b.alert(g, "WaspPgBouncerPoolExhausted", "page", q, f"""
{q("target_database:wasp_pgbouncer_pool_usage_ratio:max")} > {num(cfg.pool_usage_ratio)}
and
{q("target_database:wasp_pgbouncer_clients_waiting:sum")} > {num(cfg.pool_waiting_clients_page)}
""",
        "PgBouncer pools of {{ $labels.database }} on {{ $labels.target }} are full and clients wait",
        "A pool of database {{ $labels.database }} on {{ $labels.target }} is "
        "{{ $value | humanizePercentage }} busy and clients are waiting for a server connection: "
        "application requests queue now. Look for long transactions and lock waits on the "
        "database first, then pool_size.",
        [Case("busy pool, nobody waits", (
            series("wasp_pgbouncer_pool_usage_ratio", "0.9x30", **t(database="app", user="app")),
            series("wasp_pgbouncer_pool_clients", "0x30", **t(database="app", user="app", state="waiting")),
        ), "20m")])

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


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    pool, db = t(database="app", user="app"), t(database="app")

    def exhausted(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (gauge("wasp_pgbouncer_pool_usage_ratio", p["usage"], n, **pool),
                gauge("wasp_pgbouncer_pool_clients", p["waiting"], n,
                      **t(database="app", user="app", state="waiting")))

    def waiting(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (gauge("wasp_pgbouncer_pool_client_max_wait_seconds", p["wait"], n, **pool),
                gauge("wasp_pgbouncer_pool_clients", 30, n,
                      **t(database="app", user="app", state="waiting")))

    return {
        "WaspPgBouncerPoolSaturated": Probe(
            {"usage": 1}, (Bound("usage", ">", "pool_usage_ratio"),),
            lambda p, n, every: (gauge("wasp_pgbouncer_pool_usage_ratio", p["usage"], n,
                                       **pool),),
            lambda p, at: when(p["usage"] > cfg.pool_usage_ratio, "warning", pool, p["usage"])),
        "WaspPgBouncerPoolExhausted": Probe(
            {"usage": 1, "waiting": 12},
            (Bound("usage", ">", "pool_usage_ratio"),
             Bound("waiting", ">", "pool_waiting_clients_page", step=1)),
            exhausted,
            lambda p, at: when(p["usage"] > cfg.pool_usage_ratio
                               and p["waiting"] > cfg.pool_waiting_clients_page, "page", db,
                               p["usage"]),
            equivalent="pool_waiting_clients_page is 0 clients: halved or doubled it stays 0"),
        "WaspPgBouncerClientsNearMax": Probe(
            {"ratio": 0.95}, (Bound("ratio", ">", "pgbouncer_clients_ratio"),),
            lambda p, n, every: (gauge("wasp_pgbouncer_list_items", round(1000 * p["ratio"]), n,
                                       **t(list="used_clients")),
                                 gauge("wasp_pgbouncer_max_client_connections", 1000, n, **t())),
            lambda p, at: when(p["ratio"] > cfg.pgbouncer_clients_ratio, "warning", t(),
                               p["ratio"])),
        "WaspPgBouncerDatabasePaused": Probe(
            {"paused": 1}, (Bound("paused", "==", literal=1, quiet=0),),
            lambda p, n, every: (gauge("wasp_pgbouncer_database_paused", p["paused"], n,
                                       **t(database="salon")),),
            lambda p, at: when(p["paused"] == 1, "warning", t(database="salon"), 1)),
        "WaspPgBouncerClientsWaiting": Probe(
            {"wait": 12}, (Bound("wait", ">", "client_wait_seconds"),), waiting,
            lambda p, at: when(p["wait"] > cfg.client_wait_seconds, "warning", pool, p["wait"])),
    }
