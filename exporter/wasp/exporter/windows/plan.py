"""How a declared window query is evaluated: a plan (buckets or rows), or why it runs in full."""

from __future__ import annotations

from dataclasses import dataclass

from wasp.config.schema import QueryDef
from wasp.exporter.windows.agg import Agg, parse_aggregate

__all__ = ["WindowPlan", "plan_window"]


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How a window query is evaluated, decided once from its declaration."""

    mode: str  # buckets | rows
    aggs: tuple[Agg, ...]
    bucket: float
    reread: float  # how far behind the previous refresh the head starts


def plan_window(q: QueryDef) -> WindowPlan | str:
    """A plan for incremental evaluation, or the reason why the query must run in full."""
    w = q.window
    if w is None:
        return "no window declared"
    if not w.incremental:
        return "incremental evaluation switched off"
    aggs = []
    for col, expr in w.aggregates:
        a = parse_aggregate(col, expr)
        if a is None:
            return f"aggregate {col}: {expr!r} is not count/sum/avg/min/max of one expression"
        aggs.append(a)
    bucket = float(min(300, max(5, round(w.length / 288))))
    if w.direction == "future":
        # rows enter a window ahead as time moves (their time is not "now" when
        # written) and their time itself may change (a booking moved): only a
        # per-row state kept exact by the updated column can follow that
        if w.updated_column is None:
            return "a future window needs an updated_column to be maintained"
        if any(a.fn in ("min", "max") for a in aggs):
            return "min/max over rows that change at any time cannot be maintained"
        return WindowPlan("rows", tuple(aggs), bucket, w.late_commit)
    if w.changes_after_insert is not None:
        reread = max(w.changes_after_insert, w.late_commit)
        return WindowPlan("buckets", tuple(aggs), bucket, reread)
    if w.updated_column is None:
        return "rows may change at any time and no updated_column is declared"
    if any(a.fn in ("min", "max") for a in aggs):
        return "min/max over rows that change at any time cannot be maintained"
    return WindowPlan("rows", tuple(aggs), bucket, w.late_commit)
