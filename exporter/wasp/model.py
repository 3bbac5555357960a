"""The metric model shared by collectors, the engine and the exposition.

A collector returns families built fresh from one snapshot of data; the
engine keeps the last families of every collector; the exposition renders
them. Nothing here knows about PostgreSQL or HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "LABEL_NAME_RE",
    "METRIC_NAME_RE",
    "METRIC_TYPES",
    "Family",
    "MetricType",
    "Sample",
    "check_metric_name",
]

MetricType = Literal["gauge", "counter"]
METRIC_TYPES: tuple[MetricType, ...] = get_args(MetricType)
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# (label values in the order of Family.labelnames, value)
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What a metric is: name, type, labels (as the collector emits them), help, unit."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    unit: str | None = None
    #: True when the engine prepends the `target` label (collectors bound to a target)
    target: bool = False

    @property
    def exported_labels(self) -> tuple[str, ...]:
        """Labels as they appear in the exposition."""
        return ("target", *self.labels) if self.target else self.labels

    def family(self, samples: tuple[Sample, ...] | list[Sample]) -> Family:
        """A family of this metric with `samples`."""
        return Family(self.name, self.type, self.help, self.labels, tuple(samples))


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: name, type, help, label names and samples."""

    name: str
    type: MetricType
    help: str
    labelnames: tuple[str, ...]
    samples: tuple[Sample, ...]

    def with_const_labels(self, names: tuple[str, ...], values: tuple[str, ...]) -> Family:
        """The same family with constant labels prepended (e.g. target)."""
        if not names:
            return self
        return Family(
            self.name,
            self.type,
            self.help,
            names + self.labelnames,
            tuple((values + lv, v) for lv, v in self.samples),
        )


def check_metric_name(name: str, type_: MetricType, unit: str | None = None) -> str | None:
    """Why `name` breaks Prometheus naming conventions, or None when it is fine."""
    if not METRIC_NAME_RE.match(name):
        return f"{name!r} is not a valid metric name"
    if type_ == "counter" and not name.endswith("_total"):
        return f"counter {name!r} must end with _total"
    if type_ != "counter" and name.endswith("_total"):
        return f"{name!r} ends with _total but is a {type_}; _total is for counters only"
    if unit:
        stem = name[: -len("_total")] if name.endswith("_total") else name
        if not stem.endswith("_" + unit):
            return f"{name!r} has unit {unit!r} and must end with _{unit}" + (
                "_total" if type_ == "counter" else ""
            )
    for bad, good in (("_ms", "_seconds"), ("_milliseconds", "_seconds"), ("_kb", "_bytes"),
                      ("_mb", "_bytes"), ("_minutes", "_seconds"), ("_hours", "_seconds")):
        stem = name[: -len("_total")] if name.endswith("_total") else name
        if stem.endswith(bad):
            return f"{name!r} is not in base units: use {good}"
    return None
