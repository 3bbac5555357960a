"""Configuration validation: every error names file, line and dotted key; exit 2 from the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wasp.config.schema import ConfigError, load_config, load_pack, parse_config

GOOD = """\
server:
  listen: 127.0.0.1:9999
targets:
  main:
    dsn_env: WASP_TEST_DSN
    packs: []
queries:
  bookings:
    interval: 30s
    timeout: 5s
    sql: select status, count(*) as n from bookings group by 1
    labels: [status]
    values:
      - column: n
        metric: wasp_test_bookings
        type: gauge
        help: Bookings by status
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yml"
    p.write_text(textwrap.dedent(text))
    return p


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasp", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_good_config_parses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    q = cfg.queries[0]
    assert (q.name, q.interval, q.timeout, q.labels) == ("bookings", 30.0, 5.0, ("status",))
    assert cfg.server.port == 9999
    assert run_check(write(tmp_path, GOOD)).returncode == 0


@pytest.mark.parametrize(
    ("mutate", "line", "key", "what"),
    [
        (lambda s: s.replace("type: gauge", "type: gauges"), 16,
         "queries.bookings.values[0].type", "must be gauge or counter"),
        (lambda s: s.replace("interval: 30s", "intervall: 30s"), 9,
         "queries.bookings.intervall", "unknown key"),
        (lambda s: s.replace("timeout: 5s", "timeout: [5]"), 10,
         "queries.bookings.timeout", "must be a duration"),
        (lambda s: s.replace("    packs: []", "    packs: [nope]"), 6,
         "targets.main.packs[0]", "unknown pack"),
        (lambda s: s.replace("metric: wasp_test_bookings", "metric: wasp_test_bookings_total"), 15,
         "queries.bookings.values[0].metric", "_total"),
        (lambda s: s.replace("timeout: 5s", "timeout: 50s"), 10,
         "queries.bookings.timeout", "must not exceed the interval"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, mutate, line: int, key: str, what: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, mutate(GOOD))
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:{line}: {key}: "), msg
    assert what in msg
    r = run_check(path)
    assert r.returncode == 2
    assert f"{path}:{line}: {key}" in r.stderr


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("        help: Bookings by status", "        help: [oops"))
    r = run_check(path)
    assert r.returncode == 2
    assert f"{path}:" in r.stderr and "invalid YAML" in r.stderr
    line = int(r.stderr.split(f"{path}:")[1].split(":")[0])
    assert 16 <= line <= 18
    # the key being written when the parser gave up
    assert f":{line}: queries.bookings.values.help: invalid YAML" in r.stderr


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    r = run_check(tmp_path / "nope.yml")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_duplicate_keys_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    interval: 30s\n", "    interval: 30s\n    interval: 40s\n"))
    with pytest.raises(ConfigError, match="duplicate key"):
        load_config(path)


def test_metric_defined_twice_with_other_labels() -> None:
    data = {
        "targets": {"main": {"dsn": "host=x", "packs": []}},
        "queries": {
            "a": {"sql": "select 1 as n, 'x' as l", "labels": ["l"],
                  "values": [{"column": "n", "metric": "wasp_x", "type": "gauge", "help": "h"}]},
            "b": {"sql": "select 1 as n",
                  "values": [{"column": "n", "metric": "wasp_x", "type": "gauge", "help": "h"}]},
        },
    }
    with pytest.raises(ConfigError, match="one metric name needs one type and one label set"):
        parse_config(data)


def test_target_needs_exactly_one_dsn_source() -> None:
    with pytest.raises(ConfigError, match=r"targets\.main: give exactly one of"):
        parse_config({"targets": {"main": {"dsn": "x", "dsn_env": "Y"}}})


def test_pack_override_and_disable() -> None:
    pack = """
    pack: t
    options: {n: 5}
    queries:
      one:
        interval: 60s
        sql: select {{n}} as v
        values: [{column: v, metric: wasp_t_one, type: gauge, help: h}]
      two:
        sql: select 2 as v
        values: [{column: v, metric: wasp_t_two, type: gauge, help: h}]
    """
    from wasp.config.schema import PackSettings

    qs = load_pack("t", PackSettings(options=(("n", 7),), disable=("two",),
                                     overrides=(("one", (("interval", 30.0),)),)),
                   text=textwrap.dedent(pack))
    by = {q.name: q for q in qs}
    assert by["one"].sql.strip() == "select 7 as v"
    assert by["one"].interval == 30.0
    assert by["two"].enabled is False
    with pytest.raises(ConfigError, match="unknown option"):
        load_pack("t", PackSettings(options=(("zzz", 1),)), text=textwrap.dedent(pack))


def test_companion_section_naming_an_unknown_target(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + """\
backup:
  stanza: main
  target: nope
  pg_path: /var/lib/postgresql/15/main
  encryption: {passphrase_env: WASP_TEST_PASSPHRASE}
""")
    r = run_check(path)
    assert r.returncode == 2
    assert f"{path}:20: backup.target: names target 'nope'" in r.stderr, r.stderr
