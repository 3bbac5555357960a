"""The exporter board: targets, query durations, errors, skipped runs, series, process."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    TOP_N,
    Dashboard,
    Panel,
    Target,
    agg,
    bad_below_one,
    ok_mapping,
    rate,
    sel,
    stat,
    top_table,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["EXPORTER"]


def exp_targets_up(s: Settings) -> Panel:
    """Targets the exporter reaches."""
    return stat("Targets up", Target(sel("wasp_target_up"), "{{target}}"), w=8,
                thresholds=bad_below_one(), mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def exp_ready(s: Settings) -> Panel:
    """Whether every query ran once."""
    return stat("Ready", Target(sel("wasp_exporter_ready")), w=4, thresholds=bad_below_one(),
                mappings=ok_mapping("ready", "starting"), options={"graphMode": "none"})


def exp_version(s: Settings) -> Panel:
    """Exporter version."""
    return stat("Version", Target(sel("wasp_exporter_build_info"), "{{version}}"), w=4,
                options={"colorMode": "none", "graphMode": "none", "textMode": "name"})


def exp_uptime(s: Settings) -> Panel:
    """Time since the exporter started."""
    return stat("Exporter uptime", Target(f"time() - {sel('wasp_exporter_start_time_seconds')}"),
                unit="s", w=4, options={"graphMode": "none"})


def exp_disabled(s: Settings) -> Panel:
    """Queries ruled out by role or requirements."""
    return stat("Queries disabled",
                Target(f"count({sel('wasp_query_enabled')} == 0) or vector(0)"), w=4,
                options={"graphMode": "none"},
                description="Disabled because the target's role or schema rules them out "
                "(see the exporter's log).")


def exp_durations(s: Settings) -> Panel:
    """Duration of the slowest queries' last runs."""
    return ts(f"Query duration (top {TOP_N})",
              Target(f"topk({TOP_N}, {sel('wasp_query_duration_seconds')})",
                     "{{target}} {{query}}"), unit="s", w=12)


def exp_errors(s: Settings) -> Panel:
    """Failed runs per second by reason."""
    return ts("Query errors by reason",
              Target(rate("wasp_query_errors_total", ("target", "reason")),
                     "{{target}} {{reason}}"), unit="ops", w=12)


def exp_skipped(s: Settings) -> Panel:
    """Runs skipped because the previous one was still going."""
    return ts("Skipped runs",
              Target(rate("wasp_query_skipped_total", ("target", "query"), fn="increase")
                     + " > 0", "{{target}} {{query}}"), w=8,
              description="Turns skipped in each rate interval: the query takes longer than "
              "its interval.")


def exp_series(s: Settings) -> Panel:
    """Series exported, per target."""
    return ts("Series exported",
              Target(agg("sum", "wasp_query_series", ("target",)), "{{target}}"),
              Target(rate("wasp_query_series_dropped_total", ("target",), fn="increase"),
                     "{{target}} dropped"), w=8)


def exp_last_success(s: Settings) -> Panel:
    """Queries whose last success is oldest relative to their interval."""
    last = sel("wasp_query_last_success_timestamp_seconds")
    expr = f"topk({TOP_N}, time() - {last})"
    return top_table(f"Oldest last success (top {TOP_N})",
                     "wasp_query_last_success_timestamp_seconds", ("target", "query"), expr,
                     unit="s", w=8)


def _wasp_process(expr: str) -> str:
    """Keep only the wasp exporter's process series (other jobs export process_* too)."""
    return f"{expr} and on (instance, job) {sel('wasp_exporter_build_info')}"


def exp_rss(s: Settings) -> Panel:
    """Resident memory of the exporter."""
    return ts("Exporter memory",
              Target(_wasp_process(sel("process_resident_memory_bytes")), "RSS {{instance}}"),
              Target(_wasp_process(sel("wasp_exporter_peak_resident_memory_bytes")),
                     "peak {{instance}}"),
              unit="bytes", w=12)


def exp_cpu(s: Settings) -> Panel:
    """CPU used by the exporter, in cores."""
    cpu = rate("process_cpu_seconds_total", op="")
    return ts("Exporter CPU (cores)", Target(_wasp_process(cpu), "{{instance}}"),
              unit="percentunit", w=12)


EXPORTER = Dashboard(
    "wasp-exporter", "wasp / Exporter",
    "The exporter itself: targets, query durations, errors, skipped runs, series, process.",
    (exp_targets_up, exp_ready, exp_version, exp_uptime, exp_disabled, exp_durations,
     exp_errors, exp_skipped, exp_series, exp_last_success, exp_rss, exp_cpu),
    tags=("exporter",),
)
