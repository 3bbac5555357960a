"""The live writer's changes to existing rows: bookings, reminders, receipts, expiry."""

from __future__ import annotations

import heapq
import time
import uuid
from datetime import datetime
from typing import Any

from wasp.demo.datagen.live_base import _MAX_CHANGES_PER_TICK, _NOW, _REFRESH_S, _WriterBase
from wasp.demo.datagen.profile import (
    WORDS,
)


class _Changes(_WriterBase):
    def change_bookings(self, now: datetime, cancels: int, reschedules: int) -> None:
        """Complete or no-show bookings that ended; cancel and reschedule some upcoming ones."""
        done: list[tuple[str, str]] = []
        while self.closing and self.closing[0][0] <= now and len(done) < _MAX_CHANGES_PER_TICK:
            _, bid = heapq.heappop(self.closing)
            if bid in self.candidates:
                done.append((bid, "NO_SHOW" if uuid.UUID(bid).int % 20 == 0 else "COMPLETED"))
        cancel: list[str] = []
        move: list[str] = []
        if cancels or reschedules:
            upcoming = [b for b, start in self.candidates.items() if start > now]
            picked = self.rng.sample(upcoming, min(len(upcoming), cancels + reschedules))
            cancel = picked[: min(cancels, _MAX_CHANGES_PER_TICK)]
            move = picked[len(cancel) : len(cancel) + min(reschedules, _MAX_CHANGES_PER_TICK)]
        changes = done + [(b, "CANCELLED") for b in cancel]
        for bid, _ in changes:
            self.candidates.pop(bid, None)
        if changes:
            cur = self.conn.execute(
                f"""UPDATE bookings b SET status = v.status{self.cast("bookings", "status")},
                                          updated_at = {_NOW}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE b.id = v.id AND b.status::text = 'CONFIRMED'""",
                ([c[0] for c in changes], [c[1] for c in changes]),
            )
            self.stats.updated["bookings"] += max(cur.rowcount, 0)
        if cancel:
            cur = self.conn.execute(
                f"""UPDATE reminders SET status = 'CANCELLED'{self.cast("reminders", "status")}
                    WHERE booking_id = ANY(%s) AND status::text = 'PENDING'""",
                (cancel,),
            )
            self.stats.updated["reminders"] += max(cur.rowcount, 0)
        if move:
            days = [1 + self.rng.randrange(3) for _ in move]
            cur = self.conn.execute(
                f"""UPDATE bookings b
                    SET start_ts = b.start_ts + v.days * interval '1 day',
                        end_ts = b.end_ts + v.days * interval '1 day',
                        status = 'RESCHEDULED'{self.cast("bookings", "status")}, updated_at = {_NOW}
                    FROM unnest(%s::text[], %s::int[]) AS v(id, days)
                    WHERE b.id = v.id AND b.status::text = 'CONFIRMED'
                      AND NOT EXISTS (
                          SELECT 1 FROM bookings o
                          WHERE o.salon_id = b.salon_id AND o.master_id = b.master_id AND o.id <> b.id
                            AND o.start_ts > b.start_ts + v.days * interval '1 day' - interval '4 hours'
                            AND o.start_ts < coalesce(b.end_ts, b.start_ts + interval '1 hour')
                                             + v.days * interval '1 day'
                            AND coalesce(o.end_ts, o.start_ts + interval '1 hour')
                                > b.start_ts + v.days * interval '1 day'
                            AND o.status::text <> 'CANCELLED')""",
                (move, days),
            )
            self.stats.updated["bookings"] += max(cur.rowcount, 0)
            cur = self.conn.execute(
                """UPDATE reminders r SET scheduled_at = r.scheduled_at + v.days * interval '1 day'
                    FROM unnest(%s::text[], %s::int[]) AS v(id, days)
                    WHERE r.booking_id = v.id AND r.status::text = 'PENDING'""",
                (move, days),
            )
            self.stats.updated["reminders"] += max(cur.rowcount, 0)
            for bid in move:
                self.candidates.pop(bid, None)

    def send_reminders(self) -> None:
        """Send reminders that just fell due; a few fail or are missed and stay overdue."""
        rows = self.conn.execute(
            f"""SELECT id, booking_id, attempts FROM reminders
                WHERE salon_id = ANY(%s)
                  AND scheduled_at BETWEEN {_NOW} - interval '10 minutes' AND {_NOW}
                  AND status::text = 'PENDING'
                LIMIT {_MAX_CHANGES_PER_TICK}""",
            ([s.id for s in self.salons],),
        ).fetchall()
        sent: list[tuple[str, str]] = []
        tried: list[tuple[str, int]] = []
        for rid, bid, attempts in rows:
            r = self.rng.random()
            if r < 0.01:
                continue  # the worker misses it: it stays PENDING, overdue
            if r < 0.04:
                tried.append((str(rid), int(attempts) + 1))
            else:
                sent.append((str(rid), str(bid)))
        if sent:
            self.conn.execute(
                f"""UPDATE reminders SET status = 'SENT'{self.cast("reminders", "status")},
                                         sent_at = {_NOW}, attempts = attempts + 1
                    WHERE id = ANY(%s)""",
                ([s[0] for s in sent],),
            )
            self.conn.execute(
                f"UPDATE bookings SET reminder_sent = true, updated_at = {_NOW} WHERE id = ANY(%s)",
                ([s[1] for s in sent],),
            )
            self.stats.updated["reminders"] += len(sent)
            self.stats.updated["bookings"] += len(sent)
        if tried:
            self.conn.execute(
                f"""UPDATE reminders r
                    SET attempts = v.attempts, last_error = v.error,
                        status = (CASE WHEN v.attempts >= 3 THEN 'FAILED' ELSE 'PENDING' END)
                                 {self.cast("reminders", "status")}
                    FROM unnest(%s::text[], %s::int[], %s::text[]) AS v(id, attempts, error)
                    WHERE r.id = v.id""",
                (
                    [t[0] for t in tried],
                    [t[1] for t in tried],
                    [self.rng.choice(WORDS["reminder_errors"]) for _ in tried],
                ),
            )
            self.stats.updated["reminders"] += len(tried)

    def apply_due(self) -> None:
        """Apply scheduled changes whose time has come (bounded per tick)."""
        now = time.monotonic()
        by_kind: dict[str, list[tuple[Any, ...]]] = {}
        taken = 0
        while self.due and self.due[0].at <= now and taken < _MAX_CHANGES_PER_TICK * 4:
            d = heapq.heappop(self.due)
            by_kind.setdefault(d.kind, []).append(d.data)
            taken += 1
        msgs = by_kind.get("msg", [])
        if msgs:
            # Receipts can overtake each other; a status only moves forward.
            cur = self.conn.execute(
                f"""UPDATE messages m SET status = v.status{self.cast("messages", "status")}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE m.id = v.id
                      AND array_position(ARRAY['SENT', 'DELIVERED', 'READ'], m.status::text)
                          < array_position(ARRAY['SENT', 'DELIVERED', 'READ', 'FAILED'], v.status)""",
                ([m[0] for m in msgs], [m[1] for m in msgs]),
            )
            self.stats.updated["messages"] += max(cur.rowcount, 0)
        hooks = by_kind.get("wh", [])
        if hooks:
            pt = ", processing_time_ms = v.ptime" if self.has_ptime else ""
            cur = self.conn.execute(
                f"""UPDATE webhook_logs w SET status = v.status, error = v.error{pt}
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS v(id, status, error, ptime)
                    WHERE w.id = v.id AND w.status = 'received'""",
                ([h[0] for h in hooks], [h[1] for h in hooks], [h[2] for h in hooks],
                 [h[3] for h in hooks]),
            )  # fmt: skip
            self.stats.updated["webhook_logs"] += max(cur.rowcount, 0)
        ai = by_kind.get("ai", [])
        if ai:
            self.follow_ups(ai)
        tpl = by_kind.get("tpl", [])
        if tpl:
            statuses = ["REJECTED" if self.rng.random() < 0.1 else "APPROVED" for _ in tpl]
            cur = self.conn.execute(
                f"""UPDATE templates t SET status = v.status{self.cast("templates", "status")}
                    FROM unnest(%s::text[], %s::text[]) AS v(id, status)
                    WHERE t.id = v.id AND t.status::text = 'PENDING'""",
                ([t[0] for t in tpl], statuses),
            )
            self.stats.updated["templates"] += max(cur.rowcount, 0)

    def expire_conversations(self) -> None:
        """WhatsApp's 24-hour window closes: ACTIVE conversations silent for a day expire."""
        mono = time.monotonic()
        if mono - self.last_expiry < _REFRESH_S:
            return
        self.last_expiry = mono
        cur = self.conn.execute(
            f"""UPDATE conversations SET status = 'EXPIRED'{self.cast("conversations", "status")}
                WHERE id IN (
                    SELECT id FROM conversations
                    WHERE salon_id = ANY(%s)
                      AND last_message_at BETWEEN {_NOW} - interval '25 hours'
                                              AND {_NOW} - interval '24 hours'
                      AND status::text = 'ACTIVE'
                    LIMIT {_MAX_CHANGES_PER_TICK})""",
            ([s.id for s in self.salons],),
        )
        self.stats.updated["conversations"] += max(cur.rowcount, 0)
