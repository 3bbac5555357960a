"""The generated rules: valid for promtool and amtool, proven by their unit tests, loaded by a real
Prometheus, tied to the catalog and the runbook, and committed exactly as generated."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import require_tool
from wasp.catalog import catalog
from wasp.companions.pgcluster import free_port
from wasp.mixin.promql import NODE_METRICS, PROMETHEUS_METRICS, Selectors
from wasp.mixin.rules import anchor, build, render_files, render_template
from wasp.mixin.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
RULE_FILES = [RULES / "wasp-alerts.yml", RULES / "wasp-recording.yml", RULES / "wasp-slo.yml"]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[dict[str, Any]]:
    return [r for f in ("wasp-alerts.yml", "wasp-slo.yml") for g in _load(RULES / f)["groups"]
            for r in g["rules"] if "alert" in r]


def _recording_rules() -> list[dict[str, Any]]:
    return [r for f in ("wasp-recording.yml", "wasp-slo.yml") for g in _load(RULES / f)["groups"]
            for r in g["rules"] if "record" in r]


def _unit_tests() -> list[dict[str, Any]]:
    return [t for f in sorted((RULES / "tests").glob("*.test.yml")) for t in _load(f)["tests"]]


# --- committed == generated -------------------------------------------------------------------


def test_committed_files_are_exactly_what_the_generator_writes() -> None:
    files = render_files()
    committed = {str(p.relative_to(RULES)) for p in RULES.rglob("*.yml")}
    assert committed == set(files), "rules/ holds files the generator does not write (or misses some)"
    for rel, text in files.items():
        assert (RULES / rel).read_text() == text, f"rules/{rel} is stale: run wasp rules --out rules/"
    assert render_files() == files, "the generator is not deterministic"


def test_wasp_rules_check_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wasp", "rules", "--out", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=120)

    assert run("--check").returncode == 1  # empty directory
    assert run().returncode == 0
    assert run("--check").returncode == 0
    alerts = tmp_path / "wasp-alerts.yml"
    alerts.write_text(alerts.read_text().replace("> 600", "> 601"))
    r = run("--check")
    assert r.returncode == 1 and "wasp-alerts.yml" in r.stderr


# --- promtool and amtool ----------------------------------------------------------------------


def test_promtool_check_rules_without_warnings() -> None:
    for f in RULE_FILES:
        r = subprocess.run([require_tool("promtool"), "check", "rules", str(f)],
                           capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "SUCCESS" in out and "WARNING" not in out.upper(), out


def test_promtool_unit_tests_pass() -> None:
    files = sorted(str(p) for p in (RULES / "tests").glob("*.test.yml"))
    assert files
    procs = [subprocess.Popen([require_tool("promtool"), "test", "rules", f], cwd=RULES / "tests",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for f in files]
    for f, p in zip(files, procs, strict=True):
        out, _ = p.communicate(timeout=600)  # all files at once, on a machine that may be busy
        assert p.returncode == 0, f"{f}:\n{out}"


def test_amtool_check_config() -> None:
    r = subprocess.run([require_tool("amtool"), "check-config", str(RULES / "alertmanager.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=page", "alertname=WaspWebhooksSilent", "target=main"], "pagerduty"),
    (["severity=warning", "alertname=WaspQueryFailing", "target=main"], "slack-warnings"),
    (["severity=info", "alertname=WaspPostgresPendingRestart"], "slack-info"),
    (["alertname=SomethingElse"], "slack-warnings"),
])
def test_alertmanager_routes(labels: list[str], receiver: str) -> None:
    r = subprocess.run([require_tool("amtool"), "config", "routes", "test",
                        f"--config.file={RULES / 'alertmanager.yml'}", *labels],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == receiver


def test_alertmanager_secrets_are_files_and_inhibitions_cover_outages() -> None:
    text = (RULES / "alertmanager.yml").read_text()
    cfg = yaml.safe_load(text)
    for rc in cfg["receivers"]:
        for pd in rc.get("pagerduty_configs", []):
            assert "routing_key_file" in pd and "routing_key" not in pd and "service_key" not in pd
        for sl in rc.get("slack_configs", []):
            assert "api_url_file" in sl and "api_url" not in sl
    assert "hooks.slack.com" not in text
    sources = {tuple(i["source_matchers"]): i for i in cfg["inhibit_rules"]}
    assert sources[('alertname="WaspExporterDown"',)]["equal"] == ["job", "instance"]
    assert sources[('alertname="WaspTargetDown"',)]["equal"] == ["job", "instance", "target"]


# --- every alert is complete, documented and proven -------------------------------------------


def test_every_alert_has_annotations_for_severity_and_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    rules = _alert_rules()
    assert len({r["alert"] for r in rules}) >= 35
    for r in rules:
        assert r["labels"]["severity"] in ("page", "warning", "info"), r["alert"]
        assert re.fullmatch(r"\d+[smhd]", r["for"]), r["alert"]
        ann = r["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), r["alert"]
        assert ann["runbook_url"] == f"docs/runbook.md#{anchor(r['alert'])}"
        assert anchor(r["alert"]) in anchors, f"docs/runbook.md has no section {r['alert']}"
    documented = set(re.findall(r"^### (Wasp\w+)$", runbook, re.M))
    assert documented == {r["alert"] for r in rules}, "runbook sections without an alert"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    fired: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for t in _unit_tests():
        for art in t.get("alert_rule_test", []):
            if art["exp_alerts"]:
                fired |= {(art["alertname"], a["exp_labels"]["severity"]) for a in art["exp_alerts"]}
            else:
                quiet.add(art["alertname"])
    for r in _alert_rules():
        assert (r["alert"], r["labels"]["severity"]) in fired, f"no test fires {r['alert']} ({r['labels']['severity']})"
        assert r["alert"] in quiet, f"no test shows {r['alert']} staying quiet"


def test_every_recording_rule_has_a_promtool_case() -> None:
    tested = {e["expr"] for t in _unit_tests() for e in t.get("promql_expr_test", [])}
    for r in _recording_rules():
        assert r["record"] in tested, f"no promtool case checks {r['record']}"


_FUNCTIONS = {"sum", "max", "min", "count", "avg", "rate", "increase", "time", "clamp_min",
              "absent", "scalar", "and", "or", "unless", "offset", "Inf", "bool",
              "histogram_quantile", "hour", "day_of_week", "max_over_time", "last_over_time",
              "changes", "predict_linear"}


def _in_catalog(name: str) -> bool:
    """A catalog metric, or a series (_bucket, _sum, _count) of a catalog histogram."""
    cat = catalog()
    base, _, suffix = name.rpartition("_")
    return name in cat or (suffix in ("bucket", "sum", "count") and base in cat
                           and cat.get(base).spec.type == "histogram")


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (every wasp selector carries the job matcher)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\b(?:group_left|group_right)\b", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    tokens = re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr)
    return {t for t in tokens if t not in _FUNCTIONS}


def test_every_metric_in_an_expression_is_in_the_catalog() -> None:
    recorded = {r["record"] for r in _recording_rules()}
    seen: set[str] = set()
    for r in _alert_rules() + _recording_rules():
        for name in _metric_names(r["expr"]):
            seen.add(name)
            assert _in_catalog(name) or name in PROMETHEUS_METRICS or name in NODE_METRICS \
                or name in recorded, \
                f"{r.get('alert') or r.get('record')}: {name} is not in the catalog"
    assert "wasp_pg_standby_replay_delay_seconds" in seen and "up" in seen
    # and the generator's own record of what each rule uses agrees
    for g in build():
        for a in g.alerts:
            assert a.metrics == _metric_names(a.expr), a.name
            assert all(_in_catalog(m) or m in PROMETHEUS_METRICS or m in NODE_METRICS
                       or m in recorded
                       for m in a.metrics)
        for rec in g.recordings:
            assert rec.metrics == _metric_names(rec.expr)
            assert all(_in_catalog(m) or m in recorded for m in rec.metrics)


def test_recording_rules_follow_the_naming_convention() -> None:
    for r in _recording_rules():
        level, metric, ops = r["record"].split(":")
        assert level and metric.startswith("wasp_") and ops, r["record"]


def test_a_renamed_metric_or_a_wrong_label_breaks_the_generator() -> None:
    q = Selectors(fixed=Settings().selector)
    assert q("wasp_target_up", target="main") == 'wasp_target_up{job="wasp",target="main"}'
    with pytest.raises(KeyError, match="wasp_no_such_metric"):
        q("wasp_no_such_metric")
    with pytest.raises(ValueError, match="no label 'database'"):
        q("wasp_pg_standby_replay_delay_seconds", database="app")
    assert 'wal_status=~"lost"' in q("wasp_pg_replication_slot_wal_status", wal_status="=~lost")


def test_selector_and_thresholds_come_from_the_config() -> None:
    cfg = Settings(selector=(("job", "db-monitor"),), webhook_silent_seconds=1200)
    text = render_files(cfg)["wasp-alerts.yml"]
    assert 'job="wasp"' not in text and 'job="db-monitor"' in text
    assert 'target:wasp_app_webhook_newest:age_seconds{job="db-monitor"} > 1200' in text


@pytest.mark.parametrize(("template", "value", "out"), [
    ("{{ $value | humanizeDuration }}", 900, "15m 0s"),
    ("{{ $value | humanizeDuration }}", 782400, "9d 1h 20m 0s"),
    ("{{ $value | humanizeDuration }}", 12, "12s"),
    ("{{ $value | humanizePercentage }}", 0.085, "8.5%"),
    ("{{ $value | humanize1024 }}B", 8053063680, "7.5GiB"),
    ("{{ $value | humanize }}", 1.2e9, "1.2G"),
    ("{{ $labels.target }}: {{ $value }}", 2, "main: 2"),
])
def test_annotation_templates_render_like_prometheus(template: str, value: float, out: str) -> None:
    assert render_template(template, {"target": "main"}, value) == out


# --- a real Prometheus loads them -------------------------------------------------------------


def test_a_real_prometheus_loads_the_rule_groups(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
        "rule_files": [str(f) for f in RULE_FILES],
        "scrape_configs": [{"job_name": "wasp", "static_configs": [{"targets": ["127.0.0.1:1"]}]}],
    }))
    r = subprocess.run([require_tool("promtool"), "check", "config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    proc = subprocess.Popen([prometheus, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        groups: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=2) as resp:
                    groups = json.load(resp)["data"]["groups"]
                if groups and all(g["lastEvaluation"] != "0001-01-01T00:00:00Z" for g in groups):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        names = {g["name"] for g in groups}
        expected = {g.name for g in build()}
        assert names == expected, (names, proc.poll())
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == len(_alert_rules()) + len(_recording_rules())
        assert all(r["health"] != "err" for r in rules), [r for r in rules if r["health"] == "err"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_real_alertmanager_inhibits_as_documented(tmp_path: Path) -> None:
    alertmanager = shutil.which("prometheus-alertmanager") or require_tool("alertmanager")
    port = free_port()
    proc = subprocess.Popen([alertmanager, f"--config.file={RULES / 'alertmanager.yml'}",
                             f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v2/alerts"

    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {"labels": {"alertname": name, "severity": severity, "job": "wasp", **labels}}

    sent = [
        alert("WaspExporterDown", "page", instance="wasp-2:9645"),
        alert("WaspBackupFailed", "warning", instance="wasp-2:9645", stanza="main", type="incr"),
        alert("WaspTargetDown", "page", instance="wasp-1:9645", target="main"),
        alert("WaspQueryFailing", "warning", instance="wasp-1:9645", target="main", query="q"),
        alert("WaspQueryFailing", "warning", instance="wasp-1:9645", target="replica1", query="q"),
        alert("WaspPostgresConnectionsHigh", "page", instance="wasp-1:9645", target="replica1"),
        alert("WaspPostgresConnectionsHigh", "warning", instance="wasp-1:9645", target="replica1"),
        alert("WaspWALReceiverNotStreaming", "warning", instance="wasp-1:9645", target="replica2"),
    ]
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                req = urllib.request.Request(base, data=json.dumps(sent).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        state: dict[tuple[str, str, str], str] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(base, timeout=2) as resp:
                got = json.load(resp)
            state = {(a["labels"]["alertname"], a["labels"].get("target", ""),
                      a["labels"]["severity"]): a["status"]["state"] for a in got}
            if len(state) == len(sent) and "suppressed" in state.values():
                time.sleep(0.5)  # inhibitions settle within a moment
                with urllib.request.urlopen(base, timeout=2) as resp:
                    got = json.load(resp)
                state = {(a["labels"]["alertname"], a["labels"].get("target", ""),
                          a["labels"]["severity"]): a["status"]["state"] for a in got}
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert state == {
        ("WaspExporterDown", "", "page"): "active",
        ("WaspBackupFailed", "", "warning"): "suppressed",      # same exporter is down
        ("WaspTargetDown", "main", "page"): "active",
        ("WaspQueryFailing", "main", "warning"): "suppressed",  # its target is down
        ("WaspQueryFailing", "replica1", "warning"): "active",  # another target
        ("WaspPostgresConnectionsHigh", "replica1", "page"): "active",
        ("WaspPostgresConnectionsHigh", "replica1", "warning"): "suppressed",  # the page speaks
        ("WaspWALReceiverNotStreaming", "replica2", "warning"): "suppressed",  # the primary is down
    }
