"""Generate Prometheus alert and recording rules, their promtool unit tests and the Alertmanager config.

Every expression names its metrics through the catalog (`catalog().get`), so a
renamed metric or a label that a metric does not have breaks the generator,
not production. Every selector, threshold and `for` duration lives in one
`RulesConfig` and is interpolated into every expression. The test inputs that
prove each alert are data next to the alert (series chosen by hand, one case
where it fires and one where it must stay quiet), emitted as promtool tests.

    wasp rules --out rules/          # write rules/*.yml, rules/tests/*.yml, rules/alertmanager.yml
    wasp rules --out rules/ --check  # exit 1 when the committed files differ
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wasp.catalog import catalog

__all__ = [
    "PROMETHEUS_METRICS", "Alert", "Case", "Fired", "Group", "Q", "Recording", "RecordingCase",
    "RulesConfig", "Series", "add_arguments", "anchor", "build", "main", "render_files",
    "render_template",
]

#: labels Prometheus attaches at scrape time (not in the catalog, on every series)
SCRAPE_LABELS = ("job", "instance")
#: metrics that Prometheus itself produces for the wasp job
PROMETHEUS_METRICS: dict[str, tuple[str, ...]] = {"up": SCRAPE_LABELS}
SEVERITIES = ("page", "warning", "info")
_MiB = 1024 * 1024
_GiB = 1024 * _MiB
DEFAULT_RUNBOOK_URL = "docs/runbook.md"


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Selectors, thresholds and durations: the one object every expression is built from."""

    #: matchers put on every selector (the scrape job of the exporters)
    selector: tuple[tuple[str, str], ...] = (("job", "wasp"),)
    #: labels that identify one replication cluster (add e.g. "cluster" when one job watches several)
    cluster_by: tuple[str, ...] = ("job",)
    runbook_url: str = DEFAULT_RUNBOOK_URL
    # exporter
    exporter_down_for: str = "5m"
    target_down_for: str = "5m"
    query_failing_ratio: float = 0.9
    query_failing_window: str = "15m"
    query_failing_for: str = "10m"
    query_skips_30m: float = 2
    # app (about 1,000 salons: 150k webhooks, 100k messages, 10k bookings a day)
    webhook_silent_seconds: float = 600
    whatsapp_event_type: str = "message_received"
    whatsapp_silent_seconds: float = 1800
    webhook_failure_warning: float = 0.05
    webhook_failure_page: float = 0.25
    webhook_min_events_1h: float = 100
    outbound_failure_warning: float = 0.05
    outbound_failure_page: float = 0.30
    outbound_min_messages_1h: float = 50
    bookings_drop_ratio: float = 0.5
    bookings_min_yesterday_1h: float = 30
    ai_cost_spike_ratio: float = 2.0
    ai_cost_min_usd_1h: float = 10
    ai_cost_max_usd_1h: float = 100
    ai_p95_seconds: float = 10
    ai_min_responses_1h: float = 20
    reminders_overdue_seconds: float = 900
    double_bookings_max: float = 0
    # postgres
    connections_warning: float = 0.80
    connections_page: float = 0.95
    long_transaction_seconds: float = 1800
    idle_in_transaction_seconds: float = 300
    lock_wait_seconds: float = 60
    deadlocks_30m: float = 5
    xid_freeze_ratio: float = 1.5
    xid_wraparound_page: float = 1.0e9
    mxid_freeze_ratio: float = 1.5
    cache_hit_ratio_min: float = 0.95
    cache_min_blocks_per_second: float = 100
    # replication
    replay_delay_seconds: float = 300
    heartbeat_stale_seconds: float = 120
    expected_standbys: int = 2
    slot_inactive_retained_bytes: float = 1 * _GiB
    # backup
    full_completed_max_seconds: float = 26 * 3600
    incr_completed_max_seconds: float = 3 * 3600
    good_full_max_seconds: float = 8 * 86400
    drill_max_seconds: float = 8 * 86400
    wal_unarchived_bytes: float = 64 * _MiB
    wal_archive_stuck_seconds: float = 900
    # pgbouncer
    pool_usage_ratio: float = 0.9
    client_wait_seconds: float = 5


# ---------------------------------------------------------------------------------------------
# expressions through the catalog


def _labels_of(name: str) -> tuple[str, ...]:
    if name in PROMETHEUS_METRICS:
        return PROMETHEUS_METRICS[name]
    return (*SCRAPE_LABELS, *catalog().get(name).labels)


class Q:
    """Builds selectors for one rule: checks names and labels against the catalog, records metrics."""

    def __init__(self, cfg: RulesConfig,
                 recorded: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.cfg = cfg
        self.recorded = recorded or {}
        self.metrics: set[str] = set()

    def __call__(self, name: str, **matchers: str) -> str:
        """`name{job="wasp",k="v"}`; a value starting with =~, != or !~ uses that operator."""
        labels = ((*SCRAPE_LABELS, *self.recorded[name]) if name in self.recorded
                  else _labels_of(name))
        self.metrics.add(name)
        parts = [f'{k}="{v}"' for k, v in self.cfg.selector]
        for k, v in matchers.items():
            if k not in labels:
                raise ValueError(f"{name} has no label {k!r} (catalog: {', '.join(labels)})")
            op = v[:2] if v[:2] in ("=~", "!=", "!~") else "="
            val = v[2:] if op != "=" else v
            parts.append(f'{k}{op}"{val}"')
        return f"{name}{{{','.join(parts)}}}"


def _num(v: float) -> str:
    """A number as PromQL reads it, without float noise."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


# ---------------------------------------------------------------------------------------------
# rules and their tests as data


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


def _s(metric: str, values: str, **labels: str) -> Series:
    """A test input series; the metric must exist and carry exactly these labels."""
    if set(labels) != set(_labels_of(metric)):
        raise ValueError(f"test series {metric} has labels {sorted(labels)}, "
                         f"the catalog says {sorted(_labels_of(metric))}")
    return Series(metric, labels, values)


def _t(**labels: str) -> dict[str, str]:
    return {**T, **labels}


def _st(**labels: str) -> dict[str, str]:
    return {**S, **labels}


class Builder:
    """Collects groups, alerts and recordings, all built from one config."""

    def __init__(self, cfg: RulesConfig) -> None:
        self.cfg = cfg
        self.groups: list[Group] = []
        #: recording rules built so far: name -> labels (besides job and instance)
        self.recorded: dict[str, tuple[str, ...]] = {}

    def q(self) -> Q:
        """A selector builder that knows the catalog and the recording rules built so far."""
        return Q(self.cfg, self.recorded)

    def group(self, name: str) -> Group:
        """A new rule group, kept in creation order."""
        g = Group(name)
        self.groups.append(g)
        return g

    def alert(self, g: Group, name: str, severity: str, q: Q, expr: str, for_: str,
              summary: str, description: str, cases: Iterable[Case] = ()) -> None:
        """Add an alerting rule; `q` is the builder its expression was written with."""
        assert severity in SEVERITIES, severity
        g.alerts.append(Alert(name, severity, _clean(expr), for_, summary, description,
                              frozenset(q.metrics), tuple(cases)))

    def record(self, g: Group, record: str, labels: tuple[str, ...], q: Q, expr: str) -> str:
        """Add a recording rule whose series carry `labels` (besides job and instance)."""
        self.recorded[record] = labels
        g.recordings.append(Recording(record, _clean(expr), frozenset(q.metrics),
                                      _recording_cases().get(record, ())))
        return record


def _clean(expr: str) -> str:
    return "\n".join(line.rstrip() for line in expr.strip().splitlines())


# ---------------------------------------------------------------------------------------------
# the rules


def build(cfg: RulesConfig | None = None) -> list[Group]:
    """Every rule group, in a stable order."""
    cfg = cfg or RulesConfig()
    b = Builder(cfg)
    _recordings(b)
    _exporter(b)
    _app(b)
    _postgres(b)
    _replication(b)
    _backup(b)
    _pgbouncer(b)
    return b.groups


def _recordings(b: Builder) -> None:
    g = b.group("wasp-recording")
    q = b.q()
    b.record(g, "target:wasp_pg_connections:usage_ratio", ('target',), q, f"""
sum without (database, state) ({q("wasp_pg_connections")})
  / ({q("wasp_pg_max_connections")} - {q("wasp_pg_superuser_reserved_connections")})
""")
    q = b.q()
    b.record(g, "target_database:wasp_pg_cache_hit:ratio_rate5m", ('target', 'database'), q, f"""
rate({q("wasp_pg_database_blocks_hit_total")}[5m])
  / (rate({q("wasp_pg_database_blocks_hit_total")}[5m]) + rate({q("wasp_pg_database_blocks_read_total")}[5m]))
""")
    q = b.q()
    b.record(g, "target:wasp_pg_xid_age:ratio_freeze_max_age", ('target',), q, f"""
max without (database) ({q("wasp_pg_database_xid_age")}) / {q("wasp_pg_autovacuum_freeze_max_age")}
""")
    q = b.q()
    b.record(g, "target:wasp_app_webhook_events:sum_1h", ('target', 'window'), q, f"""
sum without (event_type, status) ({q("wasp_app_webhook_events", window="1h")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_webhook_failures:ratio_1h", ('target', 'window'), q, f"""
{q("wasp_app_webhook_failures", window="1h")}
  / sum without (event_type, status) ({q("wasp_app_webhook_events", window="1h")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_webhook_newest:age_seconds", ('target',), q, f"""
time() - {q("wasp_app_webhook_newest_timestamp_seconds")}
""")
    q = b.q()
    b.record(g, "target:wasp_app_whatsapp_outbound:sum_1h", ('target', 'window'), q, f"""
sum without (direction, type, status) ({q("wasp_app_whatsapp_messages", window="1h", direction="OUTBOUND")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_whatsapp_outbound_failed:ratio_1h", ('target', 'window'), q, f"""
{q("wasp_app_whatsapp_outbound_failed", window="1h")}
  / sum without (direction, type, status) ({q("wasp_app_whatsapp_messages", window="1h", direction="OUTBOUND")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_bookings_created:sum_1h", ('target', 'window'), q, f"""
sum without (status) ({q("wasp_app_bookings_created", window="1h")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_ai_cost_usd:sum_1h", ('target', 'window'), q, f"""
sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="1h")})
""")
    q = b.q()
    b.record(g, "target:wasp_app_ai_cost_usd:sum_24h", ('target', 'window'), q, f"""
sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="24h")})
""")
    q = b.q()
    b.record(g, "target_model:wasp_app_ai_response_time_seconds:mean_1h", ('target', 'window', 'model'), q, f"""
sum without (direction) ({q("wasp_app_ai_response_time_sum_seconds", window="1h")})
  / sum without (direction) ({q("wasp_app_ai_timed_responses", window="1h")})
""")
    q = b.q()
    b.record(g, "target_database:wasp_pgbouncer_pool_usage_ratio:max", ('target', 'database'), q, f"""
max without (user) ({q("wasp_pgbouncer_pool_usage_ratio")})
""")
    q = b.q()
    b.record(g, "target_database:wasp_pgbouncer_clients_waiting:sum", ('target', 'database'), q, f"""
sum without (user, state) ({q("wasp_pgbouncer_pool_clients", state="waiting")})
""")


def _recording_cases() -> dict[str, tuple[RecordingCase, ...]]:
    """What each recording rule must compute from hand-chosen series."""
    w1, w24 = _t(window="1h"), _t(window="24h")
    return {
        "target:wasp_pg_connections:usage_ratio": (RecordingCase((
            _s("wasp_pg_connections", "30x10", **_t(database="app", state="active")),
            _s("wasp_pg_connections", "20x10", **_t(database="app", state="idle")),
            _s("wasp_pg_connections", "0x10", **_t(database="postgres", state="idle")),
            _s("wasp_pg_max_connections", "103x10", **T),
            _s("wasp_pg_superuser_reserved_connections", "3x10", **T)), "5m", ((T, 0.5),)),),
        "target_database:wasp_pg_cache_hit:ratio_rate5m": (RecordingCase((
            _s("wasp_pg_database_blocks_hit_total", "0+900x10", **_t(database="app")),
            _s("wasp_pg_database_blocks_read_total", "0+100x10", **_t(database="app"))),
            "8m", ((_t(database="app"), 0.9),)),),
        "target:wasp_pg_xid_age:ratio_freeze_max_age": (RecordingCase((
            _s("wasp_pg_database_xid_age", "100000000x10", **_t(database="app")),
            _s("wasp_pg_database_xid_age", "50000000x10", **_t(database="postgres")),
            _s("wasp_pg_autovacuum_freeze_max_age", "200000000x10", **T)), "5m", ((T, 0.5),)),),
        "target:wasp_app_webhook_events:sum_1h": (RecordingCase((
            _s("wasp_app_webhook_events", "90x10", **_t(window="1h", event_type="payment", status="processed")),
            _s("wasp_app_webhook_events", "10x10", **_t(window="1h", event_type="payment", status="failed"))),
            "5m", ((w1, 100),)),),
        "target:wasp_app_webhook_failures:ratio_1h": (RecordingCase((
            _s("wasp_app_webhook_failures", "10x10", **w1),
            _s("wasp_app_webhook_events", "90x10", **_t(window="1h", event_type="payment", status="processed")),
            _s("wasp_app_webhook_events", "10x10", **_t(window="1h", event_type="payment", status="failed"))),
            "5m", ((w1, 0.1),)),),
        "target:wasp_app_webhook_newest:age_seconds": (RecordingCase((
            _s("wasp_app_webhook_newest_timestamp_seconds", "0x10", **T),), "5m", ((T, 300),)),),
        "target:wasp_app_whatsapp_outbound:sum_1h": (RecordingCase((
            _s("wasp_app_whatsapp_messages", "40x10", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
            _s("wasp_app_whatsapp_messages", "10x10", **_t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            _s("wasp_app_whatsapp_messages", "70x10", **_t(window="1h", direction="INBOUND", type="TEXT", status="READ"))),
            "5m", ((w1, 50),)),),
        "target:wasp_app_whatsapp_outbound_failed:ratio_1h": (RecordingCase((
            _s("wasp_app_whatsapp_outbound_failed", "10x10", **w1),
            _s("wasp_app_whatsapp_messages", "40x10", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
            _s("wasp_app_whatsapp_messages", "10x10", **_t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            _s("wasp_app_whatsapp_messages", "70x10", **_t(window="1h", direction="INBOUND", type="TEXT", status="READ"))),
            "5m", ((w1, 0.2),)),),
        "target:wasp_app_bookings_created:sum_1h": (RecordingCase((
            _s("wasp_app_bookings_created", "300x10", **_t(window="1h", status="CONFIRMED")),
            _s("wasp_app_bookings_created", "20x10", **_t(window="1h", status="CANCELLED"))),
            "5m", ((w1, 320),)),),
        "target:wasp_app_ai_cost_usd:sum_1h": (RecordingCase((
            _s("wasp_app_ai_cost_usd", "12x10", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
            _s("wasp_app_ai_cost_usd", "3x10", **_t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
            _s("wasp_app_ai_cost_usd", "0x10", **_t(window="1h", direction="INBOUND", model=""))),
            "5m", ((w1, 15),)),),
        "target:wasp_app_ai_cost_usd:sum_24h": (RecordingCase((
            _s("wasp_app_ai_cost_usd", "300x10", **_t(window="24h", direction="OUTBOUND", model="gpt-4o")),
            _s("wasp_app_ai_cost_usd", "60x10", **_t(window="24h", direction="OUTBOUND", model="gpt-4o-mini"))),
            "5m", ((w24, 360),)),),
        "target_model:wasp_app_ai_response_time_seconds:mean_1h": (RecordingCase((
            _s("wasp_app_ai_response_time_sum_seconds", "500x10", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
            _s("wasp_app_ai_timed_responses", "200x10", **_t(window="1h", direction="OUTBOUND", model="gpt-4o"))),
            "5m", ((_t(window="1h", model="gpt-4o"), 2.5),)),),
        "target_database:wasp_pgbouncer_pool_usage_ratio:max": (RecordingCase((
            _s("wasp_pgbouncer_pool_usage_ratio", "0.25x10", **_t(database="app", user="app")),
            _s("wasp_pgbouncer_pool_usage_ratio", "0.75x10", **_t(database="app", user="reports"))),
            "5m", ((_t(database="app"), 0.75),)),),
        "target_database:wasp_pgbouncer_clients_waiting:sum": (RecordingCase((
            _s("wasp_pgbouncer_pool_clients", "4x10", **_t(database="app", user="app", state="waiting")),
            _s("wasp_pgbouncer_pool_clients", "3x10", **_t(database="app", user="reports", state="waiting")),
            _s("wasp_pgbouncer_pool_clients", "50x10", **_t(database="app", user="app", state="active"))),
            "5m", ((_t(database="app"), 7),)),),
    }


def _exporter(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-exporter")
    q = b.q()
    b.alert(g, "WaspExporterDown", "page", q, f"""
{q("up")} == 0
""", cfg.exporter_down_for,
        "wasp exporter {{ $labels.instance }} is down",
        "Prometheus cannot scrape the wasp exporter {{ $labels.instance }}: every database, "
        "application and backup alert of its targets is blind until it is back.",
        [Case("scrape fails for 10 minutes", (
            _s("up", "0x15", instance="wasp-1:9645", job="wasp"),), "10m",
            (Fired({"instance": "wasp-1:9645", "job": "wasp"}, 0, "page"),)),
         Case("a single failed scrape does not page", (
             _s("up", "1 1 1 0 1 1 1 1 1 1 1 1", instance="wasp-1:9645", job="wasp"),), "10m")])
    q = b.q()
    b.alert(g, "WaspExporterMissing", "page", q, f"""
absent({q("up")})
""", cfg.exporter_down_for,
        "Prometheus scrapes no wasp exporter",
        "Prometheus has no scrape target in the wasp job at all (service discovery, a relabelling "
        "or a configuration change dropped it): every wasp alert is blind.",
        [Case("no wasp target at all", (
            _s("up", "1x15", instance="node-1:9100", job="node"),), "10m",
            (Fired(dict(cfg.selector), 1, "page"),)),
         Case("one exporter up", (_s("up", "1x15", instance="wasp-1:9645", job="wasp"),), "10m")])
    q = b.q()
    b.alert(g, "WaspTargetDown", "page", q, f"""
{q("wasp_target_up")} == 0
""", cfg.target_down_for,
        "wasp cannot reach target {{ $labels.target }}",
        "The exporter {{ $labels.instance }} has not reached target {{ $labels.target }} for "
        f"{cfg.target_down_for}: the database is down or unreachable (network, authentication, "
        "max_connections). Its other alerts are inhibited meanwhile.",
        [Case("target unreachable", (_s("wasp_target_up", "0x15", **T),), "10m",
              (Fired(T, 0, "page"),)),
         Case("target up", (_s("wasp_target_up", "1x15", **T),), "10m")])

    q = b.q()
    w = cfg.query_failing_window
    b.alert(g, "WaspQueryFailing", "warning", q, f"""
sum without (reason) (rate({q("wasp_query_errors_total")}[{w}]))
  / rate({q("wasp_query_runs_total")}[{w}])
  > {_num(cfg.query_failing_ratio)}
""", cfg.query_failing_for,
        "Query {{ $labels.query }} keeps failing on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the runs of query {{ $labels.query }} on target "
        f"{{{{ $labels.target }}}} failed over the last {w}; its series go stale and then "
        "disappear. wasp_query_errors_total says why (reason label).",
        [Case("every run fails", (
            _s("wasp_query_runs_total", "0+2x40", **_t(query="databases")),
            _s("wasp_query_errors_total", "0+2x40", **_t(query="databases", reason="timeout")),
            _s("wasp_query_errors_total", "0x40", **_t(query="databases", reason="sql")),
        ), "30m", (Fired(_t(query="databases"), 1, "warning"),)),
         Case("one failure in many runs", (
             _s("wasp_query_runs_total", "0+2x40", **_t(query="databases")),
             _s("wasp_query_errors_total", "0x20 1x20", **_t(query="databases", reason="timeout")),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspQuerySkipping", "warning", q, f"""
increase({q("wasp_query_skipped_total")}[30m]) > {_num(cfg.query_skips_30m)}
""", "15m",
        "Query {{ $labels.query }} on {{ $labels.target }} overruns its interval",
        "Query {{ $labels.query }} on {{ $labels.target }} skipped {{ $value | humanize }} turns "
        "in 30 minutes because its previous run was still going: it takes longer than its "
        "interval. Its data is older than it should be.",
        [Case("a slow query skips every other turn", (
            _s("wasp_query_skipped_total", "0+1x60", **_t(query="tables")),), "50m",
            (Fired(_t(query="tables"), 30, "warning"),)),
         Case("one skip", (_s("wasp_query_skipped_total", "0x20 1x40", **_t(query="tables")),),
              "50m")])

    q = b.q()
    b.alert(g, "WaspSeriesDropped", "warning", q, f"""
increase({q("wasp_query_series_dropped_total")}[15m]) > 0
""", "15m",
        "Query {{ $labels.query }} on {{ $labels.target }} exceeds max_series",
        "Query {{ $labels.query }} on {{ $labels.target }} returns more series than its "
        "max_series: {{ $value | humanize }} series dropped in 15 minutes. Dashboards and alerts "
        "over it see only part of the data.",
        [Case("every run drops series", (
            _s("wasp_query_series_dropped_total", "0+10x40", **_t(query="statements")),), "35m",
            (Fired(_t(query="statements"), 150, "warning"),)),
         Case("nothing dropped", (
             _s("wasp_query_series_dropped_total", "0x40", **_t(query="statements")),), "35m")])


def _two(b: Builder, g: Group, name: str, q: Q, expr: str, levels: tuple[tuple[str, float, str], ...],
         summary: str, description: str, cases: Iterable[Case]) -> None:
    """One alert name at two severities: expr holds `{threshold}`."""
    cases = list(cases)
    for severity, threshold, for_ in levels:
        b.alert(g, name, severity, q, expr.replace("{threshold}", _num(threshold)), for_,
                summary, description, cases if severity == levels[0][0] else ())


def _app(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-app")
    q = b.q()
    b.alert(g, "WaspWebhooksSilent", "page", q, f"""
{q("target:wasp_app_webhook_newest:age_seconds")} > {_num(cfg.webhook_silent_seconds)}
""", "5m",
        "No webhook received on {{ $labels.target }} for {{ $value | humanizeDuration }}",
        "The newest webhook log on {{ $labels.target }} is {{ $value | humanizeDuration }} old. "
        "WhatsApp, calendar and payment webhooks all stopped: the integration or its ingress is "
        "down, customers get no answers and bookings stop. Counts alone do not show this.",
        [Case("webhooks stopped at minute 10", (
            _s("wasp_app_webhook_newest_timestamp_seconds", "0+60x10 600x30", **T),), "30m",
            (Fired(T, 1200, "page"),)),
         Case("a quiet night: one webhook every 4 minutes", (
             _s("wasp_app_webhook_newest_timestamp_seconds",
                "0 0 0 0 240 240 240 240 480 480 480 480 720 720 720 720 960 960 960 960 "
                "1200 1200 1200 1200 1440 1440", **T),), "25m")])

    q = b.q()
    et = cfg.whatsapp_event_type
    last_seen = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h")
    last_seen_type = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h", event_type=et)
    b.alert(g, "WaspWhatsAppInboundSilent", "page", q, f"""
time() - {last_seen_type} > {_num(cfg.whatsapp_silent_seconds)}
or ignoring (event_type)
(count without (event_type) ({last_seen}) * 0 + 86400
  unless ignoring (event_type) {last_seen_type})
""", "5m",
        f"No {et} webhook on {{{{ $labels.target }}}} for {{{{ $value | humanizeDuration }}}}",
        f"The newest {et} webhook on {{{{ $labels.target }}}} is {{{{ $value | humanizeDuration }}}} "
        "old (1d means none in the whole day) while other webhook types may still arrive: "
        "customers' WhatsApp messages no longer reach the service.",
        [Case(f"{et} stopped while status updates go on", (
            _s("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x20 1200x50",
               **_t(window="24h", event_type=et)),
            _s("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x70",
               **_t(window="24h", event_type="status_update")),
        ), "60m", (Fired(_t(window="24h", event_type=et), 2400, "page"),)),
         Case(f"no {et} in the whole day, other types present", (
             _s("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x20",
                **_t(window="24h", event_type="payment")),), "15m",
             (Fired(_t(window="24h"), 86400, "page"),)),
         Case(f"{et} every few minutes", (
             _s("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x60",
                **_t(window="24h", event_type=et)),), "55m")])

    q = b.q()
    _two(b, g, "WaspWebhookFailureRatioHigh", q, f"""
{q("target:wasp_app_webhook_failures:ratio_1h")} > {{threshold}}
and {q("target:wasp_app_webhook_events:sum_1h")} >= {_num(cfg.webhook_min_events_1h)}
""", (("warning", cfg.webhook_failure_warning, "15m"), ("page", cfg.webhook_failure_page, "10m")),
        "{{ $value | humanizePercentage }} of webhooks fail on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the webhook events received in the last hour on "
        "{{ $labels.target }} ended failed or error: their handlers throw (bad deploy, database "
        "errors, a changed payload).",
        [Case("10% of 1,000 events an hour fail", (
            _s("wasp_app_webhook_failures", "100x30", **_t(window="1h")),
            _s("wasp_app_webhook_events", "700x30", **_t(window="1h", event_type="message_received", status="processed")),
            _s("wasp_app_webhook_events", "200x30", **_t(window="1h", event_type="status_update", status="processed")),
            _s("wasp_app_webhook_events", "100x30", **_t(window="1h", event_type="message_received", status="failed")),
        ), "20m", (Fired(_t(window="1h"), 0.1, "warning"),)),
         Case("half of the events fail", (
             _s("wasp_app_webhook_failures", "500x30", **_t(window="1h")),
             _s("wasp_app_webhook_events", "500x30", **_t(window="1h", event_type="message_received", status="processed")),
             _s("wasp_app_webhook_events", "500x30", **_t(window="1h", event_type="message_received", status="error")),
         ), "20m", (Fired(_t(window="1h"), 0.5, "warning"), Fired(_t(window="1h"), 0.5, "page"))),
         Case("a quiet night: 2 of 20 events fail", (
             _s("wasp_app_webhook_failures", "2x30", **_t(window="1h")),
             _s("wasp_app_webhook_events", "18x30", **_t(window="1h", event_type="message_received", status="processed")),
             _s("wasp_app_webhook_events", "2x30", **_t(window="1h", event_type="message_received", status="failed")),
         ), "20m")])

    q = b.q()
    _two(b, g, "WaspWhatsAppOutboundFailureRatioHigh", q, f"""
{q("target:wasp_app_whatsapp_outbound_failed:ratio_1h")} > {{threshold}}
and {q("target:wasp_app_whatsapp_outbound:sum_1h")} >= {_num(cfg.outbound_min_messages_1h)}
""", (("warning", cfg.outbound_failure_warning, "15m"), ("page", cfg.outbound_failure_page, "10m")),
        "{{ $value | humanizePercentage }} of outbound WhatsApp messages fail on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the outbound WhatsApp messages of the last hour on "
        "{{ $labels.target }} failed: confirmations and reminders do not reach customers "
        "(WhatsApp API errors, an expired token, a rejected template, the 24h window).",
        [Case("8% of 2,000 outbound messages fail", (
            _s("wasp_app_whatsapp_outbound_failed", "160x30", **_t(window="1h")),
            _s("wasp_app_whatsapp_messages", "1840x30", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="DELIVERED")),
            _s("wasp_app_whatsapp_messages", "160x30", **_t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            _s("wasp_app_whatsapp_messages", "3000x30", **_t(window="1h", direction="INBOUND", type="TEXT", status="READ")),
        ), "20m", (Fired(_t(window="1h"), 0.08, "warning"),)),
         Case("every outbound message fails", (
             _s("wasp_app_whatsapp_outbound_failed", "400x30", **_t(window="1h")),
             _s("wasp_app_whatsapp_messages", "400x30", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="FAILED")),
         ), "20m", (Fired(_t(window="1h"), 1, "warning"), Fired(_t(window="1h"), 1, "page"))),
         Case("a quiet night: 3 of 20 fail", (
             _s("wasp_app_whatsapp_outbound_failed", "3x30", **_t(window="1h")),
             _s("wasp_app_whatsapp_messages", "17x30", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
             _s("wasp_app_whatsapp_messages", "3x30", **_t(window="1h", direction="OUTBOUND", type="TEXT", status="FAILED")),
         ), "20m")])

    q = b.q()
    created = q("wasp_app_bookings_created", window="1h")
    b.alert(g, "WaspBookingsDropping", "warning", q, f"""
sum without (status) ({created})
  < {_num(cfg.bookings_drop_ratio)} * sum without (status) ({created} offset 1d)
and
sum without (status) ({created} offset 1d) >= {_num(cfg.bookings_min_yesterday_1h)}
""", "30m",
        "Bookings on {{ $labels.target }} dropped below half of yesterday's",
        "Only {{ $value | humanize }} bookings were created on {{ $labels.target }} in the last "
        f"hour, less than {_num(cfg.bookings_drop_ratio * 100)}% of the same hour yesterday: the "
        "booking flow (WhatsApp, AI assistant, calendar) may be broken for part of the salons.",
        [Case("bookings fall from 400 to 100 an hour", (
            _s("wasp_app_bookings_created", "400x375 100x15", **_t(window="1h", status="CONFIRMED")),
            _s("wasp_app_bookings_created", "20x390", **_t(window="1h", status="CANCELLED")),
        ), "1d2h", (Fired(_t(window="1h"), 120, "warning"),), "4m"),
         Case("night hours: 10 yesterday, 2 today", (
             _s("wasp_app_bookings_created", "10x375 2x15", **_t(window="1h", status="CONFIRMED")),
         ), "1d2h", (), "4m"),
         Case("steady day", (
             _s("wasp_app_bookings_created", "400x390", **_t(window="1h", status="CONFIRMED")),
         ), "1d2h", (), "4m")])

    q = b.q()
    cost = f'sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="1h")})'
    b.alert(g, "WaspAICostSpike", "warning", q, f"""
(
  {cost} > {_num(cfg.ai_cost_spike_ratio)} * {cost.replace('"}', '"} offset 1d')}
  and {cost} > {_num(cfg.ai_cost_min_usd_1h)}
)
or {cost} > {_num(cfg.ai_cost_max_usd_1h)}
""", "15m",
        "AI spend on {{ $labels.target }} is ${{ $value | humanize }} an hour",
        "The AI assistant cost ${{ $value | humanize }} in the last hour on {{ $labels.target }}: "
        f"more than {_num(cfg.ai_cost_spike_ratio)}x the same hour yesterday, or above "
        f"${_num(cfg.ai_cost_max_usd_1h)}. Look for a looping conversation, a prompt change or a "
        "model switch (wasp_app_salon_ai_cost_usd shows which salons).",
        [Case("cost triples", (
            _s("wasp_app_ai_cost_usd", "20x375 60x15", **_t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
        ), "1d2h", (Fired(_t(window="1h"), 60, "warning"),), "4m"),
         Case("above the absolute ceiling", (
             _s("wasp_app_ai_cost_usd", "150x40", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "30m", (Fired(_t(window="1h"), 150, "warning"),)),
         Case("small amounts doubling", (
             _s("wasp_app_ai_cost_usd", "2x375 5x15", **_t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
         ), "1d2h", (), "4m")])

    q = b.q()
    b.alert(g, "WaspAILatencyHigh", "warning", q, f"""
{q("wasp_app_ai_response_time_p95_seconds", window="1h")} > {_num(cfg.ai_p95_seconds)}
and ignoring (direction)
sum without (direction) ({q("wasp_app_ai_timed_responses", window="1h")}) >= {_num(cfg.ai_min_responses_1h)}
""", "15m",
        "AI p95 response time {{ $value | humanizeDuration }} on {{ $labels.target }} ({{ $labels.model }})",
        "The 95th percentile response time of the AI assistant with model {{ $labels.model }} on "
        "{{ $labels.target }} is {{ $value | humanizeDuration }} over the last hour: customers wait "
        "on WhatsApp. Check the LLM provider's status and rate limits.",
        [Case("p95 at 25 s", (
            _s("wasp_app_ai_response_time_p95_seconds", "25x30", **_t(window="1h", model="gpt-4o")),
            _s("wasp_app_ai_timed_responses", "500x30", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
        ), "20m", (Fired(_t(window="1h", model="gpt-4o"), 25, "warning"),)),
         Case("slow but only 3 responses", (
             _s("wasp_app_ai_response_time_p95_seconds", "25x30", **_t(window="1h", model="gpt-4o")),
             _s("wasp_app_ai_timed_responses", "3x30", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "20m"),
         Case("p95 at 3 s", (
             _s("wasp_app_ai_response_time_p95_seconds", "3x30", **_t(window="1h", model="gpt-4o")),
             _s("wasp_app_ai_timed_responses", "500x30", **_t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspRemindersOverdue", "warning", q, f"""
{q("wasp_app_reminders_overdue_oldest_age_seconds")} > {_num(cfg.reminders_overdue_seconds)}
""", "10m",
        "Reminders on {{ $labels.target }} are {{ $value | humanizeDuration }} overdue",
        "The oldest pending reminder on {{ $labels.target }} was due {{ $value | humanizeDuration }} "
        "ago (wasp_app_reminders_overdue says how many): the reminder job is stuck or failing, and "
        "customers miss their appointment reminders.",
        [Case("the reminder job stopped", (
            _s("wasp_app_reminders_overdue_oldest_age_seconds", "0+60x40", **T),
            _s("wasp_app_reminders_overdue", "0+3x40", **T),), "30m",
            (Fired(T, 1800, "warning"),)),
         Case("reminders sent within a minute", (
             _s("wasp_app_reminders_overdue_oldest_age_seconds", "0 45 0 30 0 60 0 0 20 0 0x30", **T),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspDoubleBookings", "warning", q, f"""
{q("wasp_app_bookings_double_booked")} > {_num(cfg.double_bookings_max)}
""", "15m",
        "{{ $value | humanize }} upcoming double bookings on {{ $labels.target }}",
        "{{ $value | humanize }} upcoming bookings on {{ $labels.target }} overlap another booking "
        "of the same salon and master: the availability check let a conflict through (race "
        "between two conversations, calendar sync lag).",
        [Case("two overlapping bookings", (
            _s("wasp_app_bookings_double_booked", "0x5 2x30", **T),), "30m",
            (Fired(T, 2, "warning"),)),
         Case("none", (_s("wasp_app_bookings_double_booked", "0x30", **T),), "30m")])


def _postgres(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-postgres")
    q = b.q()
    _two(b, g, "WaspPostgresConnectionsHigh", q, f"""
{q("target:wasp_pg_connections:usage_ratio")} > {{threshold}}
""", (("warning", cfg.connections_warning, "10m"), ("page", cfg.connections_page, "5m")),
        "{{ $labels.target }} uses {{ $value | humanizePercentage }} of its connections",
        "Client connections on {{ $labels.target }} use {{ $value | humanizePercentage }} of "
        "max_connections (minus the superuser reserve). At 100% new connections are refused and "
        "the application fails.",
        [Case("85 of 100 connections", (
            _s("wasp_pg_connections", "60x20", **_t(database="app", state="idle")),
            _s("wasp_pg_connections", "25x20", **_t(database="app", state="active")),
            _s("wasp_pg_max_connections", "103x20", **T),
            _s("wasp_pg_superuser_reserved_connections", "3x20", **T),
        ), "15m", (Fired(T, 0.85, "warning"),)),
         Case("all connections taken", (
             _s("wasp_pg_connections", "100x20", **_t(database="app", state="active")),
             _s("wasp_pg_max_connections", "103x20", **T),
             _s("wasp_pg_superuser_reserved_connections", "3x20", **T),
         ), "15m", (Fired(T, 1, "warning"), Fired(T, 1, "page"))),
         Case("half used", (
             _s("wasp_pg_connections", "50x20", **_t(database="app", state="idle")),
             _s("wasp_pg_max_connections", "103x20", **T),
             _s("wasp_pg_superuser_reserved_connections", "3x20", **T),
         ), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresLongTransaction", "warning", q, f"""
{q("wasp_pg_oldest_transaction_age_seconds")} > {_num(cfg.long_transaction_seconds)}
""", "5m",
        "A transaction on {{ $labels.target }} is open for {{ $value | humanizeDuration }}",
        "The oldest open transaction on {{ $labels.target }} started {{ $value | humanizeDuration }} "
        "ago. It holds back vacuum on every table (bloat, wraparound) and may hold locks.",
        [Case("a report runs for an hour", (
            _s("wasp_pg_oldest_transaction_age_seconds", "0+60x60", **T),), "50m",
            (Fired(T, 3000, "warning"),)),
         Case("short transactions", (
             _s("wasp_pg_oldest_transaction_age_seconds", "0 2 0 5 1 0x50", **T),), "50m")])

    q = b.q()
    b.alert(g, "WaspPostgresIdleInTransaction", "warning", q, f"""
{q("wasp_pg_oldest_idle_in_transaction_age_seconds")} > {_num(cfg.idle_in_transaction_seconds)}
""", "5m",
        "A session on {{ $labels.target }} is idle in transaction for {{ $value | humanizeDuration }}",
        "A client session on {{ $labels.target }} has been idle inside an open transaction for "
        "{{ $value | humanizeDuration }}: an application bug (a missing commit, a leaked "
        "connection) that holds locks and blocks vacuum.",
        [Case("a leaked transaction", (
            _s("wasp_pg_oldest_idle_in_transaction_age_seconds", "0+60x30", **T),), "15m",
            (Fired(T, 900, "warning"),)),
         Case("brief idle moments", (
             _s("wasp_pg_oldest_idle_in_transaction_age_seconds", "0 1 0 2 0x30", **T),), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresLockWaits", "warning", q, f"""
{q("wasp_pg_lock_wait_longest_seconds")} > {_num(cfg.lock_wait_seconds)}
""", "5m",
        "Sessions on {{ $labels.target }} wait {{ $value | humanizeDuration }} for locks",
        "A client session on {{ $labels.target }} has waited {{ $value | humanizeDuration }} for a "
        "lock (wasp_pg_blocked_sessions and wasp_pg_blocking_sessions say how many): a migration, "
        "a long transaction or a stuck session blocks the application.",
        [Case("a migration blocks bookings", (
            _s("wasp_pg_lock_wait_longest_seconds", "0+60x20", **T),), "15m",
            (Fired(T, 900, "warning"),)),
         Case("short waits", (_s("wasp_pg_lock_wait_longest_seconds", "0 3 0 1 0x20", **T),), "15m")])

    q = b.q()
    b.alert(g, "WaspPostgresDeadlocks", "warning", q, f"""
increase({q("wasp_pg_database_deadlocks_total")}[30m]) > {_num(cfg.deadlocks_30m)}
""", "5m",
        "{{ $value | humanize }} deadlocks in 30 minutes on {{ $labels.target }}/{{ $labels.database }}",
        "PostgreSQL detected {{ $value | humanize }} deadlocks in 30 minutes in database "
        "{{ $labels.database }} on {{ $labels.target }}: two code paths lock the same rows in a "
        "different order. The server log has both statements.",
        [Case("a deadlock a minute", (
            _s("wasp_pg_database_deadlocks_total", "0+1x60", **_t(database="app")),), "50m",
            (Fired(_t(database="app"), 30, "warning"),)),
         Case("one deadlock", (
             _s("wasp_pg_database_deadlocks_total", "0x20 1x40", **_t(database="app")),), "50m")])

    q = b.q()
    b.alert(g, "WaspPostgresXIDAgeHigh", "warning", q, f"""
{q("wasp_pg_database_xid_age")}
  / ignoring (database) group_left {q("wasp_pg_autovacuum_freeze_max_age")}
  > {_num(cfg.xid_freeze_ratio)}
""", "30m",
        "XID age of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanize }}x autovacuum_freeze_max_age",
        "Database {{ $labels.database }} on {{ $labels.target }} has an XID age of "
        "{{ $value | humanize }} times autovacuum_freeze_max_age: anti-wraparound autovacuum "
        "cannot keep up (a long transaction, an old replication slot or prepared transaction "
        "holds the horizon back, or vacuum is too slow).",
        [Case("age 400M with freeze at 200M", (
            _s("wasp_pg_database_xid_age", "400000000x60", **_t(database="app")),
            _s("wasp_pg_database_xid_age", "1000x60", **_t(database="postgres")),
            _s("wasp_pg_autovacuum_freeze_max_age", "200000000x60", **T),
        ), "40m", (Fired(_t(database="app"), 2, "warning"),)),
         Case("age 150M, normal", (
             _s("wasp_pg_database_xid_age", "150000000x60", **_t(database="app")),
             _s("wasp_pg_autovacuum_freeze_max_age", "200000000x60", **T),
         ), "40m")])

    q = b.q()
    b.alert(g, "WaspPostgresXIDWraparound", "page", q, f"""
{q("wasp_pg_database_xid_age")} > {_num(cfg.xid_wraparound_page)}
""", "5m",
        "{{ $labels.target }}/{{ $labels.database }} approaches XID wraparound",
        "Database {{ $labels.database }} on {{ $labels.target }} is {{ $value | humanize }} "
        "transactions old; at about 2.1 billion PostgreSQL stops accepting writes to prevent "
        "wraparound. Find what holds the horizon and VACUUM (FREEZE) the oldest tables now.",
        [Case("1.2 billion", (
            _s("wasp_pg_database_xid_age", "1200000000x20", **_t(database="app")),), "10m",
            (Fired(_t(database="app"), 1.2e9, "page"),)),
         Case("300 million", (
             _s("wasp_pg_database_xid_age", "300000000x20", **_t(database="app")),), "10m")])

    q = b.q()
    b.alert(g, "WaspPostgresMultiXactAgeHigh", "warning", q, f"""
{q("wasp_pg_database_mxid_age")}
  / ignoring (database) group_left {q("wasp_pg_autovacuum_multixact_freeze_max_age")}
  > {_num(cfg.mxid_freeze_ratio)}
""", "30m",
        "Multixact age of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanize }}x its freeze max age",
        "Database {{ $labels.database }} on {{ $labels.target }} has a multixact age of "
        "{{ $value | humanize }} times autovacuum_multixact_freeze_max_age: multixact wraparound "
        "protection cannot keep up (row locks shared by many transactions, foreign keys).",
        [Case("multixact age 1.6 billion with freeze at 400M", (
            _s("wasp_pg_database_mxid_age", "1600000000x60", **_t(database="app")),
            _s("wasp_pg_autovacuum_multixact_freeze_max_age", "400000000x60", **T),
        ), "40m", (Fired(_t(database="app"), 4, "warning"),)),
         Case("low multixact age", (
             _s("wasp_pg_database_mxid_age", "1000000x60", **_t(database="app")),
             _s("wasp_pg_autovacuum_multixact_freeze_max_age", "400000000x60", **T),
         ), "40m")])

    q = b.q()
    hit, read = q("wasp_pg_database_blocks_hit_total"), q("wasp_pg_database_blocks_read_total")
    b.alert(g, "WaspPostgresCacheHitRatioLow", "warning", q, f"""
{q("target_database:wasp_pg_cache_hit:ratio_rate5m")} < {_num(cfg.cache_hit_ratio_min)}
and
rate({hit}[5m]) + rate({read}[5m]) > {_num(cfg.cache_min_blocks_per_second)}
""", "30m",
        "Cache hit ratio of {{ $labels.target }}/{{ $labels.database }} is {{ $value | humanizePercentage }}",
        "Only {{ $value | humanizePercentage }} of block reads of database {{ $labels.database }} "
        "on {{ $labels.target }} are served from shared buffers: the working set outgrew memory "
        "or a query scans a large table (see the statements dashboard).",
        [Case("80% hits at 1,000 blocks/s", (
            _s("wasp_pg_database_blocks_hit_total", "0+48000x60", **_t(database="app")),
            _s("wasp_pg_database_blocks_read_total", "0+12000x60", **_t(database="app")),
        ), "45m", (Fired(_t(database="app"), 0.8, "warning"),)),
         Case("low ratio on an idle database", (
             _s("wasp_pg_database_blocks_hit_total", "0+60x60", **_t(database="app")),
             _s("wasp_pg_database_blocks_read_total", "0+60x60", **_t(database="app")),
         ), "45m"),
         Case("99% hits", (
             _s("wasp_pg_database_blocks_hit_total", "0+59400x60", **_t(database="app")),
             _s("wasp_pg_database_blocks_read_total", "0+600x60", **_t(database="app")),
         ), "45m")])

    q = b.q()
    b.alert(g, "WaspPostgresPendingRestart", "info", q, f"""
{q("wasp_pg_settings_pending_restart")} > 0
""", "1h",
        "{{ $labels.target }} has settings waiting for a restart",
        "{{ $value | humanize }} settings changed on {{ $labels.target }} take effect only after a "
        "restart (pg_settings.pending_restart). Plan the restart or revert the change.",
        [Case("two settings pending", (
            _s("wasp_pg_settings_pending_restart", "2x90", **T),), "80m", (Fired(T, 2, "info"),)),
         Case("nothing pending", (_s("wasp_pg_settings_pending_restart", "0x90", **T),), "80m")])

    q = b.q()
    b.alert(g, "WaspPostgresArchiverFailing", "warning", q, f"""
increase({q("wasp_pg_archiver_failed_total")}[15m]) > 0
and {q("wasp_pg_archiver_enabled")} == 1
unless ignoring (stanza) {q("wasp_wal_archive_enabled")}
""", "15m",
        "WAL archiving fails on {{ $labels.target }}",
        "archive_command failed {{ $value | humanize }} times in 15 minutes on {{ $labels.target }}: "
        "WAL piles up in pg_wal (disk full next) and point-in-time recovery has a gap. "
        "(Targets with the backup pack get WaspWALArchiveFailing instead.)",
        [Case("archive_command fails every minute", (
            _s("wasp_pg_archiver_failed_total", "0+1x60", **T),
            _s("wasp_pg_archiver_enabled", "1x60", **T),), "40m", (Fired(T, 15, "warning"),)),
         Case("backup pack present: its alert speaks", (
             _s("wasp_pg_archiver_failed_total", "0+1x60", **T),
             _s("wasp_pg_archiver_enabled", "1x60", **T),
             _s("wasp_wal_archive_enabled", "1x60", **_t(stanza="main")),), "40m"),
         Case("archiving works", (
             _s("wasp_pg_archiver_failed_total", "3x60", **T),
             _s("wasp_pg_archiver_enabled", "1x60", **T),), "40m")])


def _replication(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-replication")
    cl = ", ".join(cfg.cluster_by)
    q = b.q()
    b.alert(g, "WaspStandbyReplayDelayHigh", "warning", q, f"""
{q("wasp_pg_standby_replay_delay_seconds")} > {_num(cfg.replay_delay_seconds)}
""", "5m",
        "Standby {{ $labels.target }} is {{ $value | humanizeDuration }} behind",
        "Standby {{ $labels.target }} has WAL it received but has not replayed for "
        "{{ $value | humanizeDuration }}: reads there are stale and a failover would wait for "
        "replay. Replay conflicts, a paused replay (wasp_pg_standby_replay_paused) or slow I/O.",
        [Case("replay stuck behind a long query", (
            _s("wasp_pg_standby_replay_delay_seconds", "0x5 60+60x30", **_t(target="replica1")),),
            "20m", (Fired(_t(target="replica1"), 900, "warning"),)),
         Case("idle primary: nothing to replay is no lag", (
             _s("wasp_pg_standby_replay_delay_seconds", "0x30", **_t(target="replica1")),
             _s("wasp_pg_standby_last_replay_timestamp_seconds", "0x30", **_t(target="replica1")),
         ), "20m")])

    q = b.q()
    hb, rec = q("wasp_pg_heartbeat_age_seconds"), q("wasp_pg_in_recovery")
    stale = _num(cfg.heartbeat_stale_seconds)
    b.alert(g, "WaspStandbyHeartbeatStale", "warning", q, f"""
({hb} > {stale} and {rec} == 1)
unless on ({cl}) ({hb} > {stale} and {rec} == 0)
""", "5m",
        "Standby {{ $labels.target }} sees a heartbeat {{ $value | humanizeDuration }} old",
        "The heartbeat row that the primary rewrites every few seconds is "
        "{{ $value | humanizeDuration }} old on standby {{ $labels.target }} while the primary's "
        "own copy is fresh: the replication link is broken (even if the LSN gap reads 0).",
        [Case("broken link, primary fresh", (
            _s("wasp_pg_heartbeat_age_seconds", "0+60x20", **_t(target="replica1")),
            _s("wasp_pg_in_recovery", "1x20", **_t(target="replica1")),
            _s("wasp_pg_heartbeat_age_seconds", "3x20", **_t(target="primary")),
            _s("wasp_pg_in_recovery", "0x20", **_t(target="primary")),
        ), "15m", (Fired(_t(target="replica1"), 900, "warning"),)),
         Case("heartbeat writer stopped: stale everywhere, only the writer alert", (
             _s("wasp_pg_heartbeat_age_seconds", "0+60x20", **_t(target="replica1")),
             _s("wasp_pg_in_recovery", "1x20", **_t(target="replica1")),
             _s("wasp_pg_heartbeat_age_seconds", "0+60x20", **_t(target="primary")),
             _s("wasp_pg_in_recovery", "0x20", **_t(target="primary")),
         ), "15m"),
         Case("idle primary, healthy link", (
             _s("wasp_pg_heartbeat_age_seconds", "4x20", **_t(target="replica1")),
             _s("wasp_pg_in_recovery", "1x20", **_t(target="replica1")),
         ), "15m")])

    q = b.q()
    hb, rec = q("wasp_pg_heartbeat_age_seconds"), q("wasp_pg_in_recovery")
    b.alert(g, "WaspHeartbeatWriterStopped", "warning", q, f"""
{hb} > {stale} and {rec} == 0
""", "5m",
        "The heartbeat on primary {{ $labels.target }} is {{ $value | humanizeDuration }} old",
        "The heartbeat row on primary {{ $labels.target }} has not been rewritten for "
        "{{ $value | humanizeDuration }}: `wasp replica heartbeat` stopped, so standby delay "
        "cannot be measured end to end.",
        [Case("writer stopped", (
            _s("wasp_pg_heartbeat_age_seconds", "0+60x20", **_t(target="primary")),
            _s("wasp_pg_in_recovery", "0x20", **_t(target="primary")),
        ), "15m", (Fired(_t(target="primary"), 900, "warning"),)),
         Case("writer running", (
             _s("wasp_pg_heartbeat_age_seconds", "2x20", **_t(target="primary")),
             _s("wasp_pg_in_recovery", "0x20", **_t(target="primary")),
         ), "15m")])

    q = b.q()
    b.alert(g, "WaspStandbysMissing", "warning", q, f"""
{q("wasp_pg_replication_connected_standbys")} < {cfg.expected_standbys}
and {q("wasp_pg_in_recovery")} == 0
""", "5m",
        "Primary {{ $labels.target }} has {{ $value }} of " f"{cfg.expected_standbys} standbys",
        "Only {{ $value }} standbys are connected to primary {{ $labels.target }} (expected "
        f"{cfg.expected_standbys}): a replica is down or cannot connect; a failover has fewer "
        "candidates and its slot retains WAL meanwhile.",
        [Case("one standby lost", (
            _s("wasp_pg_replication_connected_standbys", "2x5 1x20", **_t(target="primary")),
            _s("wasp_pg_in_recovery", "0x25", **_t(target="primary")),
        ), "20m", (Fired(_t(target="primary"), 1, "warning"),)),
         Case("a standby has no standbys of its own", (
             _s("wasp_pg_replication_connected_standbys", "0x25", **_t(target="replica1")),
             _s("wasp_pg_in_recovery", "1x25", **_t(target="replica1")),
         ), "20m"),
         Case("both standbys connected", (
             _s("wasp_pg_replication_connected_standbys", "2x25", **_t(target="primary")),
             _s("wasp_pg_in_recovery", "0x25", **_t(target="primary")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspReplicationSlotInactive", "warning", q, f"""
{q("wasp_pg_replication_slot_wal_retained_bytes")} > {_num(cfg.slot_inactive_retained_bytes)}
and {q("wasp_pg_replication_slot_active")} == 0
""", "15m",
        "Inactive slot {{ $labels.slot_name }} on {{ $labels.target }} retains {{ $value | humanize1024 }}B of WAL",
        "Replication slot {{ $labels.slot_name }} on {{ $labels.target }} has no consumer and "
        "keeps {{ $value | humanize1024 }}B of WAL on disk, growing until pg_wal fills the disk. "
        "Bring its standby back or drop the slot.",
        [Case("slot of a dead replica", (
            _s("wasp_pg_replication_slot_wal_retained_bytes", "0+268435456x40",
               **_t(slot_name="r2", slot_type="physical")),
            _s("wasp_pg_replication_slot_active", "0x40", **_t(slot_name="r2", slot_type="physical")),
        ), "30m", (Fired(_t(slot_name="r2", slot_type="physical"), 30 * 268435456, "warning"),)),
         Case("active slot with lag", (
             _s("wasp_pg_replication_slot_wal_retained_bytes", "0+268435456x40",
                **_t(slot_name="r1", slot_type="physical")),
             _s("wasp_pg_replication_slot_active", "1x40", **_t(slot_name="r1", slot_type="physical")),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspReplicationSlotWALLost", "warning", q, f"""
{q("wasp_pg_replication_slot_wal_status", wal_status="=~unreserved|lost")} == 1
""", "5m",
        "Slot {{ $labels.slot_name }} on {{ $labels.target }} is {{ $labels.wal_status }}",
        "Replication slot {{ $labels.slot_name }} on {{ $labels.target }} has wal_status "
        "{{ $labels.wal_status }}: its consumer needs WAL that max_slot_wal_keep_size lets go "
        "(unreserved) or already removed (lost: the standby must be rebuilt).",
        [Case("slot lost", (
            _s("wasp_pg_replication_slot_wal_status", "0x20",
               **_t(slot_name="r2", slot_type="physical", wal_status="reserved")),
            _s("wasp_pg_replication_slot_wal_status", "1x20",
               **_t(slot_name="r2", slot_type="physical", wal_status="lost")),
        ), "10m", (Fired(_t(slot_name="r2", slot_type="physical", wal_status="lost"), 1, "warning"),)),
         Case("slot reserved", (
             _s("wasp_pg_replication_slot_wal_status", "1x20",
                **_t(slot_name="r2", slot_type="physical", wal_status="reserved")),
             _s("wasp_pg_replication_slot_wal_status", "0x20",
                **_t(slot_name="r2", slot_type="physical", wal_status="lost")),
         ), "10m")])

    q = b.q()
    b.alert(g, "WaspWALReceiverNotStreaming", "warning", q, f"""
{q("wasp_pg_standby_wal_receiver_streaming")} == 0
""", "5m",
        "Standby {{ $labels.target }} is not streaming WAL",
        "The WAL receiver of standby {{ $labels.target }} is not streaming from its upstream: it "
        "falls behind (or replays from the archive only). Check primary_conninfo, the slot and "
        "pg_hba on the primary.",
        [Case("receiver gone", (
            _s("wasp_pg_standby_wal_receiver_streaming", "1x3 0x20", **_t(target="replica1")),),
            "15m", (Fired(_t(target="replica1"), 0, "warning"),)),
         Case("streaming", (
             _s("wasp_pg_standby_wal_receiver_streaming", "1x20", **_t(target="replica1")),), "15m")])


def _backup(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-backup")
    q = b.q()
    b.alert(g, "WaspBackupTooOld", "warning", q, f"""
{q("wasp_backup_last_completed_age_seconds", type="full")} > {_num(cfg.full_completed_max_seconds)}
or
{q("wasp_backup_last_completed_age_seconds", type="incr")} > {_num(cfg.incr_completed_max_seconds)}
""", "15m",
        "The newest {{ $labels.type }} backup of {{ $labels.stanza }} is {{ $value | humanizeDuration }} old",
        "The newest completed {{ $labels.type }} backup of stanza {{ $labels.stanza }} (repo "
        "{{ $labels.repo }}) stopped {{ $value | humanizeDuration }} ago: scheduled backups do not "
        "run or do not finish (cron, lock, disk, repository).",
        [Case("the nightly full did not run", (
            _s("wasp_backup_last_completed_age_seconds", "100000+60x30", **_st(repo="1", type="full")),
            _s("wasp_backup_last_completed_age_seconds", "600x30", **_st(repo="1", type="incr")),
        ), "20m", (Fired(_st(repo="1", type="full"), 101200, "warning"),)),
         Case("fresh backups", (
             _s("wasp_backup_last_completed_age_seconds", "40000x30", **_st(repo="1", type="full")),
             _s("wasp_backup_last_completed_age_seconds", "3000x30", **_st(repo="1", type="incr")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspBackupNotProven", "warning", q, f"""
{q("wasp_backup_last_good_age_seconds", type="full")} > {_num(cfg.good_full_max_seconds)}
or ignoring (type)
({q("wasp_backup_repository_up")} == 1) * 0 + Inf
  unless ignoring (type) {q("wasp_backup_last_good_age_seconds", type="full")}
""", "1h",
        "No drill-proven full backup of {{ $labels.stanza }} for {{ $value | humanizeDuration }}",
        "The newest good full backup of stanza {{ $labels.stanza }} (repo {{ $labels.repo }}), one "
        "a restore drill proved, stopped {{ $value | humanizeDuration }} ago (+Inf: none ever). "
        "Until a drill passes, no backup is known to restore.",
        [Case("the weekly drill did not prove a backup for 9 days", (
            _s("wasp_backup_last_good_age_seconds", "777600+60x90", **_st(repo="1", type="full")),
            _s("wasp_backup_repository_up", "1x90", **_st(repo="1")),
        ), "80m", (Fired(_st(repo="1", type="full"), 782400, "warning"),)),
         Case("backups exist but no drill ever passed", (
             _s("wasp_backup_repository_up", "1x90", **_st(repo="1")),
         ), "80m", (Fired(_st(repo="1"), math.inf, "warning"),)),
         Case("proven two days ago", (
             _s("wasp_backup_last_good_age_seconds", "172800+60x90", **_st(repo="1", type="full")),
             _s("wasp_backup_repository_up", "1x90", **_st(repo="1")),
         ), "80m")])

    q = b.q()
    b.alert(g, "WaspBackupFailed", "warning", q, f"""
{q("wasp_backup_last_attempt_success")} == 0
""", "5m",
        "The last {{ $labels.type }} backup of {{ $labels.stanza }} failed",
        "The last {{ $labels.type }} backup attempt of stanza {{ $labels.stanza }} failed "
        "(wasp_backup_last_attempt_exit_code has pgBackRest's exit code; the status record and "
        "`wasp backup status` the error).",
        [Case("incremental failed", (
            _s("wasp_backup_last_attempt_success", "1x5 0x20", **_st(type="incr")),), "15m",
            (Fired(_st(type="incr"), 0, "warning"),)),
         Case("all succeeded", (
             _s("wasp_backup_last_attempt_success", "1x20", **_st(type="incr")),), "15m")])

    q = b.q()
    b.alert(g, "WaspRestoreDrillFailed", "warning", q, f"""
{q("wasp_backup_drill_last_success")} == 0
""", "5m",
        "The last restore drill of {{ $labels.stanza }} failed",
        "The last restore drill of stanza {{ $labels.stanza }} failed "
        "(wasp_backup_drill_checks_failed checks): the backup it restored is not good, and neither "
        "are the ones it depends on. Run `wasp backup status` for the failed checks.",
        [Case("drill failed", (
            _s("wasp_backup_drill_last_success", "0x20", **S),), "15m", (Fired(S, 0, "warning"),)),
         Case("drill passed", (_s("wasp_backup_drill_last_success", "1x20", **S),), "15m")])

    q = b.q()
    b.alert(g, "WaspRestoreDrillTooOld", "warning", q, f"""
time() - {q("wasp_backup_drill_last_success_timestamp_seconds")} > {_num(cfg.drill_max_seconds)}
""", "1h",
        "No passing restore drill of {{ $labels.stanza }} for {{ $value | humanizeDuration }}",
        "The last passing restore drill of stanza {{ $labels.stanza }} ended "
        "{{ $value | humanizeDuration }} ago: the weekly drill does not run or keeps failing.",
        [Case("last pass 9 days ago", (
            _s("wasp_backup_drill_last_success_timestamp_seconds", "-777600x90", **S),), "80m",
            (Fired(S, 782400, "warning"),)),
         Case("passed yesterday", (
             _s("wasp_backup_drill_last_success_timestamp_seconds", "-86400x90", **S),), "80m")])

    q = b.q()
    b.alert(g, "WaspBackupRepositoryUnreadable", "page", q, f"""
{q("wasp_backup_repository_up")} == 0
""", "10m",
        "pgBackRest cannot read repository {{ $labels.repo }} of {{ $labels.stanza }}",
        "pgBackRest info cannot read repository {{ $labels.repo }} of stanza {{ $labels.stanza }} "
        "(wasp_backup_pgbackrest_status_code says why: passphrase, storage, stanza). Backups, WAL "
        "archiving and restores all depend on it.",
        [Case("wrong passphrase", (
            _s("wasp_backup_repository_up", "0x30", **_st(repo="1")),), "20m",
            (Fired(_st(repo="1"), 0, "page"),)),
         Case("readable", (_s("wasp_backup_repository_up", "1x30", **_st(repo="1")),), "20m")])

    q = b.q()
    un = q("wasp_wal_archive_unarchived_bytes")
    b.alert(g, "WaspWALArchiveBehind", "page", q, f"""
{un} > {_num(cfg.wal_unarchived_bytes)}
or
({un} > 0 and {q("wasp_wal_archive_last_archived_age_seconds")} > {_num(cfg.wal_archive_stuck_seconds)})
""", "10m",
        "{{ $value | humanize1024 }}B of WAL not archived on {{ $labels.target }}",
        "{{ $value | humanize1024 }}B of WAL written on {{ $labels.target }} (stanza "
        "{{ $labels.stanza }}) are not in the archive yet: losing the server now loses them (the "
        "RPO). archive-push fails or is too slow.",
        [Case("archiving stopped under load", (
            _s("wasp_wal_archive_unarchived_bytes", "0+16777216x30", **_t(stanza="main")),
            _s("wasp_wal_archive_last_archived_age_seconds", "0+60x30", **_t(stanza="main")),
        ), "20m", (Fired(_t(stanza="main"), 20 * 16777216, "page"),)),
         Case("a few bytes stuck for an hour", (
             _s("wasp_wal_archive_unarchived_bytes", "8192x60", **_t(stanza="main")),
             _s("wasp_wal_archive_last_archived_age_seconds", "0+60x60", **_t(stanza="main")),
         ), "40m", (Fired(_t(stanza="main"), 8192, "page"),)),
         Case("idle database: old archive, nothing pending", (
             _s("wasp_wal_archive_unarchived_bytes", "0x60", **_t(stanza="main")),
             _s("wasp_wal_archive_last_archived_age_seconds", "0+60x60", **_t(stanza="main")),
         ), "40m")])

    q = b.q()
    b.alert(g, "WaspWALArchiveFailing", "warning", q, f"""
increase({q("wasp_wal_archive_failures_total")}[15m]) > 0
""", "15m",
        "WAL archiving to {{ $labels.stanza }} fails on {{ $labels.target }}",
        "archive-push failed {{ $value | humanize }} times in 15 minutes on {{ $labels.target }} "
        "(stanza {{ $labels.stanza }}): WAL accumulates in pg_wal and the RPO grows. The "
        "PostgreSQL log and pgBackRest's archive-push log say why.",
        [Case("every attempt fails", (
            _s("wasp_wal_archive_failures_total", "0+1x60", **_t(stanza="main")),), "40m",
            (Fired(_t(stanza="main"), 15, "warning"),)),
         Case("an old failure", (
             _s("wasp_wal_archive_failures_total", "0x5 1x60", **_t(stanza="main")),), "40m")])


def _pgbouncer(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-pgbouncer")
    q = b.q()
    b.alert(g, "WaspPgBouncerPoolSaturated", "warning", q, f"""
{q("wasp_pgbouncer_pool_usage_ratio")} > {_num(cfg.pool_usage_ratio)}
""", "10m",
        "PgBouncer pool {{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} is {{ $value | humanizePercentage }} busy",
        "{{ $value | humanizePercentage }} of the server connections of pool "
        "{{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} are busy: clients will "
        "start waiting. Slow queries hold servers, or pool_size is too small.",
        [Case("pool full", (
            _s("wasp_pgbouncer_pool_usage_ratio", "1x30", **_t(database="app", user="app")),), "20m",
            (Fired(_t(database="app", user="app"), 1, "warning"),)),
         Case("pool half used", (
             _s("wasp_pgbouncer_pool_usage_ratio", "0.5x30", **_t(database="app", user="app")),), "20m")])

    q = b.q()
    b.alert(g, "WaspPgBouncerClientsWaiting", "warning", q, f"""
{q("wasp_pgbouncer_pool_client_max_wait_seconds")} > {_num(cfg.client_wait_seconds)}
and ignoring (state) {q("wasp_pgbouncer_pool_clients", state="waiting")} > 0
""", "5m",
        "Clients wait {{ $value | humanizeDuration }} for a server in PgBouncer pool {{ $labels.database }}/{{ $labels.user }}",
        "Clients of PgBouncer pool {{ $labels.database }}/{{ $labels.user }} on {{ $labels.target }} "
        "wait up to {{ $value | humanizeDuration }} for a server connection: application requests "
        "stall. Look for long transactions on the database, then pool_size.",
        [Case("clients wait 12 s", (
            _s("wasp_pgbouncer_pool_client_max_wait_seconds", "12x20", **_t(database="app", user="app")),
            _s("wasp_pgbouncer_pool_clients", "30x20", **_t(database="app", user="app", state="waiting")),
            _s("wasp_pgbouncer_pool_clients", "50x20", **_t(database="app", user="app", state="active")),
        ), "15m", (Fired(_t(database="app", user="app"), 12, "warning"),)),
         Case("brief waits", (
             _s("wasp_pgbouncer_pool_client_max_wait_seconds", "0.2x20", **_t(database="app", user="app")),
             _s("wasp_pgbouncer_pool_clients", "2x20", **_t(database="app", user="app", state="waiting")),
         ), "15m")])


# ---------------------------------------------------------------------------------------------
# rendering: Go-template subset used by the annotations, to write the expected alerts


def _g(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return f"{v:.4g}"


def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g(v) + prefix


def _humanize1024(v: float) -> str:
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g(v) + prefix


def _humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g(v)
    if v == 0:
        return _g(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        s, m, h, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {h}h {m}m {s}s"
        if h:
            return f"{sign}{h}h {m}m {s}s"
        if m:
            return f"{sign}{m}m {s}s"
        return f"{sign}{_g(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g(v)}{prefix}s"


def _humanize_percentage(v: float) -> str:
    return f"{v * 100:.4g}%"


_FUNCS: dict[str, Callable[[float], str]] = {
    "humanize": _humanize,
    "humanize1024": _humanize1024,
    "humanizeDuration": _humanize_duration,
    "humanizePercentage": _humanize_percentage,
}
_TEMPLATE_RE = re.compile(r"\{\{ (\$labels\.(\w+)|\$value(?: \| (\w+))?) \}\}")


def render_template(text: str, labels: Mapping[str, str], value: float) -> str:
    """Expand the template subset the annotations use: $labels.x, $value and humanize functions."""
    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        if m.group(3):
            return _FUNCS[m.group(3)](value)
        return _g(value) if not float(value).is_integer() else str(int(value))
    return _TEMPLATE_RE.sub(sub, text)


# ---------------------------------------------------------------------------------------------
# files


def anchor(name: str) -> str:
    """The runbook anchor of an alert (its heading, as GitHub slugs it)."""
    return name.lower()


def _annotations(cfg: RulesConfig, a: Alert) -> dict[str, str]:
    return {"description": a.description, "runbook_url": f"{cfg.runbook_url}#{anchor(a.name)}",
            "summary": a.summary}


def rule_files(cfg: RulesConfig, groups: list[Group]) -> dict[str, Any]:
    """The rule files as data: wasp-alerts.yml and wasp-recording.yml."""
    alerts, recs = [], []
    for g in groups:
        if g.recordings:
            recs.append({"name": g.name, "rules": [
                {"expr": r.expr, "record": r.record} for r in g.recordings]})
        if g.alerts:
            alerts.append({"name": g.name, "rules": [
                {"alert": a.name, "annotations": _annotations(cfg, a), "expr": a.expr,
                 "for": a.for_, "labels": {"severity": a.severity}} for a in g.alerts]})
    return {"wasp-alerts.yml": {"groups": alerts}, "wasp-recording.yml": {"groups": recs}}


def _series_text(s: Series) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
    return f"{s.metric}{{{labels}}}"


def test_files(cfg: RulesConfig, groups: list[Group]) -> dict[str, Any]:
    """promtool unit tests: one file per rule group, one test per case."""
    out: dict[str, Any] = {}
    for g in groups:
        rec_tests = [{
            "name": f"{r.record}: {i}",
            "interval": "1m",
            "input_series": [{"series": _series_text(x), "values": x.values} for x in c.series],
            "promql_expr_test": [{"eval_time": c.at, "expr": r.record, "exp_samples": [
                {"labels": _series_text(Series(r.record, labels, "")), "value": value}
                for labels, value in c.samples]}],
        } for r in g.recordings for i, c in enumerate(r.cases, 1)]
        if rec_tests:
            out[f"tests/{g.name}.test.yml"] = {
                "evaluation_interval": "1m",
                "rule_files": ["../wasp-recording.yml"],
                "tests": rec_tests,
            }
        if not g.alerts:
            continue
        by_name: dict[str, list[Alert]] = {}
        for a in g.alerts:
            by_name.setdefault(a.name, []).append(a)
        tests: dict[str, list[dict[str, Any]]] = {}
        for name, rules in by_name.items():
            for case in (c for a in rules for c in a.cases):
                exp = []
                for f in case.fires:
                    rule = next(a for a in rules if a.severity == f.severity)
                    ann = {k: render_template(v, f.labels, f.value)
                           for k, v in _annotations(cfg, rule).items()}
                    exp.append({"exp_annotations": ann,
                                "exp_labels": {**f.labels, "severity": f.severity}})
                # day-long cases run in their own file, evaluated at their own interval
                tests.setdefault(case.interval, []).append({
                    "name": f"{name}: {case.title}",
                    "interval": case.interval,
                    "input_series": [{"series": _series_text(s), "values": s.values}
                                     for s in case.series],
                    "alert_rule_test": [{"alertname": name, "eval_time": case.at,
                                         "exp_alerts": exp}],
                })
        for interval, group_tests in tests.items():
            suffix = "" if interval == "1m" else f"-every-{interval}"
            out[f"tests/{g.name}{suffix}.test.yml"] = {
                "evaluation_interval": interval,
                # recordings first, so alerts see this step's recorded values
                "group_eval_order": [x.name for x in groups],
                "rule_files": ["../wasp-alerts.yml", "../wasp-recording.yml"],
                "tests": group_tests,
            }
    return out


def alertmanager_config(cfg: RulesConfig) -> dict[str, Any]:
    """Alertmanager: page -> PagerDuty, warning -> Slack, info -> a low-traffic Slack channel."""
    group_by = ["alertname", "job", "target", "stanza"]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "slack-warnings",
            "group_by": group_by,
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['severity="page"'], "receiver": "pagerduty", "repeat_interval": "1h"},
                {"matchers": ['severity="warning"'], "receiver": "slack-warnings"},
                {"matchers": ['severity="info"'], "receiver": "slack-info", "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [
            {"source_matchers": ['alertname="WaspExporterDown"'],
             "target_matchers": ['alertname!="WaspExporterDown"'],
             "equal": ["job", "instance"]},
            {"source_matchers": ['alertname="WaspTargetDown"'],
             "target_matchers": ['alertname!~"WaspTargetDown|WaspExporterDown"'],
             "equal": ["job", "instance", "target"]},
            {"source_matchers": ['severity="page"'],
             "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "job", "instance", "target"]},
        ],
        "receivers": [
            {"name": "pagerduty", "pagerduty_configs": [{
                "routing_key_file": "/etc/alertmanager/secrets/pagerduty_routing_key",
                "send_resolved": True,
                "description": '{{ .CommonAnnotations.summary }}',
                "details": {"runbook": '{{ .CommonAnnotations.runbook_url }}',
                            "description": '{{ .CommonAnnotations.description }}'},
            }]},
            {"name": "slack-warnings", "slack_configs": [{
                "api_url_file": "/etc/alertmanager/secrets/slack_webhook_url",
                "channel": "#wasp-alerts",
                "send_resolved": True,
                "title": '[{{ .Status | toUpper }}] {{ .CommonAnnotations.summary }}',
                "text": '{{ range .Alerts }}{{ .Annotations.description }}\n'
                        '{{ .Annotations.runbook_url }}\n{{ end }}',
            }]},
            {"name": "slack-info", "slack_configs": [{
                "api_url_file": "/etc/alertmanager/secrets/slack_webhook_url",
                "channel": "#wasp-info",
                "send_resolved": False,
                "title": '{{ .CommonAnnotations.summary }}',
                "text": '{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}',
            }]},
        ],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str_repr(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_repr)

_HEADER = "# Generated by `wasp rules --out rules/` from exporter/wasp/mixin/rules.py; do not edit.\n"


def _dump(data: Any) -> str:
    return _HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=True, width=1000,
                               default_flow_style=False, allow_unicode=True)


def render_files(cfg: RulesConfig | None = None) -> dict[str, str]:
    """Every generated file under rules/, path -> text."""
    cfg = cfg or RulesConfig()
    groups = build(cfg)
    data = {**rule_files(cfg, groups), **test_files(cfg, groups),
            "alertmanager.yml": alertmanager_config(cfg)}
    return {path: _dump(d) for path, d in sorted(data.items())}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp rules`."""
    p.add_argument("--out", default="rules", metavar="DIR",
                   help="directory to write the rule files into (default: rules)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a file in DIR differs from what would be generated")
    p.add_argument("--runbook-url", default=DEFAULT_RUNBOOK_URL, metavar="URL",
                   help="where the runbook is: each alert's runbook_url is URL#alertname")
    p.add_argument("--job", default="wasp", help="the scrape job of the exporters (default: wasp)")


def main(args: argparse.Namespace) -> int:
    """Write (or check) the generated files."""
    cfg = RulesConfig(selector=(("job", args.job),), runbook_url=args.runbook_url)
    out = Path(args.out)
    files = render_files(cfg)
    if args.check:
        stale = [p for p, text in files.items()
                 if not (out / p).is_file() or (out / p).read_text() != text]
        for p in stale:
            print(f"{out / p}: differs from the generated file (run wasp rules --out {out})",
                  file=sys.stderr)
        return 1 if stale else 0
    for p, text in files.items():
        path = out / p
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0
