"""Rules of the log pack: statement latency percentiles, and security alerts.

Thresholds are the ``log_*`` fields of the settings; the log pack's series
carry the instance of the process that reads the log, not a target.
"""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import Bound, Point, Probe, counter, gauge, jump, when
from wasp.mixin.rules.model import Builder, Case, Fired, RecordingCase, Series, series
from wasp.mixin.settings import Settings

__all__ = ["QUANTILES", "build", "probes", "recording_cases"]

#: the recorded latency quantiles
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
#: labels of the test series (the log pack has no target label)
INST = {"instance": "db-1:9646", "job": "wasp"}
LAT = "wasp_log_statement_duration_seconds"


def _i(**labels: str) -> dict[str, str]:
    return {**INST, **labels}


def build(b: Builder) -> None:
    """The log pack's recording rules and alerts."""
    cfg = b.cfg
    rec = b.group("wasp-log-recording")
    cases = recording_cases()
    for name, q_ in QUANTILES:
        q = b.q()
        record = f"instance_database:{LAT}:{name}_rate5m"
        b.record(rec, record, ("database",), q, f"""
histogram_quantile({q_}, sum without (user) (rate({q(LAT + "_bucket")}[5m])))
""", cases[record])
    q = b.q()
    record = f"instance_database:{LAT}:rate5m"
    b.record(rec, record, ("database",), q, f"""
sum without (user) (rate({q(LAT + "_count")}[5m]))
""", cases[record])

    g = b.group("wasp-log")
    q = b.q()
    w = cfg.log_failed_logins_window
    b.alert(g, "WaspFailedLoginsBurst", "warning", q, f"""
sum without (database, client_addr) (increase({q("wasp_log_auth_failures_total")}[{w}]))
  > {num(cfg.log_failed_logins_burst)}
""",
        "{{ $value | humanize }} failed logins for {{ $labels.user }} in " + w,
        "PostgreSQL refused {{ $value | humanize }} logins of role {{ $labels.user }} "
        f"(instance {{{{ $labels.instance }}}}) in {w}: a password guesser, or a client with a "
        "stale password. wasp_log_auth_failures_total by client_addr shows where from.",
        [Case("30 wrong passwords in 5 minutes", (
            series("wasp_log_auth_failures_total", "0+3x15",
               **_i(user="app", database="app", client_addr="203.0.113.7")),
            series("wasp_log_auth_failures_total", "0+3x15",
               **_i(user="app", database="app", client_addr="other")),), "10m",
            (Fired(_i(user="app"), 30, "warning"),)),
         Case("a typo now and then", (
             series("wasp_log_auth_failures_total", "0 0 1 1 1 2 2 2 2 3 3 3 3 3 3 3",
                **_i(user="app", database="app", client_addr="10.0.0.5")),), "10m")])

    q = b.q()
    start, end = cfg.log_maintenance_start_hour, cfg.log_maintenance_end_hour
    days = ", ".join(str(d) for d in cfg.log_maintenance_days)
    b.alert(g, "WaspPrivilegeChangeOutsideMaintenance", "warning", q, f"""
sum without (database) (increase({q("wasp_log_role_changes_total")}[10m])) > 0
unless on () ((hour() >= {start} < {end}) and on () ({_days_expr(cfg.log_maintenance_days)}))
""",
        "{{ $labels.user }} ran {{ $labels.command }} outside the maintenance window",
        "Role {{ $labels.user }} ran {{ $labels.command }} on instance {{ $labels.instance }} "
        f"outside the maintenance window ({start:02d}:00-{end:02d}:00 UTC on days {days} of the "
        "week, 0 = Sunday). Check who and why in the server log (log_statement = ddl).",
        [Case("a GRANT on a Thursday just after midnight", (
            series("wasp_log_role_changes_total", "0 0 0 1 1 1 1 1 1 1 1",
               **_i(user="postgres", database="app", command="grant")),), "5m",
            (Fired(_i(user="postgres", command="grant"), 1, "warning"),)),
         Case("the same GRANT inside the window", (
             series("wasp_log_role_changes_total", f"0x{_window_minutes(cfg) // 5} 1x4",
                **_i(user="postgres", database="app", command="grant")),),
             f"{_window_minutes(cfg) + 10}m", interval="5m")])

    q = b.q()
    b.alert(g, "WaspSuperuserLoginFromNetwork", "page", q, f"""
increase({q("wasp_log_superuser_logins_total", local="false")}[10m]) > 0
""",
        "Superuser {{ $labels.user }} logged in from {{ $labels.client_addr }}",
        "Superuser {{ $labels.user }} logged in to instance {{ $labels.instance }} from "
        "{{ $labels.client_addr }}, a non-local address. Superusers should log in on the "
        "database host only (Unix socket or loopback): check whether this was you.",
        [Case("postgres from a remote address", (
            series("wasp_log_superuser_logins_total", "0 0 0 1 1 1 1 1",
               **_i(user="postgres", client_addr="198.51.100.4", local="false")),), "5m",
            (Fired(_i(user="postgres", client_addr="198.51.100.4", local="false"), 1,
                   "page"),)),
         Case("postgres over the socket", (
             series("wasp_log_superuser_logins_total", "0 0 0 1 2 3 4 5",
                **_i(user="postgres", client_addr="[local]", local="true")),), "5m")])

    q = b.q()
    p95 = q(f"instance_database:{LAT}:p95_rate5m")
    rate = q(f"instance_database:{LAT}:rate5m")
    b.alert(g, "WaspQueryLatencyP95High", "warning", q, f"""
{p95} > {num(cfg.log_query_p95_seconds)}
and on (job, instance, database) {rate} > {num(cfg.log_query_min_rate)}
""",
        "Statement p95 on {{ $labels.database }} is {{ $value | humanizeDuration }}",
        "95 % of the statements on database {{ $labels.database }} (instance "
        "{{ $labels.instance }}) took up to {{ $value | humanizeDuration }} over the last 5 "
        f"minutes, over the {num(cfg.log_query_p95_seconds * 1000)} ms objective (from the "
        "server's sampled statement log). pg_stat_statements shows which statements.",
        [Case("slow statements for 15 minutes", _lat_series(fast=60, slow=30), "20m",
              (Fired(_i(database="app"), 0.2275, "warning"),)),
         Case("fast statements", _lat_series(fast=90, slow=0), "20m")])

    q = b.q()
    b.alert(g, "WaspLogPackNotReady", "info", q, f"""
{q("wasp_log_pack_ready")} == 0
""",
        "The log pack is not ready: {{ $labels.reason }}",
        "The log pack on {{ $labels.instance }} cannot deliver all its signals: "
        "{{ $labels.reason }} (see docs/log-pack.md, server settings). Failed logins, "
        "privilege changes or statement latency are blind until it is fixed.",
        [Case("sampling off", (
            series("wasp_log_pack_ready", "0x40", **_i(reason="sampling_off")),), "35m",
            (Fired(_i(reason="sampling_off"), 0, "info"),)),
         Case("ready", (series("wasp_log_pack_ready", "1x40", **_i(reason="ok")),), "35m")])


#: why the `for` mutants of an alert that fires on its first evaluation change nothing
_AT_ONCE = ("its `for` is 0s (it fires on the first evaluation that sees the event): for 0 and "
            "for doubled are the same rule")


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    user = _i(user="app")
    grant = _i(user="postgres", command="grant")
    remote = _i(user="postgres", client_addr="198.51.100.4", local="false")
    db = _i(database="app")
    start, end = cfg.log_maintenance_start_hour, cfg.log_maintenance_end_hour
    # the first maintenance day after the start of promtool's clock (a Thursday)
    day = min((d - 4) % 7 for d in cfg.log_maintenance_days)

    def logins(p: Point, n: int, every: int) -> tuple[Series, ...]:
        # the failures of one role from two addresses, summed by the rule
        half = p["failures"] / 2
        return tuple(jump("wasp_log_auth_failures_total", 5, v, n,
                          **_i(user="app", database="app", client_addr=addr))
                     for addr, v in (("203.0.113.7", p["failures"] - half), ("10.0.0.5", half)))

    def on_day(p: Point) -> int:
        """The case starts on the maintenance day at the point's hour, less the onset (5 m)."""
        return day * 1440 + int(p["hour"]) * 60 - 5

    def changes(p: Point, n: int, every: int) -> tuple[Series, ...]:
        # the change lands at the evaluation: 5 minutes past the hour of the point
        return (jump("wasp_log_role_changes_total", (on_day(p) + 5) // every, p["changes"], n,
                     **_i(user="postgres", database="app", command="grant")),)

    def latency(p: Point, n: int, every: int) -> tuple[Series, ...]:
        # every statement in one bucket [0, p95 / 0.95]: its 95th percentile is p95
        per_step = 60 * every * p["rate"]
        le = num(p["p95"] / 0.95)
        return (*(counter(LAT + "_bucket", per_step, n, **_i(database="app", user="app", le=b))
                  for b in (le, "+Inf")),
                counter(LAT + "_count", per_step, n, **_i(database="app", user="app")))

    return {
        "WaspFailedLoginsBurst": Probe(
            {"failures": 3 * cfg.log_failed_logins_burst},
            (Bound("failures", ">", "log_failed_logins_burst", step=1),), logins,
            lambda p, at: when(p["failures"] > cfg.log_failed_logins_burst, "warning", user,
                               p["failures"]),
            onset=5, equivalent=_AT_ONCE),
        "WaspPrivilegeChangeOutsideMaintenance": Probe(
            {"hour": 12, "changes": 1},
            (Bound("hour", "<", "log_maintenance_start_hour", step=1),
             Bound("hour", ">=", "log_maintenance_end_hour", step=1),
             Bound("changes", ">", quiet=0)),
            changes,
            lambda p, at: when(p["changes"] > 0 and not start <= p["hour"] < end, "warning",
                               grant, p["changes"]),
            onset=5, interval=5, delay=on_day, equivalent=_AT_ONCE),
        "WaspSuperuserLoginFromNetwork": Probe(
            {"logins": 2}, (Bound("logins", ">", quiet=0),),
            lambda p, n, every: (
                jump("wasp_log_superuser_logins_total", 5, p["logins"], n, **remote),
                # superuser logins over the socket never count
                counter("wasp_log_superuser_logins_total", 1, n,
                        **_i(user="postgres", client_addr="[local]", local="true"))),
            lambda p, at: when(p["logins"] > 0, "page", remote, p["logins"]),
            onset=5, equivalent=_AT_ONCE),
        "WaspQueryLatencyP95High": Probe(
            {"p95": 2 * cfg.log_query_p95_seconds, "rate": 10 * cfg.log_query_min_rate},
            (Bound("p95", ">", "log_query_p95_seconds"),
             Bound("rate", ">", "log_query_min_rate")),
            latency,
            lambda p, at: when(p["p95"] > cfg.log_query_p95_seconds
                               and p["rate"] > cfg.log_query_min_rate, "warning", db, p["p95"]),
            onset=1, settle=5),
        "WaspLogPackNotReady": Probe(
            {"ready": 0}, (Bound("ready", "==", quiet=1),),
            lambda p, n, every: (gauge("wasp_log_pack_ready", p["ready"], n,
                                       **_i(reason="sampling_off")),),
            lambda p, at: when(p["ready"] == 0, "info", _i(reason="sampling_off"), p["ready"])),
    }


def _days_expr(days: tuple[int, ...]) -> str:
    return " or on () ".join(f"day_of_week() == {d}" for d in days)


def _window_minutes(cfg: Settings) -> int:
    """Minutes from the start of the promtool clock (Thursday 1970-01-01 00:00 UTC) to the
    first maintenance window: its day and hour."""
    start = cfg.log_maintenance_start_hour
    day = min((d - 4) % 7 for d in cfg.log_maintenance_days)
    return (day * 24 + start) * 60


def _lat_series(*, fast: float, slow: float) -> tuple[Series, ...]:
    """Histogram buckets growing by `fast` statements a minute under 10 ms, `slow` at 200 ms."""
    out = []
    for le, per_min in (("0.01", fast), ("0.1", fast), ("0.25", fast + slow),
                        ("+Inf", fast + slow)):
        out.append(series(LAT + "_bucket", f"0+{num(per_min)}x30",
                      **_i(database="app", user="app", le=le)))
    out.append(series(LAT + "_count", f"0+{num(fast + slow)}x30", **_i(database="app", user="app")))
    return tuple(out)


def recording_cases() -> dict[str, tuple[RecordingCase, ...]]:
    """What each log recording rule must compute from hand-chosen series."""
    series = _lat_series(fast=90, slow=10)
    db = _i(database="app")
    # 100 statements a minute: 90 under 10 ms, 10 between 100 and 250 ms; p95 = 0.175 and
    # p99 = 0.235 (linear within the bucket), written as Prometheus' float arithmetic gives them
    return {
        f"instance_database:{LAT}:p50_rate5m": (RecordingCase(series, "10m",
                                                              ((db, 0.01 * 50 / 90),)),),
        f"instance_database:{LAT}:p95_rate5m": (RecordingCase(series, "10m",
                                                              ((db, 0.1749999999999999),)),),
        f"instance_database:{LAT}:p99_rate5m": (RecordingCase(series, "10m",
                                                              ((db, 0.23500000000000004),)),),
        f"instance_database:{LAT}:rate5m": (RecordingCase(series, "10m", ((db, 100 / 60),)),),
    }
