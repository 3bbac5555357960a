"""One selector builder for rules and dashboards, checked against the metric catalog.

`Selectors(...)("wasp_pg_connections", state="active")` gives
`wasp_pg_connections{job="wasp",state="active"}`. A matcher value starting
with `=~`, `!=` or `!~` uses that operator, anything else is equality. An
unknown metric is a `KeyError` (from the catalog), a label the metric does not
carry a `ValueError`, so a renamed metric breaks generation, not production.
Every metric named is recorded in `.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from wasp.catalog import catalog

__all__ = ["NODE_METRICS", "PROMETHEUS_METRICS", "SCRAPE_LABELS", "Selectors", "labels_of", "num",
           "quote"]

#: labels Prometheus attaches at scrape time (not in the catalog, on every series)
SCRAPE_LABELS = ("job", "instance")
#: metrics that Prometheus itself produces for a scrape job
PROMETHEUS_METRICS: dict[str, tuple[str, ...]] = {"up": SCRAPE_LABELS}
_FILESYSTEM = (*SCRAPE_LABELS, "device", "fstype", "mountpoint")
#: node_exporter's metrics the rules use (scraped as their own job: `Settings.node_selector`)
NODE_METRICS: dict[str, tuple[str, ...]] = {
    "node_filesystem_avail_bytes": _FILESYSTEM,
    "node_filesystem_size_bytes": _FILESYSTEM,
    "node_filesystem_readonly": _FILESYSTEM,
}
_OPERATORS = ("=~", "!=", "!~")


def labels_of(name: str, recorded: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """Every label a series of `name` carries: scrape labels, then its own."""
    if recorded and name in recorded:
        return (*SCRAPE_LABELS, *recorded[name])
    if name in PROMETHEUS_METRICS:
        return PROMETHEUS_METRICS[name]
    if name in NODE_METRICS:
        return NODE_METRICS[name]
    base, _, suffix = name.rpartition("_")
    if suffix in ("bucket", "sum", "count") and base in catalog() \
            and catalog().get(base).spec.type == "histogram":
        # the series of a histogram: _bucket adds le
        return (*SCRAPE_LABELS, *catalog().get(base).labels, *(("le",) if suffix == "bucket"
                                                                else ()))
    return (*SCRAPE_LABELS, *catalog().get(name).labels)


def quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def num(v: float) -> str:
    """A number as PromQL reads it, without float noise."""
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class Selectors:
    """Builds catalog-checked selectors with fixed and scoped matchers; records what it named.

    `fixed` matchers go on every selector (the scrape job of the rules);
    `scoped` ones (label -> value, e.g. a dashboard variable) only on metrics
    that carry the label and are not matched explicitly; `recorded` names the
    recording rules and their labels, usable like catalog metrics.
    """

    def __init__(self, *, fixed: Sequence[tuple[str, str]] = (),
                 scoped: Sequence[tuple[str, str]] = (),
                 recorded: Mapping[str, tuple[str, ...]] | None = None,
                 separator: str = ",") -> None:
        self.fixed = tuple(fixed)
        self.scoped = tuple(scoped)
        self.recorded = recorded if recorded is not None else {}
        self.separator = separator
        self.metrics: set[str] = set()

    def fork(self) -> Selectors:
        """The same builder with an empty record of metrics (one per rule)."""
        return Selectors(fixed=self.fixed, scoped=self.scoped, recorded=self.recorded,
                         separator=self.separator)

    def labels(self, name: str) -> tuple[str, ...]:
        """The labels of `name` (catalog metric, Prometheus metric or recording rule)."""
        return labels_of(name, self.recorded)

    def __call__(self, name: str, **matchers: str) -> str:
        """`name{matchers}`; a value starting with =~, != or !~ uses that operator."""
        labels = self.labels(name)
        self.metrics.add(name)
        parts = [f"{k}={quote(v)}" for k, v in self.fixed]
        for label, value in self.scoped:
            if label in labels and label not in matchers:
                parts.append(f"{label}=~{quote(value)}")
        for k, v in matchers.items():
            if k not in labels:
                raise ValueError(f"{name} has no label {k!r} (catalog: {', '.join(labels)})")
            op = v[:2] if v[:2] in _OPERATORS else "="
            parts.append(f"{k}{op}{quote(v[2:] if op != '=' else v)}")
        return f"{name}{{{self.separator.join(parts)}}}" if parts else name
