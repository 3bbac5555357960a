"""The `events:` block of a query: rows counted once, as counters, when they settle.

The app's tables hold events (a message sent, a webhook handled, a booking
made) whose outcome may still change for a while after insert. An events query
counts each row exactly once, by its outcome at ``settle_after`` age, into
counters, so that ``rate()`` over any window works (the SLIs and their burn
rates need 5-minute windows that rolling gauges cannot give).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wasp.config.nodes import Node

__all__ = ["EVENTS_KEYS", "EventsDef", "parse_events"]

EVENTS_KEYS = {"table", "time_column", "settle_after", "where", "group_by", "aggregates"}
#: aggregates that add up across slices (count and sum); nothing else is exact as a counter
_ADDITIVE = re.compile(r"^\s*(count|sum)\s*\(", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class EventsDef:
    """Count rows of `table` whose `time_column` passed `settle_after` since the last round."""

    table: str
    time_column: str
    settle_after: float
    where: str | None
    group_by: tuple[tuple[str, str], ...]
    aggregates: tuple[tuple[str, str], ...]

    def slice_sql(self) -> str:
        """The statement of one slice; parameters: lower bound (included), upper (excluded)."""
        return self._select("%s", "%s", escape=True)

    def settled_sql(self, interval: float) -> str:
        """A standalone statement: the rows that settled during the last `interval` seconds."""
        hi = f"(now() AT TIME ZONE 'UTC') - interval '{self.settle_after:g} seconds'"
        return self._select(f"{hi} - interval '{interval:g} seconds'", hi, escape=False)

    def _select(self, lo: str, hi: str, *, escape: bool) -> str:
        cols = [f"{expr} AS {name}" for name, expr in self.group_by]
        cols += [f"{expr} AS {name}" for name, expr in self.aggregates]
        cond = self.where.replace("%", "%%") if self.where and escape else self.where
        where = f"\n   AND ({cond})" if cond else ""
        group = (f"\n GROUP BY {', '.join(str(i + 1) for i in range(len(self.group_by)))}"
                 if self.group_by else "")
        return (f"SELECT {', '.join(cols)}\n  FROM {self.table}\n"
                f" WHERE {self.time_column} >= {lo} AND {self.time_column} < {hi}{where}{group}")


def parse_events(node: Node, substitute: Callable[[Node], str],
                 labels: tuple[str, ...], values: Mapping[str, Any]) -> EventsDef:
    """Parse and check an `events:` block against the query's labels and value columns."""
    node.mapping(EVENTS_KEYS, required={"table", "time_column", "settle_after", "aggregates"})
    where = node.child("where")
    gnode = node.child("group_by")
    # group expressions may use the pack's options ({{ webhook_failed_statuses }})
    group_by = tuple((k, substitute(gnode.child(k))) for k in gnode.str_map()) if node.has(
        "group_by") else ()
    aggs = tuple(node.child("aggregates").str_map().items())
    if {k for k, _ in group_by} != set(labels):
        node.child("group_by").error(f"must group by exactly the query's labels {list(labels)}, "
                                     f"got {[k for k, _ in group_by]}")
    for name, expr in aggs:
        if not _ADDITIVE.match(expr):
            node.child("aggregates").child(name).error(
                "must be count(...) or sum(...): only those add up into a counter")
    for column, type_ in values.items():
        if column not in dict(aggs):
            node.child("aggregates").error(f"has no aggregate for value column {column!r}")
        if type_ != "counter":
            node.error(f"value column {column!r} must be a counter: events only ever add up")
    return EventsDef(
        table=node.child("table").str(),
        time_column=node.child("time_column").str(),
        settle_after=node.child("settle_after").duration(minimum=1.0),
        where=None if where.is_missing() else substitute(where),
        group_by=group_by,
        aggregates=aggs,
    )
