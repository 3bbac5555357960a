"""The shape of the synthetic workload: volumes, time-of-day curve, value sets, prices.

One place for the numbers that the history generator and the live mode share,
and that the application metric pack may rely on (the exact status values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "AI_MODELS",
    "BOOKING_STATUSES",
    "CONVERSATION_STATUSES",
    "DAILY",
    "HOURLY_WEIGHTS",
    "INTENTS",
    "MESSAGE_DIRECTIONS",
    "MESSAGE_STATUSES",
    "MESSAGE_TYPES",
    "REMINDER_STATUSES",
    "SALON_SKEW",
    "SERVICES",
    "TEMPLATE_STATUSES",
    "TRIAL_STATUSES",
    "WEBHOOK_EVENT_TYPES",
    "WEBHOOK_STATUSES",
    "WEEKDAY_WEIGHTS",
    "WORDS",
    "AIModel",
    "Bucket",
    "Service",
    "buckets",
    "rate_factor",
]

# Rows created per day at scale 1.0 (ai_messages follow from ai_conversations, ~4 each).
DAILY: dict[str, float] = {
    "messages": 100_000,
    "bookings": 10_000,
    "ai_conversations": 50_000,
    "webhook_logs": 150_000,
    "ai_response_cache": 5_000,
    "templates": 30,
}

# Relative traffic per UTC hour (salons sit around UTC+3: busy 07-18 UTC), mean 1.0.
_RAW_HOURLY = [
    0.15, 0.10, 0.08, 0.08, 0.12, 0.30, 0.70, 1.20, 1.60, 1.80, 1.90, 1.90,
    1.85, 1.80, 1.75, 1.70, 1.60, 1.40, 1.10, 0.80, 0.55, 0.40, 0.30, 0.20,
]  # fmt: skip
HOURLY_WEIGHTS: tuple[float, ...] = tuple(w * 24 / sum(_RAW_HOURLY) for w in _RAW_HOURLY)

# Relative traffic per weekday, Monday first (Saturday busiest, Sunday quiet), mean 1.0.
_RAW_WEEKDAY = [1.00, 1.00, 1.02, 1.05, 1.10, 1.15, 0.68]
WEEKDAY_WEIGHTS: tuple[float, ...] = tuple(w * 7 / sum(_RAW_WEEKDAY) for w in _RAW_WEEKDAY)

# Salon of a row: rank = floor(salons * random() ** SALON_SKEW); rank 0 is the biggest.
# With 1,000 salons the biggest takes ~6% of the traffic, the top 10 ~16%, the top 100 ~40%.
SALON_SKEW = 2.5

# Exact values written per column (v2 enums hold the same upper-case values).
BOOKING_STATUSES = ("CONFIRMED", "CANCELLED", "COMPLETED", "NO_SHOW", "RESCHEDULED")
MESSAGE_DIRECTIONS = ("INBOUND", "OUTBOUND")
MESSAGE_TYPES = ("TEXT", "TEMPLATE", "IMAGE", "DOCUMENT", "AUDIO", "VIDEO", "INTERACTIVE")
MESSAGE_STATUSES = ("SENT", "DELIVERED", "READ", "FAILED")
CONVERSATION_STATUSES = ("ACTIVE", "EXPIRED", "BLOCKED", "ARCHIVED")
REMINDER_STATUSES = ("PENDING", "SENT", "FAILED", "CANCELLED")
TEMPLATE_STATUSES = ("PENDING", "APPROVED", "REJECTED")
TRIAL_STATUSES = ("ACTIVE", "CONVERTED", "EXPIRED", "CANCELLED")
WEBHOOK_STATUSES = ("received", "processed", "failed", "error")
WEBHOOK_EVENT_TYPES = (
    "message_received",
    "status_update",
    "calendar_sync",
    "payment",
    "template_status_update",
    "account_update",
)
INTENTS = (
    "booking_request",
    "availability",
    "price_inquiry",
    "greeting",
    "faq",
    "reschedule",
    "cancel",
    "other",
    "complaint",
)


@dataclass(frozen=True, slots=True)
class AIModel:
    """An LLM the assistant uses: its share of conversations, price and speed."""

    name: str
    share: float
    usd_per_1k_tokens: float
    median_response_ms: int


# Blended input/output list prices; shares are of AI conversations.
AI_MODELS: tuple[AIModel, ...] = (
    AIModel("gpt-4o-mini", 0.40, 0.00030, 850),
    AIModel("gpt-3.5-turbo", 0.18, 0.00080, 750),
    AIModel("gpt-4", 0.14, 0.03600, 2600),
    AIModel("claude-3-haiku", 0.14, 0.00050, 650),
    AIModel("gpt-4o", 0.09, 0.00450, 1300),
    AIModel("claude-3-5-sonnet", 0.05, 0.00630, 1900),
)


@dataclass(frozen=True, slots=True)
class Service:
    """A salon service and how long an appointment for it lasts."""

    name: str
    minutes: int


SERVICES: tuple[Service, ...] = (
    Service("Manicure", 60),
    Service("Pedicure", 75),
    Service("Haircut", 45),
    Service("Hair coloring", 120),
    Service("Brow shaping", 30),
    Service("Lash extension", 90),
    Service("Massage", 60),
    Service("Facial", 60),
)

# Word lists for names and message bodies (no %, braces: they go into SQL text).
# fmt: off
WORDS: dict[str, tuple[str, ...]] = {
    "first_names": (
        "Anna", "Maria", "Elena", "Olga", "Sofia", "Daria", "Alina", "Irina", "Nina", "Eva",
        "Laura", "Julia", "Emma", "Mia", "Lea", "Sara", "Nora", "Ines", "Aylin", "Zeynep",
        "Fatima", "Leila", "Amira", "Hana", "Kate", "Lucy", "Grace", "Chloe", "Ivan", "Omar",
    ),
    "salon_first": (
        "Bella", "Glow", "Velvet", "Luna", "Silk", "Aura", "Coral", "Ivy", "Nova", "Amber",
        "Rose", "Jade", "Pearl", "Iris", "Onyx", "Sage",
    ),
    "salon_second": (
        "Beauty Studio", "Nail Bar", "Hair Lounge", "Spa", "Salon", "Brow & Lash",
        "Barbershop", "Beauty Lab",
    ),
    "customer_texts": (
        "Hi! Can I book a manicure tomorrow?",
        "Do you have anything free on Saturday morning?",
        "How much is hair coloring?",
        "I need to move my appointment to Friday",
        "Please cancel my booking, sorry",
        "Is Anna working next week?",
        "Thank you!",
        "What time do you open on Sunday?",
        "Can I come 15 minutes later?",
        "Yes, I confirm",
        "Hello",
        "Do you do lash extensions?",
    ),
    "business_texts": (
        "Your booking is confirmed. See you soon!",
        "Reminder: your appointment is tomorrow.",
        "We have free slots at 11:00 and 15:30.",
        "Your booking has been cancelled.",
        "Thank you for visiting us! How was everything?",
        "Your appointment was moved as requested.",
        "Hello! How can we help you today?",
    ),
    "assistant_texts": (
        "I can book you for tomorrow at 14:00 with Maria. Shall I confirm?",
        "A manicure takes about an hour and costs 35 USD.",
        "Done! Your booking code is on its way.",
        "We are open from 9:00 to 21:00 every day except Sunday.",
        "I have moved your appointment. Anything else?",
        "Your booking is cancelled. Hope to see you soon!",
        "Here are the free slots for Saturday: 10:00, 12:30, 16:00.",
        "Let me check with the salon and get back to you.",
    ),
    "template_names": (
        "booking_confirmation", "booking_reminder", "booking_cancelled", "welcome_message",
        "review_request", "seasonal_promo", "birthday_offer", "reschedule_offer", "otp_code",
    ),
    "reminder_errors": (
        "WhatsApp API timeout",
        "(#131026) Message undeliverable",
        "(#131047) Re-engagement message outside the 24h window",
        "(#130429) Rate limit hit",
        "Template not approved",
    ),
    "webhook_errors": (
        "Signature verification failed",
        "Salon not found for phone_number_id",
        "Timeout calling Google Calendar API",
        "Payment provider returned 502",
        "Duplicate event",
        "Database deadlock detected",
        "AI provider rate limit",
    ),
}
# fmt: on


def rate_factor(t: datetime) -> float:
    """Relative traffic at UTC time `t` (weekday x hour-of-day weights, mean 1.0)."""
    return WEEKDAY_WEIGHTS[t.weekday()] * HOURLY_WEIGHTS[t.hour]


@dataclass(frozen=True, slots=True)
class Bucket:
    """A slice of time (at most one UTC hour) and how many rows to create in it."""

    start: datetime
    seconds: float
    count: int


def buckets(start: datetime, end: datetime, per_day: float) -> list[Bucket]:
    """Split [start, end) at UTC hour boundaries with row counts following the traffic curve.

    Counts are rounded cumulatively, so the total is the exact integral rounded once.
    """
    out: list[Bucket] = []
    t = start
    acc = 0.0
    emitted = 0
    while t < end:
        nxt = min(t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), end)
        seconds = (nxt - t).total_seconds()
        acc += per_day * rate_factor(t) * seconds / 86_400
        n = math.floor(acc + 0.5) - emitted
        emitted += n
        out.append(Bucket(t, seconds, n))
        t = nxt
    return out


def cumulative(weights: Sequence[float]) -> list[float]:
    """Running sums of weights normalised to end at 1.0 (for inverse-CDF picks in SQL)."""
    total = sum(weights)
    out: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out
