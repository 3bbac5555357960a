"""Backup schedules (wasp.config.cron): cron's grammar and day rule, checked against croniter."""

from __future__ import annotations

import datetime as dt

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from wasp.config.cron import CronError, crontab_lines, due_jobs, parse_cron, run_scheduler


def test_cron_matching() -> None:
    t = dt.datetime(2026, 11, 29, 3, 30, tzinfo=dt.UTC)  # a Sunday
    assert parse_cron("30 3 * * 0").matches(t)
    assert parse_cron("30 3 * * 7").matches(t)
    assert not parse_cron("30 3 * * 1-5").matches(t)
    assert parse_cron("*/15 * * * *").matches(t)
    assert not parse_cron("0 * * * *").matches(t)
    assert parse_cron("30 3 1 * 0").matches(t)  # either day field may match
    assert parse_cron("@hourly").matches(t.replace(minute=0))
    for bad in ("* * *", "60 * * * *", "a * * * *", "5-1 * * * *", "*/0 * * * *"):
        with pytest.raises(CronError):
            parse_cron(bad)


def test_due_jobs_full_supersedes_incr() -> None:
    sched = {"full": "0 1 * * *", "incr": "0 * * * *", "drill": "0 1 * * *", "diff": None}
    assert due_jobs(sched, dt.datetime(2026, 1, 1, 1, 0)) == ["full", "drill"]
    assert due_jobs(sched, dt.datetime(2026, 1, 1, 2, 0)) == ["incr"]
    assert due_jobs(sched, dt.datetime(2026, 1, 1, 2, 1)) == []


def test_crontab_lines() -> None:
    lines = crontab_lines({"full": "0 1 * * *", "incr": "0 * * * *", "drill": "30 3 * * 0"},
                          wasp="/usr/bin/wasp", config="/etc/wasp/wasp.yml", user="postgres")
    assert "CRON_TZ=UTC" in lines
    assert "0 1 * * * postgres /usr/bin/wasp backup --config /etc/wasp/wasp.yml run --type full" in lines
    assert "30 3 * * 0 postgres /usr/bin/wasp backup --config /etc/wasp/wasp.yml drill" in lines


def test_scheduler_runs_due_jobs_once_per_minute() -> None:
    now = [dt.datetime(2026, 1, 1, 0, 59, 30, tzinfo=dt.UTC).timestamp()]
    ran: list[tuple[str, int]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def job(name: str) -> int:
        ran.append((name, dt.datetime.fromtimestamp(now[0], dt.UTC).hour))
        now[0] += 90  # a job longer than a minute
        return 0

    run_scheduler({"full": "0 1 * * *", "incr": "*/30 * * * *"}, job,
                  clock=lambda: now[0], sleep=sleep, max_rounds=70)
    assert ran[:3] == [("full", 1), ("incr", 1), ("incr", 2)], ran  # 01:00 full, 01:30, 02:00


def test_a_starred_day_field_means_both_day_fields_must_match() -> None:
    """cron's rule: `*/2` in day-of-month is a star (AND), `1-31/2` a restriction (OR)."""
    sat_5th = dt.datetime(2026, 12, 5, 0, 0, tzinfo=dt.UTC)  # an odd day, a Saturday
    mon_7th = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)  # an odd day, a Monday
    assert not parse_cron("0 0 */2 * 1").matches(sat_5th)
    assert parse_cron("0 0 */2 * 1").matches(mon_7th)
    assert parse_cron("0 0 1-31/2 * 1").matches(sat_5th)
    assert not parse_cron("0 0 7 * */3").matches(mon_7th)  # Monday is not in */3 (0, 3, 6)
    assert parse_cron("0 0 6 * 1").matches(dt.datetime(2026, 12, 6, tzinfo=dt.UTC))


def test_names_and_aliases_as_cron_reads_them() -> None:
    t = dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC)  # a Monday in January
    assert parse_cron("0 0 * jan mon-fri").matches(t)
    assert not parse_cron("0 0 * FEB-DEC *").matches(t)
    assert parse_cron("@midnight").matches(t) and not parse_cron("@yearly").matches(t)
    for bad in ("0 0 * * mon-foo", "0 0 jan * *", "0 0 1 * L", "0 0 * * 1#2", "0 0 ? * *",
                "0 0 0 * * *"):
        with pytest.raises(CronError):
            parse_cron(bad)


def _croniter_matches(expr: str, t: dt.datetime) -> bool:
    """croniter's verdict on minute `t`, with Vixie cron's day rule (implement_cron_bug)."""
    it = croniter(expr, t - dt.timedelta(seconds=1), ret_type=dt.datetime,
                  implement_cron_bug=True, max_years_between_matches=1)
    try:
        nxt: dt.datetime = it.get_next()
    except Exception:  # no date at all (the 30th of February): nothing matches
        return False
    return nxt == t


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    num = st.integers(lo, hi)
    step = st.integers(1, hi - lo + 1)
    item = st.one_of(
        num.map(str),
        st.tuples(num, num).filter(lambda ab: ab[0] != ab[1]).map(
            lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(num, num, step).filter(lambda abs_: abs_[0] != abs_[1]).map(
            lambda abs_: f"{min(abs_[:2])}-{max(abs_[:2])}/{abs_[2]}"),
    )
    # where croniter reads cron differently, the generator does not go: '*' inside a list
    # ('6,*' is a restriction to cron, a star to croniter) and one-value ranges ('5-5' is
    # '*' to croniter 7.0)
    return st.one_of(st.just("*"), step.map(lambda n: f"*/{n}"),
                     st.lists(item, min_size=1, max_size=3).map(",".join))


_EXPRESSIONS = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12),
                         _field(0, 7)).map(" ".join)
_MINUTES = st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2030, 12, 31)).map(
    lambda t: t.replace(second=0, microsecond=0))


@settings(max_examples=600, deadline=None)
@given(expr=_EXPRESSIONS, t=_MINUTES)
def test_matches_agree_with_croniter(expr: str, t: dt.datetime) -> None:
    """Generated expressions (day fields starred, stepped, listed) at random minutes."""
    assert parse_cron(expr).matches(t.replace(tzinfo=dt.UTC)) == _croniter_matches(expr, t), expr


@settings(max_examples=200, deadline=None)
@given(expr=st.tuples(st.sampled_from(["0", "30"]), st.sampled_from(["0", "12"]),
                      _field(1, 31), st.just("*"), _field(0, 7)).map(" ".join),
       day=st.dates(dt.date(2025, 1, 1), dt.date(2026, 12, 31)))
def test_day_rule_agrees_with_croniter_on_every_day(expr: str, day: dt.date) -> None:
    """Only the day fields vary, so the day rule decides every verdict."""
    h, m = int(expr.split()[1]), int(expr.split()[0])
    t = dt.datetime(day.year, day.month, day.day, h, m)
    assert parse_cron(expr).matches(t.replace(tzinfo=dt.UTC)) == _croniter_matches(expr, t), expr
