"""Alerts on the exporter itself: scrapes, targets, failing, skipping and capped queries."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import Bound, Probe, counter, gauge, jump, minutes, when
from wasp.mixin.rules.model import Builder, Case, Fired, T, series, t
from wasp.mixin.settings import Settings, spoken


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-exporter")
    q = b.q()
    b.alert(g, "WaspExporterDown", "page", q, f"""
{q("up")} == 0
""",
        "wasp exporter {{ $labels.instance }} is down",
        "Prometheus cannot scrape the wasp exporter {{ $labels.instance }}: every database, "
        "application and backup alert of its targets is blind until it is back.",
        [Case("scrape fails for 10 minutes", (
            series("up", "0x15", instance="wasp-1:9645", job="wasp"),), "10m",
            (Fired({"instance": "wasp-1:9645", "job": "wasp"}, 0, "page"),)),
         Case("a single failed scrape does not page", (
             series("up", "1 1 1 0 1 1 1 1 1 1 1 1", instance="wasp-1:9645", job="wasp"),), "10m")])
    q = b.q()
    b.alert(g, "WaspExporterMissing", "page", q, f"""
absent({q("up")})
""",
        "Prometheus scrapes no wasp exporter",
        "Prometheus has no scrape target in the wasp job at all (service discovery, a relabelling "
        "or a configuration change dropped it): every wasp alert is blind.",
        [Case("no wasp target at all", (
            series("up", "1x15", instance="node-1:9100", job="node"),), "10m",
            (Fired(dict(cfg.selector), 1, "page"),)),
         Case("one exporter up", (series("up", "1x15", instance="wasp-1:9645", job="wasp"),), "10m")])
    # a standby that is down is a warning (the primary still serves); any other target pages.
    # A target's role is what wasp_pg_in_recovery said last (the series stops while it is down).
    q = b.q()
    standby = (f"on (job, instance, target) (last_over_time({q('wasp_pg_in_recovery')}"
               f"[{cfg.standby_role_memory}]) == 1)")
    b.alert(g, "WaspTargetDown", "page", q, f"""
{q("wasp_target_up")} == 0
unless {standby}
""",
        "wasp cannot reach target {{ $labels.target }}",
        "The exporter {{ $labels.instance }} has not reached target {{ $labels.target }} for "
        f"{cfg.for_of('WaspTargetDown', 'page')}: the database is down or unreachable (network, authentication, "
        "max_connections). Its other alerts are inhibited meanwhile.",
        [Case("target unreachable", (series("wasp_target_up", "0x15", **T),), "10m",
              (Fired(T, 0, "page"),)),
         Case("target up", (series("wasp_target_up", "1x15", **T),), "10m"),
         Case("a standby that is down does not page", (
             series("wasp_target_up", "1x5 0x15", **T),
             series("wasp_pg_in_recovery", "1x5", **T)), "15m")])
    q = b.q()
    standby = (f"on (job, instance, target) (last_over_time({q('wasp_pg_in_recovery')}"
               f"[{cfg.standby_role_memory}]) == 1)")
    b.alert(g, "WaspStandbyTargetDown", "warning", q, f"""
{q("wasp_target_up")} == 0
and {standby}
""",
        "wasp cannot reach standby {{ $labels.target }}",
        "The exporter {{ $labels.instance }} has not reached standby {{ $labels.target }} for "
        f"{cfg.for_of('WaspStandbyTargetDown', 'warning')}: the primary still serves, but one "
        "copy fewer is streaming and reads routed to this standby fail. Its other alerts are "
        "inhibited meanwhile.",
        [Case("a standby unreachable", (
            series("wasp_target_up", "1x5 0x15", **T),
            series("wasp_pg_in_recovery", "1x5", **T)), "15m", (Fired(T, 0, "warning"),)),
         Case("a primary unreachable is not this alert", (
             series("wasp_target_up", "1x5 0x15", **T),
             series("wasp_pg_in_recovery", "0x5", **T)), "15m")])

    q = b.q()
    w = cfg.query_failing_window
    b.alert(g, "WaspQueryFailing", "warning", q, f"""
sum without (reason) (rate({q("wasp_query_errors_total")}[{w}]))
  / rate({q("wasp_query_runs_total")}[{w}])
  > {num(cfg.query_failing_ratio)}
unless on (job, instance, target, query) {q("wasp_query_enabled")} == 0
""",
        "Query {{ $labels.query }} keeps failing on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the runs of query {{ $labels.query }} on target "
        f"{{{{ $labels.target }}}} failed over the last {w}; its series go stale and then "
        "disappear. wasp_query_errors_total says why (reason label).",
        [Case("every run fails", (
            series("wasp_query_runs_total", "0+2x40", **t(query="databases")),
            series("wasp_query_errors_total", "0+2x40", **t(query="databases", reason="timeout")),
            series("wasp_query_errors_total", "0x40", **t(query="databases", reason="sql")),
        ), "30m", (Fired(t(query="databases"), 1, "warning"),)),
         Case("one failure in many runs", (
             series("wasp_query_runs_total", "0+2x40", **t(query="databases")),
             series("wasp_query_errors_total", "0x20 1x20", **t(query="databases", reason="timeout")),
         ), "30m"),
         # a primary-only query tried once on a standby that was down, then ruled out by role
         Case("a query ruled out after one failed try", (
             series("wasp_query_runs_total", "0x5 1x35", **t(query="databases")),
             series("wasp_query_errors_total", "0x5 1x35",
                    **t(query="databases", reason="connection")),
             series("wasp_query_enabled", "0x40", **t(query="databases")),
         ), "18m")])

    q = b.q()
    b.alert(g, "WaspQuerySkipping", "warning", q, f"""
increase({q("wasp_query_skipped_total")}[{cfg.query_skips_window}]) > {num(cfg.query_skips)}
""",
        "Query {{ $labels.query }} on {{ $labels.target }} overruns its interval",
        "Query {{ $labels.query }} on {{ $labels.target }} skipped {{ $value | humanize }} turns "
        f"in {spoken(cfg.query_skips_window)} because its previous run was still going: it takes longer than its "
        "interval. Its data is older than it should be.",
        [Case("a slow query skips every other turn", (
            series("wasp_query_skipped_total", "0+1x60", **t(query="tables")),), "50m",
            (Fired(t(query="tables"), 30, "warning"),)),
         Case("one skip", (series("wasp_query_skipped_total", "0x20 1x40", **t(query="tables")),),
              "50m")])

    q = b.q()
    b.alert(g, "WaspSeriesDropped", "warning", q, f"""
increase({q("wasp_query_series_dropped_total")}[{cfg.series_dropped_window}]) > 0
""",
        "Query {{ $labels.query }} on {{ $labels.target }} exceeds max_series",
        "Query {{ $labels.query }} on {{ $labels.target }} returns more series than its "
        "max_series: {{ $value | humanize }} series dropped in "
        f"{spoken(cfg.series_dropped_window)}. Dashboards and alerts "
        "over it see only part of the data.",
        [Case("every run drops series", (
            series("wasp_query_series_dropped_total", "0+10x40", **t(query="statements")),), "35m",
            (Fired(t(query="statements"), 150, "warning"),)),
         Case("nothing dropped", (
             series("wasp_query_series_dropped_total", "0x40", **t(query="statements")),), "35m")])


UP = {"instance": "wasp-1:9645", "job": "wasp"}


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    dropped = minutes(cfg.series_dropped_window)
    return {
        "WaspExporterDown": Probe(
            {"up": 0}, (Bound("up", "==", quiet=1),),
            lambda p, n, every: (gauge("up", p["up"], n, **UP),),
            lambda p, at: when(p["up"] == 0, "page", UP, 0)),
        "WaspExporterMissing": Probe(
            {"wasp": 0}, (Bound("wasp", "==", quiet=1),),
            lambda p, n, every: (gauge("up", 1, n, instance="wasp-1:9645" if p["wasp"] else "node-1:9100",
                                job="wasp" if p["wasp"] else "node"),),
            lambda p, at: when(not p["wasp"], "page", dict(cfg.selector), 1)),
        "WaspTargetDown": Probe(
            {"up": 0}, (Bound("up", "==", quiet=1),),
            lambda p, n, every: (gauge("wasp_target_up", p["up"], n, **T),),
            lambda p, at: when(p["up"] == 0, "page", T, 0)),
        "WaspStandbyTargetDown": Probe(
            {"up": 0}, (Bound("up", "==", quiet=1),),
            lambda p, n, every: (gauge("wasp_target_up", p["up"], n, **T),
                                 gauge("wasp_pg_in_recovery", 1, n, **T)),
            lambda p, at: when(p["up"] == 0, "warning", T, 0)),
        "WaspQueryFailing": Probe(
            {"ratio": 1}, (Bound("ratio", ">", "query_failing_ratio"),),
            lambda p, n, every: (counter("wasp_query_runs_total", 100, n, **t(query="databases")),
                          counter("wasp_query_errors_total", 100 * p["ratio"], n,
                                  **t(query="databases", reason="timeout")),
                          counter("wasp_query_errors_total", 0, n,
                                  **t(query="databases", reason="sql"))),
            lambda p, at: when(p["ratio"] > cfg.query_failing_ratio, "warning",
                               t(query="databases"), p["ratio"]),
            onset=1),
        "WaspQuerySkipping": Probe(
            {"skips": 10}, (Bound("skips", ">", "query_skips", step=1),),
            lambda p, n, every: (jump("wasp_query_skipped_total", 5, p["skips"], n, **t(query="tables")),),
            lambda p, at: when(p["skips"] > cfg.query_skips, "warning", t(query="tables"),
                               p["skips"]),
            onset=5),
        "WaspSeriesDropped": Probe(
            {"per_minute": 10}, (Bound("per_minute", ">", quiet=0),),
            lambda p, n, every: (counter("wasp_query_series_dropped_total", p["per_minute"], n,
                                  **t(query="statements")),),
            lambda p, at: when(p["per_minute"] > 0, "warning", t(query="statements"),
                               p["per_minute"] * min(at, dropped)),
            onset=1),
    }
