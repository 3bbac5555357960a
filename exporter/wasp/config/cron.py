"""Backup schedules: 5-field cron expressions, crontab lines and a tiny scheduler loop.

The scheduler exists for containers (a compose service) where no cron daemon
runs: it sleeps to the next minute, runs the jobs due, one at a time, and never
overlaps two pgBackRest jobs. On a host, `wasp backup crontab` prints the same
schedule as crontab lines instead.

Both must run a job at the same minutes, so an expression means here what it
means to cron (Vixie cron and cronie, Debian's `cron`): the grammar cron accepts
(numbers, month and weekday names, `*`, ranges, lists, `/step`, the @ aliases)
and nothing more, and cron's day rule: when the day-of-month or the day-of-week
field starts with `*` (`*`, `*/2`) a day must match both fields, otherwise
either one. croniter (PyPI) is not used at run time because it accepts more
than cron (`L`, `#`, `?`, a seconds field, `5-2`) and treats `*/N` in a day
field as a restriction unless asked not to; the tests check this module
against it (`implement_cron_bug=True`) on generated expressions.
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CronError", "CronSpec", "crontab_lines", "due_jobs", "parse_cron", "run_scheduler"]

log = logging.getLogger(__name__)

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
            "@annually": "0 0 1 1 *"}
#: names cron accepts in the month (3) and day-of-week (4) fields, case-insensitive
_NAMES: dict[int, dict[str, int]] = {
    3: {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                    "sep", "oct", "nov", "dec"), start=1)},
    4: {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}
#: when several jobs fall on the same minute, the first one in this order runs first
JOB_ORDER = ("full", "diff", "incr", "verify", "drill")


class CronError(ValueError):
    """A cron expression that does not parse."""


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A parsed cron expression; times are UTC."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool

    def matches(self, t: dt.datetime) -> bool:
        """True when the job is due in the minute of `t`."""
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        # cron (entry.c sets DOM_STAR/DOW_STAR when the field's first character is '*'):
        # a starred day field means both must match; two restricted ones, either
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


def parse_cron(text: str) -> CronSpec:
    """Parse 'm h dom mon dow' (numbers, names, '*', lists, ranges, '/step') or an @ alias."""
    expanded = _ALIASES.get(text.strip().lower(), text)
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(f"{text!r} is not a cron expression: expected 5 fields "
                        "(minute hour day-of-month month day-of-week)")
    sets = [_parse_field(p, name, lo, hi, _NAMES.get(i, {}))
            for i, (p, (name, lo, hi)) in enumerate(zip(parts, _FIELDS, strict=True))]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronSpec(text, sets[0], sets[1], sets[2], sets[3], weekdays,
                    day_star=parts[2].startswith("*"), weekday_star=parts[4].startswith("*"))


def _number(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_s = item.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if base == "*":
                a, b = lo, hi
            elif "-" in base:
                a_s, b_s = base.split("-", 1)
                a, b = _number(a_s, names), _number(b_s, names)
            else:
                a = _number(base, names)
                b = hi if step_s else a
        except ValueError:
            raise CronError(f"{name} field {item!r} is not a number, range, list or step") from None
        if step < 1 or not lo <= a <= hi or not lo <= b <= hi or a > b:
            raise CronError(f"{name} field {item!r} is out of range {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


def due_jobs(schedule: dict[str, str | None], t: dt.datetime) -> list[str]:
    """The jobs due in the minute of `t`, in JOB_ORDER; a full backup makes a due incr/diff moot."""
    due = [j for j in JOB_ORDER if schedule.get(j) and parse_cron(schedule[j] or "").matches(t)]
    if "full" in due:
        due = [j for j in due if j not in ("diff", "incr")]
    elif "diff" in due:
        due = [j for j in due if j != "incr"]
    return due


def crontab_lines(schedule: dict[str, str | None], *, wasp: str, config: str,
                  user: str | None = None) -> list[str]:
    """Crontab lines for the schedule (add `user` for /etc/cron.d files)."""
    lines = ["# wasp backup schedule (times are UTC: set CRON_TZ=UTC or run cron in UTC)",
             "CRON_TZ=UTC"]
    for job in JOB_ORDER:
        spec = schedule.get(job)
        if not spec:
            continue
        cmd = [wasp, "backup", "--config", config]
        cmd += ["run", "--type", job] if job in ("full", "diff", "incr") else [job]
        who = f"{user} " if user else ""
        lines.append(f"{spec} {who}{shlex.join(cmd)}")
    return lines


def run_scheduler(schedule: dict[str, str | None], run_job: Callable[[str], int], *,
                  clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] = time.sleep,
                  max_rounds: int | None = None, jobs: Sequence[str] = JOB_ORDER) -> None:
    """Run due jobs minute by minute until interrupted (or `max_rounds` minutes passed)."""
    for job in jobs:
        if schedule.get(job):
            log.info("schedule: %s at %r (UTC)", job, schedule[job])
    last_minute: int | None = None
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        now = clock()
        minute = int(now // 60)
        if minute == last_minute:
            sleep(60 - now % 60 + 0.5)
            continue
        last_minute = minute
        rounds += 1
        t = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
        for job in due_jobs(schedule, t):
            log.info("schedule: running %s", job)
            rc = run_job(job)
            log.log(logging.INFO if rc == 0 else logging.ERROR, "schedule: %s finished with exit "
                    "code %d", job, rc)
