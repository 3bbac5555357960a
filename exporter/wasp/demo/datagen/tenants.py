"""The tenants and their bookings: salons, masters, templates, bookings with their reminders."""

from __future__ import annotations

from datetime import datetime, timedelta

from wasp.demo.datagen.base import _Base
from wasp.demo.datagen.profile import (
    DAILY,
    SERVICES,
    WEEKDAY_WEIGHTS,
    WORDS,
)
from wasp.demo.datagen.sqlbits import (
    choose,
    phone_number_id,
    pick,
    salon_weight,
    text_array,
    uuid_of,
)

# Appointments a fully booked master fits into the 06:00-18:00 UTC day (measured).
_SLOTS_PER_MASTER_DAY = 9.3
# A master takes on average this many bookings per day; sets the staff size per salon.
_BOOKINGS_PER_MASTER = 7.0
# Bookings are made up to this many days ahead.
_MAX_LEAD_DAYS = 20


class _Tenants(_Base):
    def _salons(self) -> int:
        w = salon_weight("r", self.n)
        tiers_b = "ARRAY[100, 500, 2000, 10000, 50000, 250000]"
        tiers_m = "ARRAY[1000, 5000, 20000, 100000, 500000, 2500000]"

        def ratio(u: str) -> str:
            # Usage vs plan limit: most well below, ~8% at 90-100%, ~4% over the limit.
            return (
                f"(CASE WHEN {u} < 0.70 THEN 0.05 + {u} / 0.70 * 0.65"
                f" WHEN {u} < 0.88 THEN 0.70 + ({u} - 0.70) / 0.18 * 0.20"
                f" WHEN {u} < 0.96 THEN 0.90 + ({u} - 0.88) / 0.08 * 0.10"
                f" ELSE 1.0 + ({u} - 0.96) / 0.04 * 0.15 END)"
            )

        def tier(tiers: str, monthly: str, trial: int) -> str:
            return (
                f"CASE WHEN trial_status = 'ACTIVE' THEN {trial} ELSE coalesce("
                f"(SELECT min(t) FROM unnest({tiers}) t WHERE t * 0.75 >= {monthly}),"
                f" ({tiers})[6]) END"
            )

        trial = pick(
            "u_trial", [("ACTIVE", 13), ("CONVERTED", 74), ("EXPIRED", 9), ("CANCELLED", 4)]
        )
        return self._exec(f"""
            INSERT INTO salons (id, name, phone_number_id, is_active, trial_status,
                                usage_current_bookings, usage_limit_bookings,
                                usage_current_messages, usage_limit_messages,
                                created_at)
            SELECT id, name, phone_number_id, is_active, trial_status,
                   floor(limit_b * {ratio("u_use_b")})::int, limit_b,
                   floor(limit_m * {ratio("u_use_m")})::int, limit_m,
                   created_at
            FROM (
                SELECT s.*,
                       {tier(tiers_b, f"w * {10_000 * self.scale * 30!r}", 100)} AS limit_b,
                       {tier(tiers_m, f"w * {DAILY['messages'] * self.scale * 30!r}", 1000)} AS limit_m,
                       CASE WHEN trial_status = 'CANCELLED' THEN false
                            WHEN trial_status = 'EXPIRED' THEN u_active < 0.5
                            ELSE u_active < 0.995 END AS is_active,
                       CASE WHEN trial_status = 'ACTIVE'
                            THEN %(end)s - u_created * interval '14 days'
                            ELSE %(end)s - interval '30 days' - u_created * interval '700 days'
                       END AS created_at
                FROM (
                    SELECT r, {self._salon_id("r")} AS id,
                           {choose("u_n1", WORDS["salon_first"])} || ' '
                               || {choose("u_n2", WORDS["salon_second"])} || ' ' || (r + 1) AS name,
                           {phone_number_id("r")} AS phone_number_id,
                           {w} AS w,
                           CASE WHEN r < {self.n} / 10 THEN 'CONVERTED' ELSE {trial} END AS trial_status,
                           u_active, u_use_b, u_use_m, u_created, u_upd
                    FROM (
                        SELECT r, random() AS u_n1, random() AS u_n2, random() AS u_trial,
                               random() AS u_active, random() AS u_use_b, random() AS u_use_m,
                               random() AS u_created, random() AS u_upd
                        FROM generate_series(0, {self.n - 1}) AS r
                    ) s0
                ) s
            ) t
            ORDER BY r""")

    def _masters_of(self, rank: str) -> str:
        w = salon_weight(rank, self.n)
        return f"greatest(1, ceil({w} * {DAILY['bookings'] * self.scale / _BOOKINGS_PER_MASTER!r}))::int"

    def _masters(self) -> int:
        return self._exec(f"""
            INSERT INTO masters (id, salon_id, name, is_active, created_at, updated_at)
            SELECT {uuid_of(str(self.seed), "'master'", "r", "m")}, {self._salon_id("r")},
                   {choose("u_name", WORDS["first_names"])} || ' '
                       || chr(65 + floor(u_init * 26)::int) || '.',
                   true, c, c
            FROM (
                SELECT r, m, random() AS u_name, random() AS u_init,
                       %(end)s - interval '20 days' - random() * interval '600 days' AS c
                FROM generate_series(0, {self.n - 1}) AS r
                CROSS JOIN LATERAL generate_series(0, {self._masters_of("r")} - 1) AS m
            ) x""")

    def _templates(self) -> int:
        names = WORDS["template_names"]
        category = (
            "CASE WHEN name = 'otp_code' THEN 'AUTHENTICATION'"
            " WHEN name IN ('seasonal_promo', 'birthday_offer', 'review_request') THEN 'MARKETING'"
            " ELSE 'UTILITY' END"
        )
        lang = pick("u_lang", [("en", 40), ("ru", 25), ("es", 12), ("de", 8), ("tr", 8), ("ar", 7)])
        # Old templates are decided (a few stuck in review); recent ones are often still pending.
        status = (
            "CASE WHEN recent THEN "
            + pick("u_st", [("PENDING", 45), ("APPROVED", 45), ("REJECTED", 10)])
            + " ELSE "
            + pick("u_st", [("PENDING", 3), ("APPROVED", 87), ("REJECTED", 10)])
            + " END"
        )
        cast = self._cast("templates", "status")
        return self._exec(f"""
            INSERT INTO templates (id, salon_id, name, language, category, status, created_at)
            SELECT id, salon_id, name, language, {category}, status{cast}, created_at
            FROM (
                SELECT t.*, {status} AS status
                FROM (
                    SELECT {uuid_of(str(self.seed), "'template'", "r", "j")} AS id,
                           {self._salon_id("r")} AS salon_id,
                           ({text_array(names)})[1 + mod(o + j, {len(names)})] AS name,
                           lang AS language, recent, u_st, u_upd,
                           CASE WHEN recent THEN %(end)s - u_age * interval '3 days'
                                ELSE %(end)s - interval '3 days' - u_age * interval '400 days'
                           END AS created_at
                    FROM (
                        SELECT r, floor(random() * {len(names)})::int AS o,
                               2 + floor(random() * 7)::int AS k, {lang} AS lang
                        FROM (SELECT r, random() AS u_lang FROM generate_series(0, {self.n - 1}) r) r0
                    ) s
                    CROSS JOIN LATERAL (
                        SELECT j, random() < 0.15 AS recent, random() AS u_st, random() AS u_upd,
                               random() AS u_age
                        FROM generate_series(0, s.k - 1) AS j
                    ) t0
                ) t
            ) x""")

    # -- bookings and reminders ------------------------------------------

    def _booking_status(self) -> tuple[str, str]:
        """(status, updated_at) expressions over a dg_booking row `b` (a status as of `end`)."""
        close = "b.end_ts + (5 + b.upd_u * 175) * interval '1 minute'"
        status = f"""CASE
            WHEN b.start_ts > %(end)s THEN
                CASE WHEN b.status_u < 0.08 THEN 'CANCELLED'
                     WHEN b.status_u < 0.11 THEN 'RESCHEDULED' ELSE 'CONFIRMED' END
            WHEN b.end_ts > %(end)s THEN
                CASE WHEN b.status_u < 0.08 THEN 'CANCELLED' ELSE 'CONFIRMED' END
            WHEN b.status_u < 0.08 THEN 'CANCELLED'
            WHEN b.status_u < 0.11 THEN 'RESCHEDULED'
            WHEN {close} > %(end)s THEN 'CONFIRMED'
            WHEN b.status_u < 0.16 THEN 'NO_SHOW'
            WHEN b.status_u < 0.18 THEN 'CONFIRMED'
            ELSE 'COMPLETED' END"""
        updated = f"""CASE
            WHEN s.status IN ('CANCELLED', 'RESCHEDULED')
                THEN b.created_at + b.upd_u * (least(b.start_ts, %(end)s) - b.created_at)
            WHEN s.status IN ('NO_SHOW', 'COMPLETED') THEN {close}
            ELSE b.created_at END"""
        return status, updated

    def _bookings(self) -> int:
        svc_minutes = "ARRAY[" + ", ".join(str(s.minutes) for s in SERVICES) + "]"
        wd = "ARRAY[" + ", ".join(repr(x) for x in WEEKDAY_WEIGHTS) + "]"
        w = salon_weight("r", self.n)
        nm = self._masters_of("r")
        first_day = datetime.combine(self.start.date(), datetime.min.time())
        last_day = datetime.combine(self.end.date(), datetime.min.time()) + timedelta(
            days=_MAX_LEAD_DAYS + 1
        )
        keep = (
            f"{w} * {DAILY['bookings'] * self.scale!r} * ({wd})[extract(isodow FROM day)::int]"
            f" / ({nm} * {_SLOTS_PER_MASTER_DAY!r})"
        )
        # Each master's day is a back-to-back sequence of appointments (06:00-18:00 UTC), so
        # nothing overlaps by construction; a salon-dependent share of the slots is booked.
        self._exec(
            f"""
            CREATE TEMP TABLE dg_booking ON COMMIT DROP AS
            SELECT row_number() OVER () AS code_n, z.*
            FROM (
                SELECT {uuid_of(str(self.seed), "'booking'", "r", "m", "extract(epoch FROM day)::bigint", "j")} AS id,
                       r, m, floor(cust_u * 1e9)::bigint AS cust, svc, start_ts,
                       start_ts + dur * interval '1 minute' AS end_ts,
                       CASE WHEN cand > start_ts - interval '30 minutes'
                            THEN start_ts - interval '30 minutes'
                                 - tod_u1 * (start_ts - interval '30 minutes' - day)
                            ELSE cand END AS created_at,
                       status_u, upd_u, rem_u, resp_u, extra_u, 'main'::text AS kind
                FROM (
                    SELECT y.*, day + interval '6 hours' + off_min * interval '1 minute' AS start_ts,
                           day - least({_MAX_LEAD_DAYS}, floor(-ln(1 - lead_u) * 2.0)) * interval '1 day'
                               + (4 + 15 * (tod_u1 + tod_u2) / 2) * interval '1 hour' AS cand
                    FROM (
                        SELECT x.*, sum(gap + dur) OVER (PARTITION BY r, m, day ORDER BY j) - dur AS off_min
                        FROM (
                            SELECT a.*, ({svc_minutes})[svc + 1] AS dur
                            FROM (
                                SELECT r, m, day, j, floor(random() * {len(SERVICES)})::int AS svc,
                                       CASE WHEN random() < 0.65 THEN 0
                                            WHEN random() < 0.6 THEN 15 ELSE 30 END AS gap,
                                       random() AS keep_u, random() AS lead_u, random() AS tod_u1,
                                       random() AS tod_u2, random() AS cust_u, random() AS status_u,
                                       random() AS upd_u, random() AS rem_u, random() AS resp_u,
                                       random() AS extra_u
                                FROM generate_series(0, {self.n - 1}) AS r
                                CROSS JOIN LATERAL generate_series(0, {nm} - 1) AS m
                                CROSS JOIN generate_series(%(first_day)s::timestamp, %(last_day)s::timestamp,
                                                           interval '1 day') AS day
                                CROSS JOIN generate_series(1, 12) AS j
                            ) a
                        ) x
                    ) y
                    WHERE off_min + dur <= 720 AND keep_u < {keep}
                ) z0
            ) z
            WHERE created_at >= %(start)s AND created_at < %(end)s""",
            {"first_day": first_day, "last_day": last_day},
        )
        status, updated = self._booking_status()
        # Double bookings: ~0.6% of upcoming live bookings get a second, overlapping booking of
        # the same master, and at least three in the next 24 hours (starting 1 h to 23 h
        # after the end of the load, so that they are still "next 24 h" a while later).
        # Both were made at least 10 minutes before the end of the load: the bookings SLO
        # counts bookings as they settle from the exporter's start on, and a double booking of
        # the history's last minutes would burn it at once (a few bookings an hour at night
        # on a small data set: one double is the whole ratio) while nothing is wrong now.
        self._exec(f"""
            INSERT INTO dg_booking
            SELECT (SELECT max(code_n) FROM dg_booking) + row_number() OVER (ORDER BY id),
                   {uuid_of(str(self.seed), "'double'", "id")}, r, m, cust + 7, svc,
                   start_ts + shift, end_ts + shift,
                   created_at + (0.5 + 0.5 * random()) * (%(end)s - interval '10 minutes' - created_at),
                   0.5, random(), random(), random(), 1.0, 'double'
            FROM (
                SELECT b.*, least(15 * floor(random() * 3), extract(epoch FROM end_ts - start_ts) / 60 - 15)
                              * interval '1 minute' AS shift,
                       row_number() OVER (PARTITION BY b.start_ts BETWEEN %(end)s + interval '1 hour'
                                                               AND %(end)s + interval '23 hours'
                                          ORDER BY b.extra_u) AS rn
                FROM dg_booking b CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                WHERE b.start_ts > %(end)s AND s.status <> 'CANCELLED'
                  AND b.created_at < %(end)s - interval '10 minutes'
                ORDER BY b.id
            ) d
            WHERE extra_u < 0.006
               OR (start_ts BETWEEN %(end)s + interval '1 hour' AND %(end)s + interval '23 hours'
                   AND rn <= 3)""")
        # A cancelled slot is often re-booked by someone else: overlapping, but not a double booking.
        self._exec(f"""
            INSERT INTO dg_booking
            SELECT (SELECT max(code_n) FROM dg_booking) + row_number() OVER (ORDER BY id),
                   {uuid_of(str(self.seed), "'rebook'", "id")}, r, m, cust + 13, svc, start_ts, end_ts,
                   cancelled_at + random() * (least(start_ts, %(end)s) - cancelled_at),
                   0.11 + 0.89 * random(), random(), random(), random(), 1.0, 'rebook'
            FROM (
                SELECT b.*, u.updated_at AS cancelled_at
                FROM dg_booking b
                CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                CROSS JOIN LATERAL (SELECT {updated} AS updated_at OFFSET 0) u
                WHERE s.status = 'CANCELLED' AND b.extra_u < 0.35 AND b.kind = 'main'
                ORDER BY b.id
            ) c""")
        rem_status = """CASE
            WHEN f.sched IS NULL THEN NULL
            WHEN f.status = 'CANCELLED' AND f.updated_at <= f.sched THEN 'CANCELLED'
            WHEN f.sched > %(end)s THEN 'PENDING'
            WHEN (%(end)s - f.sched < interval '6 hours' AND f.rem_u < 0.08) OR f.rem_u < 0.004
                THEN 'PENDING'
            WHEN f.rem_u < 0.035 THEN
                CASE WHEN f.sched + interval '20 minutes' > %(end)s THEN 'PENDING' ELSE 'FAILED' END
            WHEN f.sched + (2 + f.rem_u * 90) * interval '1 second' > %(end)s THEN 'PENDING'
            ELSE 'SENT' END"""
        response = (
            "CASE WHEN rem_status = 'SENT' AND response_at <= %(end)s THEN "
            + pick("resp_u", [("CONFIRMED", 55), ("RESCHEDULE", 3), ("CANCEL", 2), ("", 40)])
            + " END"
        )
        services = text_array([s.name for s in SERVICES])
        code = "'BK' || upper(lpad(to_hex(mod(code_n * 2654435761, 4294967296)), 8, '0'))"
        pool = f"least(99999, greatest(10, ceil({w} * {150_000 * self.scale!r})))"
        phone = f"'+79' || lpad((r::bigint * 100000 + mod(cust, {pool}::bigint))::text, 9, '0')"
        name = (
            f"({text_array(WORDS['first_names'])})[1 + mod(cust, {len(WORDS['first_names'])})::int]"
        )
        self._exec(f"""
            WITH f AS MATERIALIZED (
                SELECT b.*, s.status, u.updated_at, {self._salon_id("b.r")} AS salon_id,
                       CASE WHEN b.created_at <= b.start_ts - interval '24 hours'
                                THEN b.start_ts - interval '24 hours'
                            WHEN b.created_at <= b.start_ts - interval '2 hours'
                                THEN b.start_ts - interval '2 hours' END AS sched
                FROM dg_booking b
                CROSS JOIN LATERAL (SELECT {status} AS status OFFSET 0) s
                CROSS JOIN LATERAL (SELECT {updated} AS updated_at OFFSET 0) u
            ), rm AS MATERIALIZED (
                SELECT f.*, rs.rem_status,
                       f.sched + (2 + f.rem_u * 90) * interval '1 second' AS sent_at,
                       f.sched + (2 + f.rem_u * 90) * interval '1 second'
                           + f.resp_u * interval '40 minutes' AS response_at
                FROM f CROSS JOIN LATERAL (SELECT {rem_status} AS rem_status) rs
            ), bk AS (
                INSERT INTO bookings (id, booking_code, salon_id, customer_phone, customer_name,
                                      service, master_id, service_id, start_ts, end_ts, status,
                                      reminder_sent, reminder_response, created_at, updated_at)
                SELECT id, {code}, salon_id, {phone}, {name} || ' ' || chr(65 + mod(cust / 7, 26)::int) || '.',
                       ({services})[svc + 1], {uuid_of(str(self.seed), "'master'", "r", "m")},
                       {uuid_of(str(self.seed), "'service'", "r", "svc")}, start_ts,
                       CASE WHEN kind = 'main' AND mod(code_n, 50) = 0 THEN NULL ELSE end_ts END,
                       status{self._cast("bookings", "status")},
                       coalesce(rem_status = 'SENT', false), nullif(response, ''),
                       created_at,
                       CASE WHEN nullif(response, '') IS NULL THEN updated_at
                            ELSE greatest(updated_at, response_at) END
                FROM (SELECT rm.*, {response} AS response FROM rm) rr
                ORDER BY id
            )
            INSERT INTO reminders (id, booking_id, salon_id, scheduled_at, sent_at, status, attempts,
                                   last_error, created_at)
            SELECT {uuid_of(str(self.seed), "'reminder'", "id")}, id, salon_id, sched,
                   CASE WHEN rem_status = 'SENT' THEN sent_at END,
                   rem_status{self._cast("reminders", "status")},
                   CASE rem_status WHEN 'SENT' THEN 1 + (resp_u < 0.05)::int
                                   WHEN 'FAILED' THEN 3
                                   WHEN 'PENDING' THEN CASE WHEN sched < %(end)s
                                                            THEN mod(floor(rem_u * 1000)::int, 3)
                                                            ELSE 0 END
                                   ELSE 0 END,
                   CASE WHEN rem_status = 'FAILED'
                            THEN {choose("resp_u", WORDS["reminder_errors"])}
                        WHEN rem_status = 'PENDING' AND sched < %(end)s
                             AND mod(floor(rem_u * 1000)::int, 3) > 0
                            THEN 'WhatsApp API timeout' END,
                   created_at
            FROM rm
            WHERE rem_status IS NOT NULL
            ORDER BY 1""")
        row = self.conn.execute("SELECT count(*) FROM dg_booking").fetchone()
        return int(row[0]) if row else 0

    # -- per-day streams --------------------------------------------------
