"""Alerts on the alert path itself: the Watchdog, Alertmanager's and Prometheus' own failures.

`Watchdog` always fires and goes to its own receiver, a dead-man's switch
(Healthchecks.io, PagerDuty's or Opsgenie's heartbeat, Grafana OnCall's):
when its notifications stop, the switch pages, because Prometheus, the rules
or Alertmanager are down.
"""

from __future__ import annotations

from wasp.mixin.promql import Selectors
from wasp.mixin.rules.boundary import Bound, Probe, counter, gauge, minutes, when
from wasp.mixin.rules.model import Builder, Case
from wasp.mixin.settings import Settings, spoken

AM = {"instance": "alertmanager:9093", "job": "alertmanager", "integration": "slack"}
PROM = {"instance": "prometheus:9090", "job": "prometheus", "rule_group": "wasp-app"}


def build(b: Builder) -> None:
    """The rules of the group."""
    cfg = b.cfg
    g = b.group("wasp-alerting")
    q = b.q()
    b.alert(g, "Watchdog", "none", q, "vector(1)",
            "The alerting pipeline works",
            "This alert always fires. Its receiver is a dead-man's switch that pages when the "
            "notifications stop: then Prometheus, its rules or Alertmanager are down, and no "
            "other alert would reach anyone.")
    w = cfg.alerting_failure_window
    q = Selectors(fixed=cfg.alertmanager_selector, recorded=b.recorded)
    b.alert(g, "WaspAlertmanagerNotificationsFailing", "page", q, f"""
sum without (reason) (increase({q("alertmanager_notifications_failed_total")}[{w}])) > 0
""",
        "Alertmanager {{ $labels.instance }} fails to send {{ $labels.integration }} notifications",
        "{{ $value | humanize }} notifications to {{ $labels.integration }} failed in "
        f"{spoken(w)} on Alertmanager {{{{ $labels.instance }}}}: alerts do not reach on-call. "
        "Alertmanager's log says why (an expired webhook, a revoked routing key, the network).",
        [Case("notifications deliver", (
            counter("alertmanager_notifications_failed_total", 0, 30, **AM),), "20m")])
    q = Selectors(fixed=cfg.prometheus_selector, recorded=b.recorded)
    b.alert(g, "WaspPrometheusRuleEvaluationFailing", "warning", q, f"""
increase({q("prometheus_rule_evaluation_failures_total")}[{w}]) > 0
""",
        "Prometheus {{ $labels.instance }} fails to evaluate rule group {{ $labels.rule_group }}",
        "{{ $value | humanize }} evaluations of rule group {{ $labels.rule_group }} failed in "
        f"{spoken(w)} on Prometheus {{{{ $labels.instance }}}}: its alerts may never fire. "
        "Prometheus' log and /rules name the rule and the error.",
        [Case("rules evaluate", (
            counter("prometheus_rule_evaluation_failures_total", 0, 30, **PROM),), "20m")])


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    window = minutes(cfg.alerting_failure_window)
    return {
        "Watchdog": Probe(
            {}, (),
            lambda p, n, every: (gauge("up", 1, n, instance="wasp-1:9645", job="wasp"),),
            lambda p, at: when(True, "none", {}, 1),
            equivalent="it always fires with a `for` of 0: 0 and doubled are the same rule"),
        "WaspAlertmanagerNotificationsFailing": Probe(
            {"per_minute": 2}, (Bound("per_minute", ">", quiet=0),),
            lambda p, n, every: (counter("alertmanager_notifications_failed_total",
                                         p["per_minute"], n, **AM),),
            lambda p, at: when(p["per_minute"] > 0, "page", AM,
                               p["per_minute"] * min(at, window)),
            onset=1),
        "WaspPrometheusRuleEvaluationFailing": Probe(
            {"per_minute": 2}, (Bound("per_minute", ">", quiet=0),),
            lambda p, n, every: (counter("prometheus_rule_evaluation_failures_total",
                                         p["per_minute"], n, **PROM),),
            lambda p, at: when(p["per_minute"] > 0, "warning", PROM,
                               p["per_minute"] * min(at, window)),
            onset=1),
    }
