"""The rule files and their promtool tests as data, and their canonical YAML text."""

from __future__ import annotations

from typing import Any

import yaml

from wasp.mixin.alertmanager import alertmanager_config
from wasp.mixin.rules.model import Alert, Group, Series
from wasp.mixin.rules.templates import render_template
from wasp.mixin.settings import Settings

__all__ = ["SLO_FILE", "anchor", "render", "rule_files", "test_files"]


def anchor(name: str) -> str:
    """The runbook anchor of an alert (its heading, as GitHub slugs it)."""
    return name.lower()


def _annotations(cfg: Settings, a: Alert) -> dict[str, str]:
    return {"description": a.description, "runbook_url": f"{cfg.runbook_url}#{anchor(a.name)}",
            "summary": a.summary}


#: the SLO groups live in their own file: their 30-day ranges would slow every other test
SLO_FILE = "wasp-slo.yml"


def _is_slo(g: Group) -> bool:
    return g.name.startswith("wasp-slo")


def rule_files(cfg: Settings, groups: list[Group]) -> dict[str, Any]:
    """The rule files as data: wasp-alerts.yml, wasp-recording.yml and wasp-slo.yml."""
    alerts: list[dict[str, Any]] = []
    recs: list[dict[str, Any]] = []
    slo: list[dict[str, Any]] = []
    for g in groups:
        if g.recordings:
            (slo if _is_slo(g) else recs).append({"name": g.name, "rules": [
                {"expr": r.expr, "record": r.record} for r in g.recordings]})
        if g.alerts:
            (slo if _is_slo(g) else alerts).append({"name": g.name, "rules": [
                {"alert": a.name, "annotations": _annotations(cfg, a), "expr": a.expr,
                 "for": a.for_, "labels": {"severity": a.severity}} for a in g.alerts]})
    return {"wasp-alerts.yml": {"groups": alerts}, "wasp-recording.yml": {"groups": recs},
            SLO_FILE: {"groups": slo}}


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
                "group_eval_order": [x.name for x in groups if _is_slo(x) == _is_slo(g)],
                "rule_files": [f"../{SLO_FILE}"] if _is_slo(g) else [
                    "../wasp-alerts.yml", "../wasp-recording.yml"],
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




def render(cfg: Settings, groups: list[Group]) -> dict[str, str]:
    """Every generated file under rules/, path -> text."""
    data = {**rule_files(cfg, groups), **test_files(cfg, groups),
            "alertmanager.yml": alertmanager_config(cfg)}
    return {path: _dump(d) for path, d in sorted(data.items())}
