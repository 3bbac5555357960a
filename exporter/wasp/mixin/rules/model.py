"""Rules and their proofs as data: alerts, recording rules, promtool cases, and the builder.

An alert carries its expression, severity, annotations and the cases that
prove it (input series, when to evaluate, what must fire). Its `for` comes
from the settings (`Settings.for_of`), never from a literal here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasp.mixin.promql import Selectors, labels_of, num
from wasp.mixin.settings import SEVERITIES, Settings

if TYPE_CHECKING:
    from wasp.mixin.rules.boundary import Probe

__all__ = [
    "Alert",
    "Builder",
    "Case",
    "Fired",
    "Group",
    "Recording",
    "RecordingCase",
    "S",
    "Series",
    "T",
    "series",
    "st",
    "t",
    "two",
]


@dataclass(frozen=True, slots=True)
class Series:
    """One promtool input series: metric (from the catalog), labels, values notation."""

    metric: str
    labels: Mapping[str, str]
    values: str


@dataclass(frozen=True, slots=True)
class Fired:
    """An alert expected to fire: its labels (without alertname and severity) and value."""

    labels: Mapping[str, str]
    value: float
    severity: str


@dataclass(frozen=True, slots=True)
class Case:
    """A scenario: input series, when to evaluate, and the alerts that must fire (none: quiet)."""

    title: str
    series: tuple[Series, ...]
    at: str
    fires: tuple[Fired, ...] = ()
    interval: str = "1m"


@dataclass(frozen=True, slots=True)
class Alert:
    """An alerting rule with its annotations and the cases proving it."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    metrics: frozenset[str]
    cases: tuple[Case, ...] = ()
    #: drives the expression for the boundary cases (on the first severity of a name)
    probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording rule."""

    record: str
    expr: str
    metrics: frozenset[str]
    cases: tuple[RecordingCase, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingCase:
    """Input series and the samples a recording rule must produce from them at `at`."""

    series: tuple[Series, ...]
    at: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


@dataclass(slots=True)
class Group:
    """A rule group under construction."""

    name: str
    alerts: list[Alert] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)


# labels of the test series
T = {"instance": "wasp-1:9645", "job": "wasp", "target": "main"}
S = {"instance": "wasp-1:9645", "job": "wasp", "stanza": "main"}


def series(metric: str, values: str, **labels: str) -> Series:
    """A test input series; the metric must exist and carry exactly these labels."""
    if set(labels) != set(labels_of(metric)):
        raise ValueError(f"test series {metric} has labels {sorted(labels)}, "
                         f"the catalog says {sorted(labels_of(metric))}")
    return Series(metric, labels, values)


def t(**labels: str) -> dict[str, str]:
    """The labels of a target's test series, plus `labels`."""
    return {**T, **labels}


def st(**labels: str) -> dict[str, str]:
    """The labels of a stanza's test series, plus `labels`."""
    return {**S, **labels}


class Builder:
    """Collects groups, alerts and recordings, all built from one settings object."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.groups: list[Group] = []
        #: recording rules built so far: name -> labels (besides job and instance)
        self.recorded: dict[str, tuple[str, ...]] = {}

    def q(self) -> Selectors:
        """A selector builder that knows the catalog and the recording rules built so far."""
        return Selectors(fixed=self.cfg.selector, recorded=self.recorded)

    def group(self, name: str) -> Group:
        """A new rule group, kept in creation order."""
        g = Group(name)
        self.groups.append(g)
        return g

    def alert(self, g: Group, name: str, severity: str, q: Selectors, expr: str,
              summary: str, description: str, cases: Iterable[Case] = (),
              probe: Probe | None = None) -> None:
        """Add an alerting rule; `q` is the builder its expression was written with."""
        assert severity in SEVERITIES, severity
        g.alerts.append(Alert(name, severity, _clean(expr), self.cfg.for_of(name, severity),
                              summary, description, frozenset(q.metrics), tuple(cases),
                              probe))

    def attach(self, g: Group, probes: Mapping[str, Probe]) -> None:
        """Give the first rule of every alert name in `g` its probe.

        An alert without a probe builds, but is uncovered: it has no generated boundary
        cases and no mutants (`wasp.mixin.rules.uncovered` lists them; the mutation test
        fails on them).
        """
        names = {a.name for a in g.alerts}
        if extra := set(probes) - names:
            raise ValueError(f"{g.name}: probes without an alert {sorted(extra)}")
        seen: set[str] = set()
        for i, a in enumerate(g.alerts):
            if a.name not in seen and a.name in probes:
                seen.add(a.name)
                g.alerts[i] = dataclasses.replace(a, probe=probes[a.name])

    def record(self, g: Group, record: str, labels: tuple[str, ...], q: Selectors, expr: str,
               cases: Iterable[RecordingCase] = ()) -> str:
        """Add a recording rule whose series carry `labels` (besides job and instance)."""
        self.recorded[record] = labels
        g.recordings.append(Recording(record, _clean(expr), frozenset(q.metrics), tuple(cases)))
        return record


def two(b: Builder, g: Group, name: str, q: Selectors, expr: str,
        levels: tuple[tuple[str, float], ...], summary: str, description: str,
        cases: Iterable[Case], probe: Probe | None = None) -> None:
    """One alert name at two severities: expr holds `{threshold}`."""
    cases = list(cases)
    for severity, threshold in levels:
        first = severity == levels[0][0]
        b.alert(g, name, severity, q, expr.replace("{threshold}", num(threshold)),
                summary, description, cases if first else (), probe if first else None)


def _clean(expr: str) -> str:
    return "\n".join(line.rstrip() for line in expr.strip().splitlines())
