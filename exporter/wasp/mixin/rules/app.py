"""Alerts on the application: webhooks (silence, failures, processing time), WhatsApp (failures,
receipts overdue), bookings, AI assistant (cost, latency, daily budget), reminders."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, T, series, t, two


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-app")
    q = b.q()
    b.alert(g, "WaspWebhooksSilent", "page", q, f"""
{q("target:wasp_app_webhook_newest:age_seconds")} > {num(cfg.webhook_silent_seconds)}
""",
        "No webhook received on {{ $labels.target }} for {{ $value | humanizeDuration }}",
        "The newest webhook log on {{ $labels.target }} is {{ $value | humanizeDuration }} old. "
        "WhatsApp, calendar and payment webhooks all stopped: the integration or its ingress is "
        "down, customers get no answers and bookings stop. Counts alone do not show this.",
        [Case("webhooks stopped at minute 10", (
            series("wasp_app_webhook_newest_timestamp_seconds", "0+60x10 600x30", **T),), "30m",
            (Fired(T, 1200, "page"),)),
         Case("a quiet night: one webhook every 4 minutes", (
             series("wasp_app_webhook_newest_timestamp_seconds",
                "0 0 0 0 240 240 240 240 480 480 480 480 720 720 720 720 960 960 960 960 "
                "1200 1200 1200 1200 1440 1440", **T),), "25m")])

    q = b.q()
    et = cfg.whatsapp_event_type
    last_seen = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h")
    last_seen_type = q("wasp_app_webhook_last_seen_timestamp_seconds", window="24h", event_type=et)
    b.alert(g, "WaspWhatsAppInboundSilent", "page", q, f"""
time() - {last_seen_type} > {num(cfg.whatsapp_silent_seconds)}
or ignoring (event_type)
(count without (event_type) ({last_seen}) * 0 + 86400
  unless ignoring (event_type) {last_seen_type})
""",
        f"No {et} webhook on {{{{ $labels.target }}}} for {{{{ $value | humanizeDuration }}}}",
        f"The newest {et} webhook on {{{{ $labels.target }}}} is {{{{ $value | humanizeDuration }}}} "
        "old (1d means none in the whole day) while other webhook types may still arrive: "
        "customers' WhatsApp messages no longer reach the service.",
        [Case(f"{et} stopped while status updates go on", (
            series("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x20 1200x50",
               **t(window="24h", event_type=et)),
            series("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x70",
               **t(window="24h", event_type="status_update")),
        ), "60m", (Fired(t(window="24h", event_type=et), 2400, "page"),)),
         Case(f"no {et} in the whole day, other types present", (
             series("wasp_app_webhook_last_seen_timestamp_seconds", "0+60x20",
                **t(window="24h", event_type="payment")),), "15m",
             (Fired(t(window="24h"), 86400, "page"),)),
         Case(f"{et} every few minutes", (
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
    off = cfg.comparison_offset
    b.alert(g, "WaspBookingsDropping", "warning", q, f"""
sum without (status) ({created})
  < {num(cfg.bookings_drop_ratio)} * sum without (status) ({created} offset {off})
and
sum without (status) ({created} offset {off}) >= {num(cfg.bookings_min_before_1h)}
""",
        "Bookings on {{ $labels.target }} dropped below half of yesterday's",
        "Only {{ $value | humanize }} bookings were created on {{ $labels.target }} in the last "
        f"hour, less than {num(cfg.bookings_drop_ratio * 100)}% of the same hour yesterday: the "
        "booking flow (WhatsApp, AI assistant, calendar) may be broken for part of the salons.",
        [Case("bookings fall from 400 to 100 an hour", (
            series("wasp_app_bookings_created", "400x375 100x15", **t(window="1h", status="CONFIRMED")),
            series("wasp_app_bookings_created", "20x390", **t(window="1h", status="CANCELLED")),
        ), "1d2h", (Fired(t(window="1h"), 120, "warning"),), "4m"),
         Case("night hours: 10 yesterday, 2 today", (
             series("wasp_app_bookings_created", "10x375 2x15", **t(window="1h", status="CONFIRMED")),
         ), "1d2h", (), "4m"),
         Case("steady day", (
             series("wasp_app_bookings_created", "400x390", **t(window="1h", status="CONFIRMED")),
         ), "1d2h", (), "4m")])

    q = b.q()
    cost = f'sum without (direction, model) ({q("wasp_app_ai_cost_usd", window="1h")})'
    b.alert(g, "WaspAICostSpike", "warning", q, f"""
(
  {cost} > {num(cfg.ai_cost_spike_ratio)} * {cost.replace('"}', f'"}} offset {cfg.comparison_offset}')}
  and {cost} > {num(cfg.ai_cost_min_usd_1h)}
)
or {cost} > {num(cfg.ai_cost_max_usd_1h)}
""",
        "AI spend on {{ $labels.target }} is ${{ $value | humanize }} an hour",
        "The AI assistant cost ${{ $value | humanize }} in the last hour on {{ $labels.target }}: "
        f"more than {num(cfg.ai_cost_spike_ratio)}x the same hour yesterday, or above "
        f"${num(cfg.ai_cost_max_usd_1h)}. Look for a looping conversation, a prompt change or a "
        "model switch (wasp_app_salon_ai_cost_usd shows which salons).",
        [Case("cost triples", (
            series("wasp_app_ai_cost_usd", "20x375 60x15", **t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
        ), "1d2h", (Fired(t(window="1h"), 60, "warning"),), "4m"),
         Case("above the absolute ceiling", (
             series("wasp_app_ai_cost_usd", "150x40", **t(window="1h", direction="OUTBOUND", model="gpt-4o")),
         ), "30m", (Fired(t(window="1h"), 150, "warning"),)),
         Case("small amounts doubling", (
             series("wasp_app_ai_cost_usd", "2x375 5x15", **t(window="1h", direction="OUTBOUND", model="gpt-4o-mini")),
         ), "1d2h", (), "4m")])

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
