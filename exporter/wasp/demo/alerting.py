"""The alerting path of the demo: its rules, its Alertmanager config, its Prometheus config.

The demo never copies the production Alertmanager config (its secrets are files
that do not exist here): it generates the same routes and inhibitions with the
receivers pointed at the local stand-ins (`wasp.demo.receiver`). Rules come
from the same generator as `rules/`, through a settings file (the one
`wasp rules --settings FILE` reads, written beside the rules) with the `for`
durations and thresholds of a `Timing` profile: the production one, the demo's
(`for` capped at a minute, so a drill shows within a minute or two) and the
tests' (seconds).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wasp.mixin.alertmanager import TEMPLATE, alertmanager_config
from wasp.mixin.rules import build
from wasp.mixin.rules.files import rule_files
from wasp.mixin.rules.slo import SLOS
from wasp.mixin.settings import FOR_DEFAULTS, Settings, load_settings

__all__ = ["DEMO", "MINIMAL", "PRODUCTION", "TEST", "Timing", "alertmanager_for_receiver",
           "prometheus_config", "seconds", "write_alertmanager", "write_rules"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """A Prometheus duration ("5m", "1h30m", "30s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _dur(v: float) -> str:
    return f"{int(v)}s" if v == int(v) else f"{int(v * 1000)}ms"


@dataclass(frozen=True, slots=True)
class Timing:
    """Every interval on the path from a fault to a notification."""

    name: str
    scrape_interval: float = 15.0
    evaluation_interval: float = 15.0
    #: cap on every alert's `for` (None: as generated)
    for_max: float | None = None
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    #: cap on every exporter query's interval (None: the packs' own)
    query_interval_max: float | None = None
    #: PostgreSQL archive_timeout (a WAL segment at least this often while writing)
    archive_timeout: float = 60.0
    #: mixin settings to override (thresholds, offsets)
    thresholds: dict[str, float | str] = field(default_factory=dict)
    #: `for` of single alerts, over the cap
    for_overrides: dict[str, str] = field(default_factory=dict)

    def rules_config(self) -> Settings:
        """The generator's settings for this profile."""
        return Settings().replace(**self.thresholds,
                                  for_={k: self.for_of(v) for k, v in FOR_DEFAULTS.items()})

    def for_of(self, generated: str, alert: str = "") -> str:
        """The `for` an alert gets under this profile."""
        if alert in self.for_overrides:
            return self.for_overrides[alert]
        if self.for_max is None or seconds(generated) <= self.for_max:
            return generated
        return _dur(self.for_max)


PRODUCTION = Timing("production")
#: the silence alerts compare with the same hour yesterday, which a demo's Prometheus, new
#: with the demo, never has: they compare with 10 minutes ago there (the tests': a minute)
DEMO = Timing("demo", for_max=60.0, group_wait=10.0, group_interval=60.0,
              archive_timeout=60.0, thresholds={"webhook_silent_seconds": 120.0,
                                                "rpo_seconds": 120.0,
                                                "silence_guard_offset": "10m"})
#: --minimal: one server, no replicas expected
MINIMAL = dataclasses.replace(DEMO, name="minimal",
                              thresholds={**DEMO.thresholds, "expected_standbys": 0})
#: the drill tests: seconds. 106 collectors every 3s overrun now and then on a shared
#: 2-core machine, so the skip warning's threshold is out of reach there; a WAL segment
#: every 10s is a backlog after the archive drill, so only the stuck archive pages; the
#: live writer's reconnect after the primary drill takes up to ~30s, under the webhook threshold;
#: at night the 60 salons make a few webhooks an hour: one an hour before is traffic there.
#: The SLO burn-rate windows (5m to 3d) cannot shrink like a `for`, and the tests' 60 salons
#: make a few events a minute: on a stack minutes old one failed probe (a primary or pool
#: drill), webhook or double booking in a dozen crosses 14.4x a 99.5-99.9% budget. Every
#: objective is 50% there, so that the burn alerts stay quiet (their promtool cases test them)
TEST = Timing("test", scrape_interval=1.0, evaluation_interval=1.0, for_max=4.0,
              group_wait=1.0, group_interval=2.0, query_interval_max=3.0, archive_timeout=10.0,
              thresholds={"webhook_silent_seconds": 45.0, "rpo_seconds": 45.0,
                          "silence_guard_offset": "1m", "webhook_expected_min_1h": 1.0,
                          "wal_unarchived_bytes": float(2**30),
                          "heartbeat_stale_seconds": 30.0, "query_skips": 1e6,
                          **{slo.objective_field: 0.5 for slo in SLOS}},
              # the primary's page must be firing before what it implies to inhibit it: on a
              # loaded machine the replicas see their stream end up to ~5s before the exporter
              # finds the primary down (production's 30s group_wait absorbs that)
              for_overrides={"WaspTargetDown": "1s", **dict.fromkeys(
                  ("WaspWALReceiverNotStreaming", "WaspStandbysMissing",
                   "WaspStandbyHeartbeatStale", "WaspHeartbeatWriterStopped",
                   "WaspStandbyReplayDelayHigh"), "10s")})


def write_rules(out: Path, timing: Timing) -> dict[str, int]:
    """Generate the alert and recording rules for `timing` into `out`; alerts per severity.

    The profile goes through a settings file, out/settings.yml, that `wasp rules
    --settings` reads too.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg = Settings()
    if timing.for_max is not None or timing.thresholds:
        (out / "settings.yml").write_text(f"# `wasp demo` ({timing.name} timings)\n"
                                          + yaml.safe_dump(_settings_file(timing)))
        cfg = load_settings(out / "settings.yml")
    groups = build(cfg)
    for name, data in rule_files(cfg, groups).items():
        (out / name).write_text(f"# generated by `wasp demo` ({timing.name} timings)\n"
                                + yaml.safe_dump(data, sort_keys=True, width=1000))
    counts: dict[str, int] = {}
    for g in groups:
        for a in g.alerts:
            counts[a.severity] = counts.get(a.severity, 0) + 1
    return counts


def write_alertmanager(out: Path, receiver_url: str, timing: Timing) -> Path:
    """The demo's Alertmanager config and its notification templates in `out`; the config's path."""
    (out / "templates").mkdir(parents=True, exist_ok=True)
    (out / "templates" / "wasp.tmpl").write_text(TEMPLATE)
    conf = out / "alertmanager.yml"
    conf.write_text(yaml.safe_dump(alertmanager_for_receiver(receiver_url, timing)))
    return conf


def alertmanager_for_receiver(receiver_url: str, timing: Timing) -> dict[str, Any]:
    """The generated routing, inhibitions and templates, each receiver (the Watchdog's
    dead-man's switch included) pointed at the local stand-in, no credentials."""
    conf = alertmanager_config(Settings())
    route = conf["route"]
    route["group_wait"] = _dur(timing.group_wait)
    route["group_interval"] = _dur(timing.group_interval)
    route["repeat_interval"] = _dur(timing.repeat_interval)
    for r in route.get("routes", []):
        if r.get("receiver") != "watchdog":  # the heartbeat keeps its one-minute repeat
            r.pop("repeat_interval", None)
    # what the stand-ins record besides the text a person reads
    keys = {"alertname": "{{ .CommonLabels.alertname }}",
            "severity": "{{ .CommonLabels.severity }}",
            "target": "{{ .CommonLabels.target }}", "status": "{{ .Status }}"}
    for rc in conf["receivers"]:
        for wh in rc.get("webhook_configs", []):
            wh.pop("http_config", None)
            wh["url"] = f"{receiver_url}/webhook/{rc['name']}"
        for pd in rc.get("pagerduty_configs", []):
            pd.pop("routing_key_file", None)
            pd["routing_key"] = "wasp-demo"
            pd["url"] = f"{receiver_url}/pagerduty/v2/enqueue"
            pd["details"] = {**pd.get("details", {}), **keys}
        for sl in rc.get("slack_configs", []):
            sl.pop("api_url_file", None)
            sl["api_url"] = f"{receiver_url}/slack/{sl.get('channel', '#wasp').lstrip('#')}"
            sl["fields"] = [{"title": k, "value": v, "short": True} for k, v in keys.items()]
    return conf


def prometheus_config(*, exporter: str, rules_dir: Path | None, alertmanager: str | None,
                      timing: Timing) -> dict[str, Any]:
    """Prometheus scraping the exporter (job wasp) with the demo's rules (None: no rules yet)."""
    conf: dict[str, Any] = {
        "global": {"scrape_interval": _dur(timing.scrape_interval),
                   "evaluation_interval": _dur(timing.evaluation_interval),
                   "scrape_timeout": _dur(min(10.0, timing.scrape_interval))},
        "rule_files": [] if rules_dir is None else [
            str(p) for p in sorted(rules_dir.glob("wasp-*.yml"))],
        "scrape_configs": [{"job_name": "wasp", "static_configs": [{"targets": [exporter]}]}],
    }
    if alertmanager:
        conf["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return conf


def fault_to_notification(alert_for: str, timing: Timing, *, detect: float,
                          alert: str = "") -> float:
    """Worst-case seconds from a fault to the notification under `timing`.

    detect: how long after the fault the exporter's metric shows it (query interval,
    a threshold such as a heartbeat age); then one scrape, one evaluation to go pending,
    `for`, one evaluation to fire, and Alertmanager's group_wait.
    """
    return (detect + timing.scrape_interval + 2 * timing.evaluation_interval
            + seconds(timing.for_of(alert_for, alert)) + timing.group_wait)


def _settings_file(timing: Timing) -> dict[str, Any]:
    doc: dict[str, Any] = dict(timing.thresholds)
    fors: dict[str, Any] = {}
    for key, value in FOR_DEFAULTS.items():
        name, _, severity = key.partition(".")
        if severity:
            fors.setdefault(name, {})[severity] = timing.for_of(value, name)
        else:
            fors[name] = timing.for_of(value, name)
    doc["for"] = fors
    return doc
