"""The one settings object of the mixin: every selector, threshold, `for` and range.

Alerts and the panels that show the same quantity read the same field, so a
board cannot turn red at another number than the alert fires at. Users
override any field with a YAML file (`wasp rules --settings FILE`, `wasp
dashboards --settings FILE`): the keys are the field names below, plus `for`
(alert name -> duration, or alert name -> {severity: duration} for the alerts
that page and warn at two levels). An unknown key, a wrong type or a bad
duration is a `SettingsError` naming the file, the line and the key.

```yaml
selector: {job: db-monitor}
webhook_silent_seconds: 900
for:
  WaspExporterDown: 10m
  WaspPostgresConnectionsHigh: {page: 2m}
```
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FOR_DEFAULTS", "Settings", "SettingsError", "load_settings", "parse_burn_windows",
           "spoken"]

_MiB = 1024 * 1024
_GiB = 1024 * _MiB
DURATION_RE = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
SEVERITIES = ("page", "warning", "info")

#: `for` of every alert; "Name.severity" for an alert defined at two severities
FOR_DEFAULTS: dict[str, str] = {
    # exporter
    "WaspExporterDown": "5m",
    "WaspExporterMissing": "5m",
    "WaspTargetDown": "5m",
    "WaspStandbyTargetDown": "5m",
    "WaspQueryFailing": "10m",
    "WaspQuerySkipping": "15m",
    "WaspSeriesDropped": "15m",
    # app
    "WaspWebhooksSilent": "5m",
    "WaspWhatsAppInboundSilent": "5m",
    "WaspWebhookFailureRatioHigh.warning": "15m",
    "WaspWebhookFailureRatioHigh.page": "10m",
    "WaspWhatsAppOutboundFailureRatioHigh.warning": "15m",
    "WaspWhatsAppOutboundFailureRatioHigh.page": "10m",
    "WaspBookingsDropping": "30m",
    "WaspAICostSpike": "15m",
    "WaspAILatencyHigh": "15m",
    "WaspRemindersOverdue": "10m",
    "WaspDoubleBookings": "15m",
    "WaspWebhookProcessingSlow": "15m",
    "WaspWhatsAppReceiptsOverdue": "15m",
    "WaspRemindersFailing": "15m",
    "WaspAIBudgetExceeded": "5m",
    # postgres
    "WaspPostgresConnectionsHigh.warning": "10m",
    "WaspPostgresConnectionsHigh.page": "5m",
    "WaspPostgresLongTransaction": "5m",
    "WaspPostgresIdleInTransaction": "5m",
    "WaspPostgresLockWaits": "5m",
    "WaspPostgresDeadlocks": "5m",
    "WaspPostgresXIDAgeHigh": "30m",
    "WaspPostgresXIDWraparound": "5m",
    "WaspPostgresMultiXactAgeHigh": "30m",
    "WaspPostgresCacheHitRatioLow": "30m",
    "WaspPostgresPendingRestart": "1h",
    "WaspPostgresArchiverFailing": "15m",
    # storage
    "WaspFilesystemFillingUp": "1h",
    "WaspFilesystemFillingUpFast": "30m",
    "WaspPostgresWALGrowing": "15m",
    "WaspPostgresPageChecksumFailures": "1m",
    "WaspPostgresAutovacuumBehind": "1h",
    "WaspPostgresAutovacuumWorkersBusy": "1h",
    "WaspPostgresTableBloated": "1h",
    "WaspPostgresCheckpointsRequested": "30m",
    # failover
    "WaspPostgresRestarted": "1m",
    "WaspPostgresTwoPrimaries": "1m",
    "WaspPostgresFailover": "1m",
    "WaspPatroniNoLeader": "1m",
    "WaspPatroniPaused": "1h",
    # replication
    "WaspStandbyReplayDelayHigh": "5m",
    "WaspStandbyHeartbeatStale": "5m",
    "WaspHeartbeatWriterStopped": "5m",
    "WaspStandbysMissing": "5m",
    "WaspReplicationSlotInactive": "15m",
    "WaspReplicationSlotWALLost": "5m",
    "WaspWALReceiverNotStreaming": "5m",
    "WaspReplicationSlotNearLimit": "5m",
    # backup
    "WaspBackupTooOld": "15m",
    "WaspBackupNotProven": "1h",
    "WaspBackupFailed": "5m",
    "WaspRestoreDrillFailed": "5m",
    "WaspRestoreDrillTooOld": "1h",
    "WaspBackupRepositoryUnreadable": "10m",
    "WaspWALArchiveBehind": "10m",
    "WaspWALArchiveFailing": "15m",
    "WaspBackupVerifyFailed": "5m",
    "WaspBackupPageChecksumErrors": "5m",
    "WaspBackupStuck": "5m",
    "WaspBackupMetricsAbsent": "15m",
    # pgbouncer
    "WaspPgBouncerPoolSaturated": "10m",
    "WaspPgBouncerClientsWaiting": "5m",
    "WaspPgBouncerClientsNearMax": "10m",
    "WaspPgBouncerDatabasePaused": "15m",
    # log pack
    "WaspFailedLoginsBurst": "0m",
    "WaspPrivilegeChangeOutsideMaintenance": "0m",
    "WaspSuperuserLoginFromNetwork": "0m",
    "WaspQueryLatencyP95High": "10m",
    "WaspLogPackNotReady": "30m",
    # SLOs: multi-window burn rates (the short window already guards against blips)
    "WaspSLODatabaseAvailabilityBurn.page": "2m",
    "WaspSLODatabaseAvailabilityBurn.warning": "15m",
    "WaspSLOMessagesDeliveredBurn.page": "2m",
    "WaspSLOMessagesDeliveredBurn.warning": "15m",
    "WaspSLOWebhooksProcessedBurn.page": "2m",
    "WaspSLOWebhooksProcessedBurn.warning": "15m",
    "WaspSLOBookingsCleanBurn.page": "2m",
    "WaspSLOBookingsCleanBurn.warning": "15m",
    # doctor
    "WaspDoctorCriticalCheckFailing": "15m",
    "WaspDoctorScoreDropped": "15m",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Selectors, thresholds, `for` durations and ranges of every alert and of its panel."""

    #: matchers put on every rule selector (the scrape job of the exporters)
    selector: tuple[tuple[str, str], ...] = (("job", "wasp"),)
    #: matchers put on node_exporter selectors (filesystem space)
    node_selector: tuple[tuple[str, str], ...] = (("job", "node"),)
    #: labels that identify one replication cluster (add e.g. "cluster" when one job watches several)
    cluster_by: tuple[str, ...] = ("job",)
    runbook_url: str = "docs/runbook.md"
    #: alert name (or "name.severity") -> `for`
    for_: Mapping[str, str] = field(default_factory=lambda: dict(FOR_DEFAULTS))
    # exporter
    #: how long a target that stopped answering is still known as a standby
    standby_role_memory: str = "6h"
    query_failing_ratio: float = 0.9
    query_failing_window: str = "15m"
    query_skips: float = 2
    query_skips_window: str = "30m"
    series_dropped_window: str = "15m"
    # app (about 1,000 salons: 150k webhooks, 100k messages, 10k bookings a day)
    webhook_silent_seconds: float = 600
    whatsapp_event_type: str = "message_received"
    whatsapp_silent_seconds: float = 1800
    webhook_failure_warning: float = 0.05
    webhook_failure_page: float = 0.25
    webhook_min_events_1h: float = 100
    outbound_failure_warning: float = 0.05
    outbound_failure_page: float = 0.30
    outbound_min_messages_1h: float = 50
    #: what the business comparisons compare against
    comparison_offset: str = "1d"
    bookings_drop_ratio: float = 0.5
    bookings_min_before_1h: float = 30
    ai_cost_spike_ratio: float = 2.0
    ai_cost_min_usd_1h: float = 10
    ai_cost_max_usd_1h: float = 100
    ai_p95_seconds: float = 10
    ai_min_responses_1h: float = 20
    reminders_overdue_seconds: float = 900
    double_bookings_max: float = 0
    webhook_processing_seconds: float = 2
    webhook_min_timed_1h: float = 20
    #: share of the outbound messages due a delivery receipt that are still SENT
    receipts_overdue_ratio: float = 0.5
    receipts_min_due: float = 20
    reminders_failed_ratio: float = 0.2
    reminders_min_due_1h: float = 10
    ai_daily_budget_usd: float = 50
    # postgres
    connections_warning: float = 0.80
    connections_page: float = 0.95
    long_transaction_seconds: float = 1800
    idle_in_transaction_seconds: float = 300
    lock_wait_seconds: float = 60
    deadlocks: float = 5
    deadlocks_window: str = "30m"
    xid_freeze_ratio: float = 1.5
    xid_wraparound_page: float = 1.0e9
    mxid_freeze_ratio: float = 1.5
    cache_hit_ratio_min: float = 0.95
    cache_min_blocks_per_second: float = 100
    archiver_failing_window: str = "15m"
    # storage
    #: node_exporter filesystem types left out (regex): memory and image filesystems
    filesystem_fstypes_excluded: str = "tmpfs|ramfs|squashfs|iso9660|overlay"
    filesystem_trend_window: str = "6h"
    filesystem_free_warning: float = 0.40
    filesystem_warning_horizon_seconds: float = 24 * 3600
    filesystem_free_page: float = 0.15
    filesystem_page_horizon_seconds: float = 4 * 3600
    #: pg_wal against max_wal_size + wal_keep_size: above it now, and predicted this far above
    wal_directory_bound_ratio: float = 1.0
    wal_directory_predicted_ratio: float = 4.0
    wal_directory_trend_window: str = "1h"
    wal_directory_horizon_seconds: float = 4 * 3600
    checksum_failures_window: str = "1h"
    #: dead rows over this many times the table's autovacuum trigger
    autovacuum_behind_ratio: float = 2.0
    autovacuum_behind_min_dead_rows: float = 10000
    autovacuum_workers_busy_ratio: float = 1.0
    table_bloat_ratio: float = 0.5
    table_bloat_min_bytes: float = 1 * _GiB
    checkpoints_requested_ratio: float = 0.5
    checkpoints_requested_min: float = 3
    checkpoints_window: str = "1h"
    # failover
    restart_window: str = "15m"
    failover_window: str = "30m"
    # replication
    replay_delay_seconds: float = 300
    heartbeat_stale_seconds: float = 120
    expected_standbys: int = 2
    slot_inactive_retained_bytes: float = 1 * _GiB
    #: an active slot's safe_wal_size below this share of max_slot_wal_keep_size
    slot_safe_wal_ratio: float = 0.2
    # backup
    full_completed_max_seconds: float = 26 * 3600
    incr_completed_max_seconds: float = 3 * 3600
    good_full_max_seconds: float = 8 * 86400
    drill_max_seconds: float = 8 * 86400
    wal_unarchived_bytes: float = 64 * _MiB
    wal_archive_stuck_seconds: float = 900
    wal_archive_failing_window: str = "15m"
    backup_stuck_seconds: float = 6 * 3600
    # pgbouncer
    pool_usage_ratio: float = 0.9
    client_wait_seconds: float = 5
    #: client connections over max_client_conn
    pgbouncer_clients_ratio: float = 0.8
    # log pack
    log_failed_logins_burst: float = 20
    log_failed_logins_window: str = "5m"
    #: the maintenance window for role and privilege changes: [start, end) hour, UTC ...
    log_maintenance_start_hour: int = 2
    log_maintenance_end_hour: int = 4
    #: ... on these days of the week (0 = Sunday)
    log_maintenance_days: tuple[int, ...] = (0,)
    #: the service's objective: 95 % of the statements within this
    log_query_p95_seconds: float = 0.1
    #: statements a second under which the p95 alert stays quiet (too few to tell)
    log_query_min_rate: float = 0.1
    # SLOs: the fraction of good events promised over slo_window (rules/slo.py)
    slo_window: str = "30d"
    slo_database_availability: float = 0.999
    slo_messages_delivered: float = 0.99
    slo_webhooks_processed: float = 0.995
    slo_bookings_clean: float = 0.999
    # burn-rate pairs (long, short window, burn rate): the SRE workbook's, page then ticket
    slo_page_windows: str = "1h/5m:14.4,6h/30m:6"
    slo_ticket_windows: str = "1d/2h:3,3d/6h:1"
    # the production-readiness report's KPI targets (the KPI board)
    kpi_replication_lag_seconds: float = 5
    kpi_query_mean_seconds: float = 0.1
    kpi_rto_seconds: float = 3600
    kpi_rpo_seconds: float = 300
    kpi_pool_usage_ratio: float = 0.8
    # doctor: alert below this score, or when it fell this much within doctor_score_window
    doctor_score_min: float = 7
    doctor_score_drop: float = 1
    doctor_score_window: str = "1d"

    def for_of(self, alert: str, severity: str) -> str:
        """The `for` of an alert at a severity (KeyError when the settings lack it)."""
        key = f"{alert}.{severity}"
        return self.for_[key] if key in self.for_ else self.for_[alert]

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (`for_` entries merge into the current ones)."""
        if "for_" in changes:
            changes["for_"] = {**self.for_, **changes["for_"]}
        return dataclasses.replace(self, **changes)


class SettingsError(ValueError):
    """A settings file that cannot be used: file, line, key and what was expected."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_NUMBER_TYPES = {"float": float, "int": int}


def _yaml_key(name: str) -> str:
    return "for" if name == "for_" else name


def _field_of(key: str) -> str | None:
    name = "for_" if key == "for" else key
    return name if name in _FIELDS and key != "for_" else None


def _duration(value: Any, err: Any) -> str:
    if not isinstance(value, str) or not DURATION_RE.fullmatch(value):
        raise err(f"expected a duration like 5m, 1h or 1h30m, got {value!r}")
    return value


def _convert(name: str, value: Any, node: yaml.Node, file: str, key: str) -> Any:
    def err(message: str, at: yaml.Node = node, k: str = key) -> SettingsError:
        return SettingsError(file, at.start_mark.line + 1, k, message)

    kind = str(_FIELDS[name].type)
    if name in ("selector", "node_selector"):
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise err("expected a mapping of label: value (strings)")
        return tuple(sorted(value.items()))
    if name == "cluster_by":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise err("expected a non-empty list of label names")
        return tuple(value)
    if name == "for_":
        return _for_mapping(value, node, file)
    if name == "log_maintenance_days":
        if (not isinstance(value, list) or not value or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in value)):
            raise err("expected a non-empty list of days of the week, 0 (Sunday) to 6")
        return tuple(sorted(set(value)))
    if name.startswith("slo_") and kind == "float" and not (
            isinstance(value, float) and 0 < value < 1):
        raise err(f"expected an objective between 0 and 1 (0.999 for 99.9%), got {value!r}")
    if kind in _NUMBER_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind == "int":
            ok = ok and float(value).is_integer()
        if not ok or not math.isfinite(float(value)) or value < 0:
            raise err(f"expected a non-negative {'integer' if kind == 'int' else 'number'}, "
                      f"got {value!r}")
        if name.endswith("_hour") and value > 24:
            raise err(f"expected an hour of the day, 0 to 24, got {value!r}")
        return _NUMBER_TYPES[kind](value)
    if name in ("slo_page_windows", "slo_ticket_windows"):
        if not isinstance(value, str) or parse_burn_windows(value) is None:
            raise err("expected pairs like 1h/5m:14.4,6h/30m:6 (long/short window:burn rate)")
        return value
    if name.endswith("_window") or name == "comparison_offset":
        return _duration(value, err)
    if not isinstance(value, str) or not value:
        raise err(f"expected a non-empty string, got {value!r}")
    return value


def _alert_names() -> set[str]:
    return {k.split(".")[0] for k in FOR_DEFAULTS}


def _for_mapping(value: Any, node: yaml.Node, file: str) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        raise SettingsError(file, node.start_mark.line + 1, "for",
                            "expected a mapping of alert name: duration")
    out: dict[str, str] = {}
    names = _alert_names()
    for knode, _ in node.value:
        alert, line = str(knode.value), knode.start_mark.line + 1
        key = f"for.{alert}"
        if alert not in names:
            hint = difflib.get_close_matches(alert, sorted(names), n=1)
            raise SettingsError(file, line, key, "no such alert" +
                                (f" (did you mean {hint[0]}?)" if hint else ""))
        v = value[alert]

        def err(message: str, at: int = line, k: str = key) -> SettingsError:
            return SettingsError(file, at, k, message)

        if isinstance(v, dict):
            levels = {k.split(".")[1] for k in FOR_DEFAULTS if k.startswith(f"{alert}.")}
            for sk, sv in v.items():
                if sk not in levels:
                    raise err(f"expected one of its severities {sorted(levels)}, got {sk!r}",
                              k=f"{key}.{sk}")
                out[f"{alert}.{sk}"] = _duration(sv, lambda m, k=f"{key}.{sk}": err(m, k=k))
        elif f"{alert}.page" in FOR_DEFAULTS or f"{alert}.warning" in FOR_DEFAULTS:
            d = _duration(v, err)
            for k in FOR_DEFAULTS:
                if k.startswith(f"{alert}."):
                    out[k] = d
        else:
            out[alert] = _duration(v, err)
    return out


def load_settings(path: str | Path, base: Settings | None = None) -> Settings:
    """Settings from a YAML file over `base` (the defaults); SettingsError when it is invalid."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SettingsError(file, None, "", f"cannot read: {e.strerror or e}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return base or Settings()
        if not isinstance(root, yaml.MappingNode):
            raise SettingsError(file, root.start_mark.line + 1, "",
                                "expected a mapping of setting: value")
        changes: dict[str, Any] = {}
        for knode, vnode in root.value:
            key = str(knode.value)
            name = _field_of(key)
            if name is None:
                known = sorted(_yaml_key(n) for n in _FIELDS)
                hint = difflib.get_close_matches(key, known, n=1)
                raise SettingsError(file, knode.start_mark.line + 1, key, "unknown setting" +
                                    (f" (did you mean {hint[0]}?)" if hint else ""))
            value = loader.construct_object(vnode, deep=True)
            changes[name] = _convert(name, value, vnode, file, key)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SettingsError(file, mark.line + 1 if mark else None, "",
                            f"not valid YAML: {getattr(e, 'problem', e)}") from None
    finally:
        loader.dispose()
    return (base or Settings()).replace(**changes)


_BURN_RE = re.compile(r"^(\d+[mhd])/(\d+[mhd]):(\d+(?:\.\d+)?)$")


def parse_burn_windows(text: str) -> tuple[tuple[str, str, float], ...] | None:
    """`1h/5m:14.4,6h/30m:6` -> (("1h", "5m", 14.4), ("6h", "30m", 6.0)); None when malformed."""
    out = []
    for part in text.split(","):
        m = _BURN_RE.match(part.strip())
        if m is None:
            return None
        out.append((m.group(1), m.group(2), float(m.group(3))))
    return tuple(out) or None


_UNITS = {"ms": "millisecond", "s": "second", "m": "minute", "h": "hour", "d": "day",
          "w": "week", "y": "year"}


def spoken(duration: str) -> str:
    """A duration as a sentence says it: 30m -> "30 minutes", 1h -> "an hour", 1h30m -> "1h30m"."""
    m = re.fullmatch(r"(\d+)(ms|[smhdwy])", duration)
    if not m:
        return duration
    n, unit = int(m.group(1)), _UNITS[m.group(2)]
    if n == 1:
        return f"an {unit}" if unit == "hour" else f"a {unit}"
    return f"{n} {unit}s"
