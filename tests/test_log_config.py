"""The log: configuration section: defaults, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasp.config.log import LogSettings, SamplingSettings
from wasp.config.schema import ConfigError, load_config
from wasp.packs import make_engine, python_collectors
from wasp.packs.log import LogCollector


def _cfg(section: str, tmp_path: Path, packs: str = "[postgres]") -> Path:
    p = tmp_path / "wasp.yml"
    p.write_text(f"server:\n  status_dir: {tmp_path / 'status'}\n"
                 f"targets:\n  db:\n    dsn: host=127.0.0.1\n    packs: {packs}\n" + section)
    return p


def test_section_parses_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(_cfg("""log:
  directory: /var/lib/postgresql/15/main/log
  target: db
  top: 5
  sampling: {log_min_duration_sample: 0, log_statement_sample_rate: 0.1}
""", tmp_path))
    s: LogSettings = cfg.section("log")
    assert s == LogSettings(directory="/var/lib/postgresql/15/main/log", target="db", top=5,
                            sampling=SamplingSettings(-1.0, 0.0, 0.1))
    collectors = python_collectors(cfg)
    assert [type(c) for c in collectors] == [LogCollector]
    assert "-/log" in make_engine(cfg).states


@pytest.mark.parametrize(("section", "line", "key", "words"), [
    ("log:\n  pattern: '*.json'\n", 7, "log", "directory"),
    ("log:\n  directory: log\n", 8, "log.directory", "absolute"),
    ("log:\n  directory: /x\n  colour: red\n", 9, "log.colour", "unknown"),
    ("log:\n  directory: /x\n  target: nope\n", 9, "log.target", "nope"),
    ("log:\n  directory: /x\n  start_at: middle\n", 9, "log.start_at", "end or beginning"),
    ("log:\n  directory: /x\n  sampling: {log_statement_sample_rate: 2}\n", 9,
     "log.sampling.log_statement_sample_rate", "between 0 and 1"),
    ("log:\n  directory: /x\n  top: 0\n", 9, "log.top", ">= 1"),
])
def test_section_errors_name_file_line_and_key(tmp_path: Path, section: str, line: int,
                                               key: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_cfg(section, tmp_path))
    msg = str(e.value)
    assert f"wasp.yml:{line}" in msg and key in msg and words in msg, msg


def test_pack_on_a_target_needs_the_section(tmp_path: Path) -> None:
    cfg = load_config(_cfg("", tmp_path, packs="[postgres, log]"))
    with pytest.raises(ConfigError, match="log: section"):
        python_collectors(cfg)


def test_maintenance_window_settings(tmp_path: Path) -> None:
    from wasp.mixin.rules import build
    from wasp.mixin.settings import SettingsError, load_settings

    site = tmp_path / "site.yml"
    site.write_text("log_maintenance_days: [6, 0]\nlog_maintenance_start_hour: 1\n")
    cfg = load_settings(site)
    assert cfg.log_maintenance_days == (0, 6) and cfg.log_maintenance_start_hour == 1
    alert = next(a for g in build(cfg) for a in g.alerts
                 if a.name == "WaspPrivilegeChangeOutsideMaintenance")
    assert "hour() >= 1 < 4" in alert.expr
    assert "day_of_week() == 0 or on () day_of_week() == 6" in alert.expr
    for text, words in (("log_maintenance_days: [7]\n", "0 (Sunday) to 6"),
                        ("log_maintenance_days: []\n", "non-empty list"),
                        ("log_maintenance_end_hour: 25\n", "0 to 24")):
        site.write_text(text)
        with pytest.raises(SettingsError) as e:
            load_settings(site)
        assert f"{site}:1: {text.split(':')[0]}:" in str(e.value) and words in str(e.value)
