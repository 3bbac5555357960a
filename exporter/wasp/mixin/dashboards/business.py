"""The business board: webhooks, bookings, WhatsApp, AI assistant and salons (the app pack)."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    ORANGE,
    RED,
    TOP_N,
    YELLOW,
    Dashboard,
    Panel,
    Row,
    Target,
    age,
    agg,
    alert_steps,
    red_at,
    sel,
    stat,
    table,
    top_table,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["BUSINESS"]


def bookings_created_1h(s: Settings) -> Panel:
    """Bookings created in the last hour, by current status."""
    return ts("Bookings created (last 1h) by status",
              Target(agg("sum", "wasp_app_bookings_created", ("status",), window="1h"),
                     "{{status}}"))


def bookings_created_24h(s: Settings) -> Panel:
    """Bookings created in the last 24 hours, by current status."""
    return ts("Bookings created (last 24h) by status",
              Target(agg("sum", "wasp_app_bookings_created", ("status",), window="24h"),
                     "{{status}}"))


def bookings_upcoming(s: Settings) -> Panel:
    """Bookings starting in the next 24 hours, by status."""
    return ts("Upcoming bookings (next 24h) by status",
              Target(agg("sum", "wasp_app_bookings_upcoming", ("status",), horizon="24h"),
                     "{{status}}"))


def cancellations(s: Settings) -> Panel:
    """Cancellations and no-shows of the last 24 hours."""
    return stat("Cancelled / no-show (24h)",
                Target(agg("sum", "wasp_app_bookings_cancelled", window="24h"), "cancelled"),
                Target(agg("sum", "wasp_app_bookings_no_show", window="24h"), "no-show"),
                w=6, options={"colorMode": "none"})


def double_bookings(s: Settings) -> Panel:
    """Upcoming bookings overlapping another of the same master."""
    return stat("Double bookings (upcoming)",
                Target(agg("sum", "wasp_app_bookings_double_booked")),
                description="Upcoming non-cancelled bookings that overlap another booking of "
                "the same salon and master.",
                thresholds=alert_steps((s.double_bookings_max + 1, "warning")),
                options={"colorMode": "background", "graphMode": "none"})


def reminders_overdue(s: Settings) -> Panel:
    """Overdue reminders and how long the oldest has been due."""
    return stat("Reminders overdue",
                Target(agg("sum", "wasp_app_reminders_overdue"), "overdue"),
                thresholds=red_at((1, ORANGE), (50, RED)),
                options={"colorMode": "background", "graphMode": "none"})


def reminders_oldest(s: Settings) -> Panel:
    """Age of the oldest overdue reminder."""
    return stat("Oldest overdue reminder",
                Target(agg("max", "wasp_app_reminders_overdue_oldest_age_seconds")),
                unit="s", thresholds=alert_steps((s.reminders_overdue_seconds, "warning")),
                options={"graphMode": "none"})


def whatsapp_messages(s: Settings) -> Panel:
    """WhatsApp messages of the last hour by direction and status."""
    return ts("WhatsApp messages (last 1h) by direction / status",
              Target(agg("sum", "wasp_app_whatsapp_messages", ("direction", "status"),
                         window="1h"), "{{direction}} {{status}}"), w=12)


def outbound_failure_ratio(s: Settings) -> Panel:
    """Share of outbound messages of the last hour that failed."""
    return stat("Outbound failure ratio (1h)",
                Target(sel("target:wasp_app_whatsapp_outbound_failed:ratio_1h"), "{{target}}"),
                unit="percentunit", decimals=2, thresholds=alert_steps((s.outbound_failure_warning, "warning"),
                                                    (s.outbound_failure_page, "page")),
                options={"colorMode": "background"})


def whatsapp_cost(s: Settings) -> Panel:
    """WhatsApp cost of the last 24 hours."""
    return stat("WhatsApp cost (24h)",
                Target(agg("sum", "wasp_app_whatsapp_cost_usd", window="24h")),
                unit="currencyUSD", decimals=2, options={"colorMode": "none"})


def conversations_active(s: Settings) -> Panel:
    """Conversations with a message in the last 30 minutes."""
    return stat("Active conversations (30m)",
                Target(agg("sum", "wasp_app_conversations_active", window="30m")),
                options={"colorMode": "none"})


def conversations_by_status(s: Settings) -> Panel:
    """Conversations by status."""
    return ts("Conversations by status",
              Target(agg("sum", "wasp_app_conversations", ("status",)), "{{status}}"), w=8)


def ai_tokens(s: Settings) -> Panel:
    """AI tokens of the last hour by model."""
    return ts("AI tokens (last 1h) by model",
              Target(agg("sum", "wasp_app_ai_tokens", ("model",), window="1h", model="!="),
                     "{{model}}"))


def ai_cost(s: Settings) -> Panel:
    """AI cost of the last 24 hours by model."""
    return ts("AI cost (last 24h) by model",
              Target(agg("sum", "wasp_app_ai_cost_usd", ("model",), window="24h"),
                     "{{model}}"), unit="currencyUSD")


def ai_messages(s: Settings) -> Panel:
    """AI messages of the last hour by model and direction."""
    return ts("AI messages (last 1h) by model / direction",
              Target(agg("sum", "wasp_app_ai_messages", ("model", "direction"), window="1h"),
                     "{{model}} {{direction}}"))


def ai_latency(s: Settings) -> Panel:
    """AI response time percentiles of the last hour, by model."""
    return ts("AI response time (last 1h): p50 / p95 / max",
              Target(agg("max", "wasp_app_ai_response_time_p50_seconds", ("model",),
                         window="1h"), "p50 {{model}}"),
              Target(agg("max", "wasp_app_ai_response_time_p95_seconds", ("model",),
                         window="1h"), "p95 {{model}}"),
              Target(agg("max", "wasp_app_ai_response_time_max_seconds", ("model",),
                         window="1h"), "max {{model}}"),
              unit="s", w=12)


def ai_mean_latency(s: Settings) -> Panel:
    """Mean AI response time of the last hour, by model."""
    return ts("AI mean response time (last 1h)",
              Target(sel("target_model:wasp_app_ai_response_time_seconds:mean_1h"),
                     "{{target}} {{model}}"), unit="s", w=12)


def webhook_newest_age(s: Settings) -> Panel:
    """Time since the newest webhook of any type: the silent-integration alarm."""
    return stat("Newest webhook age",
                Target(sel("target:wasp_app_webhook_newest:age_seconds"), "{{target}}"),
                unit="s", w=6, h=6, thresholds=alert_steps((s.webhook_silent_seconds, "page")),
                description="Time since the newest webhook log of any type; red where "
                "WaspWebhooksSilent pages: a silent WhatsApp integration shows here, not in any count.",
                options={"colorMode": "background", "graphMode": "none", "textMode": "value"})


def webhooks_by_type(s: Settings) -> Panel:
    """Webhook events of the last hour by type and status."""
    return ts("Webhooks (last 1h) by type / status",
              Target(agg("sum", "wasp_app_webhook_events", ("event_type", "status"),
                         window="1h"), "{{event_type}} {{status}}"), w=12, h=6)


def webhook_failures(s: Settings) -> Panel:
    """Share of the last hour's webhooks whose handler failed."""
    return stat("Webhook failure ratio (1h)",
                Target(sel("target:wasp_app_webhook_failures:ratio_1h"), "{{target}}"),
                unit="percentunit", decimals=2, w=6, h=6,
                thresholds=alert_steps((s.webhook_failure_warning, "warning"),
                                       (s.webhook_failure_page, "page")))


def webhook_last_seen(s: Settings) -> Panel:
    """Time since each webhook type was last seen."""
    expr = age("wasp_app_webhook_last_seen_timestamp_seconds", ("event_type",), window="24h")
    return table("Webhook last seen, per type", Target(expr), w=8, unit="s",
                 thresholds=red_at((600, ORANGE), (3600, RED)),
                 custom={"cellOptions": {"type": "color-text"}},
                 description="A type silent for a whole day disappears from this table.")


def webhook_processing(s: Settings) -> Panel:
    """Mean and longest webhook processing time by type."""
    total = agg("sum", "wasp_app_webhook_processing_time_sum_seconds", ("event_type",),
                window="1h")
    n = agg("sum", "wasp_app_webhook_timed_events", ("event_type",), window="1h")
    return ts("Webhook processing time (last 1h)",
              Target(f"{total} / {n}", "mean {{event_type}}"),
              Target(agg("max", "wasp_app_webhook_processing_time_max_seconds", ("event_type",),
                         window="1h"), "max {{event_type}}"),
              unit="s", w=16)


def salons_active(s: Settings) -> Panel:
    """Active salons."""
    return stat("Salons active", Target(agg("sum", "wasp_app_salons", active="true")),
                options={"colorMode": "none"})


def salons_near_limit(s: Settings) -> Panel:
    """Active salons near their plan limit, by resource."""
    return stat("Salons near plan limit",
                Target(agg("sum", "wasp_app_salons_near_plan_limit", ("resource",)),
                       "{{resource}}"), w=8, thresholds=red_at((1, YELLOW)))


def salons_by_trial(s: Settings) -> Panel:
    """Salons by active flag and trial status."""
    return ts("Salons by trial status",
              Target(agg("sum", "wasp_app_salons", ("active", "trial_status")),
                     "active={{active}} {{trial_status}}"), w=12)


def _top_salons(title: str, name: str, window: str, unit: str) -> Panel:
    expr = f"topk({TOP_N}, {agg('sum', name, ('salon_id',), window=window, salon_id='!=other')})"
    return top_table(title, name, ("salon_id",), expr, unit=unit,
                     description="Needs packs.app.options.top_salons > 0 (off by default).")


def top_salons_bookings(s: Settings) -> Panel:
    """Top salons by bookings created in the last 24 hours."""
    return _top_salons(f"Top {TOP_N} salons: bookings (24h)", "wasp_app_salon_bookings_created",
                       "24h", "short")


def top_salons_messages(s: Settings) -> Panel:
    """Top salons by WhatsApp messages in the last hour."""
    return _top_salons(f"Top {TOP_N} salons: WhatsApp messages (1h)",
                       "wasp_app_salon_whatsapp_messages", "1h", "short")


def top_salons_ai_cost(s: Settings) -> Panel:
    """Top salons by AI cost in the last 24 hours."""
    return _top_salons(f"Top {TOP_N} salons: AI cost (24h)", "wasp_app_salon_ai_cost_usd",
                       "24h", "currencyUSD")


BUSINESS = Dashboard(
    "wasp-business", "wasp / Business",
    "Bookings, WhatsApp messages and cost, AI assistant, webhooks and salons (the app pack).",
    (lambda s: Row("Webhooks"), webhook_newest_age, webhooks_by_type, webhook_failures,
     webhook_last_seen, webhook_processing,
     lambda s: Row("Bookings"), bookings_created_1h, bookings_created_24h, bookings_upcoming,
     cancellations, double_bookings, reminders_overdue, reminders_oldest,
     lambda s: Row("WhatsApp"), whatsapp_messages, outbound_failure_ratio, whatsapp_cost,
     conversations_active, conversations_by_status,
     lambda s: Row("AI assistant"), ai_tokens, ai_cost, ai_messages, ai_latency, ai_mean_latency,
     lambda s: Row("Salons"), salons_active, salons_near_limit, salons_by_trial,
     top_salons_bookings, top_salons_messages, top_salons_ai_cost),
    variables=(("job", "Job", "wasp_target_up"), ("target", "Target", "wasp_target_up"),
               ("salon_id", "Salon", "wasp_app_salon_bookings_created")),
    tags=("business",),
)
