"""The metric catalog: complete, conventional, and equal to what the exporter really exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from wasp.catalog import catalog, render_markdown
from wasp.config.schema import parse_config
from wasp.demo.datagen import create_schema, generate
from wasp.packs import make_engine

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_follows_prometheus_conventions() -> None:
    cat = catalog()
    assert len(cat) > 200
    assert cat.problems() == []
    for e in cat:
        assert e.spec.help.strip(), e.name
        assert e.name.startswith(("wasp_", "process_")), e.name


def test_unknown_metric_is_an_error() -> None:
    try:
        catalog().get("wasp_no_such_metric")
    except KeyError as e:
        assert "wasp_no_such_metric" in str(e)
    else:
        raise AssertionError("an unknown metric was accepted")


def test_docs_metrics_md_is_regenerated() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render_markdown(), "docs/metrics.md is stale: run wasp catalog --format markdown"
    r = subprocess.run([sys.executable, "-m", "wasp", "catalog", "--format", "markdown"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == committed


async def test_live_exposition_matches_the_catalog(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_schema(conn, "v2")
        # a day and a half: reminders fall due within the last 24 h whatever the hour of day
        generate(conn, days=1.5, scale=0.02, salons=50)
        conn.execute("create extension if not exists pg_stat_statements")
    cfg = parse_config({
        "server": {"status_dir": "/tmp/wasp-test-status"},
        "targets": {"main": {"dsn": dsn, "packs": ["app", "postgres", "replication"]}},
        "packs": {"app": {"options": {"top_salons": 5}}},
    })
    engine = make_engine(cfg)
    try:
        text = (await engine.run_once()).text.decode()
    finally:
        await engine.stop()
    cat = catalog()
    seen = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            entry = cat.get(name)
            assert set(s.labels) == set(entry.labels), (name, sorted(s.labels), entry.labels)
            seen.add(name)
    app = {e.name for e in cat if e.pack == "app"}
    # the app pack exports every metric on the newer schema with data
    assert app - seen == set(), sorted(app - seen)
    assert len(seen) > 120
