"""The generated Grafana dashboards: committed = generated, every metric and label in the
catalog, valid JSON model, and every expression accepted by a real Prometheus."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import require_tool
from wasp.catalog import catalog
from wasp.companions.pgcluster import free_port
from wasp.mixin import dashboards
from wasp.mixin.dashboards import panels
from wasp.mixin.promql import labels_of

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "dashboards"

#: Grafana's variables, replaced as Grafana would before sending a query
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m",
                "$target": ".*", "$stanza": ".*", "$job": ".*", "$salon_id": ".*"}
PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "day_of_month",
    "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log2", "max",
    "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt", "stddev", "stdvar", "sum",
    "sum_over_time", "time", "timestamp", "topk", "vector",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "bool", "offset", "inf", "nan"}
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SELECTOR_RE = re.compile(rf"({NAME})\s*\{{([^}}]*)\}}")
MATCHER_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def _all() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.build_all().items()}


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def _exprs() -> list[tuple[str, str, str]]:
    return [(name, p["title"], t["expr"]) for name, d in _all().items() for p in _panels(d)
            for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression, read from its text."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = GROUPING_RE.sub(" ", text)
    found = set()
    for m in re.finditer(rf"(?<![a-zA-Z0-9_:$.])({NAME})(?!\s*\()(?=\s*[\{{\[\)]|\s|$)", text):
        if m.group(1).lower() not in PROMQL_KEYWORDS:
            found.add(m.group(1))
    for m in re.finditer(rf"(?<![a-zA-Z0-9_:$.])({NAME})\s*\(", text):
        if m.group(1) not in PROMQL_FUNCTIONS | PROMQL_KEYWORDS:
            raise AssertionError(f"unknown function {m.group(1)!r} in {expr}")
    return found


def matchers(expr: str) -> list[tuple[str, str]]:
    """(metric, label) of every label matcher of every selector."""
    out = []
    for m in SELECTOR_RE.finditer(expr):
        body = m.group(2)
        pos = 0
        while pos < len(body.strip()):
            mm = MATCHER_RE.match(body, pos)
            assert mm, f"cannot parse matchers {body!r} in {expr}"
            out.append((m.group(1), mm.group(1)))
            pos = mm.end()
    return out


def substitute(expr: str) -> str:
    """The expression as Grafana sends it, variables replaced."""
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


# -- committed and generated ------------------------------------------------------------------


def test_committed_dashboards_are_the_generated_ones() -> None:
    files = dashboards.build_all()
    assert sorted(p.name for p in OUT.glob("*.json")) == sorted(files)
    for name, text in files.items():
        assert (OUT / name).read_text() == text, f"dashboards/{name} is stale: run wasp dashboards"


def test_generation_is_deterministic() -> None:
    assert dashboards.build_all() == dashboards.build_all()
    for text in dashboards.build_all().values():
        assert text == dashboards.render(json.loads(text))


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(out=str(tmp_path), check=True)
    assert dashboards.main(args) == 1  # nothing written yet
    assert dashboards.main(argparse.Namespace(out=str(tmp_path), check=False)) == 0
    assert dashboards.main(args) == 0
    f = next(tmp_path.glob("*.json"))
    f.write_text(f.read_text().replace('"refresh": "1m"', '"refresh": "5m"'))
    assert dashboards.main(args) == 1
    assert f.name in capsys.readouterr().err


def test_cli_wires_the_command() -> None:
    r = subprocess.run([sys.executable, "-m", "wasp", "dashboards", "--check", "--out", str(OUT)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


# -- catalog ------------------------------------------------------------------------------------


RECORDED = {r["record"]: r for g in yaml.safe_load(
    (REPO / "rules" / "wasp-recording.yml").read_text())["groups"] for r in g["rules"]}


def test_every_metric_is_in_the_catalog_or_a_recording_rule() -> None:
    cat = catalog()
    used: set[str] = set()
    for dash, title, expr in _exprs():
        names = metric_names(expr)
        assert names, f"{dash} / {title}: no metric in {expr}"
        for n in names:
            base, _, suffix = n.rpartition("_")
            series_of_histogram = suffix in ("bucket", "sum", "count") and base in cat \
                and cat.get(base).spec.type == "histogram"
            assert n in cat or n in RECORDED or series_of_histogram, \
                f"{dash} / {title}: {n} is not in the catalog ({expr})"
        used |= names
    assert len(used) > 100
    # panels show what the recording rules compute (those the alerts read too)
    assert len(used & set(RECORDED)) >= 7, sorted(used & set(RECORDED))


def test_every_label_matcher_exists_on_its_metric() -> None:
    recorded = panels.recorded()
    n = 0
    for dash, title, expr in _exprs():
        for metric, label in matchers(expr):
            assert label in labels_of(metric, recorded), \
                f"{dash} / {title}: {metric} has no label {label} ({expr})"
            n += 1
    assert n > 100


def test_no_increase_over_the_whole_range_on_a_time_series() -> None:
    for name, d in _all().items():
        for p in _panels(d):
            for t in p["targets"]:
                if p["type"] == "timeseries":
                    assert "[$__range]" not in t["expr"], f"{name} / {p['title']}: {t['expr']}"


def test_every_board_has_job_and_target_variables_and_business_a_salon() -> None:
    for name, d in _all().items():
        names = [v["name"] for v in d["templating"]["list"]]
        assert names[:3] == ["datasource", "job", "target"], (name, names)
    business = [v["name"] for v in _all()["business.json"]["templating"]["list"]]
    assert "salon_id" in business
    top = next(p for p in _panels(_all()["business.json"]) if "salons: bookings" in p["title"])
    assert 'salon_id=~"$salon_id"' in top["targets"][0]["expr"]
    assert 'salon_id!="other"' in top["targets"][0]["expr"]


def test_grouping_labels_exist_on_the_metric() -> None:
    recorded = panels.recorded()
    for dash, title, expr in _exprs():
        # `agg by (labels) (inner)` where inner names one metric; instance is the scrape's
        for m in re.finditer(r"\bby \(([^)]*)\) \((?:rate|increase)?\(?(" + NAME + ")", expr):
            for label in (x.strip() for x in m.group(1).split(",")):
                assert label in labels_of(m.group(2), recorded), f"{dash} / {title}: {expr}"


def test_rename_breaks_generation() -> None:
    with pytest.raises(KeyError, match="not in the wasp catalog"):
        dashboards.sel("wasp_no_such_metric")
    with pytest.raises(ValueError, match="no label"):
        dashboards.sel("wasp_target_up", nosuch="x")
    with pytest.raises(ValueError, match="no label"):
        dashboards.agg("sum", "wasp_pg_uptime_seconds", ("database",))
    with pytest.raises(ValueError, match="gauge"):
        dashboards.rate("wasp_pg_uptime_seconds")


def test_parser_reads_names_and_matchers() -> None:
    expr = ('sum by (target, state) (rate(wasp_a_total{x="1", y=~"a|b"}[5m])) / on (target) '
            'wasp_b and on (instance) wasp_c == 1 or vector(0)')
    assert metric_names(expr) == {"wasp_a_total", "wasp_b", "wasp_c"}
    assert matchers(expr) == [("wasp_a_total", "x"), ("wasp_a_total", "y")]
    with pytest.raises(AssertionError, match="unknown function"):
        metric_names("sume(wasp_a)")


# -- JSON model ---------------------------------------------------------------------------------


def test_json_model() -> None:
    uids = set()
    for name, d in _all().items():
        assert d["schemaVersion"] >= 36 and d["uid"] and d["title"].startswith("wasp / ")
        assert d["uid"] not in uids and len(d["uid"]) <= 40
        uids.add(d["uid"])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["target"]["query"]["query"] == "label_values(wasp_target_up, target)"
        for v in variables.values():
            if v["type"] == "query":
                metric, label = re.fullmatch(rf"label_values\(({NAME}), (\w+)\)",
                                             v["definition"]).groups()  # type: ignore[union-attr]
                assert label in labels_of(metric)
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in _panels(d):
            assert p["type"] in {"timeseries", "stat", "table", "gauge"}, p["type"]
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["fieldConfig"]["defaults"]["unit"]
            assert p["title"] and p["targets"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            for t in p["targets"]:
                assert t["expr"] and t["legendFormat"]
                for var in re.findall(r"\$(\w+)", t["expr"]):
                    assert var.startswith("__") or var in variables, (name, p["title"], var)


def test_grid_positions_do_not_overlap() -> None:
    for name, d in _all().items():
        cells: dict[tuple[int, int], str] = {}
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (name, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def test_required_panels_exist() -> None:
    d = _all()
    business = [p for p in _panels(d["business.json"])]
    newest = next(p for p in business if p["title"] == "Newest webhook age")
    steps = newest["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "red", "value": 600} in steps and newest["type"] == "stat"
    assert any(p["type"] == "table" and "statements" in p["title"]
               for p in _panels(d["postgres.json"]))
    counts = {name: len(_panels(x)) for name, x in d.items()}
    assert counts["business.json"] >= 20 and counts["postgres.json"] >= 20
    assert counts["replication-backups.json"] >= 15 and counts["pgbouncer.json"] >= 6
    assert counts["exporter.json"] >= 8 and counts["log.json"] >= 10
    latency = next(p for p in _panels(d["log.json"]) if "p50 / p95 / p99" in p["title"])
    assert {"color": "orange", "value": 0.1} in \
        latency["fieldConfig"]["defaults"]["thresholds"]["steps"]


# -- a real Prometheus ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus() -> Iterator[str]:
    """A throwaway Prometheus on a loopback port, scraping nothing."""
    binary = require_tool("prometheus")
    tmp = Path(tempfile.mkdtemp(prefix="wasp-dash-prom-"))
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("prometheus did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _query(url: str, expr: str, timeout: float = 5) -> dict[str, Any]:
    """Prometheus's answer to an instant query (its error body on an HTTP error)."""
    q = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=timeout) as r:
            body: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
    return body


def test_every_expression_is_valid_promql(prometheus: str) -> None:
    bad = []
    for dash, title, expr in _exprs():
        body = _query(prometheus, substitute(expr))
        if body.get("status") != "success":
            bad.append(f"{dash} / {title}: {body.get('error')}: {expr}")
    assert not bad, "\n".join(bad)


def test_the_check_catches_invalid_promql(prometheus: str) -> None:
    assert _query(prometheus, "sum by (x (wasp_target_up)")["status"] == "error"
