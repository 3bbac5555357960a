"""The exporter's own metrics, built from the engine's state at render time."""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING

from wasp import __version__
from wasp.exporter.db import CONNECT_CAUSES
from wasp.model import Family, MetricSpec, Sample

if TYPE_CHECKING:
    from wasp.exporter.engine import Engine

__all__ = ["ERROR_REASONS", "SELF_METRICS", "self_families"]

ERROR_REASONS = ("timeout", "sql", "connection", "permission", "missing", "other")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_Q = ("target", "query")

SELF_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("wasp_target_up", "gauge", ("target",),
               "1 when the exporter reached the target at its last check, else 0."),
    MetricSpec("wasp_target_connection_errors_total", "counter", ("target", "reason"),
               "Failed connection attempts to the target, by reason (auth, refused, timeout, dns, "
               "tls, too_many_connections, missing database, other)."),
    MetricSpec("wasp_query_duration_seconds", "gauge", _Q, "Duration of the query's last run."),
    MetricSpec("wasp_query_last_success_timestamp_seconds", "gauge", _Q,
               "Unix time of the query's last successful run."),
    MetricSpec("wasp_query_series", "gauge", _Q, "Series the query exports now."),
    MetricSpec("wasp_query_runs_total", "counter", _Q, "Runs of the query, successful or not."),
    MetricSpec("wasp_query_errors_total", "counter", (*_Q, "reason"),
               "Failed runs of the query, by reason."),
    MetricSpec("wasp_query_skipped_total", "counter", _Q,
               "Turns skipped because the previous run was still going."),
    MetricSpec("wasp_query_series_dropped_total", "counter", _Q,
               "Series dropped because the query returned more than its max_series."),
    MetricSpec("wasp_query_enabled", "gauge", _Q,
               "1 when the query runs on the target; 0 when its role or requirements rule it out."),
    MetricSpec("wasp_query_interval_seconds", "gauge", _Q, "Configured interval of the query."),
    MetricSpec("wasp_exporter_build_info", "gauge", ("version",),
               "Version of the running exporter (always 1)."),
    MetricSpec("wasp_exporter_start_time_seconds", "gauge", (), "Unix time the exporter started."),
    MetricSpec("wasp_exporter_ready", "gauge", (),
               "1 once every query has completed its first run (or its target was tried and is down)."),
    MetricSpec("wasp_exporter_last_render_timestamp_seconds", "gauge", (),
               "Unix time the exposition was last rendered."),
    MetricSpec("wasp_exporter_peak_resident_memory_bytes", "gauge", (),
               "Peak resident memory of the exporter process."),
    MetricSpec("process_cpu_seconds_total", "counter", (),
               "Total user and system CPU time spent in seconds."),
    MetricSpec("process_resident_memory_bytes", "gauge", (), "Resident memory size in bytes."),
)
_SPEC = {s.name: s for s in SELF_METRICS}


def _process() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open("/proc/self/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        out["process_cpu_seconds_total"] = (int(parts[11]) + int(parts[12])) / _CLK_TCK
        out["process_resident_memory_bytes"] = float(int(parts[21]) * _PAGE)
    except (OSError, IndexError, ValueError):
        pass
    out["wasp_exporter_peak_resident_memory_bytes"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0)
    return out


def self_families(engine: Engine) -> list[Family]:
    """Families describing targets, queries and the process."""
    s: dict[str, list[Sample]] = {name: [] for name in _SPEC}
    for name, t in sorted(engine.targets.items()):
        s["wasp_target_up"].append(((name,), 1.0 if t.up else 0.0))
        if t.db is not None:
            for cause in CONNECT_CAUSES:
                s["wasp_target_connection_errors_total"].append(
                    ((name, cause), float(t.connect_errors.get(cause, 0))))
    for st in engine.states.values():
        c = st.collector
        key = (c.target or "", c.name)
        s["wasp_query_enabled"].append((key, 0.0 if st.disabled else 1.0))
        s["wasp_query_interval_seconds"].append((key, float(c.interval)))
        s["wasp_query_runs_total"].append((key, float(st.runs)))
        s["wasp_query_skipped_total"].append((key, float(st.skipped)))
        s["wasp_query_series_dropped_total"].append((key, float(st.dropped)))
        s["wasp_query_series"].append((key, float(st.series)))
        if st.runs:
            s["wasp_query_duration_seconds"].append((key, st.last_duration))
        if st.last_success is not None:
            s["wasp_query_last_success_timestamp_seconds"].append((key, st.last_success))
        for reason in ERROR_REASONS:
            s["wasp_query_errors_total"].append(((*key, reason), float(st.errors.get(reason, 0))))
    s["wasp_exporter_build_info"].append(((__version__,), 1.0))
    s["wasp_exporter_start_time_seconds"].append(((), engine.start_time))
    s["wasp_exporter_ready"].append(((), 1.0 if engine.ready else 0.0))
    s["wasp_exporter_last_render_timestamp_seconds"].append(((), time.time()))
    for name, v in _process().items():
        s[name].append(((), v))
    return [_SPEC[name].family(samples) for name, samples in s.items() if samples]
