"""The metric model shared by collectors, the engine and the exposition.

A collector returns families built fresh from one snapshot of data; the
engine keeps the last families of every collector; the exposition renders
them. Nothing here knows about PostgreSQL or HTTP.

A histogram family keeps its label names without ``le``; each of its samples
carries one label value more than ``labelnames``, the series it is: an upper
bound (``"0.005"``, ``"+Inf"``) for a ``_bucket`` sample, or ``"sum"`` or
``"count"``. The exposition turns that last value into the suffix and the
``le`` label (`histogram_samples` builds them from cumulative counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LABEL_NAME_RE",
    "METRIC_NAME_RE",
    "METRIC_TYPES",
    "Family",
    "MetricType",
    "Sample",
    "check_metric_name",
    "histogram_samples",
]

MetricType = Literal["gauge", "counter", "histogram"]
#: the types a configured query's value may have (histograms come from Python packs only)
METRIC_TYPES: tuple[MetricType, ...] = ("gauge", "counter")
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


def histogram_samples(labels: tuple[str, ...], bounds: tuple[float, ...],
                      counts: list[float] | tuple[float, ...], total: float) -> list[Sample]:
    """The samples of one histogram series: per-bucket counts (not cumulative), +Inf last.

    `counts` has one entry per bound plus one for observations above the last
    bound; `total` is the sum of the observed values.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(bounds)} bounds need {len(bounds) + 1} counts, got {len(counts)}")
    out: list[Sample] = []
    running = 0.0
    for bound, n in zip(bounds, counts, strict=False):
        running += n
        out.append(((*labels, format_bound(bound)), running))
    running += counts[-1]
    out.append(((*labels, "+Inf"), running))
    out.append(((*labels, "sum"), total))
    out.append(((*labels, "count"), running))
    return out


def format_bound(v: float) -> str:
    """A bucket bound as the le label writes it (0.005, 1, 2.5)."""
    return str(int(v)) if v.is_integer() else repr(v)


def check_metric_name(name: str, type_: MetricType, unit: str | None = None) -> str | None:
    """Why `name` breaks Prometheus naming conventions, or None when it is fine."""
    if not METRIC_NAME_RE.match(name):
        return f"{name!r} is not a valid metric name"
    if type_ == "counter" and not name.endswith("_total"):
        return f"counter {name!r} must end with _total"
    if type_ == "histogram" and name.endswith(("_bucket", "_sum", "_count")):
        return f"histogram {name!r} must not end with _bucket, _sum or _count"
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
