"""The building blocks of every dashboard: catalog-checked expressions, panels, layout.

Every panel is one small function of the settings; every metric is named
through `wasp.mixin.promql` (the catalog), so a renamed metric or label breaks
generation, not a dashboard in production. Thresholds of a panel that shows
what an alert watches come from the same settings field as the alert.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasp.catalog import catalog
from wasp.mixin.promql import SCRAPE_LABELS, Selectors
from wasp.mixin.rules import recording
from wasp.mixin.rules.model import Builder
from wasp.mixin.settings import Settings

__all__ = [
    "BLUE", "DS", "GREEN", "ORANGE", "RED", "TOP_N", "YELLOW", "Dashboard", "Panel", "Row",
    "Target", "age", "agg", "alert_steps", "bad_below_one", "gauge", "labels_of", "layout",
    "ok_mapping", "rate", "red_at", "sel", "stat", "table", "top_table", "ts",
]

#: Grafana 10/11 dashboard JSON model
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
TOP_N = 10
#: labels filtered by a dashboard variable wherever the metric has them
SCOPED_LABELS = (("job", "$job"), ("target", "$target"), ("stanza", "$stanza"),
                 ("salon_id", "$salon_id"))

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"
#: the colour of a panel step at an alert's threshold, by the alert's severity
SEVERITY_COLOURS = {"info": YELLOW, "warning": ORANGE, "page": RED}


# -- expressions -----------------------------------------------------------------------


def sel(name: str, **matchers: str) -> str:
    """A selector for catalog metric `name`, scoped to the dashboard's variables.

    Matchers as in `wasp.mixin.promql`: a value starting with `=~`, `!=` or
    `!~` uses that operator. Unknown metric or label: KeyError/ValueError.
    """
    return Selectors(scoped=SCOPED_LABELS, recorded=recorded(), separator=", ")(name, **matchers)


@functools.cache
def recorded() -> dict[str, tuple[str, ...]]:
    """The recording rules (name -> labels besides job and instance): panels use them."""
    b = Builder(Settings())
    recording.build(b)
    return dict(b.recorded)


def labels_of(name: str) -> tuple[str, ...]:
    """The labels of `name` besides the scrape labels (catalog metric or recording rule)."""
    if name in recorded():
        return recorded()[name]
    return catalog().get(name).labels



def agg(op: str, name: str, by: Sequence[str] = (), *, inner: str | None = None,
        **matchers: str) -> str:
    """`op by (labels) (inner or selector)`, with the grouping labels checked against the catalog."""
    for label in by:
        if label not in labels_of(name):
            raise ValueError(f"metric {name} has no label {label!r} to group by")
    body = inner if inner is not None else sel(name, **matchers)
    return f"{op} by ({', '.join(by)}) ({body})" if by else f"{op}({body})"


def rate(name: str, by: Sequence[str] = (), *, op: str = "sum", fn: str = "rate",
         **matchers: str) -> str:
    """`op by (...) (rate(selector[$__rate_interval]))` of a catalog counter (no op: bare)."""
    entry = catalog().get(name)
    if entry.spec.type != "counter":
        raise ValueError(f"{fn}() of {name}, which is a {entry.spec.type}")
    # increase() too over the rate interval: over $__range every point of a time series
    # would repeat the whole range's total
    rng = "$__rate_interval"
    inner = f"{fn}({sel(name, **matchers)}[{rng}])"
    if not op:
        if by:
            raise ValueError("grouping labels need an aggregation")
        return inner
    return agg(op, name, by, inner=inner)


def age(name: str, by: Sequence[str] = (), **matchers: str) -> str:
    """Seconds since a catalog `..._timestamp_seconds` gauge, at query time."""
    if not name.endswith("_timestamp_seconds"):
        raise ValueError(f"{name} is not a timestamp")
    return f"time() - {agg('max', name, by, **matchers)}"


# -- panels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    """A panel before layout: what it shows and how big it is."""

    title: str
    type: str
    targets: list[Target]
    description: str = ""
    unit: str = "short"
    w: int = 6
    h: int = 6
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, GREEN)])
    mappings: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    transformations: list[dict[str, Any]] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, pid: int, x: int, y: int) -> dict[str, Any]:
        """The panel in Grafana's dashboard JSON model."""
        defaults: dict[str, Any] = {
            "color": {"mode": "thresholds" if self.type in ("stat", "gauge") else "palette-classic"},
            "mappings": self.mappings,
            "thresholds": {"mode": "absolute", "steps": [
                {"color": c, "value": v} for v, c in self.thresholds]},
            "unit": self.unit,
        }
        if self.type == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1,
                                  "showPoints": "never", "spanNulls": False, **self.custom}
        elif self.type == "table":
            defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}, **self.custom}
        for key, val in (("min", self.min), ("max", self.max), ("decimals", self.decimals)):
            if val is not None:
                defaults[key] = val
        out: dict[str, Any] = {
            "datasource": DS,
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "gridPos": {"h": self.h, "w": self.w, "x": x, "y": y},
            "id": pid,
            "options": {**_default_options(self.type), **self.options},
            "targets": [_target_json(t, i, self.type) for i, t in enumerate(self.targets)],
            "title": self.title,
            "type": self.type,
        }
        if self.transformations:
            out["transformations"] = self.transformations
        return out


@dataclass(frozen=True)
class Row:
    """A row header: starts a new line of panels."""

    title: str


def _default_options(kind: str) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if kind == "timeseries":
        return {"legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                           "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "reduceOptions": reduce, "textMode": "auto"}
    if kind == "gauge":
        return {"orientation": "auto", "reduceOptions": reduce, "showThresholdLabels": False,
                "showThresholdMarkers": True}
    if kind == "table":
        return {"cellHeight": "sm", "footer": {"countRows": False, "fields": "",
                                               "reducer": ["sum"], "show": False},
                "showHeader": True}
    raise ValueError(f"unknown panel type {kind}")


def _target_json(t: Target, i: int, kind: str) -> dict[str, Any]:
    instant = t.instant or kind == "table"
    out: dict[str, Any] = {"datasource": DS, "editorMode": "code", "expr": t.expr,
                           "instant": instant, "legendFormat": t.legend or "__auto",
                           "range": not instant, "refId": chr(ord("A") + i)}
    if kind == "table":
        out["format"] = "table"
    return out


def ts(title: str, *targets: Target, unit: str = "short", w: int = 8, h: int = 8,
       description: str = "", **kw: Any) -> Panel:
    """A time series panel."""
    return Panel(title, "timeseries", list(targets), description, unit, w, h, **kw)


def stat(title: str, *targets: Target, unit: str = "short", w: int = 4, h: int = 4,
         description: str = "", **kw: Any) -> Panel:
    """A stat panel (last value)."""
    return Panel(title, "stat", list(targets), description, unit, w, h, **kw)


def gauge(title: str, *targets: Target, unit: str = "percentunit", w: int = 4, h: int = 6,
          description: str = "", **kw: Any) -> Panel:
    """A gauge panel."""
    kw.setdefault("min", 0)
    kw.setdefault("max", 1)
    return Panel(title, "gauge", list(targets), description, unit, w, h, **kw)


def table(title: str, *targets: Target, w: int = 12, h: int = 8, unit: str = "short",
          description: str = "", hide: Sequence[str] = ("Time",), **kw: Any) -> Panel:
    """A table of instant values, one row per series (several queries merged on labels)."""
    tf: list[dict[str, Any]] = []
    if len(targets) > 1:
        tf.append({"id": "merge", "options": {}})
    tf.append({"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True),
                                             "indexByName": {}, "renameByName": {}}})
    return Panel(title, "table", list(targets), description, unit, w, h, transformations=tf, **kw)


def ok_mapping(ok: str = "OK", bad: str = "FAILED") -> list[dict[str, Any]]:
    """Value mapping of a 0/1 gauge."""
    return [{"options": {"0": {"color": RED, "index": 1, "text": bad},
                         "1": {"color": GREEN, "index": 0, "text": ok}}, "type": "value"}]


def alert_steps(*levels: tuple[float, str]) -> list[tuple[float | None, str]]:
    """Threshold steps at alert thresholds: (value, severity), coloured by severity."""
    return [(None, GREEN), *((v, SEVERITY_COLOURS[sev]) for v, sev in levels)]


def red_at(*steps: tuple[float, str]) -> list[tuple[float | None, str]]:
    """Threshold steps starting green."""
    return [(None, GREEN), *steps]


def bad_below_one() -> list[tuple[float | None, str]]:
    """Thresholds for a 0/1 health gauge: red at 0, green at 1."""
    return [(None, RED), (1, GREEN)]


def top_table(title: str, name: str, legend_labels: Sequence[str], expr: str, *,
              unit: str, w: int = 8, description: str = "") -> Panel:
    """A top-N table of one expression, showing its labels and the value."""
    keep = {"Value": 99}
    hide = ["Time", *(lab for lab in labels_of(name) if lab not in legend_labels)]
    p = table(title, Target(expr), w=w, unit=unit, description=description, hide=hide)
    p.transformations[-1]["options"]["indexByName"] = {
        **{lab: i for i, lab in enumerate(legend_labels)}, **keep}
    p.options["sortBy"] = [{"desc": True, "displayName": "Value"}]
    return p


# -- variables and dashboard -----------------------------------------------------------


def _datasource_var() -> dict[str, Any]:
    return {"current": {}, "hide": 0, "includeAll": False, "label": "Data source",
            "multi": False, "name": "datasource", "options": [], "query": "prometheus",
            "refresh": 1, "regex": "", "skipUrlSync": False, "type": "datasource"}


def _query_var(name: str, label: str, metric: str) -> dict[str, Any]:
    if name not in (*SCRAPE_LABELS, *labels_of(metric)):
        raise ValueError(f"metric {metric} has no label {name!r}")
    q = f"label_values({metric}, {name})"
    return {"allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "datasource": DS, "definition": q, "hide": 0,
            "includeAll": True, "label": label, "multi": True, "name": name, "options": [],
            "query": {"qryType": 1, "query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1, "type": "query"}


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: identity, variables and the panel functions in display order."""

    uid: str
    title: str
    description: str
    panels: tuple[Callable[[Settings], Panel | Row], ...]
    variables: tuple[tuple[str, str, str], ...] = (("job", "Job", "wasp_target_up"),
                                                   ("target", "Target", "wasp_target_up"))
    tags: tuple[str, ...] = ()
    refresh: str = "1m"
    time_from: str = "now-6h"

    @property
    def filename(self) -> str:
        """File name under dashboards/."""
        return f"{self.uid.removeprefix('wasp-')}.json"

    def build(self, s: Settings) -> dict[str, Any]:
        """The dashboard JSON model."""
        return {
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [{"asDropdown": True, "icon": "external link", "includeVars": True,
                       "keepTime": True, "tags": ["wasp"], "targetBlank": False,
                       "title": "wasp dashboards", "type": "dashboards"}],
            "panels": layout(f(s) for f in self.panels),
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["wasp", *self.tags],
            "templating": {"list": [_datasource_var(),
                                    *(_query_var(*v) for v in self.variables)]},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def layout(items: Iterable[Panel | Row]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at 24 columns; a Row starts a new line."""
    out: list[dict[str, Any]] = []
    x = y = line_h = 0
    pid = 0
    for item in items:
        pid += 1
        if isinstance(item, Row):
            y += line_h
            x = line_h = 0
            out.append({"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                        "id": pid, "panels": [], "title": item.title, "type": "row"})
            y += 1
            continue
        if item.w > 24:
            raise ValueError(f"panel {item.title!r} is wider than 24 columns")
        if x + item.w > 24:
            y += line_h
            x = line_h = 0
        out.append(item.to_json(pid, x, y))
        x += item.w
        line_h = max(line_h, item.h)
    return out

