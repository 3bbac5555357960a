"""The availability probe through a real PgBouncer: good while it answers, bad while it is down."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import value
from test_pgbouncer import POOL, Bouncer
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.schema import ConfigError, parse_config
from wasp.packs import make_engine
from wasp.packs.probe import METRICS, build_collectors


def probe_config(pg: LocalCluster, tmp: Path, **options: Any) -> dict[str, Any]:
    return {
        "server": {"status_dir": str(tmp / "status")},
        "targets": {"main": {"dsn": pg.dsn(), "packs": ["probe"]}},
        "packs": {"probe": {"options": {"dsn_env": "WASP_TEST_PROBE_DSN", **options}}},
    }


async def test_probe_counts_good_then_bad_then_good(pg: LocalCluster, cluster_base: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    b = Bouncer(cluster_base / f"probe-{uuid.uuid4().hex[:8]}", free_port(), pg)
    b.start()
    try:
        monkeypatch.setenv("WASP_TEST_PROBE_DSN", b.dsn(POOL, user="postgres"))
        engine = make_engine(parse_config(probe_config(pg, tmp_path, interval="1s",
                                                       timeout="500ms")))
        try:
            text = ""
            for _ in range(3):
                text = (await engine.run_once()).text.decode()
            assert value(text, "wasp_sli_db_probes_total", target="main", result="good") == 3
            assert value(text, "wasp_sli_db_probes_total", target="main", result="bad") == 0
            took = value(text, "wasp_sli_db_probe_duration_seconds", target="main")
            assert took is not None and 0 < took < 0.5
            b.stop()  # the pooler is gone: the application could not connect
            for _ in range(2):
                text = (await engine.run_once()).text.decode()
            assert value(text, "wasp_sli_db_probes_total", target="main", result="bad") == 2
            assert value(text, "wasp_query_errors_total", target="-",
                         query="availability_probe") in (None, 0)
            b.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = (await engine.run_once()).text.decode()
                if value(text, "wasp_sli_db_probes_total", target="main", result="good") == 4:
                    break
            assert value(text, "wasp_sli_db_probes_total", target="main", result="good") == 4
        finally:
            await engine.stop()
    finally:
        b.stop()


@pytest.mark.parametrize(("options", "message"), [
    ({"dsn_file": "/x"}, "exactly one of dsn_env and dsn_file"),
    ({"interval": "1s", "timeout": "2s"}, "must be shorter than the interval"),
    ({"colour": 1}, "unknown option"),
])
def test_probe_options_are_validated(pg: LocalCluster, tmp_path: Path, options: dict[str, Any],
                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_collectors(parse_config(probe_config(pg, tmp_path, **options)))


def test_probe_never_logs_its_dsn(pg: LocalCluster, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from wasp.exporter.collector import CollectContext

    dsn = f"host=127.0.0.1 port={free_port()} user=app password=hunter2-probe dbname=app"
    monkeypatch.setenv("WASP_TEST_PROBE_DSN", dsn)
    [c] = build_collectors(parse_config(probe_config(pg, tmp_path)))
    fams = asyncio.run(c.collect(CollectContext(now=0.0, status_dir=tmp_path)))
    assert dict(fams[0].samples)[("main", "bad")] == 1
    assert "hunter2" not in caplog.text and "availability probe of main bad" in caplog.text
    assert {m.name for m in METRICS} == {f.name for f in fams}
