"""The PostgreSQL log board: failed logins, refusals, superuser logins, role changes, errors,
statement latency (the log pack)."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    RED,
    Dashboard,
    Panel,
    Row,
    Target,
    alert_steps,
    labels_of,
    red_at,
    sel,
    stat,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["LOG"]

LAT = "wasp_log_statement_duration_seconds"


def _by(name: str, by: tuple[str, ...]) -> str:
    # the log pack's series carry no target: they are told apart by the scrape's instance
    own = labels_of(name.removesuffix("_bucket").removesuffix("_count"))
    if name.endswith("_bucket"):
        own = (*own, "le")
    for label in by:
        if label != "instance" and label not in own:
            raise ValueError(f"metric {name} has no label {label!r} to group by")
    return ", ".join(by)


def _increase(name: str, by: tuple[str, ...], window: str, **matchers: str) -> str:
    return f"sum by ({_by(name, by)}) (increase({sel(name, **matchers)}[{window}]))"


def _rate(name: str, by: tuple[str, ...], **matchers: str) -> str:
    return f"sum by ({_by(name, by)}) (rate({sel(name, **matchers)}[$__rate_interval]))"


def log_ready(s: Settings) -> Panel:
    """Whether the server writes what the pack needs, with the reason."""
    return stat("Log pack ready",
                Target(f"min by (instance, reason) ({sel('wasp_log_pack_ready')})",
                       "{{instance}} {{reason}}"),
                w=6, thresholds=[(None, RED), (1, "green")], options={"graphMode": "none"})


def log_lines(s: Settings) -> Panel:
    """Lines read and lines skipped."""
    return ts("Log lines read / skipped per second",
              Target(_rate("wasp_log_lines_total", ("instance",)), "{{instance}} read"),
              Target(_rate("wasp_log_unparsed_lines_total", ("instance", "reason")),
                     "{{instance}} skipped: {{reason}}"), unit="ops", w=9)


def log_lag(s: Settings) -> Panel:
    """How old the newest line read is."""
    return ts("Newest log line age",
              Target(f"time() - max by (instance) ({sel('wasp_log_last_line_timestamp_seconds')})",
                     "{{instance}}"), unit="s", w=9)


def failed_logins(s: Settings) -> Panel:
    """Failed logins per role over the alert's window, at the alert's threshold."""
    w = s.log_failed_logins_window
    return ts(f"Failed logins per role ({w})",
              Target(_increase("wasp_log_auth_failures_total", ("instance", "user"), w),
                     "{{instance}} {{user}}"), w=12,
              thresholds=alert_steps((s.log_failed_logins_burst, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def failed_logins_by_address(s: Settings) -> Panel:
    """Failed logins by client address."""
    w = s.log_failed_logins_window
    return ts(f"Failed logins by client address ({w})",
              Target(_increase("wasp_log_auth_failures_total", ("instance", "client_addr"), w),
                     "{{instance}} {{client_addr}}"),
              Target(_increase("wasp_log_hba_rejections_total", ("instance", "client_addr"), w),
                     "{{instance}} {{client_addr}} refused by pg_hba"), w=12)


def superuser_logins(s: Settings) -> Panel:
    """Superuser logins from the network (the page) and from the host."""
    return ts("Superuser logins (1h)",
              Target(_increase("wasp_log_superuser_logins_total",
                               ("instance", "user", "client_addr"), "1h", local="false"),
                     "{{instance}} {{user}} from {{client_addr}} (network)"),
              Target(_increase("wasp_log_superuser_logins_total", ("instance", "user"), "1h",
                               local="true"), "{{instance}} {{user}} local"), w=12,
              thresholds=red_at((1, RED)))


def role_changes(s: Settings) -> Panel:
    """Role and privilege changes."""
    return ts("Role and privilege changes (1h)",
              Target(_increase("wasp_log_role_changes_total", ("instance", "user", "command"), "1h"),
                     "{{instance}} {{user}} {{command}}"), w=12)


def errors(s: Settings) -> Panel:
    """Server errors by SQLSTATE class."""
    return ts("Errors per second by SQLSTATE class",
              Target(_rate("wasp_log_errors_total", ("instance", "severity", "sqlstate_class")),
                     "{{instance}} {{severity}} {{sqlstate_class}}"), unit="ops", w=12)


def latency(s: Settings) -> Panel:
    """p50/p95/p99 of statement durations, at the objective."""
    buckets = _rate(LAT + "_bucket", ("instance", "database", "le"))
    return ts("Statement duration p50 / p95 / p99",
              *(Target(f"histogram_quantile({q}, {buckets})", f"{{{{instance}}}} "
                       f"{{{{database}}}} p{round(q * 100)}") for q in (0.5, 0.95, 0.99)),
              unit="s", w=12, thresholds=alert_steps((s.log_query_p95_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}})


def statements(s: Settings) -> Panel:
    """Statements a second (estimated from the sample) and those over the slow threshold."""
    count = _rate(LAT + "_count", ("instance", "database"))
    return ts("Statements per second (estimated) / slow (exact)",
              Target(count, "{{instance}} {{database}} all"),
              Target(_rate("wasp_log_slow_statements_total", ("instance", "database")),
                     "{{instance}} {{database}} over log_min_duration_statement"),
              unit="ops", w=12)


LOG = Dashboard(
    "wasp-log", "wasp / PostgreSQL log",
    "Security signals and statement latency from PostgreSQL's jsonlog (the log pack).",
    (lambda s: Row("Log pack"), log_ready, log_lines, log_lag,
     lambda s: Row("Security"), failed_logins, failed_logins_by_address, superuser_logins,
     role_changes, errors,
     lambda s: Row("Statement latency"), latency, statements),
    tags=("postgres", "security"),
)
