"""Incremental evaluation of trailing time-window queries.

A window query ("count/sum over the last N minutes, by group") is declared in
structured form (`window:` in a query). Instead of re-reading the whole window
on every refresh, the collector keeps partial aggregates in memory and reads
only what may have changed since its last refresh. Its result equals the full
query evaluated at the refresh time T (rows with ``time > T - length``).

Two modes:

*Buckets* (rows never change, or only for a bounded time after insert).
Partials are kept per time bucket and group. A refresh at T re-reads

- the head: every bucket from ``T_prev - max(changes_after_insert, late_commit)``
  on, so rows whose status moved since the last refresh and rows that a slow
  transaction committed late are counted, once (re-read buckets replace the
  old ones whole);
- the tail: the rows of the one bucket the window's old edge cuts through
  (``T - length < time < end of that bucket``), so the edge is exact.

Buckets older than the edge fall off. Database work per refresh grows with
the rows written since the last refresh, not with the window.

*Rows* (rows change at any time, but every change bumps an `updated_column`).
Each row in the window is remembered with its group and contribution; a
refresh reads rows whose `updated_column` moved since the last refresh, takes
their old contribution out and puts the new one in, and drops rows that left
the window. Min/max cannot be taken out again, so they use buckets only.

Anything else (rows change any time with no such column, aggregates other
than count/sum/avg/min/max) is evaluated in full every time, with a log line
saying why. A full reload every `full_every` seconds bounds float drift and
catches what no declaration can (a deleted row).
"""

from __future__ import annotations

from wasp.exporter.windows.agg import Agg, parse_aggregate
from wasp.exporter.windows.collector import WindowCollector, make_window_collector
from wasp.exporter.windows.plan import WindowPlan, plan_window

__all__ = ["Agg", "WindowCollector", "WindowPlan", "make_window_collector", "parse_aggregate",
           "plan_window"]
