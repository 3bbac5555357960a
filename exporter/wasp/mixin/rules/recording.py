"""Recording rules: the ratios and sums that alerts and panels share, with their cases."""

from __future__ import annotations

from wasp.mixin.promql import Selectors
from wasp.mixin.rules.model import Builder, RecordingCase, T, series, t


def build(b: Builder) -> None:
    """The recording rules, each with the cases that prove it."""
    g = b.group("wasp-recording")
    cases = recording_cases()

    def rec(record: str, labels: tuple[str, ...], q: Selectors, expr: str) -> None:
        b.record(g, record, labels, q, expr, cases.get(record, ()))

    q = b.q()
    rec("target:wasp_pg_connections:usage_ratio", ('target',), q, f"""
sum without (database, state) ({q("wasp_pg_connections")})
  / ({q("wasp_pg_max_connections")} - {q("wasp_pg_superuser_reserved_connections")})
""")
    q = b.q()
    rec("target_database:wasp_pg_cache_hit:ratio_rate5m", ('target', 'database'), q, f"""
rate({q("wasp_pg_database_blocks_hit_total")}[5m])
  / (rate({q("wasp_pg_database_blocks_hit_total")}[5m]) + rate({q("wasp_pg_database_blocks_read_total")}[5m]))
""")
    q = b.q()
    rec("target:wasp_pg_xid_age:ratio_freeze_max_age", ('target',), q, f"""
max without (database) ({q("wasp_pg_database_xid_age")}) / {q("wasp_pg_autovacuum_freeze_max_age")}
""")
    q = b.q()
    rec("target:wasp_app_webhook_events:sum_1h", ('target', 'window'), q, f"""
sum without (event_type, status) ({q("wasp_app_webhook_events", window="1h")})
""")
    q = b.q()
    rec("target:wasp_app_webhook_failures:ratio_1h", ('target', 'window'), q, f"""
{q("wasp_app_webhook_failures", window="1h")}
  / sum without (event_type, status) ({q("wasp_app_webhook_events", window="1h")})
""")
    q = b.q()
    rec("target:wasp_app_webhook_newest:age_seconds", ('target',), q, f"""
time() - {q("wasp_app_webhook_newest_timestamp_seconds")}
""")
    q = b.q()
    rec("target:wasp_app_whatsapp_outbound:sum_1h", ('target', 'window'), q, f"""
sum without (direction, type, status) ({q("wasp_app_whatsapp_messages", window="1h", direction="OUTBOUND")})
""")
    q = b.q()
    rec("target:wasp_app_whatsapp_outbound_failed:ratio_1h", ('target', 'window'), q, f"""
{q("wasp_app_whatsapp_outbound_failed", window="1h")}
  / sum without (direction, type, status) ({q("wasp_app_whatsapp_messages", window="1h", direction="OUTBOUND")})
""")
    q = b.q()
    rec("target:wasp_app_bookings_created:sum_1h", ('target', 'window'), q, f"""
sum without (status) ({q("wasp_app_bookings_created", window="1h")})
""")
    q = b.q()
    rec("target:wasp_app_ai_cost_usd:sum_1h", ('target', 'window'), q, f"""
sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="1h")})
""")
    q = b.q()
    rec("target:wasp_app_ai_cost_usd:sum_24h", ('target', 'window'), q, f"""
sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="24h")})
""")
    q = b.q()
    rec("target_model:wasp_app_ai_response_time_seconds:mean_1h", ('target', 'window', 'model'), q, f"""
sum without (direction) ({q("wasp_app_ai_response_time_sum_seconds", window="1h")})
  / sum without (direction) ({q("wasp_app_ai_timed_responses", window="1h")})
""")
    q = b.q()
    rec("target_database:wasp_pgbouncer_pool_usage_ratio:max", ('target', 'database'), q, f"""
max without (user) ({q("wasp_pgbouncer_pool_usage_ratio")})
""")
    q = b.q()
    rec("target_database:wasp_pgbouncer_clients_waiting:sum", ('target', 'database'), q, f"""
sum without (user, state) ({q("wasp_pgbouncer_pool_clients", state="waiting")})
""")


def recording_cases() -> dict[str, tuple[RecordingCase, ...]]:
    """What each recording rule must compute from hand-chosen series."""
    w1, w24 = t(window="1h"), t(window="24h")
    return {
        "target:wasp_pg_connections:usage_ratio": (RecordingCase((
            series("wasp_pg_connections", "30x10", **t(database="app", state="active")),
            series("wasp_pg_connections", "20x10", **t(database="app", state="idle")),
            series("wasp_pg_connections", "0x10", **t(database="postgres", state="idle")),
            series("wasp_pg_max_connections", "103x10", **T),
            series("wasp_pg_superuser_reserved_connections", "3x10", **T)), "5m", ((T, 0.5),)),),
        "target_database:wasp_pg_cache_hit:ratio_rate5m": (RecordingCase((
            series("wasp_pg_database_blocks_hit_total", "0+900x10", **t(database="app")),
            series("wasp_pg_database_blocks_read_total", "0+100x10", **t(database="app"))),
            "8m", ((t(database="app"), 0.9),)),),
        "target:wasp_pg_xid_age:ratio_freeze_max_age": (RecordingCase((
            series("wasp_pg_database_xid_age", "100000000x10", **t(database="app")),
            series("wasp_pg_database_xid_age", "50000000x10", **t(database="postgres")),
            series("wasp_pg_autovacuum_freeze_max_age", "200000000x10", **T)), "5m", ((T, 0.5),)),),
        "target:wasp_app_webhook_events:sum_1h": (RecordingCase((
            series("wasp_app_webhook_events", "90x10", **t(window="1h", event_type="payment", status="processed")),
            series("wasp_app_webhook_events", "10x10", **t(window="1h", event_type="payment", status="failed"))),
            "5m", ((w1, 100),)),),
        "target:wasp_app_webhook_failures:ratio_1h": (RecordingCase((
            series("wasp_app_webhook_failures", "10x10", **w1),
            series("wasp_app_webhook_events", "90x10", **t(window="1h", event_type="payment", status="processed")),
            series("wasp_app_webhook_events", "10x10", **t(window="1h", event_type="payment", status="failed"))),
            "5m", ((w1, 0.1),)),),
        "target:wasp_app_webhook_newest:age_seconds": (RecordingCase((
            series("wasp_app_webhook_newest_timestamp_seconds", "0x10", **T),), "5m", ((T, 300),)),),
        "target:wasp_app_whatsapp_outbound:sum_1h": (RecordingCase((
            series("wasp_app_whatsapp_messages", "40x10", **t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
            series("wasp_app_whatsapp_messages", "10x10", **t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            series("wasp_app_whatsapp_messages", "70x10", **t(window="1h", direction="INBOUND", type="TEXT", status="READ"))),
            "5m", ((w1, 50),)),),
        "target:wasp_app_whatsapp_outbound_failed:ratio_1h": (RecordingCase((
            series("wasp_app_whatsapp_outbound_failed", "10x10", **w1),
            series("wasp_app_whatsapp_messages", "40x10", **t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
            series("wasp_app_whatsapp_messages", "10x10", **t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            series("wasp_app_whatsapp_messages", "70x10", **t(window="1h", direction="INBOUND", type="TEXT", status="READ"))),
            "5m", ((w1, 0.2),)),),
        "target:wasp_app_bookings_created:sum_1h": (RecordingCase((
            series("wasp_app_bookings_created", "300x10", **t(window="1h", status="CONFIRMED")),
            series("wasp_app_bookings_created", "20x10", **t(window="1h", status="CANCELLED"))),
            "5m", ((w1, 320),)),),
        "target:wasp_app_ai_cost_usd:sum_1h": (RecordingCase((
            series("wasp_app_ai_cost_usd", "12x10", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
            series("wasp_app_ai_cost_usd", "3x10", **t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
            series("wasp_app_ai_cost_usd", "0x10", **t(window="1h", direction="INBOUND", model=""))),
            "5m", ((w1, 15),)),),
        "target:wasp_app_ai_cost_usd:sum_24h": (RecordingCase((
            series("wasp_app_ai_cost_usd", "300x10", **t(window="24h", direction="OUTBOUND", model="gpt-4o")),
            series("wasp_app_ai_cost_usd", "60x10", **t(window="24h", direction="OUTBOUND", model="gpt-4o-mini"))),
            "5m", ((w24, 360),)),),
        "target_model:wasp_app_ai_response_time_seconds:mean_1h": (RecordingCase((
            series("wasp_app_ai_response_time_sum_seconds", "500x10", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
            series("wasp_app_ai_timed_responses", "200x10", **t(window="1h", direction="OUTBOUND", model="gpt-4o"))),
            "5m", ((t(window="1h", model="gpt-4o"), 2.5),)),),
        "target_database:wasp_pgbouncer_pool_usage_ratio:max": (RecordingCase((
            series("wasp_pgbouncer_pool_usage_ratio", "0.25x10", **t(database="app", user="app")),
            series("wasp_pgbouncer_pool_usage_ratio", "0.75x10", **t(database="app", user="reports"))),
            "5m", ((t(database="app"), 0.75),)),),
        "target_database:wasp_pgbouncer_clients_waiting:sum": (RecordingCase((
            series("wasp_pgbouncer_pool_clients", "4x10", **t(database="app", user="app", state="waiting")),
            series("wasp_pgbouncer_pool_clients", "3x10", **t(database="app", user="reports", state="waiting")),
            series("wasp_pgbouncer_pool_clients", "50x10", **t(database="app", user="app", state="active"))),
            "5m", ((t(database="app"), 7),)),),
    }
