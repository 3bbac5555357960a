"""The KPI board, the home dashboard: the production-readiness report's seven KPIs, live.

Each KPI shows its target (the settings' field, the same one its alert
reads), its current value, its 30-day history and, for the SLOs, the error
budget left. Then the doctor's score and its failing checks, and links to the
other boards. The SLO expressions are written from the raw counters, so the
board works before the recording rules have 30 days of data.
"""

from __future__ import annotations

from collections.abc import Callable

from wasp.mixin.dashboards.panels import (
    RED,
    Dashboard,
    Panel,
    Row,
    Target,
    agg,
    alert_steps,
    sel,
    stat,
    table,
    ts,
)
from wasp.mixin.promql import num
from wasp.mixin.rules.slo import SLO, SLOS
from wasp.mixin.settings import Settings

__all__ = ["KPI", "SECTIONS", "error_ratio"]


def error_ratio(slo: SLO, window: str) -> str:
    """Bad events over all events of an SLO within `window` (0 when none was bad)."""
    bad = f"sum(rate({sel(slo.metric, **{slo.label: slo.bad})}[{window}]))"
    every = f"sum(rate({sel(slo.metric)}[{window}]))"
    return f"(({bad}) or ({every}) * 0) / {every}"


def _slo(key: str) -> SLO:
    return next(x for x in SLOS if x.key == key)


def _good(slo: SLO, s: Settings, title: str) -> list[Panel]:
    obj = slo.objective(s)
    budget = num(round(1 - obj, 12))
    steps = [(None, RED), (obj, "green")]
    return [
        stat(f"{title}: now ({s.slo_window}; target {num(obj * 100)}%)",
             Target(f"1 - {error_ratio(slo, s.slo_window)}"), unit="percentunit", w=6,
             thresholds=steps, decimals=3),
        stat(f"{title}: error budget left",
             Target(f"1 - {error_ratio(slo, s.slo_window)} / {budget}"), unit="percentunit",
             w=6, thresholds=[(None, RED), (0.25, "orange"), (0.5, "green")], decimals=1),
        ts(f"{title}: 30 days (1h windows)", Target(f"1 - {error_ratio(slo, '1h')}", "good"),
           unit="percentunit", w=12, h=4, thresholds=steps,
           custom={"thresholdsStyle": {"mode": "line"}}),
    ]


def availability(s: Settings) -> list[Panel]:
    """KPI 1: availability of the database as the application connects (the probe)."""
    return _good(_slo("database_availability"), s, "Availability")


def replication_lag(s: Settings) -> list[Panel]:
    """KPI 2: replication lag, the slowest replica's replay lag."""
    expr = agg("max", "wasp_pg_replication_standby_replay_lag_seconds")
    steps = alert_steps((s.kpi_replication_lag_seconds, "warning"))
    return [stat(f"Replication lag (target < {num(s.kpi_replication_lag_seconds)} s)",
                 Target(expr), unit="s", w=6, thresholds=steps),
            ts("Replication lag: 30 days", Target(expr, "slowest replica"), unit="s", w=18,
               h=4, thresholds=steps, custom={"thresholdsStyle": {"mode": "line"}})]


def query_time(s: Settings) -> list[Panel]:
    """KPI 3: statement time (pg_stat_statements; a mean: PostgreSQL keeps no percentiles)."""
    t = f"sum(rate({sel('wasp_pg_statement_exec_time_seconds_total')}[5m]))"
    n = f"sum(rate({sel('wasp_pg_statement_calls_total')}[5m]))"
    steps = alert_steps((s.kpi_query_mean_seconds, "warning"))
    desc = ("The report's KPI is a p95 under 100 ms; PostgreSQL keeps per-statement means "
            "only, so this is the call-weighted mean over all statements.")
    return [stat(f"Query time, mean (target < {num(s.kpi_query_mean_seconds * 1000)} ms)",
                 Target(f"{t} / {n}"), unit="s", w=6, thresholds=steps, description=desc),
            ts("Query time: 30 days", Target(f"{t} / {n}", "mean"), unit="s", w=18, h=4,
               thresholds=steps, custom={"thresholdsStyle": {"mode": "line"}})]


def backup_success(s: Settings) -> list[Panel]:
    """KPI 4: backup success: every last attempt succeeded and the last drill passed."""
    # the label sets differ (type), so `or` keeps every series of both
    expr = (f"min({sel('wasp_backup_last_attempt_success')} "
            f"or {sel('wasp_backup_drill_last_success')})")
    steps = [(None, RED), (1, "green")]
    return [stat("Backup success (target 100%)", Target(expr), unit="percentunit", w=6,
                 thresholds=steps),
            ts("Backup success: 30 days", Target(expr, "all last attempts and the drill"),
               unit="percentunit", w=18, h=4, thresholds=steps)]


def rto(s: Settings) -> list[Panel]:
    """KPI 5: RTO, measured by the last restore drill."""
    expr = agg("max", "wasp_backup_drill_restore_duration_seconds")
    steps = alert_steps((s.kpi_rto_seconds, "warning"))
    return [stat(f"RTO, last drill's restore (target < {num(s.kpi_rto_seconds / 60)} min)",
                 Target(expr), unit="s", w=6, thresholds=steps),
            ts("RTO: 30 days", Target(expr, "restore time"), unit="s", w=18, h=4,
               thresholds=steps)]


def rpo(s: Settings) -> list[Panel]:
    """KPI 6: RPO, the age of the newest archived WAL while WAL is waiting to be archived."""
    expr = agg("max", "wasp_wal_archive_last_archived_age_seconds",
               inner=f"{sel('wasp_wal_archive_last_archived_age_seconds')} "
                     f"and on (target, stanza) {sel('wasp_wal_archive_unarchived_bytes')} > 0")
    full = f"({expr}) or vector(0)"
    steps = alert_steps((s.kpi_rpo_seconds, "warning"))
    return [stat(f"RPO, unarchived WAL age (target < {num(s.kpi_rpo_seconds / 60)} min)",
                 Target(full), unit="s", w=6, thresholds=steps,
                 description="0 while every written WAL byte is archived."),
            ts("RPO: 30 days", Target(full, "age of unarchived WAL"), unit="s", w=18, h=4,
               thresholds=steps)]


def pool_usage(s: Settings) -> list[Panel]:
    """KPI 7: connection-pool usage, the busiest PgBouncer pool."""
    expr = agg("max", "wasp_pgbouncer_pool_usage_ratio")
    steps = alert_steps((s.kpi_pool_usage_ratio, "warning"))
    return [stat(f"Pool usage (target < {num(s.kpi_pool_usage_ratio * 100)}%)", Target(expr),
                 unit="percentunit", w=6, thresholds=steps),
            ts("Pool usage: 30 days", Target(expr, "busiest pool"), unit="percentunit", w=18,
               h=4, thresholds=steps)]


def other_slos(s: Settings) -> list[Panel]:
    """The service's other SLOs: messages delivered, webhooks processed, bookings clean."""
    return [*_good(_slo("messages_delivered"), s, "Messages delivered"),
            *_good(_slo("webhooks_processed"), s, "Webhooks processed"),
            *_good(_slo("bookings_clean"), s, "Bookings without double booking")]


def doctor(s: Settings) -> list[Panel]:
    """The doctor's score and the checks failing now."""
    score = agg("min", "wasp_doctor_score")
    steps = [(None, RED), (s.doctor_score_min, "orange"), (9, "green")]
    failing = table("Failing readiness checks (wasp doctor)",
                    Target(f"{sel('wasp_doctor_check_status')} == 2", instant=True), w=12,
                    hide=("Time", "Value", "__name__", "job", "instance"),
                    description="Run `wasp doctor --target TARGET` for the evidence and the fix.")
    return [stat("Readiness score (wasp doctor, of 10)", Target(score), w=6, thresholds=steps,
                 decimals=1),
            ts("Readiness score: 30 days", Target(score, "score"), w=6, h=4, thresholds=steps,
               min=0, max=10),
            failing]


#: the board's sections, each a row and its KPI functions (each returns its panels)
SECTIONS = (
    ("KPIs", (availability, replication_lag, query_time, backup_success, rto, rpo, pool_usage)),
    ("SLOs", (other_slos,)),
    ("Readiness", (doctor,)),
)


def _row(title: str) -> Callable[[Settings], Panel | Row]:
    def make(s: Settings) -> Panel | Row:
        return Row(title)
    return make


def _nth(f: Callable[[Settings], list[Panel]], i: int) -> Callable[[Settings], Panel | Row]:
    def make(s: Settings) -> Panel | Row:
        return f(s)[i]
    return make


def _panel_functions() -> tuple[Callable[[Settings], Panel | Row], ...]:
    out: list[Callable[[Settings], Panel | Row]] = []
    for title, fns in SECTIONS:
        out.append(_row(title))
        for f in fns:
            # how many panels a KPI has does not depend on the settings
            out.extend(_nth(f, i) for i in range(len(f(Settings()))))
    return tuple(out)


KPI = Dashboard(
    "wasp-kpi", "wasp / KPIs",
    "The production-readiness KPIs, live: availability, replication lag, query time, backup "
    "success, RTO, RPO, pool usage; the SLOs' error budgets; wasp doctor's score and failing "
    "checks. The other boards are in the wasp dashboards menu above.",
    _panel_functions(),
    variables=(("job", "Job", "wasp_target_up"), ("target", "Target", "wasp_target_up"),
               ("stanza", "Stanza", "wasp_backup_repository_up")),
    tags=("kpi", "home"),
    time_from="now-30d",
)
