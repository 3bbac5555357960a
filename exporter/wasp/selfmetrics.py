"""The exporter's own metrics, built from the engine's state at render time."""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING

from . import __version__
from .model import Family, Sample

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ERROR_REASONS", "self_families"]

ERROR_REASONS = ("timeout", "sql", "connection", "permission", "missing", "other")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _process() -> list[Family]:
    out = []
    try:
        with open("/proc/self/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        cpu = (int(parts[11]) + int(parts[12])) / _CLK_TCK
        rss = int(parts[21]) * _PAGE
        out.append(Family("process_cpu_seconds_total", "counter",
                          "Total user and system CPU time spent in seconds.", (), (((), cpu),)))
        out.append(Family("process_resident_memory_bytes", "gauge",
                          "Resident memory size in bytes.", (), (((), float(rss)),)))
    except (OSError, IndexError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    out.append(Family("wasp_exporter_peak_resident_memory_bytes", "gauge",
                      "Peak resident memory of the exporter process.", (), (((), peak),)))
    return out


def self_families(engine: Engine) -> list[Family]:
    """Families describing targets, queries and the process."""
    up: list[Sample] = []
    for name, t in sorted(engine.targets.items()):
        up.append(((name,), 1.0 if t.up else 0.0))
    dur: list[Sample] = []
    last: list[Sample] = []
    series: list[Sample] = []
    runs: list[Sample] = []
    errors: list[Sample] = []
    skipped: list[Sample] = []
    dropped: list[Sample] = []
    enabled: list[Sample] = []
    interval: list[Sample] = []
    for st in engine.states.values():
        c = st.collector
        key = (c.target or "", c.name)
        enabled.append((key, 0.0 if st.disabled else 1.0))
        interval.append((key, float(c.interval)))
        runs.append((key, float(st.runs)))
        skipped.append((key, float(st.skipped)))
        dropped.append((key, float(st.dropped)))
        series.append((key, float(st.series)))
        if st.runs:
            dur.append((key, st.last_duration))
        if st.last_success is not None:
            last.append((key, st.last_success))
        for reason in ERROR_REASONS:
            errors.append(((*key, reason), float(st.errors.get(reason, 0))))
    q = ("target", "query")
    return [
        Family("wasp_target_up", "gauge",
               "1 when the exporter reached the target at its last check, else 0.", ("target",),
               tuple(up)),
        Family("wasp_query_duration_seconds", "gauge", "Duration of the query's last run.", q,
               tuple(dur)),
        Family("wasp_query_last_success_timestamp_seconds", "gauge",
               "Unix time of the query's last successful run.", q, tuple(last)),
        Family("wasp_query_series", "gauge", "Series the query exports now.", q, tuple(series)),
        Family("wasp_query_runs_total", "counter", "Runs of the query, successful or not.", q,
               tuple(runs)),
        Family("wasp_query_errors_total", "counter", "Failed runs of the query, by reason.",
               (*q, "reason"), tuple(errors)),
        Family("wasp_query_skipped_total", "counter",
               "Turns skipped because the previous run was still going.", q, tuple(skipped)),
        Family("wasp_query_series_dropped_total", "counter",
               "Series dropped because the query returned more than its max_series.", q,
               tuple(dropped)),
        Family("wasp_query_enabled", "gauge",
               "1 when the query runs on the target; 0 when its role or requirements rule it out.",
               q, tuple(enabled)),
        Family("wasp_query_interval_seconds", "gauge", "Configured interval of the query.", q,
               tuple(interval)),
        Family("wasp_exporter_build_info", "gauge", "Version of the running exporter (always 1).",
               ("version",), (((__version__,), 1.0),)),
        Family("wasp_exporter_start_time_seconds", "gauge", "Unix time the exporter started.", (),
               (((), engine.start_time),)),
        Family("wasp_exporter_ready", "gauge", "1 once every query has completed its first run.",
               (), (((), 1.0 if engine.ready else 0.0),)),
        Family("wasp_exporter_last_render_timestamp_seconds", "gauge", "Unix time the exposition was last rendered.", (),
               (((), time.time()),)),
        *_process(),
    ]
