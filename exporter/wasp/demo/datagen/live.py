"""Keep an application database moving the way the running service does.

`run_live` inserts rows at the application's daily rates (times `rate`, shaped by
the time of day) and changes existing rows as the service does: WhatsApp
delivery receipts move messages SENT -> DELIVERED -> READ (or FAILED), webhook
logs move from received to processed/failed/error, bookings are cancelled,
rescheduled, completed or marked no-show with `updated_at` bumped, reminders
fall due and are sent or fail, AI conversations grow by exchanges, and
conversations expire. Rows are stamped with `clock_timestamp() AT TIME ZONE
'utc'`; a few are stamped seconds before their transaction commits, as a slow
request would. Every tick does a bounded amount of work in one transaction.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Collection
from threading import Event

import psycopg

from wasp.demo.datagen.live_base import (
    _CACHE_HITS_PER_DAY,
    _CANCELS_PER_DAY,
    _NOW,
    _REFRESH_S,
    _RESCHEDULES_PER_DAY,
    _SUMMARY_S,
    LiveStats,
    Log,
    _Salon,
)
from wasp.demo.datagen.live_changes import _Changes
from wasp.demo.datagen.live_inserts import _Inserts
from wasp.demo.datagen.profile import (
    DAILY,
    rate_factor,
)

__all__ = ["LiveStats", "run_live"]

def run_live(
    dsn: str,
    *,
    rate: float = 1.0,
    stop: Event,
    tick_s: float = 1.0,
    log: Log | None = None,
    seed: int | None = None,
    pause: Callable[[], Collection[str]] | None = None,
) -> LiveStats:
    """Insert and update application rows at `rate` x the real daily volumes until `stop` is set.

    `pause` names the streams to hold back right now (``"webhooks"``: no new webhook
    rows), for the demo's fault drills.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if tick_s <= 0:
        raise ValueError(f"tick_s must be > 0, got {tick_s}")
    out = log or (lambda _m: None)
    stats = LiveStats()
    started = time.monotonic()
    writer: _Writer | None = None
    backoff = 1.0
    try:
        while not stop.is_set():
            if writer is None:
                try:
                    writer = _Writer(dsn, rate=rate, rng=random.Random(seed), stats=stats, log=out)
                    writer.paused = pause or (lambda: ())
                    backoff = 1.0
                except psycopg.OperationalError as e:
                    stats.errors += 1
                    out(f"live: cannot connect ({e}); retrying in {backoff:.0f}s")
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            t0 = time.monotonic()
            try:
                writer.tick(stop)
            except psycopg.OperationalError as e:
                stats.errors += 1
                out(f"live: connection lost ({e}); reconnecting")
                writer.close()
                writer = None
                continue
            except psycopg.Error as e:
                stats.errors += 1
                out(f"live: tick failed: {e}")
                writer.rollback()
            stats.ticks += 1
            stop.wait(max(0.0, tick_s - (time.monotonic() - t0)))
    finally:
        if writer is not None:
            writer.close()
        stats.seconds = time.monotonic() - started
    return stats


class _Writer(_Inserts, _Changes):
    """The live writer: one tick inserts, changes and expires rows in one transaction."""

    def tick(self, stop: Event) -> None:
        mono = time.monotonic()
        dt = min(mono - self.last_tick, 5.0)
        self.last_tick = mono
        if mono - self.last_refresh >= _REFRESH_S:
            self.refresh()
            self.last_refresh = mono
        if not self.salons:
            if not self.reported["no-salons"]:
                self.log("live: no active salons; load history first (wasp datagen)")
                self.reported["no-salons"] = 1
            self.conn.commit()
            return
        now = self.now()
        factor = rate_factor(now)
        steps: list[Callable[[], None]] = [
            lambda: self.new_messages(self.count("messages", DAILY["messages"], dt, factor)),
            lambda: self.new_ai(
                self.count("ai_conversations", DAILY["ai_conversations"], dt, factor)
            ),
            lambda: self.new_bookings(now, self.count("bookings", DAILY["bookings"], dt, factor)),
            lambda: None if "webhooks" in self.paused() else self.new_webhooks(
                self.count("webhook_logs", DAILY["webhook_logs"], dt, factor)
            ),
            lambda: self.new_cache(
                self.count("ai_response_cache", DAILY["ai_response_cache"], dt, factor),
                self.count("cache_hits", _CACHE_HITS_PER_DAY, dt, factor),
            ),
            lambda: self.new_templates(self.count("templates", DAILY["templates"], dt, factor)),
            lambda: self.change_bookings(
                now,
                self.count("cancels", _CANCELS_PER_DAY, dt, factor),
                self.count("reschedules", _RESCHEDULES_PER_DAY, dt, factor),
            ),
            self.send_reminders,
            self.apply_due,
            self.expire_conversations,
        ]
        for step in steps:
            if stop.is_set():
                break
            step()
        self.conn.commit()
        if mono - self.last_summary >= _SUMMARY_S:
            self.summary()
            self.last_summary = mono

    def summary(self) -> None:
        ins = self.stats.inserted - self.reported
        upd = Counter({k: v for k, v in self.stats.updated.items()})
        self.reported = Counter(self.stats.inserted)
        parts = ", ".join(f"{k} +{v}" for k, v in sorted(ins.items()) if v)
        changed = ", ".join(f"{k} {v}" for k, v in sorted(upd.items()) if v)
        self.log(f"live: inserted {parts or 'nothing'}; updated so far: {changed or 'nothing'}")

    # -- reference data ---------------------------------------------------

    def refresh(self) -> None:
        """Re-read active salons (weighted by recent traffic), masters and booking candidates."""
        rows = self.conn.execute(
            "SELECT id FROM salons WHERE is_active ORDER BY created_at, id"
        ).fetchall()
        ids = [str(r[0]) for r in rows]
        if not ids:
            self.conn.commit()
            self.salons = []
            return
        recent: dict[str, int] = dict(
            self.conn.execute(
                f"""SELECT salon_id, count(*) FROM messages
                    WHERE salon_id = ANY(%s) AND created_at > {_NOW} - interval '6 hours'
                    GROUP BY salon_id""",
                (ids,),
            ).fetchall()
        )
        if recent:
            ids.sort(key=lambda i: (-int(recent.get(i, 0)), i))
            raw = [float(recent.get(i, 0)) + 0.5 for i in ids]
        else:
            raw = [1.0 / (k + 1) for k in range(len(ids))]
        masters: dict[str, list[str]] = {}
        if self.info.has_table("masters"):
            for sid, mid in self.conn.execute(
                "SELECT salon_id, id FROM masters WHERE is_active AND salon_id = ANY(%s) ORDER BY id",
                (ids,),
            ):
                masters.setdefault(str(sid), []).append(str(mid))
        self.salons = [
            _Salon(i, k, masters.get(i) or [f"{i[:8]}-m{j}" for j in range(2)])
            for k, i in enumerate(ids)
        ]
        self.weights = []
        acc = 0.0
        for w in raw:
            acc += w
            self.weights.append(acc)
        cand = self.conn.execute(
            f"""SELECT id, salon_id, start_ts, coalesce(end_ts, start_ts + interval '1 hour')
                FROM bookings
                WHERE salon_id = ANY(%s)
                  AND start_ts BETWEEN {_NOW} - interval '6 hours' AND {_NOW} + interval '3 days'
                  AND status::text = 'CONFIRMED'
                ORDER BY start_ts LIMIT 50000""",
            (ids,),
        ).fetchall()
        self.candidates = {}
        self.closing = []
        for bid, _sid, start, end in cand:
            self.track_booking(str(bid), start, end)
        # Delivery receipts still due for the newest outbound messages (from history or a past run).
        pending = self.conn.execute(
            f"""SELECT id, status::text FROM messages
                WHERE salon_id = ANY(%s) AND created_at > {_NOW} - interval '30 minutes'
                  AND direction::text = 'OUTBOUND' AND status::text IN ('SENT', 'DELIVERED')
                LIMIT 20000""",
            (ids,),
        ).fetchall()
        for mid, st in pending:
            self.schedule_receipts(str(mid), str(st), fast=True)
        self.conn.commit()

    # -- inserts ----------------------------------------------------------

