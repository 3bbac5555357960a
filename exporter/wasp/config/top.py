"""The `top:` block of a query: a stable top N of entities (statements, say) get series.

A query with `top:` returns one row per entity (its `key` label). Ranked by the
value column `rank_by` (largest first), an entity enters the exported set only
after holding a place in the top `size` for `enter_after`, and leaves it only
after being out of it for `leave_after`; the set never holds more than `size`.
The rest are summed (the `sum` columns) into one row whose key is `other`.
Label columns listed under `info` (a statement's text) go to one info series
per exported key instead of every metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wasp.config.nodes import Node
from wasp.model import LABEL_NAME_RE, check_metric_name

__all__ = ["TOP_KEYS", "TopDef", "parse_top"]

TOP_KEYS = {"key", "rank_by", "size", "enter_after", "leave_after", "other", "sum", "info"}
INFO_KEYS = {"metric", "help", "labels"}


@dataclass(frozen=True, slots=True)
class TopDef:
    """How a query keeps a stable top N of its rows (see the module docstring)."""

    key: str
    rank_by: str
    size: int
    enter_after: float
    leave_after: float
    other: str = "(other)"
    sum: tuple[str, ...] = ()
    info_metric: str | None = None
    info_help: str = ""
    info_labels: tuple[str, ...] = ()


def parse_top(node: Node, *, labels: tuple[str, ...], values: tuple[str, ...],
              substitute: Callable[[Node], str]) -> TopDef:
    """Parse and check a `top:` block against the query's label and value columns."""
    node.mapping(TOP_KEYS, required={"key", "rank_by", "size", "enter_after", "leave_after"})
    key = node.child("key").str()
    if labels != (key,):
        node.child("key").error(f"must be the query's only label (labels: {list(labels)})")
    rank_by = node.child("rank_by").str()
    if rank_by not in values:
        node.child("rank_by").error(f"is not a value column of the query ({', '.join(values)})")
    size_node = node.child("size")
    if isinstance(size_node.value, str):  # "{{option}}"
        size_text = substitute(size_node)
        if not size_text.strip().isdigit():
            size_node.error(f"must be a whole number, got {size_text!r}")
        size = int(size_text)
    else:
        size = size_node.int()
    if size < 1:
        size_node.error("must be at least 1")
    summed = node.child("sum").str_list()
    for i, col in enumerate(summed):
        if col not in values:
            node.child("sum").sequence()[i].error(f"{col!r} is not a value column of the query")
    metric: str | None = None
    help_ = ""
    info_labels: tuple[str, ...] = ()
    if node.has("info"):
        info = node.child("info")
        info.mapping(INFO_KEYS, required={"metric", "help", "labels"})
        metric = info.child("metric").str()
        problem = check_metric_name(metric, "gauge", None)
        if problem or not metric.endswith("_info"):
            info.child("metric").error(problem or "an info metric's name ends in _info")
        help_ = info.child("help").str()
        info_labels = info.child("labels").str_list()
        for i, lab in enumerate(info_labels):
            if not LABEL_NAME_RE.match(lab) or lab == key or lab in values:
                info.child("labels").sequence()[i].error(
                    f"{lab!r} must be a label name other than the key and the value columns")
    def duration(name: str) -> float:
        n = node.child(name)
        if isinstance(n.value, str) and "{{" in n.value:  # "{{option}}"
            n = Node(substitute(n), n.file, n.key, n.line)
        return n.duration(minimum=0.0)

    return TopDef(
        key=key, rank_by=rank_by, size=size,
        enter_after=duration("enter_after"),
        leave_after=duration("leave_after"),
        other=node.child("other").str("(other)"),
        sum=summed, info_metric=metric, info_help=help_, info_labels=info_labels,
    )
