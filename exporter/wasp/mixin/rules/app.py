"""Alerts on the application: webhooks (silence, failures, processing time), WhatsApp (failures,
receipts overdue), bookings, AI assistant (cost, latency, daily budget), reminders."""

from __future__ import annotations

from collections.abc import Callable

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import (
    Bound,
    Fires,
    Point,
    Probe,
    gauge,
    minutes,
    switch,
    timestamp,
    when,
)
from wasp.mixin.rules.fourcases import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, Series, T, series, t, two
from wasp.mixin.settings import Settings, spoken

#: evaluation interval (minutes) of the threshold cases that compare with a day or week ago
COARSE = 60


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-app")
    q = b.q()
    off, guard = cfg.comparison_offset, cfg.silence_guard_offset
    by = f"on ({', '.join((*cfg.cluster_by, 'instance', 'target'))})"
    b.alert(g, "WaspWebhooksSilent", "page", q, f"""
{q("target:wasp_app_webhook_newest:age_seconds")} > {num(cfg.webhook_silent_seconds)}
and {by}
{q("target:wasp_app_webhook_events:sum_1h")} offset {guard} >= {num(cfg.webhook_expected_min_1h)}
""",
        "No webhook received on {{ $labels.target }} for {{ $value | humanizeDuration }}",
        "The newest webhook log on {{ $labels.target }} is {{ $value | humanizeDuration }} old, "
        f"while the same hour {spoken(guard)} ago had at least {num(cfg.webhook_expected_min_1h)} "
        "webhooks. WhatsApp, calendar and payment webhooks all stopped: the integration or its "
        "ingress is down, customers get no answers and bookings stop. Counts alone do not show "
        "this.",
        [Case("a quiet night: one webhook every 4 minutes", (
             series("wasp_app_webhook_newest_timestamp_seconds",
                "0 0 0 0 240 240 240 240 480 480 480 480 720 720 720 720 960 960 960 960 "
                "1200 1200 1200 1200 1440 1440", **T),), "25m")])

    q = b.q()
    et = cfg.whatsapp_event_type
    last_seen = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h")
    last_seen_type = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h", event_type=et)
    expected = q("wasp_app_webhook_events", window="1h", event_type=et)
    b.alert(g, "WaspWhatsAppInboundSilent", "page", q, f"""
(
  time() - {last_seen_type} > {num(cfg.whatsapp_silent_seconds)}
  or ignoring (event_type)
  (count without (event_type) ({last_seen}) * 0 + 86400
    unless ignoring (event_type) {last_seen_type})
)
and {by}
sum without (event_type, status) ({expected} offset {guard}) >= {num(cfg.whatsapp_expected_min_1h)}
""",
        f"No {et} webhook on {{{{ $labels.target }}}} for {{{{ $value | humanizeDuration }}}}",
        f"The newest {et} webhook on {{{{ $labels.target }}}} is {{{{ $value | humanizeDuration }}}} "
        "old (1d means none in the whole day) while other webhook types may still arrive, and "
        f"the same hour {spoken(guard)} ago had at least {num(cfg.whatsapp_expected_min_1h)}: "
        "customers' WhatsApp messages no longer reach the service.",
        [Case(f"{et} every few minutes", (
             series("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x60",
                **t(window="24h", event_type=et)),), "55m")])

    q = b.q()
    two(b, g, "WaspWebhookFailureRatioHigh", q, f"""
{q("target:wasp_app_webhook_failures:ratio_1h")} > {{threshold}}
and {q("target:wasp_app_webhook_events:sum_1h")} >= {num(cfg.webhook_min_events_1h)}
""", (("warning", cfg.webhook_failure_warning), ("page", cfg.webhook_failure_page)),
        "{{ $value | humanizePercentage }} of webhooks fail on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the webhook events received in the last hour on "
        "{{ $labels.target }} ended failed or error: their handlers throw (bad deploy, database "
        "errors, a changed payload).",
        [Case("10% of 1,000 events an hour fail", (
            series("wasp_app_webhook_failures", "100x30", **t(window="1h")),
            series("wasp_app_webhook_events", "700x30", **t(window="1h", event_type="message_received", status="processed")),
            series("wasp_app_webhook_events", "200x30", **t(window="1h", event_type="status_update", status="processed")),
            series("wasp_app_webhook_events", "100x30", **t(window="1h", event_type="message_received", status="failed")),
        ), "20m", (Fired(t(window="1h"), 0.1, "warning"),)),
         Case("half of the events fail", (
             series("wasp_app_webhook_failures", "500x30", **t(window="1h")),
             series("wasp_app_webhook_events", "500x30", **t(window="1h", event_type="message_received", status="processed")),
             series("wasp_app_webhook_events", "500x30", **t(window="1h", event_type="message_received", status="error")),
         ), "20m", (Fired(t(window="1h"), 0.5, "warning"), Fired(t(window="1h"), 0.5, "page"))),
         Case("a quiet night: 2 of 20 events fail", (
             series("wasp_app_webhook_failures", "2x30", **t(window="1h")),
             series("wasp_app_webhook_events", "18x30", **t(window="1h", event_type="message_received", status="processed")),
             series("wasp_app_webhook_events", "2x30", **t(window="1h", event_type="message_received", status="failed")),
         ), "20m")])

    q = b.q()
    two(b, g, "WaspWhatsAppOutboundFailureRatioHigh", q, f"""
{q("target:wasp_app_whatsapp_outbound_failed:ratio_1h")} > {{threshold}}
and {q("target:wasp_app_whatsapp_outbound:sum_1h")} >= {num(cfg.outbound_min_messages_1h)}
""", (("warning", cfg.outbound_failure_warning), ("page", cfg.outbound_failure_page)),
        "{{ $value | humanizePercentage }} of outbound WhatsApp messages fail on {{ $labels.target }}",
        "{{ $value | humanizePercentage }} of the outbound WhatsApp messages of the last hour on "
        "{{ $labels.target }} failed: confirmations and reminders do not reach customers "
        "(WhatsApp API errors, an expired token, a rejected template, the 24h window).",
        [Case("8% of 2,000 outbound messages fail", (
            series("wasp_app_whatsapp_outbound_failed", "160x30", **t(window="1h")),
            series("wasp_app_whatsapp_messages", "1840x30", **t(window="1h", direction="OUTBOUND", type="TEXT", status="DELIVERED")),
            series("wasp_app_whatsapp_messages", "160x30", **t(window="1h", direction="OUTBOUND", type="TEMPLATE", status="FAILED")),
            series("wasp_app_whatsapp_messages", "3000x30", **t(window="1h", direction="INBOUND", type="TEXT", status="READ")),
        ), "20m", (Fired(t(window="1h"), 0.08, "warning"),)),
         Case("every outbound message fails", (
             series("wasp_app_whatsapp_outbound_failed", "400x30", **t(window="1h")),
             series("wasp_app_whatsapp_messages", "400x30", **t(window="1h", direction="OUTBOUND", type="TEXT", status="FAILED")),
         ), "20m", (Fired(t(window="1h"), 1, "warning"), Fired(t(window="1h"), 1, "page"))),
         Case("a quiet night: 3 of 20 fail", (
             series("wasp_app_whatsapp_outbound_failed", "3x30", **t(window="1h")),
             series("wasp_app_whatsapp_messages", "17x30", **t(window="1h", direction="OUTBOUND", type="TEXT", status="SENT")),
             series("wasp_app_whatsapp_messages", "3x30", **t(window="1h", direction="OUTBOUND", type="TEXT", status="FAILED")),
         ), "20m")])

    q = b.q()
    created = q("wasp_app_bookings_created", window="1h")
    b.alert(g, "WaspBookingsDropping", "warning", q, f"""
sum without (status) ({created})
  < {num(cfg.bookings_drop_ratio)} * sum without (status) ({created} offset {off})
and
sum without (status) ({created} offset {off}) >= {num(cfg.bookings_min_before_1h)}
""",
        f"Bookings on {{{{ $labels.target }}}} dropped below {num(cfg.bookings_drop_ratio * 100)}% "
        f"of the same hour {spoken(off)} ago",
        "Only {{ $value | humanize }} bookings were created on {{ $labels.target }} in the last "
        f"hour, less than {num(cfg.bookings_drop_ratio * 100)}% of the same hour {spoken(off)} "
        "ago: the booking flow (WhatsApp, AI assistant, calendar) may be broken for part of the "
        "salons.",
        [Case("steady week", (
            series("wasp_app_bookings_created", "400x2030", **t(window="1h", status="CONFIRMED")),
         ), "1w30m", (), "5m")])

    q = b.q()
    cost = f'sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="1h")})'
    b.alert(g, "WaspAICostSpike", "warning", q, f"""
(
  {cost} > {num(cfg.ai_cost_spike_ratio)} * {cost.replace('"}', f'"}} offset {off}')}
  and {cost} > {num(cfg.ai_cost_min_usd_1h)}
)
or {cost} > {num(cfg.ai_cost_max_usd_1h)}
""",
        "AI spend on {{ $labels.target }} is ${{ $value | humanize }} an hour",
        "The AI assistant cost ${{ $value | humanize }} in the last hour on {{ $labels.target }}: "
        f"more than {num(cfg.ai_cost_spike_ratio)}x the same hour {spoken(off)} ago, or above "
        f"${num(cfg.ai_cost_max_usd_1h)}. Look for a looping conversation, a prompt change or a "
        "model switch (wasp_app_salon_ai_cost_usd shows which salons).",
        [Case("above the absolute ceiling", (
             series("wasp_app_ai_cost_usd", "150x40", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "30m", (Fired(t(window="1h"), 150, "warning"),)),
         Case("small amounts", (
             series("wasp_app_ai_cost_usd", "2x40", **t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspAILatencyHigh", "warning", q, f"""
{q("wasp_app_ai_response_time_p95_seconds", window="1h")} > {num(cfg.ai_p95_seconds)}
and ignoring (direction)
sum without (direction) ({q("wasp_app_ai_timed_responses", window="1h")}) >= {num(cfg.ai_min_responses_1h)}
""",
        "AI p95 response time {{ $value | humanizeDuration }} on {{ $labels.target }} ({{ $labels.model }})",
        "The 95th percentile response time of the AI assistant with model {{ $labels.model }} on "
        "{{ $labels.target }} is {{ $value | humanizeDuration }} over the last hour: customers wait "
        "on WhatsApp. Check the LLM provider's status and rate limits.",
        [Case("p95 at 25 s", (
            series("wasp_app_ai_response_time_p95_seconds", "25x30", **t(window="1h", model="gpt-4o")),
            series("wasp_app_ai_timed_responses", "500x30", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
        ), "20m", (Fired(t(window="1h", model="gpt-4o"), 25, "warning"),)),
         Case("slow but only 3 responses", (
             series("wasp_app_ai_response_time_p95_seconds", "25x30", **t(window="1h", model="gpt-4o")),
             series("wasp_app_ai_timed_responses", "3x30", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "20m"),
         Case("p95 at 3 s", (
             series("wasp_app_ai_response_time_p95_seconds", "3x30", **t(window="1h", model="gpt-4o")),
             series("wasp_app_ai_timed_responses", "500x30", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspRemindersOverdue", "warning", q, f"""
{q("wasp_app_reminders_overdue_oldest_age_seconds")} > {num(cfg.reminders_overdue_seconds)}
""",
        "Reminders on {{ $labels.target }} are {{ $value | humanizeDuration }} overdue",
        "The oldest pending reminder on {{ $labels.target }} was due {{ $value | humanizeDuration }} "
        "ago (wasp_app_reminders_overdue says how many): the reminder job is stuck or failing, and "
        "customers miss their appointment reminders.",
        [Case("the reminder job stopped", (
            series("wasp_app_reminders_overdue_oldest_age_seconds", "0+60x40", **T),
            series("wasp_app_reminders_overdue", "0+3x40", **T),), "30m",
            (Fired(T, 1800, "warning"),)),
         Case("reminders sent within a minute", (
             series("wasp_app_reminders_overdue_oldest_age_seconds", "0 45 0 30 0 60 0 0 20 0 0x30", **T),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspDoubleBookings", "warning", q, f"""
{q("wasp_app_bookings_double_booked")} > {num(cfg.double_bookings_max)}
""",
        "{{ $value | humanize }} upcoming double bookings on {{ $labels.target }}",
        "{{ $value | humanize }} upcoming bookings on {{ $labels.target }} overlap another booking "
        "of the same salon and master: the availability check let a conflict through (race "
        "between two conversations, calendar sync lag).",
        [Case("two overlapping bookings", (
            series("wasp_app_bookings_double_booked", "0x5 2x30", **T),), "30m",
            (Fired(T, 2, "warning"),)),
         Case("none", (series("wasp_app_bookings_double_booked", "0x30", **T),), "30m")])

    _failures(b, g)


def _failures(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspWebhookProcessingSlow"
    ev = t(window="1h", event_type="message_received")
    timed = q("wasp_app_webhook_timed_events", window="1h")
    b.alert(g, name, "warning", q, f"""
{q("wasp_app_webhook_processing_time_sum_seconds", window="1h")} / {timed}
  > {num(cfg.webhook_processing_seconds)}
and {timed} >= {num(cfg.webhook_min_timed_1h)}
""",
        "{{ $labels.event_type }} webhooks take {{ $value | humanizeDuration }} on average",
        "Webhook events of type {{ $labels.event_type }} on {{ $labels.target }} took "
        "{{ $value | humanizeDuration }} on average to process over the last hour: customers "
        "wait for answers and WhatsApp retries slow deliveries. The handler waits on the "
        "database, the LLM or a calendar.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_app_webhook_processing_time_sum_seconds", f"{210 if firing else 190}x{n}",
                   **ev),
            series("wasp_app_webhook_timed_events", f"100x{n}", **ev)), ev, 2.1,
            guard=("the minimum of timed events", lambda firing, n: (
                series("wasp_app_webhook_processing_time_sum_seconds",
                       f"{num(2.5 * (cfg.webhook_min_timed_1h - (0 if firing else 1)))}x{n}", **ev),
                series("wasp_app_webhook_timed_events",
                       f"{num(cfg.webhook_min_timed_1h - (0 if firing else 1))}x{n}", **ev)), 2.5)))

    q = b.q()
    name = "WaspWhatsAppReceiptsOverdue"
    w = t(window="1h")
    due = q("wasp_app_whatsapp_outbound_receipt_due", window="1h")
    b.alert(g, name, "warning", q, f"""
{q("wasp_app_whatsapp_outbound_stuck_sent", window="1h")} / {due} > {num(cfg.receipts_overdue_ratio)}
and {due} >= {num(cfg.receipts_min_due)}
""",
        "{{ $value | humanizePercentage }} of WhatsApp messages on {{ $labels.target }} stay SENT",
        "{{ $value | humanizePercentage }} of the outbound WhatsApp messages that should have a "
        "delivery receipt by now are still SENT on {{ $labels.target }}: receipts stopped "
        "arriving (the status webhook, WhatsApp) or messages are not delivered.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_app_whatsapp_outbound_stuck_sent", f"{51 if firing else 49}x{n}", **w),
            series("wasp_app_whatsapp_outbound_receipt_due", f"100x{n}", **w)), w, 0.51,
            guard=("the minimum of messages due", lambda firing, n: (
                series("wasp_app_whatsapp_outbound_stuck_sent",
                       f"{num(cfg.receipts_min_due - (0 if firing else 1))}x{n}", **w),
                series("wasp_app_whatsapp_outbound_receipt_due",
                       f"{num(cfg.receipts_min_due - (0 if firing else 1))}x{n}", **w)), 1)))

    q = b.q()
    name = "WaspRemindersFailing"
    rem = "wasp_app_reminders_due"
    all_ = f'sum without (status) ({q(rem, window="1h")})'
    b.alert(g, name, "warning", q, f"""
sum without (status) ({q(rem, window="1h", status="FAILED")}) / {all_}
  > {num(cfg.reminders_failed_ratio)}
and {all_} >= {num(cfg.reminders_min_due_1h)}
""",
        "{{ $value | humanizePercentage }} of the reminders on {{ $labels.target }} fail",
        "{{ $value | humanizePercentage }} of the reminders due in the last hour on "
        "{{ $labels.target }} failed to send: customers miss their reminders. reminders.last_error "
        "says why (an expired template, the WhatsApp token, a rate limit).",
        four(cfg, name, "warning", lambda firing, n: (
            series(rem, f"{21 if firing else 19}x{n}", **t(window="1h", status="FAILED")),
            series(rem, f"{79 if firing else 81}x{n}", **t(window="1h", status="SENT"))),
            t(window="1h"), 0.21,
            guard=("the minimum of reminders due", lambda firing, n: (
                series(rem, f"{num(cfg.reminders_min_due_1h - (0 if firing else 1))}x{n}",
                       **t(window="1h", status="FAILED")),), 1)))

    q = b.q()
    name = "WaspAIBudgetExceeded"
    b.alert(g, name, "warning", q, f"""
sum without (model) ({q("wasp_app_ai_cost_today_usd")}) > {num(cfg.ai_daily_budget_usd)}
""",
        "AI spend on {{ $labels.target }} is {{ $value | humanize }} USD today",
        "The LLM cost of today (UTC) on {{ $labels.target }} is {{ $value | humanize }} USD, over "
        f"the daily budget of {num(cfg.ai_daily_budget_usd)} USD "
        "(wasp_app_salon_ai_cost_usd shows which salons spend it): a loop, abuse or a model "
        "change.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_app_ai_cost_today_usd", f"{30.5 if firing else 29.5}x{n}",
                   **t(model="gpt-4")),
            series("wasp_app_ai_cost_today_usd", f"20x{n}", **t(model="gpt-4o-mini"))),
            T, 50.5))


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    week = minutes(cfg.comparison_offset)
    day = minutes(cfg.silence_guard_offset)
    et = cfg.whatsapp_event_type
    h1 = t(window="1h")

    def ratio_events(failed: str, total: str, labels: dict[str, str], bad: dict[str, str]
                     ) -> Callable[[Point, int, int], tuple[Series, ...]]:
        def make(p: Point, n: int, every: int) -> tuple[Series, ...]:
            f = p["ratio"] * p["events"]
            return (gauge(failed, f, n, **h1), gauge(total, p["events"] - f, n, **labels),
                    gauge(total, f, n, **bad))
        return make

    def two_levels(warning: float, page: float, guard: float) -> Callable[[Point, int], Fires]:
        def fires(p: Point, at: int) -> Fires:
            ok = p["events"] >= guard
            return [*when(ok and p["ratio"] > warning, "warning", h1, p["ratio"]),
                    *when(ok and p["ratio"] > page, "page", h1, p["ratio"])]
        return fires

    def cost_series(p: Point, n: int, every: int) -> tuple[Series, ...]:
        return (switch("wasp_app_ai_cost_usd", p["cost"] / p["ratio"], p["cost"], week // every, n,
                       **t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),)

    def cost_fires(p: Point, at: int) -> Fires:
        spike = p["ratio"] > cfg.ai_cost_spike_ratio and p["cost"] > cfg.ai_cost_min_usd_1h
        return when(spike or p["cost"] > cfg.ai_cost_max_usd_1h, "warning", h1, p["cost"])

    ev = t(window="1h", event_type="message_received")
    return {
        "WaspWebhookProcessingSlow": Probe(
            {"seconds": 2 * cfg.webhook_processing_seconds,
             "events": 5 * cfg.webhook_min_timed_1h},
            (Bound("seconds", ">", "webhook_processing_seconds"),
             Bound("events", ">=", "webhook_min_timed_1h", step=1)),
            lambda p, n, every: (
                gauge("wasp_app_webhook_processing_time_sum_seconds", p["seconds"] * p["events"],
                      n, **ev),
                gauge("wasp_app_webhook_timed_events", p["events"], n, **ev)),
            lambda p, at: when(p["seconds"] * p["events"] / p["events"]
                               > cfg.webhook_processing_seconds
                               and p["events"] >= cfg.webhook_min_timed_1h, "warning", ev,
                               p["seconds"] * p["events"] / p["events"])),
        "WaspWhatsAppReceiptsOverdue": Probe(
            {"ratio": 1, "due": 1000},
            (Bound("ratio", ">", "receipts_overdue_ratio"),
             Bound("due", ">=", "receipts_min_due", step=1)),
            lambda p, n, every: (
                gauge("wasp_app_whatsapp_outbound_stuck_sent", round(p["ratio"] * p["due"]), n,
                      **h1),
                gauge("wasp_app_whatsapp_outbound_receipt_due", p["due"], n, **h1)),
            lambda p, at: when(
                round(p["ratio"] * p["due"]) / p["due"] > cfg.receipts_overdue_ratio
                and p["due"] >= cfg.receipts_min_due, "warning", h1,
                round(p["ratio"] * p["due"]) / p["due"])),
        "WaspRemindersFailing": Probe(
            {"ratio": 1, "due": 1000},
            (Bound("ratio", ">", "reminders_failed_ratio"),
             Bound("due", ">=", "reminders_min_due_1h", step=1)),
            lambda p, n, every: (
                gauge("wasp_app_reminders_due", round(p["ratio"] * p["due"]), n,
                      **t(window="1h", status="FAILED")),
                gauge("wasp_app_reminders_due", p["due"] - round(p["ratio"] * p["due"]), n,
                      **t(window="1h", status="SENT"))),
            lambda p, at: when(
                round(p["ratio"] * p["due"]) / p["due"] > cfg.reminders_failed_ratio
                and p["due"] >= cfg.reminders_min_due_1h, "warning", h1,
                round(p["ratio"] * p["due"]) / p["due"])),
        "WaspAIBudgetExceeded": Probe(
            {"cost": 2 * cfg.ai_daily_budget_usd}, (Bound("cost", ">", "ai_daily_budget_usd"),),
            lambda p, n, every: (
                gauge("wasp_app_ai_cost_today_usd", p["cost"] - 20, n, **t(model="gpt-4")),
                gauge("wasp_app_ai_cost_today_usd", 20, n, **t(model="gpt-4o-mini"))),
            lambda p, at: when(p["cost"] > cfg.ai_daily_budget_usd, "warning", t(), p["cost"])),
        "WaspWebhooksSilent": Probe(
            {"age": 1200, "before": 500},
            (Bound("age", ">", "webhook_silent_seconds"),
             Bound("before", ">=", "webhook_expected_min_1h", step=1)),
            lambda p, n, every: (timestamp("wasp_app_webhook_newest_timestamp_seconds", p["age"], n,
                                    every, **T),
                          gauge("wasp_app_webhook_events", p["before"], n,
                                **t(window="1h", event_type=et, status="processed"))),
            lambda p, at: when(p["age"] > cfg.webhook_silent_seconds
                               and p["before"] >= cfg.webhook_expected_min_1h, "page", T,
                               p["age"]),
            onset=day, interval=5, value_interval=COARSE),
        "WaspWhatsAppInboundSilent": Probe(
            {"age": 3600, "before": 500},
            (Bound("age", ">", "whatsapp_silent_seconds"),
             Bound("before", ">=", "whatsapp_expected_min_1h", step=1)),
            lambda p, n, every: (timestamp("wasp_app_webhook_last_seen_timestamp_seconds", p["age"], n,
                                    every, **t(window="24h", event_type=et)),
                          gauge("wasp_app_webhook_events", p["before"], n,
                                **t(window="1h", event_type=et, status="processed"))),
            lambda p, at: when(p["age"] > cfg.whatsapp_silent_seconds
                               and p["before"] >= cfg.whatsapp_expected_min_1h, "page",
                               t(window="24h", event_type=et), p["age"]),
            onset=day, interval=5, value_interval=COARSE),
        "WaspWebhookFailureRatioHigh": Probe(
            {"ratio": 0.5, "events": 1000},
            (Bound("ratio", ">", "webhook_failure_warning"),
             Bound("ratio", ">", "webhook_failure_page"),
             Bound("events", ">=", "webhook_min_events_1h", step=1)),
            ratio_events("wasp_app_webhook_failures", "wasp_app_webhook_events",
                         t(window="1h", event_type="message_received", status="processed"),
                         t(window="1h", event_type="message_received", status="failed")),
            two_levels(cfg.webhook_failure_warning, cfg.webhook_failure_page,
                       cfg.webhook_min_events_1h)),
        "WaspWhatsAppOutboundFailureRatioHigh": Probe(
            {"ratio": 0.5, "events": 1000},
            (Bound("ratio", ">", "outbound_failure_warning"),
             Bound("ratio", ">", "outbound_failure_page"),
             Bound("events", ">=", "outbound_min_messages_1h", step=1)),
            ratio_events("wasp_app_whatsapp_outbound_failed", "wasp_app_whatsapp_messages",
                         t(window="1h", direction="OUTBOUND", type="TEXT", status="DELIVERED"),
                         t(window="1h", direction="OUTBOUND", type="TEXT", status="FAILED")),
            two_levels(cfg.outbound_failure_warning, cfg.outbound_failure_page,
                       cfg.outbound_min_messages_1h)),
        "WaspBookingsDropping": Probe(
            {"ratio": 0.25, "before": 400},
            (Bound("ratio", "<", "bookings_drop_ratio"),
             Bound("before", ">=", "bookings_min_before_1h", step=1)),
            lambda p, n, every: (switch("wasp_app_bookings_created", p["before"],
                                 p["ratio"] * p["before"], week // every, n,
                                 **t(window="1h", status="CONFIRMED")),),
            lambda p, at: when(p["ratio"] < cfg.bookings_drop_ratio
                               and p["before"] >= cfg.bookings_min_before_1h, "warning", h1,
                               p["ratio"] * p["before"]),
            onset=week, interval=30, value_interval=COARSE),
        "WaspAICostSpike": Probe(
            {"cost": 50, "ratio": 3},
            (Bound("ratio", ">", "ai_cost_spike_ratio"),
             Bound("cost", ">", "ai_cost_min_usd_1h", at={"ratio": 3}),
             Bound("cost", ">", "ai_cost_max_usd_1h", at={"ratio": 1})),
            cost_series, cost_fires, onset=week, interval=15, value_interval=COARSE),
        "WaspAILatencyHigh": Probe(
            {"p95": 25, "responses": 500},
            (Bound("p95", ">", "ai_p95_seconds"),
             Bound("responses", ">=", "ai_min_responses_1h", step=1)),
            lambda p, n, every: (gauge("wasp_app_ai_response_time_p95_seconds", p["p95"], n,
                                **t(window="1h", model="gpt-4o")),
                          gauge("wasp_app_ai_timed_responses", p["responses"], n,
                                **t(window="1h", direction="OUTBOUND", model="gpt-4o"))),
            lambda p, at: when(p["p95"] > cfg.ai_p95_seconds
                               and p["responses"] >= cfg.ai_min_responses_1h, "warning",
                               t(window="1h", model="gpt-4o"), p["p95"])),
        "WaspRemindersOverdue": Probe(
            {"age": 1800}, (Bound("age", ">", "reminders_overdue_seconds"),),
            lambda p, n, every: (gauge("wasp_app_reminders_overdue_oldest_age_seconds", p["age"], n,
                                **T),),
            lambda p, at: when(p["age"] > cfg.reminders_overdue_seconds, "warning", T,
                               p["age"])),
        "WaspDoubleBookings": Probe(
            {"count": 2}, (Bound("count", ">", "double_bookings_max", step=1),),
            lambda p, n, every: (gauge("wasp_app_bookings_double_booked", p["count"], n, **T),),
            lambda p, at: when(p["count"] > cfg.double_bookings_max, "warning", T, p["count"]),
            equivalent="the default threshold is 0 bookings: halved or doubled it stays 0"),
    }
