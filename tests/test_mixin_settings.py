"""The mixin's one settings object: overrides move alerts and panels together, bad files are
refused with file:line: key, and generation is byte-identical across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasp.mixin import dashboards, rules
from wasp.mixin.settings import FOR_DEFAULTS, Settings, SettingsError, load_settings, spoken

ROOT = Path(__file__).resolve().parents[1]


def _alert(files: dict[str, str], name: str, severity: str) -> dict[str, Any]:
    return next(r for path, text in files.items() if not path.startswith("tests/")
                for g in yaml.safe_load(text)["groups"] for r in g["rules"]
                if r.get("alert") == name and r["labels"]["severity"] == severity)


def _panel(board: str, title: str, s: Settings) -> dict[str, Any]:
    doc = json.loads(dashboards.build_all(s)[board])
    return next(p for p in doc["panels"] if p.get("title") == title)


def _steps(panel: dict[str, Any]) -> list[tuple[Any, str]]:
    return [(st["value"], st["color"])
            for st in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def _wasp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasp", *args], capture_output=True, text=True,
                          timeout=180, env=env, cwd=ROOT)


def test_one_setting_moves_the_alert_and_its_panel(tmp_path: Path) -> None:
    default = Settings()
    assert _alert(rules.render_files(default), "WaspPostgresConnectionsHigh", "page")["expr"] \
        .endswith("> 0.95")
    assert _steps(_panel("postgres.json", "Connections used", default))[-1] == (0.95, "red")

    site = tmp_path / "site.yml"
    site.write_text("connections_page: 0.9\npool_usage_ratio: 0.75\n"
                    "for:\n  WaspPostgresConnectionsHigh: {page: 2m}\n")
    s = load_settings(site)
    page = _alert(rules.render_files(s), "WaspPostgresConnectionsHigh", "page")
    assert page["expr"].endswith("> 0.9") and page["for"] == "2m"
    assert _alert(rules.render_files(s), "WaspPostgresConnectionsHigh", "warning")["for"] == "10m"
    assert _steps(_panel("postgres.json", "Connections used", s)) == [
        (None, "green"), (0.8, "orange"), (0.9, "red")]
    assert _alert(rules.render_files(s), "WaspPgBouncerPoolSaturated", "warning")["expr"] \
        .endswith("> 0.75")
    assert (0.75, "orange") in _steps(_panel("pgbouncer.json",
                                             "Pool usage (active servers / pool size)", s))

    # and through the command line, both generators
    r = _wasp("rules", "--out", str(tmp_path / "r"), "--settings", str(site))
    assert r.returncode == 0, r.stderr
    assert "> 0.9\n" in (tmp_path / "r" / "wasp-postgres.yml").read_text()
    r = _wasp("dashboards", "--out", str(tmp_path / "d"), "--settings", str(site))
    assert r.returncode == 0, r.stderr
    assert '"value": 0.9' in (tmp_path / "d" / "postgres.json").read_text()


def test_boards_and_alerts_agree_on_the_shared_thresholds() -> None:
    s = Settings()
    assert _steps(_panel("pgbouncer.json", "Pool usage (active servers / pool size)", s)) == [
        (None, "green"), (s.pool_usage_ratio, "orange")]
    usage = _panel("postgres.json", "Connections used", s)["targets"][0]["expr"]
    assert "target:wasp_pg_connections:usage_ratio" in usage  # what the alert reads
    assert _steps(_panel("business.json", "Newest webhook age", s)) == [
        (None, "green"), (s.webhook_silent_seconds, "red")]


@pytest.mark.parametrize(("text", "where", "message"), [
    ("connections_page: 0.9\nconections_warning: 0.7\n", ":2: conections_warning:",
     "unknown setting (did you mean connections_warning?)"),
    ("pool_usage_ratio: high\n", ":1: pool_usage_ratio:", "expected a non-negative number"),
    ("expected_standbys: 1.5\n", ":1: expected_standbys:", "expected a non-negative integer"),
    ("deadlocks_window: 30 minutes\n", ":1: deadlocks_window:", "expected a duration"),
    ("selector: [job]\n", ":1: selector:", "expected a mapping"),
    ("for:\n  WaspExporterDwn: 5m\n", ":2: for.WaspExporterDwn:",
     "no such alert (did you mean WaspExporterDown?)"),
    ("for:\n  WaspPostgresConnectionsHigh: {critical: 5m}\n",
     ":2: for.WaspPostgresConnectionsHigh.critical:", "expected one of its severities"),
    ("for:\n  WaspExporterDown: soon\n", ":2: for.WaspExporterDown:", "expected a duration"),
    ("- a\n", ":1:", "expected a mapping of setting: value"),
    ("a: [1\n", ":2:", "not valid YAML"),
])
def test_a_bad_settings_file_is_refused_with_file_line_and_key(
        tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(path)
    assert str(e.value).startswith(f"{path}{where}"), str(e.value)
    assert message in str(e.value)
    for command in ("rules", "dashboards", "alertmanager"):
        r = _wasp(command, "--out", str(tmp_path / command), "--settings", str(path))
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        assert f"{path}{where}" in r.stderr and message in r.stderr
        assert not (tmp_path / command).exists()


def test_an_empty_or_missing_settings_file() -> None:
    assert load_settings(os.devnull) == Settings()
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings("/nonexistent/site.yml")


def test_every_alert_has_its_for_in_the_settings_and_no_key_is_stale() -> None:
    used = set()
    for g in rules.build():
        for a in g.alerts:
            key = f"{a.name}.{a.severity}"
            used.add(key if key in FOR_DEFAULTS else a.name)
            assert a.for_ == Settings().for_of(a.name, a.severity)
    assert used == set(FOR_DEFAULTS)


def test_spoken_durations() -> None:
    assert spoken("30m") == "30 minutes" and spoken("1h") == "an hour"
    assert spoken("1d") == "a day" and spoken("1h30m") == "1h30m"


def test_generation_is_byte_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    outs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = tmp_path / f"seed-{seed}"
        for command in ("rules", "dashboards", "alertmanager"):
            r = _wasp(command, "--out", str(out / command), env=env)
            assert r.returncode == 0, r.stderr
        outs.append({str(p.relative_to(out)): p.read_bytes()
                     for p in sorted(out.rglob("*")) if p.is_file()})
    assert outs[0] == outs[1]
    assert len(outs[0]) == len(rules.render_files()) + len(dashboards.build_all()) + 2
    # and the committed files are what either process wrote
    for rel, data in outs[0].items():
        command, _, name = rel.partition("/")
        assert (ROOT / command / name).read_bytes() == data, rel
