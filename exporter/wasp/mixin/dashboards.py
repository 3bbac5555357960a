"""Generate the Grafana dashboards (dashboards/*.json) from the metric catalog.

Every panel is one small function; every metric is named through
`catalog().get(...)` and every label matcher is checked against the catalog's
labels for that metric, so a renamed metric or label breaks generation (and
its test), not a dashboard in production. The output is deterministic: sorted
keys, stable uids, panel ids and grid positions assigned in order.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasp.catalog import catalog

__all__ = ["DASHBOARDS", "Panel", "add_arguments", "build_all", "main", "render", "sel"]

#: Grafana 10/11 dashboard JSON model
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
TOP_N = 10
#: labels filtered by a dashboard variable wherever the metric has them
SCOPED_LABELS = {"target": "$target", "stanza": "$stanza"}

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


# -- expressions -----------------------------------------------------------------------


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sel(name: str, **matchers: str) -> str:
    """A selector for catalog metric `name`, scoped to the dashboard's variables.

    Matchers are `label="value"`; a value starting with `~`, `!~` or `!` makes
    it `=~`, `!~` or `!=`. Unknown metric or label: KeyError/ValueError.
    """
    entry = catalog().get(name)
    parts = []
    for label, var in SCOPED_LABELS.items():
        if label in entry.labels and label not in matchers:
            parts.append(f"{label}=~{_quote(var)}")
    for label, value in matchers.items():
        if label not in entry.labels:
            raise ValueError(f"metric {name} has no label {label!r} (labels: {entry.labels})")
        op = "="
        for prefix, o in (("!~", "!~"), ("~", "=~"), ("!", "!=")):
            if value.startswith(prefix):
                op, value = o, value[len(prefix):]
                break
        parts.append(f"{label}{op}{_quote(value)}")
    return f"{name}{{{', '.join(parts)}}}" if parts else name


def labels_of(name: str) -> tuple[str, ...]:
    """The catalog labels of `name`."""
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
    rng = "$__rate_interval" if fn in ("rate", "irate") else "$__range"
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
    if name not in labels_of(metric):
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
    panels: tuple[Callable[[], Panel | Row], ...]
    variables: tuple[tuple[str, str, str], ...] = (("target", "Target", "wasp_target_up"),)
    tags: tuple[str, ...] = ()
    refresh: str = "1m"
    time_from: str = "now-6h"

    @property
    def filename(self) -> str:
        """File name under dashboards/."""
        return f"{self.uid.removeprefix('wasp-')}.json"

    def build(self) -> dict[str, Any]:
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
            "panels": layout(f() for f in self.panels),
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


# -- 1. Business -----------------------------------------------------------------------


def bookings_created_1h() -> Panel:
    """Bookings created in the last hour, by current status."""
    return ts("Bookings created (last 1h) by status",
              Target(agg("sum", "wasp_app_bookings_created", ("status",), window="1h"),
                     "{{status}}"))


def bookings_created_24h() -> Panel:
    """Bookings created in the last 24 hours, by current status."""
    return ts("Bookings created (last 24h) by status",
              Target(agg("sum", "wasp_app_bookings_created", ("status",), window="24h"),
                     "{{status}}"))


def bookings_upcoming() -> Panel:
    """Bookings starting in the next 24 hours, by status."""
    return ts("Upcoming bookings (next 24h) by status",
              Target(agg("sum", "wasp_app_bookings_upcoming", ("status",), horizon="24h"),
                     "{{status}}"))


def cancellations() -> Panel:
    """Cancellations and no-shows of the last 24 hours."""
    return stat("Cancelled / no-show (24h)",
                Target(agg("sum", "wasp_app_bookings_cancelled", window="24h"), "cancelled"),
                Target(agg("sum", "wasp_app_bookings_no_show", window="24h"), "no-show"),
                w=6, options={"colorMode": "none"})


def double_bookings() -> Panel:
    """Upcoming bookings overlapping another of the same master."""
    return stat("Double bookings (upcoming)",
                Target(agg("sum", "wasp_app_bookings_double_booked")),
                description="Upcoming non-cancelled bookings that overlap another booking of "
                "the same salon and master.", thresholds=red_at((1, RED)),
                options={"colorMode": "background", "graphMode": "none"})


def reminders_overdue() -> Panel:
    """Overdue reminders and how long the oldest has been due."""
    return stat("Reminders overdue",
                Target(agg("sum", "wasp_app_reminders_overdue"), "overdue"),
                thresholds=red_at((1, ORANGE), (50, RED)),
                options={"colorMode": "background", "graphMode": "none"})


def reminders_oldest() -> Panel:
    """Age of the oldest overdue reminder."""
    return stat("Oldest overdue reminder",
                Target(agg("max", "wasp_app_reminders_overdue_oldest_age_seconds")),
                unit="s", thresholds=red_at((300, ORANGE), (900, RED)),
                options={"graphMode": "none"})


def whatsapp_messages() -> Panel:
    """WhatsApp messages of the last hour by direction and status."""
    return ts("WhatsApp messages (last 1h) by direction / status",
              Target(agg("sum", "wasp_app_whatsapp_messages", ("direction", "status"),
                         window="1h"), "{{direction}} {{status}}"), w=12)


def outbound_failure_ratio() -> Panel:
    """Share of outbound messages of the last hour that failed."""
    failed = agg("sum", "wasp_app_whatsapp_outbound_failed", ("target",), window="1h")
    sent = agg("sum", "wasp_app_whatsapp_messages", ("target",), window="1h",
               direction="OUTBOUND")
    return stat("Outbound failure ratio (1h)",
                Target(f"{failed} / clamp_min({sent}, 1)", "{{target}}"),
                unit="percentunit", decimals=2, thresholds=red_at((0.02, ORANGE), (0.05, RED)),
                options={"colorMode": "background"})


def whatsapp_cost() -> Panel:
    """WhatsApp cost of the last 24 hours."""
    return stat("WhatsApp cost (24h)",
                Target(agg("sum", "wasp_app_whatsapp_cost_usd", window="24h")),
                unit="currencyUSD", decimals=2, options={"colorMode": "none"})


def conversations_active() -> Panel:
    """Conversations with a message in the last 30 minutes."""
    return stat("Active conversations (30m)",
                Target(agg("sum", "wasp_app_conversations_active", window="30m")),
                options={"colorMode": "none"})


def conversations_by_status() -> Panel:
    """Conversations by status."""
    return ts("Conversations by status",
              Target(agg("sum", "wasp_app_conversations", ("status",)), "{{status}}"), w=8)


def ai_tokens() -> Panel:
    """AI tokens of the last hour by model."""
    return ts("AI tokens (last 1h) by model",
              Target(agg("sum", "wasp_app_ai_tokens", ("model",), window="1h", model="!"),
                     "{{model}}"))


def ai_cost() -> Panel:
    """AI cost of the last 24 hours by model."""
    return ts("AI cost (last 24h) by model",
              Target(agg("sum", "wasp_app_ai_cost_usd", ("model",), window="24h"),
                     "{{model}}"), unit="currencyUSD")


def ai_messages() -> Panel:
    """AI messages of the last hour by model and direction."""
    return ts("AI messages (last 1h) by model / direction",
              Target(agg("sum", "wasp_app_ai_messages", ("model", "direction"), window="1h"),
                     "{{model}} {{direction}}"))


def ai_latency() -> Panel:
    """AI response time percentiles of the last hour, by model."""
    return ts("AI response time (last 1h): p50 / p95 / max",
              Target(agg("max", "wasp_app_ai_response_time_p50_seconds", ("model",),
                         window="1h"), "p50 {{model}}"),
              Target(agg("max", "wasp_app_ai_response_time_p95_seconds", ("model",),
                         window="1h"), "p95 {{model}}"),
              Target(agg("max", "wasp_app_ai_response_time_max_seconds", ("model",),
                         window="1h"), "max {{model}}"),
              unit="s", w=12)


def ai_mean_latency() -> Panel:
    """Mean AI response time of the last hour, by model."""
    s = agg("sum", "wasp_app_ai_response_time_sum_seconds", ("model",), window="1h")
    n = agg("sum", "wasp_app_ai_timed_responses", ("model",), window="1h")
    return ts("AI mean response time (last 1h)", Target(f"{s} / {n}", "{{model}}"),
              unit="s", w=12)


def webhook_newest_age() -> Panel:
    """Time since the newest webhook of any type: the silent-integration alarm."""
    return stat("Newest webhook age",
                Target(age("wasp_app_webhook_newest_timestamp_seconds", ("target",)),
                       "{{target}}"),
                unit="s", w=6, h=6, thresholds=red_at((300, ORANGE), (600, RED)),
                description="Time since the newest webhook log of any type. Red above 10 "
                "minutes: a silent WhatsApp integration shows here, not in any count.",
                options={"colorMode": "background", "graphMode": "none", "textMode": "value"})


def webhooks_by_type() -> Panel:
    """Webhook events of the last hour by type and status."""
    return ts("Webhooks (last 1h) by type / status",
              Target(agg("sum", "wasp_app_webhook_events", ("event_type", "status"),
                         window="1h"), "{{event_type}} {{status}}"), w=12, h=6)


def webhook_failures() -> Panel:
    """Failed webhook handlers of the last hour."""
    return stat("Webhook failures (1h)",
                Target(agg("sum", "wasp_app_webhook_failures", window="1h")),
                w=6, h=6, thresholds=red_at((1, ORANGE), (20, RED)))


def webhook_last_seen() -> Panel:
    """Time since each webhook type was last seen."""
    expr = age("wasp_app_webhook_last_seen_timestamp_seconds", ("event_type",), window="24h")
    return table("Webhook last seen, per type", Target(expr), w=8, unit="s",
                 thresholds=red_at((600, ORANGE), (3600, RED)),
                 custom={"cellOptions": {"type": "color-text"}},
                 description="A type silent for a whole day disappears from this table.")


def webhook_processing() -> Panel:
    """Mean and longest webhook processing time by type."""
    s = agg("sum", "wasp_app_webhook_processing_time_sum_seconds", ("event_type",), window="1h")
    n = agg("sum", "wasp_app_webhook_timed_events", ("event_type",), window="1h")
    return ts("Webhook processing time (last 1h)",
              Target(f"{s} / {n}", "mean {{event_type}}"),
              Target(agg("max", "wasp_app_webhook_processing_time_max_seconds", ("event_type",),
                         window="1h"), "max {{event_type}}"),
              unit="s", w=16)


def salons_active() -> Panel:
    """Active salons."""
    return stat("Salons active", Target(agg("sum", "wasp_app_salons", active="true")),
                options={"colorMode": "none"})


def salons_near_limit() -> Panel:
    """Active salons near their plan limit, by resource."""
    return stat("Salons near plan limit",
                Target(agg("sum", "wasp_app_salons_near_plan_limit", ("resource",)),
                       "{{resource}}"), w=8, thresholds=red_at((1, YELLOW)))


def salons_by_trial() -> Panel:
    """Salons by active flag and trial status."""
    return ts("Salons by trial status",
              Target(agg("sum", "wasp_app_salons", ("active", "trial_status")),
                     "active={{active}} {{trial_status}}"), w=12)


def _top_salons(title: str, name: str, window: str, unit: str) -> Panel:
    expr = f"topk({TOP_N}, {agg('sum', name, ('salon_id',), window=window, salon_id='!other')})"
    return top_table(title, name, ("salon_id",), expr, unit=unit,
                     description="Needs packs.app.options.top_salons > 0 (off by default).")


def top_salons_bookings() -> Panel:
    """Top salons by bookings created in the last 24 hours."""
    return _top_salons(f"Top {TOP_N} salons: bookings (24h)", "wasp_app_salon_bookings_created",
                       "24h", "short")


def top_salons_messages() -> Panel:
    """Top salons by WhatsApp messages in the last hour."""
    return _top_salons(f"Top {TOP_N} salons: WhatsApp messages (1h)",
                       "wasp_app_salon_whatsapp_messages", "1h", "short")


def top_salons_ai_cost() -> Panel:
    """Top salons by AI cost in the last 24 hours."""
    return _top_salons(f"Top {TOP_N} salons: AI cost (24h)", "wasp_app_salon_ai_cost_usd",
                       "24h", "currencyUSD")


BUSINESS = Dashboard(
    "wasp-business", "wasp / Business",
    "Bookings, WhatsApp messages and cost, AI assistant, webhooks and salons (the app pack).",
    (lambda: Row("Webhooks"), webhook_newest_age, webhooks_by_type, webhook_failures,
     webhook_last_seen, webhook_processing,
     lambda: Row("Bookings"), bookings_created_1h, bookings_created_24h, bookings_upcoming,
     cancellations, double_bookings, reminders_overdue, reminders_oldest,
     lambda: Row("WhatsApp"), whatsapp_messages, outbound_failure_ratio, whatsapp_cost,
     conversations_active, conversations_by_status,
     lambda: Row("AI assistant"), ai_tokens, ai_cost, ai_messages, ai_latency, ai_mean_latency,
     lambda: Row("Salons"), salons_active, salons_near_limit, salons_by_trial,
     top_salons_bookings, top_salons_messages, top_salons_ai_cost),
    tags=("business",),
)


# -- 2. PostgreSQL ---------------------------------------------------------------------


def pg_up() -> Panel:
    """Whether the exporter reaches each target."""
    return stat("Up", Target(sel("wasp_target_up"), "{{target}}"), thresholds=bad_below_one(),
                mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def pg_version() -> Panel:
    """Server version of each target."""
    return stat("Version", Target(sel("wasp_pg_server_info"), "{{target}}: {{version}}"),
                options={"colorMode": "none", "graphMode": "none", "textMode": "name"})


def pg_uptime() -> Panel:
    """Time since the postmaster started."""
    return stat("Uptime", Target(sel("wasp_pg_uptime_seconds"), "{{target}}"), unit="s",
                thresholds=[(None, ORANGE), (3600, GREEN)], options={"graphMode": "none"})


def pg_role() -> Panel:
    """Primary or standby."""
    return stat("Role", Target(sel("wasp_pg_in_recovery"), "{{target}}"),
                mappings=[{"options": {"0": {"color": BLUE, "index": 0, "text": "primary"},
                                       "1": {"color": "purple", "index": 1, "text": "standby"}},
                           "type": "value"}],
                options={"graphMode": "none"})


def pg_pending_restart() -> Panel:
    """Settings waiting for a restart."""
    return stat("Settings pending restart",
                Target(sel("wasp_pg_settings_pending_restart"), "{{target}}"),
                thresholds=red_at((1, YELLOW)), options={"graphMode": "none"})


def pg_connection_usage() -> Panel:
    """Client connections over max_connections."""
    used = agg("sum", "wasp_pg_connections", ("target",))
    return gauge("Connections used",
                 Target(f"{used} / on (target) {sel('wasp_pg_max_connections')}", "{{target}}"),
                 w=4, h=4, thresholds=red_at((0.75, ORANGE), (0.9, RED)))


def pg_connections() -> Panel:
    """Client connections by state, against max_connections."""
    return ts("Connections by state vs max_connections",
              Target(agg("sum", "wasp_pg_connections", ("target", "state")),
                     "{{target}} {{state}}"),
              Target(sel("wasp_pg_max_connections"), "{{target}} max_connections"),
              w=12, custom={"stacking": {"group": "A", "mode": "none"}},
              overrides=[{"matcher": {"id": "byRegexp", "options": ".*max_connections"},
                          "properties": [{"id": "custom.lineStyle",
                                          "value": {"dash": [10, 10], "fill": "dash"}},
                                         {"id": "color", "value": {"fixedColor": RED,
                                                                   "mode": "fixed"}}]}])


def pg_oldest_xact() -> Panel:
    """Oldest open transaction and longest idle-in-transaction."""
    return ts("Oldest transaction / idle in transaction",
              Target(sel("wasp_pg_oldest_transaction_age_seconds"), "{{target}} oldest xact"),
              Target(sel("wasp_pg_oldest_idle_in_transaction_age_seconds"),
                     "{{target}} idle in xact"),
              unit="s", w=12)


def pg_locks() -> Panel:
    """Sessions waiting for locks, blocked and blocking."""
    return ts("Locks: waiting / blocked / blocking",
              Target(sel("wasp_pg_lock_waiting_sessions"), "{{target}} waiting"),
              Target(sel("wasp_pg_blocked_sessions"), "{{target}} blocked"),
              Target(sel("wasp_pg_blocking_sessions"), "{{target}} blocking"))


def pg_lock_wait() -> Panel:
    """Longest current lock wait."""
    return ts("Longest lock wait", Target(sel("wasp_pg_lock_wait_longest_seconds"), "{{target}}"),
              unit="s")


def pg_commits() -> Panel:
    """Commits and rollbacks per second."""
    return ts("Commits / rollbacks per second",
              Target(rate("wasp_pg_database_commits_total", ("target",)), "{{target}} commits"),
              Target(rate("wasp_pg_database_rollbacks_total", ("target",)),
                     "{{target}} rollbacks"), unit="ops")


def pg_cache_hit() -> Panel:
    """Buffer cache hit ratio."""
    hit = rate("wasp_pg_database_blocks_hit_total", ("target",))
    read = rate("wasp_pg_database_blocks_read_total", ("target",))
    return ts("Cache hit ratio", Target(f"{hit} / clamp_min({hit} + {read}, 1)", "{{target}}"),
              unit="percentunit", max=1)


def pg_temp_bytes() -> Panel:
    """Temporary file bytes written per second."""
    return ts("Temp bytes written",
              Target(rate("wasp_pg_database_temp_bytes_total", ("target", "database")),
                     "{{target}} {{database}}"), unit="Bps")


def pg_deadlocks() -> Panel:
    """Deadlocks detected."""
    return ts("Deadlocks",
              Target(rate("wasp_pg_database_deadlocks_total", ("target", "database"),
                          fn="increase"), "{{target}} {{database}}"),
              description="Deadlocks in the selected time range.",
              custom={"drawStyle": "bars"})


def pg_tuples() -> Panel:
    """Rows fetched, returned, inserted, updated and deleted per second."""
    ops = ("fetched", "returned", "inserted", "updated", "deleted")
    return ts("Tuples per second",
              *(Target(rate(f"wasp_pg_database_tuples_{op}_total", ("target",)),
                       f"{{{{target}}}} {op}") for op in ops), unit="ops", w=12)


def pg_db_size() -> Panel:
    """Database sizes."""
    return ts("Database size",
              Target(sel("wasp_pg_database_size_bytes"), "{{target}} {{database}}"),
              unit="bytes", w=12)


def pg_xid_age() -> Panel:
    """Transaction ID age against autovacuum_freeze_max_age."""
    xid = agg("max", "wasp_pg_database_xid_age", ("target",))
    return ts("XID age vs autovacuum_freeze_max_age",
              Target(xid, "{{target}} xid age"),
              Target(sel("wasp_pg_autovacuum_freeze_max_age"), "{{target}} freeze max age"),
              description="Autovacuum forces a freeze at autovacuum_freeze_max_age; "
              "wraparound is at 2^31.")


def pg_xid_ratio() -> Panel:
    """XID age as a share of the wraparound limit."""
    xid = agg("max", "wasp_pg_database_xid_age", ("target",))
    return gauge("XID wraparound used", Target(f"{xid} / 2^31", "{{target}}"),
                 thresholds=red_at((0.5, ORANGE), (0.75, RED)))


def pg_checkpoints() -> Panel:
    """Checkpoints per minute by kind."""
    return ts("Checkpoints per minute",
              Target(f"60 * {rate('wasp_pg_checkpoints_total', ('target', 'kind'))}",
                     "{{target}} {{kind}}"), w=6)


def pg_wal_rate() -> Panel:
    """WAL generated per second."""
    return ts("WAL bytes per second",
              Target(rate("wasp_pg_wal_bytes_total", ("target",)), "{{target}}"),
              unit="Bps", w=6)


def pg_archiver() -> Panel:
    """Archiver: pending files and failures."""
    return ts("Archiver: pending files / failures",
              Target(sel("wasp_pg_archiver_pending_files"), "{{target}} pending"),
              Target(rate("wasp_pg_archiver_failed_total", ("target",), fn="increase"),
                     "{{target}} failed in range"), w=6)


def pg_archiver_age() -> Panel:
    """Time since the last WAL file was archived."""
    return stat("Last WAL archived",
                Target(sel("wasp_pg_archiver_last_archived_age_seconds"), "{{target}}"),
                unit="s", w=6, h=8, thresholds=red_at((300, ORANGE), (900, RED)),
                description="Grows on an idle database too; read it with the pending files.")


def pg_top_table_size() -> Panel:
    """Largest tables."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_size_bytes', table='!(other)')})"
    return top_table(f"Top {TOP_N} tables by size", "wasp_pg_table_size_bytes",
                     ("target", "schema", "table"), expr, unit="bytes")


def pg_top_dead_tuples() -> Panel:
    """Tables with the most dead tuples."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_dead_tuples', table='!(other)')})"
    return top_table(f"Top {TOP_N} tables by dead tuples", "wasp_pg_table_dead_tuples",
                     ("target", "schema", "table"), expr, unit="short")


def pg_top_bloat() -> Panel:
    """Tables with the highest estimated bloat."""
    expr = f"topk({TOP_N}, {sel('wasp_pg_table_bloat_ratio')})"
    return top_table(f"Top {TOP_N} tables by estimated bloat", "wasp_pg_table_bloat_ratio",
                     ("target", "schema", "table"), expr, unit="percentunit",
                     description="An estimate that reads a little high; worry above 0.5.")


def pg_unused_indexes() -> Panel:
    """Indexes never scanned since the statistics reset."""
    return stat("Unused indexes",
                Target(sel("wasp_pg_unused_indexes"), "{{target}} count"),
                Target(sel("wasp_pg_unused_indexes_size_bytes"), "{{target}} size"),
                w=8, h=8, options={"colorMode": "none", "graphMode": "none"},
                overrides=[{"matcher": {"id": "byRegexp", "options": ".* size"},
                            "properties": [{"id": "unit", "value": "bytes"}]}],
                description="Constraint indexes are left out; 'never' is since the last "
                "statistics reset.")


def pg_top_statements() -> Panel:
    """Statements by execution time, with calls and mean time."""
    exec_rate = rate("wasp_pg_statement_exec_time_seconds_total",
                     ("target", "queryid", "fingerprint"), queryid="!(other)")
    calls = rate("wasp_pg_statement_calls_total", ("target", "queryid", "fingerprint"),
                 queryid="!(other)")
    mean = sel("wasp_pg_statement_mean_exec_time_seconds", queryid="!(other)")
    p = table(f"Top {TOP_N} statements by execution time",
              Target(f"topk({TOP_N}, {exec_rate})"), Target(calls), Target(mean), w=24, h=10,
              description="Execution seconds per second (share of one core), calls per "
              "second and mean time since the statistics began.")
    p.transformations.insert(0, {"id": "filterByValue", "options": {
        "filters": [{"config": {"id": "isNull", "options": {}}, "fieldName": "Value #A"}],
        "match": "any", "type": "exclude"}})
    p.transformations[-1]["options"]["renameByName"] = {
        "Value #A": "exec s/s", "Value #B": "calls/s", "Value #C": "mean"}
    p.options["sortBy"] = [{"desc": True, "displayName": "exec s/s"}]
    p.overrides = [
        {"matcher": {"id": "byName", "options": "mean"},
         "properties": [{"id": "unit", "value": "s"}]},
        {"matcher": {"id": "byName", "options": "calls/s"},
         "properties": [{"id": "unit", "value": "ops"}]},
        {"matcher": {"id": "byName", "options": "exec s/s"},
         "properties": [{"id": "unit", "value": "percentunit"}]}]
    return p


POSTGRES = Dashboard(
    "wasp-postgres", "wasp / PostgreSQL",
    "Server health, connections, transactions, vacuum and wraparound, WAL, tables and "
    "statements (the postgres pack).",
    (lambda: Row("Server"), pg_up, pg_version, pg_uptime, pg_role, pg_pending_restart,
     pg_connection_usage,
     lambda: Row("Connections and locks"), pg_connections, pg_oldest_xact, pg_locks,
     pg_lock_wait, pg_deadlocks,
     lambda: Row("Throughput"), pg_commits, pg_cache_hit, pg_temp_bytes, pg_tuples, pg_db_size,
     lambda: Row("Vacuum, checkpoints and WAL"), pg_xid_age, pg_xid_ratio, pg_checkpoints,
     pg_wal_rate, pg_archiver, pg_archiver_age,
     lambda: Row("Tables and indexes"), pg_top_table_size, pg_top_dead_tuples, pg_top_bloat,
     pg_unused_indexes,
     lambda: Row("Statements"), pg_top_statements),
    tags=("postgres",),
)


# -- 3. Replication and backups --------------------------------------------------------


def repl_standbys() -> Panel:
    """Standbys connected to each primary, and streaming."""
    return stat("Standbys connected / streaming",
                Target(sel("wasp_pg_replication_connected_standbys"), "{{target}} connected"),
                Target(sel("wasp_pg_replication_streaming_standbys"), "{{target}} streaming"),
                w=6, thresholds=[(None, RED), (1, ORANGE), (2, GREEN)],
                options={"graphMode": "none"})


def repl_receiver() -> Panel:
    """Whether each standby's WAL receiver streams."""
    return stat("WAL receiver streaming",
                Target(sel("wasp_pg_standby_wal_receiver_streaming"), "{{target}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("streaming", "NOT streaming"),
                options={"colorMode": "background", "graphMode": "none"})


def repl_timeline() -> Panel:
    """Timeline of every server."""
    return stat("Timeline", Target(sel("wasp_pg_timeline_id"), "{{target}}"), w=6,
                options={"colorMode": "none", "graphMode": "none"},
                description="A promotion increments it; servers of one cluster should agree.")


def repl_last_failover() -> Panel:
    """Time since the last `wasp replica promote`."""
    return stat("Last failover",
                Target(age("wasp_replica_failover_last_timestamp_seconds", ("replica",)),
                       "{{replica}}"),
                Target(agg("max", "wasp_replica_failover_last_accepted_lag_bytes", ("replica",)),
                       "{{replica}} accepted lag"),
                unit="s", w=6, options={"colorMode": "none", "graphMode": "none"},
                overrides=[{"matcher": {"id": "byRegexp", "options": ".*accepted lag"},
                            "properties": [{"id": "unit", "value": "bytes"}]}])


def repl_replay_delay() -> Panel:
    """Replay delay on each standby and as each primary sees it."""
    return ts("Replay delay per standby",
              Target(sel("wasp_pg_standby_replay_delay_seconds"), "{{target}} (standby)"),
              Target(sel("wasp_pg_replication_standby_replay_lag_seconds"),
                     "{{application_name}} (seen by {{target}})"),
              unit="s", w=12)


def repl_lag_bytes() -> Panel:
    """Replay lag in bytes as each primary sees it, and the standby's own gap."""
    return ts("Replication lag (bytes)",
              Target(sel("wasp_pg_replication_standby_replay_lag_bytes"),
                     "{{application_name}} replay (seen by {{target}})"),
              Target(sel("wasp_pg_standby_replay_gap_bytes"), "{{target}} receive-replay gap"),
              unit="bytes", w=12)


def repl_heartbeat() -> Panel:
    """Heartbeat age: the end-to-end delay a standby sees."""
    return ts("Heartbeat age",
              Target(age("wasp_pg_heartbeat_timestamp_seconds", ("target",)), "{{target}}"),
              unit="s", w=12, thresholds=red_at((30, ORANGE), (120, RED)),
              custom={"thresholdsStyle": {"mode": "line"}},
              description="Age of the row `wasp replica heartbeat` rewrites on the primary. "
              "Ages on a broken link even when LSN lag reads 0.")


def repl_slot_retained() -> Panel:
    """WAL retained by each replication slot."""
    return ts("Slots: retained WAL",
              Target(sel("wasp_pg_replication_slot_wal_retained_bytes"),
                     "{{target}} {{slot_name}}"), unit="bytes", w=12)


def repl_slots() -> Panel:
    """One row per slot: its wal_status, valued by whether a consumer is connected."""
    keys = ("target", "slot_name", "slot_type")
    status = agg("max", "wasp_pg_replication_slot_wal_status", (*keys, "wal_status"),
                  inner=f"{sel('wasp_pg_replication_slot_wal_status')} == 1")
    active = agg("max", "wasp_pg_replication_slot_active", keys)
    expr = f"{status} * on ({', '.join(keys)}) group_left {active}"
    p = table("Slots: wal_status and active", Target(expr), w=12, thresholds=bad_below_one(),
              mappings=ok_mapping("active", "INACTIVE"),
              custom={"cellOptions": {"type": "color-text"}},
              description="An inactive slot retains WAL until max_slot_wal_keep_size; "
              "wal_status 'lost' means the standby must be rebuilt.")
    p.transformations[-1]["options"]["renameByName"] = {"Value": "active"}
    return p


def backup_good_age() -> Panel:
    """Age of the newest drill-proven backup of each type."""
    return stat("Newest good backup (drill-proven)",
                Target(agg("min", "wasp_backup_last_good_age_seconds", ("type",)), "{{type}}"),
                unit="s", w=8, thresholds=red_at((2 * 86400, ORANGE), (8 * 86400, RED)),
                options={"colorMode": "background", "graphMode": "none"},
                description="A backup is good once a restore drill proved it (or a later one "
                "that depends on it).")


def backup_completed_age() -> Panel:
    """Age of the newest completed backup of each type."""
    return stat("Newest completed backup",
                Target(agg("min", "wasp_backup_last_completed_age_seconds", ("type",)),
                       "{{type}}"),
                unit="s", w=8, thresholds=red_at((2 * 3600, ORANGE), (26 * 3600, RED)),
                options={"graphMode": "none"})


def backup_last_attempt() -> Panel:
    """Result of the last attempt of each backup type."""
    return stat("Last attempt",
                Target(agg("min", "wasp_backup_last_attempt_success", ("type",)), "{{type}}"),
                w=8, thresholds=bad_below_one(), mappings=ok_mapping(),
                options={"colorMode": "background", "graphMode": "none"})


def backup_drill() -> Panel:
    """Result of the last restore drill."""
    return stat("Last drill",
                Target(sel("wasp_backup_drill_last_success"), "{{stanza}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("PASSED", "FAILED"),
                options={"colorMode": "background", "graphMode": "none"})


def backup_rto() -> Panel:
    """Restore plus recovery time of the last drill (the measured RTO)."""
    return stat("Restore time (RTO, last drill)",
                Target(sel("wasp_backup_drill_restore_duration_seconds"), "{{stanza}}"),
                unit="s", w=6, thresholds=red_at((3600, ORANGE), (4 * 3600, RED)),
                options={"graphMode": "none"})


def backup_repository_up() -> Panel:
    """Whether pgBackRest can read each repository."""
    return stat("Repository readable",
                Target(sel("wasp_backup_repository_up"), "{{stanza}} repo {{repo}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def backup_in_progress() -> Panel:
    """Whether a backup runs now."""
    return stat("Backup running", Target(sel("wasp_backup_in_progress"), "{{stanza}}"), w=6,
                mappings=[{"options": {"0": {"index": 0, "text": "idle"},
                                       "1": {"color": BLUE, "index": 1, "text": "running"}},
                           "type": "value"}], options={"graphMode": "none"})


def wal_unarchived() -> Panel:
    """WAL written but not archived: the live RPO in bytes."""
    return ts("WAL not yet archived (RPO)",
              Target(sel("wasp_wal_archive_unarchived_bytes"), "{{target}} {{stanza}}"),
              unit="bytes", w=8, thresholds=red_at((64 * 1024 * 1024, RED)),
              custom={"thresholdsStyle": {"mode": "line"}})


def wal_archive_age() -> Panel:
    """Time since the last WAL file reached the repository."""
    return ts("Last WAL archived",
              Target(age("wasp_wal_archive_last_archived_timestamp_seconds",
                         ("target", "stanza")), "{{target}} {{stanza}}"), unit="s", w=8,
              description="Grows on an idle database: read it with the unarchived bytes.")


def wal_archive_failures() -> Panel:
    """WAL archive failures and segments waiting."""
    return ts("WAL archive failures / ready segments",
              Target(rate("wasp_wal_archive_failures_total", ("target", "stanza"),
                          fn="increase"), "{{target}} failures in range"),
              Target(sel("wasp_wal_archive_ready_segments"), "{{target}} ready segments"),
              w=8)


REPLICATION = Dashboard(
    "wasp-replication-backups", "wasp / Replication & backups",
    "Streaming replicas, heartbeat, slots and failovers; pgBackRest backups, drills and WAL "
    "archiving (the replication, replica and backup packs).",
    (lambda: Row("Replication"), repl_standbys, repl_receiver, repl_timeline, repl_last_failover,
     repl_replay_delay, repl_lag_bytes, repl_heartbeat, repl_slot_retained, repl_slots,
     lambda: Row("Backups"), backup_good_age, backup_completed_age, backup_last_attempt,
     backup_drill, backup_rto, backup_repository_up, backup_in_progress,
     lambda: Row("WAL archive"), wal_unarchived, wal_archive_age, wal_archive_failures),
    variables=(("target", "Target", "wasp_target_up"),
               ("stanza", "Stanza", "wasp_backup_repository_up")),
    tags=("replication", "backup"),
)


# -- 4. PgBouncer ----------------------------------------------------------------------


def bouncer_usage() -> Panel:
    """Active servers over pool size, per pool."""
    return ts("Pool usage (active servers / pool size)",
              Target(sel("wasp_pgbouncer_pool_usage_ratio"), "{{target}} {{database}}/{{user}}"),
              unit="percentunit", w=12, thresholds=red_at((0.8, ORANGE), (1, RED)),
              custom={"thresholdsStyle": {"mode": "line"}})


def bouncer_waiting() -> Panel:
    """Clients waiting for a server."""
    return ts("Clients waiting",
              Target(agg("sum", "wasp_pgbouncer_pool_clients", ("target", "database"),
                         state="waiting"), "{{target}} {{database}}"), w=6)


def bouncer_max_wait() -> Panel:
    """Longest current client wait."""
    return ts("Longest client wait",
              Target(agg("max", "wasp_pgbouncer_pool_client_max_wait_seconds",
                         ("target", "database")), "{{target}} {{database}}"),
              unit="s", w=6)


def bouncer_servers() -> Panel:
    """Server connections by state."""
    return ts("Server connections by state",
              Target(agg("sum", "wasp_pgbouncer_pool_servers", ("target", "state")),
                     "{{target}} {{state}}"), w=12,
              custom={"stacking": {"group": "A", "mode": "normal"}})


def bouncer_clients() -> Panel:
    """Client connections by state, against max_client_conn."""
    return ts("Client connections vs max_client_conn",
              Target(agg("sum", "wasp_pgbouncer_pool_clients", ("target", "state")),
                     "{{target}} {{state}}"),
              Target(sel("wasp_pgbouncer_max_client_connections"), "{{target}} max_client_conn"),
              w=12)


def bouncer_tps() -> Panel:
    """Transactions and queries per second."""
    return ts("Transactions / queries per second",
              Target(rate("wasp_pgbouncer_transactions_total", ("target", "database")),
                     "{{target}} {{database}} tx"),
              Target(rate("wasp_pgbouncer_queries_total", ("target", "database")),
                     "{{target}} {{database}} queries"), unit="ops", w=12)


def bouncer_query_time() -> Panel:
    """Mean query time and client wait per query."""
    t = rate("wasp_pgbouncer_query_time_seconds_total", ("target", "database"))
    n = rate("wasp_pgbouncer_queries_total", ("target", "database"))
    return ts("Mean query time",
              Target(f"{t} / {n}", "{{target}} {{database}}"), unit="s", w=12)


def bouncer_bytes() -> Panel:
    """Bytes received from and sent to clients."""
    return ts("Network",
              Target(rate("wasp_pgbouncer_received_bytes_total", ("target",)),
                     "{{target}} received"),
              Target(rate("wasp_pgbouncer_sent_bytes_total", ("target",)), "{{target}} sent"),
              unit="Bps", w=12)


def bouncer_paused() -> Panel:
    """Paused or disabled databases."""
    return stat("Paused / disabled databases",
                Target(agg("sum", "wasp_pgbouncer_database_paused", ("target",)),
                       "{{target}} paused"),
                Target(agg("sum", "wasp_pgbouncer_database_disabled", ("target",)),
                       "{{target}} disabled"),
                w=12, h=8, thresholds=red_at((1, RED)), options={"graphMode": "none"})


PGBOUNCER = Dashboard(
    "wasp-pgbouncer", "wasp / PgBouncer",
    "Pools, waiting clients, servers and throughput (the pgbouncer pack).",
    (bouncer_usage, bouncer_waiting, bouncer_max_wait, bouncer_servers, bouncer_clients,
     bouncer_tps, bouncer_query_time, bouncer_bytes, bouncer_paused),
    tags=("pgbouncer",),
)


# -- 5. The exporter -------------------------------------------------------------------


def exp_targets_up() -> Panel:
    """Targets the exporter reaches."""
    return stat("Targets up", Target(sel("wasp_target_up"), "{{target}}"), w=8,
                thresholds=bad_below_one(), mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def exp_ready() -> Panel:
    """Whether every query ran once."""
    return stat("Ready", Target(sel("wasp_exporter_ready")), w=4, thresholds=bad_below_one(),
                mappings=ok_mapping("ready", "starting"), options={"graphMode": "none"})


def exp_version() -> Panel:
    """Exporter version."""
    return stat("Version", Target(sel("wasp_exporter_build_info"), "{{version}}"), w=4,
                options={"colorMode": "none", "graphMode": "none", "textMode": "name"})


def exp_uptime() -> Panel:
    """Time since the exporter started."""
    return stat("Exporter uptime", Target(f"time() - {sel('wasp_exporter_start_time_seconds')}"),
                unit="s", w=4, options={"graphMode": "none"})


def exp_disabled() -> Panel:
    """Queries ruled out by role or requirements."""
    return stat("Queries disabled",
                Target(f"count({sel('wasp_query_enabled')} == 0) or vector(0)"), w=4,
                options={"graphMode": "none"},
                description="Disabled because the target's role or schema rules them out "
                "(see the exporter's log).")


def exp_durations() -> Panel:
    """Duration of the slowest queries' last runs."""
    return ts(f"Query duration (top {TOP_N})",
              Target(f"topk({TOP_N}, {sel('wasp_query_duration_seconds')})",
                     "{{target}} {{query}}"), unit="s", w=12)


def exp_errors() -> Panel:
    """Failed runs per second by reason."""
    return ts("Query errors by reason",
              Target(rate("wasp_query_errors_total", ("target", "reason")),
                     "{{target}} {{reason}}"), unit="ops", w=12)


def exp_skipped() -> Panel:
    """Runs skipped because the previous one was still going."""
    return ts("Skipped runs",
              Target(rate("wasp_query_skipped_total", ("target", "query"), fn="increase")
                     + " > 0", "{{target}} {{query}}"), w=8,
              description="Turns skipped in the selected range: the query takes longer than "
              "its interval.")


def exp_series() -> Panel:
    """Series exported, per target."""
    return ts("Series exported",
              Target(agg("sum", "wasp_query_series", ("target",)), "{{target}}"),
              Target(rate("wasp_query_series_dropped_total", ("target",), fn="increase"),
                     "{{target}} dropped in range"), w=8)


def exp_last_success() -> Panel:
    """Queries whose last success is oldest relative to their interval."""
    last = sel("wasp_query_last_success_timestamp_seconds")
    expr = f"topk({TOP_N}, time() - {last})"
    return top_table(f"Oldest last success (top {TOP_N})",
                     "wasp_query_last_success_timestamp_seconds", ("target", "query"), expr,
                     unit="s", w=8)


def _wasp_process(expr: str) -> str:
    """Keep only the wasp exporter's process series (other jobs export process_* too)."""
    return f"{expr} and on (instance, job) {sel('wasp_exporter_build_info')}"


def exp_rss() -> Panel:
    """Resident memory of the exporter."""
    return ts("Exporter memory",
              Target(_wasp_process(sel("process_resident_memory_bytes")), "RSS {{instance}}"),
              Target(_wasp_process(sel("wasp_exporter_peak_resident_memory_bytes")),
                     "peak {{instance}}"),
              unit="bytes", w=12)


def exp_cpu() -> Panel:
    """CPU used by the exporter, in cores."""
    cpu = rate("process_cpu_seconds_total", op="")
    return ts("Exporter CPU (cores)", Target(_wasp_process(cpu), "{{instance}}"),
              unit="percentunit", w=12)


EXPORTER = Dashboard(
    "wasp-exporter", "wasp / Exporter",
    "The exporter itself: targets, query durations, errors, skipped runs, series, process.",
    (exp_targets_up, exp_ready, exp_version, exp_uptime, exp_disabled, exp_durations,
     exp_errors, exp_skipped, exp_series, exp_last_success, exp_rss, exp_cpu),
    tags=("exporter",),
)

DASHBOARDS: tuple[Dashboard, ...] = (BUSINESS, POSTGRES, REPLICATION, PGBOUNCER, EXPORTER)


# -- output ----------------------------------------------------------------------------


def render(model: dict[str, Any]) -> str:
    """The canonical text of a dashboard: sorted keys, two-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    """file name -> rendered JSON of every dashboard."""
    return {d.filename: render(d.build()) for d in DASHBOARDS}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp dashboards`."""
    p.add_argument("--out", default="dashboards", metavar="DIR",
                   help="folder to write the dashboards to (default: ./dashboards)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a file in DIR differs from what would be "
                   "generated (or is missing)")


def main(args: argparse.Namespace) -> int:
    """Write (or check) every dashboard."""
    out = Path(args.out)
    files = build_all()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (out / name).exists() or (out / name).read_text() != text]
        for name in stale:
            print(f"{out / name}: differs from the generator (run `wasp dashboards --out "
                  f"{out}`)", file=sys.stderr)
        if not stale:
            print(f"{out}: {len(files)} dashboards up to date")
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0
