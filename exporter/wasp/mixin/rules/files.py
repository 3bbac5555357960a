"""The rule files and their promtool tests as data, and their canonical YAML text."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml

from wasp.mixin.rules.boundary import boundary_cases
from wasp.mixin.rules.model import Alert, Group, Series
from wasp.mixin.rules.templates import render_template
from wasp.mixin.settings import Settings

__all__ = ["SLO_FILE", "anchor", "render", "rule_files", "test_files"]


def anchor(name: str) -> str:
    """The runbook anchor of an alert (its heading, as GitHub slugs it)."""
    return name.lower()


#: the dashboard each group's alerts link (dashboard uids)
GROUP_DASHBOARDS = {
    "wasp-alerting": "wasp-exporter", "wasp-exporter": "wasp-exporter",
    "wasp-app": "wasp-business", "wasp-postgres": "wasp-postgres",
    "wasp-replication": "wasp-replication-backups", "wasp-backup": "wasp-replication-backups",
    "wasp-pgbouncer": "wasp-pgbouncer", "wasp-log": "wasp-log",
    "wasp-storage": "wasp-postgres", "wasp-failover": "wasp-replication-backups",
    "wasp-slo": "wasp-kpi", "wasp-doctor": "wasp-exporter",
}


def _annotations(cfg: Settings, a: Alert, group: str) -> dict[str, str]:
    uid = GROUP_DASHBOARDS.get(group, "wasp-exporter")
    return {"dashboard_url": f"{cfg.grafana_url.rstrip('/')}/d/{uid}",
            "description": a.description, "runbook_url": f"{cfg.runbook_url}#{anchor(a.name)}",
            "summary": a.summary}


#: the SLO groups live in their own file: their 30-day ranges would slow every other test
SLO_FILE = "wasp-slo.yml"


def _is_slo(g: Group) -> bool:
    return g.name.startswith("wasp-slo")


def rule_files(cfg: Settings, groups: list[Group]) -> dict[str, Any]:
    """The rule files as data: wasp-recording.yml, wasp-slo.yml (the SLO recordings and alerts),
    and one file per other alert group (wasp-app.yml ...)."""
    recs: list[dict[str, Any]] = []
    slo: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for g in groups:
        if g.recordings:
            (slo if _is_slo(g) else recs).append({"name": g.name, "rules": [
                {"expr": r.expr, "record": r.record} for r in g.recordings]})
        if g.alerts:
            rules = {"name": g.name, "rules": [
                {"alert": a.name, "annotations": _annotations(cfg, a, g.name), "expr": a.expr,
                 "for": a.for_, "labels": {"severity": a.severity}} for a in g.alerts]}
            if _is_slo(g):
                slo.append(rules)
            else:
                out[f"{g.name}.yml"] = {"groups": [rules]}
    return {**out, "wasp-recording.yml": {"groups": recs}, SLO_FILE: {"groups": slo}}


def _series_text(s: Series) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
    return f"{s.metric}{{{labels}}}"


def test_files(cfg: Settings, groups: list[Group]) -> dict[str, Any]:
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
                "rule_files": [f"../{SLO_FILE}" if _is_slo(g) else "../wasp-recording.yml"],
                "tests": rec_tests,
            }
        if not g.alerts:
            continue
        by_name: dict[str, list[Alert]] = {}
        for a in g.alerts:
            by_name.setdefault(a.name, []).append(a)
        tests: dict[str, list[dict[str, Any]]] = {}
        for name, rules in by_name.items():
            probe = next((a.probe for a in rules if a.probe), None)
            boundary = (boundary_cases(name, probe, cfg, tuple(a.severity for a in rules))
                        if probe else [])
            for case in [*(c for a in rules for c in a.cases), *boundary]:
                exp = []
                for f in case.fires:
                    rule = next(a for a in rules if a.severity == f.severity)
                    ann = {k: render_template(v, f.labels, f.value)
                           for k, v in _annotations(cfg, rule, g.name).items()}
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
                "group_eval_order": ([x.name for x in groups if _is_slo(x)] if _is_slo(g) else
                                     [*(x.name for x in groups if x.recordings and not _is_slo(x)),
                                      g.name]),
                "rule_files": [f"../{SLO_FILE}"] if _is_slo(g) else [
                    "../wasp-recording.yml", f"../{g.name}.yml"],
                "tests": group_tests,
            }
    return out



class _Dumper(yaml.SafeDumper):
    pass


def _str_repr(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_repr)

_HEADER = "# Generated by `wasp rules --out rules/` from exporter/wasp/mixin/; do not edit.\n"


def _dump(data: Any) -> str:
    return _HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=True, width=1000,
                               default_flow_style=False, allow_unicode=True)




def render(cfg: Settings, groups: list[Group], *, tests: bool = True,
           only: Collection[str] | None = None) -> dict[str, str]:
    """Every generated file under rules/, path -> text (without tests/ unless `tests`; only the
    paths in `only` when given)."""
    data = {**rule_files(cfg, groups), **(test_files(cfg, groups) if tests else {})}
    return {path: _dump(d) for path, d in sorted(data.items()) if only is None or path in only}
