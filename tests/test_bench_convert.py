"""bench/neutral_to_wasp.py: the benchmark's neutral queries become a valid wasp config."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasp.config.schema import load_config
from wasp.exporter.windows import plan_window

REPO = Path(__file__).resolve().parent.parent
NEUTRAL = """\
version: 1
queries:
  - name: salon_bookings_upcoming_24h
    help: Bookings starting within the next 24h, per status
    labels: [status]
    values:
      - {column: bookings, type: gauge, help: Number of bookings}
    min_interval_s: 60
    sql: |
      SELECT status::text AS status, count(*) AS bookings
      FROM bookings
      WHERE start_ts >= now() AND start_ts < now() + interval '24 hours'
      GROUP BY status
  - name: salon_ai_conversations_active
    help: AI conversations with activity in the last 30 minutes
    labels: []
    values:
      - {column: conversations, type: gauge, help: Number of active conversations}
    sql: |
      SELECT count(*) AS conversations
      FROM ai_conversations
      WHERE last_activity > now() - interval '30 minutes'
  - name: salon_webhooks_1h
    help: Webhook events in the last hour
    labels: [event_type]
    values:
      - {column: events, type: gauge, help: Events}
      - {column: avg_processing_ms, type: gauge, help: Mean processing time}
    window:
      table: webhook_logs
      time_column: created_at
      length_s: 3600
      where: null
      group_by: {event_type: "event_type::text"}
      aggregates: {events: "count(*)", avg_processing_ms: "coalesce(avg(processing_ms), 0)"}
      changes_after_insert_s: 600
    sql: |
      SELECT event_type::text AS event_type, count(*) AS events,
             coalesce(avg(processing_ms), 0) AS avg_processing_ms
      FROM webhook_logs WHERE created_at > now() - interval '1 hour' GROUP BY 1
"""


def _converter() -> Any:
    spec = importlib.util.spec_from_file_location("neutral_to_wasp", REPO / "bench" / "neutral_to_wasp.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["neutral_to_wasp"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_converted_config_loads_and_plans_both_windows(tmp_path: Path) -> None:
    conv = _converter()
    (tmp_path / "q.yaml").write_text(NEUTRAL)
    out = tmp_path / "wasp.yaml"
    assert conv.main(["--queries", str(tmp_path / "q.yaml"), "--out", str(out)]) == 0
    cfg = load_config(out)
    by = {q.name: q for q in cfg.queries}
    up = by["salon_bookings_upcoming_24h"]
    assert up.window is not None and up.window.direction == "future"
    assert up.sql.strip().startswith("SELECT status::text")  # the harness's SQL, unchanged
    plan = plan_window(up)
    assert not isinstance(plan, str) and plan.mode == "rows"
    active = by["salon_ai_conversations_active"]
    assert active.window is not None and active.window.time_column == "last_activity"
    assert plan_window(active).mode == "rows"  # type: ignore[union-attr]
    wh = by["salon_webhooks_1h"]
    assert [v.metric for v in wh.values] == ["salon_webhooks_1h_events",
                                             "salon_webhooks_1h_avg_processing_seconds"]
    assert "/ 1000" in dict(wh.window.aggregates)["avg_processing_seconds"]  # type: ignore[union-attr]
    assert plan_window(wh).mode == "buckets"  # type: ignore[union-attr]


@pytest.mark.parametrize(("extra", "message"), [
    ({"no_such_query": {"table": "t"}}, "does not have: no_such_query"),
    ({"salon_webhooks_1h": {"table": "t"}}, "declares its own"),
])
def test_window_supplement_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  extra: dict[str, Any], message: str) -> None:
    conv = _converter()
    (tmp_path / "q.yaml").write_text(NEUTRAL)
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(extra))
    rc = conv.main(["--queries", str(tmp_path / "q.yaml"), "--out", str(tmp_path / "o.yaml"),
                    "--windows", str(tmp_path / "w.yaml")])
    assert rc == 2 and message in capsys.readouterr().err
