"""Query definitions (a pack's or the user's): SQL, labels, values, windows, requirements."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wasp.config.events import parse_events
from wasp.config.nodes import Node
from wasp.config.top import parse_top
from wasp.config.types import (
    DIRECTIONS,
    METRIC_TYPES,
    ROLES,
    QueryDef,
    Requires,
    ValueDef,
    WindowDef,
)
from wasp.model import LABEL_NAME_RE, check_metric_name

__all__ = ["NAME_RE", "parse_query"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
OPTION_RE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")

QUERY_KEYS = {
    "sql", "labels", "values", "interval", "timeout", "max_series", "enabled", "role",
    "help", "requires", "window", "targets", "events", "top",
}
VALUE_KEYS = {"column", "metric", "type", "help", "unit", "const_labels"}
WINDOW_KEYS = {"table", "time_column", "length", "where", "group_by", "aggregates",
               "changes_after_insert", "updated_column", "key_column", "late_commit",
               "incremental", "direction"}
REQUIRES_KEYS = {"tables", "columns", "extensions", "min_server_version", "superuser"}


def parse_query(name: str, node: Node, *, pack: str | None, options: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> QueryDef:
    """Parse one query definition (pack or user)."""
    if not NAME_RE.match(name):
        node.error("query names must match [a-z][a-z0-9_]*")
    # an events query generates its SQL from its events: block
    node.mapping(QUERY_KEYS, required={"values"} if node.has("events") else {"sql", "values"})
    d = defaults or {}
    sql = _substitute(node.child("sql"), options) if node.has("sql") else ""
    labels = node.child("labels").str_list()
    for i, lab in enumerate(labels):
        if not LABEL_NAME_RE.match(lab) or lab.startswith("__"):
            node.child("labels").sequence()[i].error(f"{lab!r} is not a valid label name")
    if len(set(labels)) != len(labels):
        node.child("labels").error("label names must be unique")
    values_node = node.child("values")
    values = tuple(_parse_value(v, labels) for v in values_node.sequence())
    if not values:
        values_node.error("must list at least one value column")
    cols = [v.column for v in values]
    for col in cols:
        if col in labels:
            values_node.error(f"column {col!r} is both a label and a value")
    interval = node.child("interval").duration(d.get("interval", 60.0), minimum=1.0)
    timeout = node.child("timeout").duration(d.get("timeout", min(10.0, interval)), minimum=0.1)
    if timeout > interval:
        node.child("timeout").error(f"must not exceed the interval ({interval:g}s)")
    role = node.child("role").choice(ROLES, "any")
    window = None
    if node.has("window"):
        wnode = node.child("window")
        window = _parse_window(wnode, options)
        if {k for k, _ in window.group_by} != set(labels):
            wnode.child("group_by").error(
                f"must group by exactly the query's labels {list(labels)}, "
                f"got {[k for k, _ in window.group_by]}")
        agg_cols = {k for k, _ in window.aggregates}
        for v in values:
            if v.column not in agg_cols:
                wnode.child("aggregates").error(f"has no aggregate for value column {v.column!r}")
    events = None
    if node.has("events"):
        if window is not None:
            node.child("events").error("a query has a window: or an events: block, not both")
        events = parse_events(node.child("events"), lambda n: _substitute(n, options), labels,
                              {v.column: v.type for v in values})
        sql = sql or events.settled_sql(interval)
    top = None
    if node.has("top"):
        if window is not None:
            node.child("top").error("a query cannot have both window and top")
        top = parse_top(node.child("top"), labels=labels, values=tuple(cols),
                        substitute=lambda n: _substitute(n, options))
    targets = None
    if node.has("targets"):
        targets = node.child("targets").str_list()
    return QueryDef(
        name=name,
        sql=sql,
        labels=labels,
        values=values,
        interval=interval,
        timeout=timeout,
        max_series=node.child("max_series").int(d.get("max_series", 1000), minimum=1),
        enabled=node.child("enabled").bool(True),
        role=role,
        pack=pack,
        help=node.child("help").str(""),
        requires=_parse_requires(node.child("requires")),
        window=window,
        events=events,
        top=top,
        targets=targets,
        source=f"{node.file}:{node.line}",
    )


def _parse_value(node: Node, labels: tuple[str, ...]) -> ValueDef:
    node.mapping(VALUE_KEYS, required={"column", "metric", "type", "help"})
    type_ = node.child("type").choice(METRIC_TYPES)
    metric = node.child("metric").str()
    unit = node.child("unit").opt_str()
    problem = check_metric_name(metric, type_, unit)
    if problem:
        node.child("metric").error(problem)
    const: tuple[tuple[str, str], ...] = ()
    if node.has("const_labels"):
        cl = node.child("const_labels").str_map()
        for k in cl:
            if not LABEL_NAME_RE.match(k):
                node.child("const_labels").child(k).error("not a valid label name")
            if k in labels:
                node.child("const_labels").child(k).error("also a label column")
        const = tuple(sorted(cl.items()))
    return ValueDef(
        column=node.child("column").str(),
        metric=metric,
        type=type_,
        help=node.child("help").str(),
        unit=unit,
        const_labels=const,
    )


def _parse_window(node: Node, options: Mapping[str, Any]) -> WindowDef:
    # changes_after_insert is required: 0 = rows never change, null = they may change any time
    node.mapping(WINDOW_KEYS, required={"table", "time_column", "length", "aggregates",
                                        "changes_after_insert"})
    cai = node.child("changes_after_insert")
    changes: float | None = None if cai.is_missing() else cai.duration()
    where = node.child("where")
    return WindowDef(
        table=node.child("table").str(),
        time_column=node.child("time_column").str(),
        length=node.child("length").duration(minimum=1.0),
        where=None if where.is_missing() else _substitute(where, options),
        group_by=tuple(node.child("group_by").str_map().items()) if node.has("group_by") else (),
        aggregates=tuple(node.child("aggregates").str_map().items()),
        changes_after_insert=changes,
        updated_column=node.child("updated_column").opt_str(),
        key_column=node.child("key_column").str("id"),
        late_commit=node.child("late_commit").duration(60.0),
        incremental=node.child("incremental").bool(True),
        direction=node.child("direction").choice(DIRECTIONS, "past"),
    )


def _parse_requires(node: Node) -> Requires:
    if node.is_missing():
        return Requires()
    node.mapping(REQUIRES_KEYS)
    cols = node.child("columns").str_list()
    for i, c in enumerate(cols):
        if c.count(".") != 1:
            node.child("columns").sequence()[i].error("must be table.column")
    return Requires(
        tables=node.child("tables").str_list(),
        columns=cols,
        extensions=node.child("extensions").str_list(),
        min_server_version=node.child("min_server_version").int(0, minimum=0),
        superuser=node.child("superuser").bool(False),
    )


def _substitute(node: Node, options: Mapping[str, Any]) -> str:
    text = node.str()

    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in options:
            node.error(f"uses option {{{{{key}}}}} that its pack does not define")
        return str(options[key])

    return OPTION_RE.sub(repl, text)
