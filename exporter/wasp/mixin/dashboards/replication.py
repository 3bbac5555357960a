"""The replication and backups board: replicas, slots, failovers, backups, drills, WAL archive."""

from __future__ import annotations

from wasp.mixin.dashboards.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    Dashboard,
    Panel,
    Row,
    Target,
    age,
    agg,
    alert_steps,
    bad_below_one,
    ok_mapping,
    rate,
    sel,
    stat,
    table,
    ts,
)
from wasp.mixin.settings import Settings

__all__ = ["REPLICATION"]


def repl_standbys(s: Settings) -> Panel:
    """Standbys connected to each primary, and streaming."""
    return stat("Standbys connected / streaming",
                Target(sel("wasp_pg_replication_connected_standbys"), "{{target}} connected"),
                Target(sel("wasp_pg_replication_streaming_standbys"), "{{target}} streaming"),
                w=6, thresholds=[(None, RED), (1, ORANGE), (2, GREEN)],
                options={"graphMode": "none"})


def repl_receiver(s: Settings) -> Panel:
    """Whether each standby's WAL receiver streams."""
    return stat("WAL receiver streaming",
                Target(sel("wasp_pg_standby_wal_receiver_streaming"), "{{target}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("streaming", "NOT streaming"),
                options={"colorMode": "background", "graphMode": "none"})


def repl_timeline(s: Settings) -> Panel:
    """Timeline of every server."""
    return stat("Timeline", Target(sel("wasp_pg_timeline_id"), "{{target}}"), w=6,
                options={"colorMode": "none", "graphMode": "none"},
                description="A promotion increments it; servers of one cluster should agree.")


def repl_last_failover(s: Settings) -> Panel:
    """Time since the last `wasp replica promote`."""
    return stat("Last failover",
                Target(age("wasp_replica_failover_last_timestamp_seconds", ("replica",)),
                       "{{replica}}"),
                Target(agg("max", "wasp_replica_failover_last_accepted_lag_bytes", ("replica",)),
                       "{{replica}} accepted lag"),
                unit="s", w=6, options={"colorMode": "none", "graphMode": "none"},
                overrides=[{"matcher": {"id": "byRegexp", "options": ".*accepted lag"},
                            "properties": [{"id": "unit", "value": "bytes"}]}])


def repl_replay_delay(s: Settings) -> Panel:
    """Replay delay on each standby and as each primary sees it."""
    return ts("Replay delay per standby",
              Target(sel("wasp_pg_standby_replay_delay_seconds"), "{{target}} (standby)"),
              Target(sel("wasp_pg_replication_standby_replay_lag_seconds"),
                     "{{application_name}} (seen by {{target}})"),
              unit="s", w=12, thresholds=alert_steps((s.replication_lag_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}},
              description="Both views of the lag promise: WaspStandbyReplayDelayHigh and "
              "WaspReplicationLagHigh fire above the line.")


def repl_lag_bytes(s: Settings) -> Panel:
    """Replay lag in bytes as each primary sees it, and the standby's own gap."""
    return ts("Replication lag (bytes)",
              Target(sel("wasp_pg_replication_standby_replay_lag_bytes"),
                     "{{application_name}} replay (seen by {{target}})"),
              Target(sel("wasp_pg_standby_replay_gap_bytes"), "{{target}} receive-replay gap"),
              unit="bytes", w=12)


def repl_heartbeat(s: Settings) -> Panel:
    """Heartbeat age: the end-to-end delay a standby sees."""
    return ts("Heartbeat age",
              Target(age("wasp_pg_heartbeat_timestamp_seconds", ("target",)), "{{target}}"),
              unit="s", w=12, thresholds=alert_steps((s.heartbeat_stale_seconds, "warning")),
              custom={"thresholdsStyle": {"mode": "line"}},
              description="Age of the row `wasp replica heartbeat` rewrites on the primary. "
              "Ages on a broken link even when LSN lag reads 0.")


def repl_slot_retained(s: Settings) -> Panel:
    """WAL retained by each replication slot."""
    return ts("Slots: retained WAL",
              Target(sel("wasp_pg_replication_slot_wal_retained_bytes"),
                     "{{target}} {{slot_name}}"), unit="bytes", w=12)


def repl_slots(s: Settings) -> Panel:
    """One row per slot: its wal_status, valued by whether a consumer is connected."""
    keys = ("target", "slot_name", "slot_type")
    status = agg("max", "wasp_pg_replication_slot_wal_status", (*keys, "wal_status"),
                  inner=f"{sel('wasp_pg_replication_slot_wal_status')} == 1")
    active = agg("max", "wasp_pg_replication_slot_active", keys)
    expr = f"{status} * on ({', '.join(keys)}) group_left {active}"
    p = table("Slots: wal_status and active", Target(expr), w=12, thresholds=bad_below_one(),
              mappings=ok_mapping("active", "INACTIVE"),
              custom={"cellOptions": {"type": "color-text"}},
              description="An inactive slot retains WAL until max_slot_wal_keep_size; "
              "wal_status 'lost' means the standby must be rebuilt.")
    p.transformations[-1]["options"]["renameByName"] = {"Value": "active"}
    return p


def backup_good_age(s: Settings) -> Panel:
    """Age of the newest drill-proven backup of each type."""
    return stat("Newest good backup (drill-proven)",
                Target(agg("min", "wasp_backup_last_good_age_seconds", ("type",)), "{{type}}"),
                unit="s", w=8, thresholds=alert_steps((s.good_full_max_seconds, "warning")),
                options={"colorMode": "background", "graphMode": "none"},
                description="A backup is good once a restore drill proved it (or a later one "
                "that depends on it).")


def backup_completed_age(s: Settings) -> Panel:
    """Age of the newest completed backup of each type."""
    return stat("Newest completed backup",
                Target(agg("min", "wasp_backup_last_completed_age_seconds", ("type",)),
                       "{{type}}"),
                unit="s", w=8,
                thresholds=[(None, GREEN), (s.incr_completed_max_seconds, ORANGE),
                            (s.full_completed_max_seconds, RED)],
                options={"graphMode": "none"})


def backup_last_attempt(s: Settings) -> Panel:
    """Result of the last attempt of each backup type."""
    return stat("Last attempt",
                Target(agg("min", "wasp_backup_last_attempt_success", ("type",)), "{{type}}"),
                w=8, thresholds=bad_below_one(), mappings=ok_mapping(),
                options={"colorMode": "background", "graphMode": "none"})


def backup_drill(s: Settings) -> Panel:
    """Result of the last restore drill."""
    return stat("Last drill",
                Target(sel("wasp_backup_drill_last_success"), "{{stanza}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("PASSED", "FAILED"),
                options={"colorMode": "background", "graphMode": "none"})


def backup_rto(s: Settings) -> Panel:
    """Restore plus recovery time of the last drill (the measured RTO)."""
    return stat("Restore time (RTO, last drill)",
                Target(sel("wasp_backup_drill_restore_duration_seconds"), "{{stanza}}"),
                unit="s", w=6, thresholds=alert_steps((s.rto_seconds, "warning")),
                options={"graphMode": "none"})


def backup_repository_up(s: Settings) -> Panel:
    """Whether pgBackRest can read each repository."""
    return stat("Repository readable",
                Target(sel("wasp_backup_repository_up"), "{{stanza}} repo {{repo}}"),
                w=6, thresholds=bad_below_one(), mappings=ok_mapping("UP", "DOWN"),
                options={"colorMode": "background", "graphMode": "none"})


def backup_in_progress(s: Settings) -> Panel:
    """Whether a backup runs now."""
    return stat("Backup running", Target(sel("wasp_backup_in_progress"), "{{stanza}}"), w=6,
                mappings=[{"options": {"0": {"index": 0, "text": "idle"},
                                       "1": {"color": BLUE, "index": 1, "text": "running"}},
                           "type": "value"}], options={"graphMode": "none"})


def wal_unarchived(s: Settings) -> Panel:
    """WAL written but not archived: the live RPO in bytes."""
    return ts("WAL not yet archived (RPO)",
              Target(sel("wasp_wal_archive_unarchived_bytes"), "{{target}} {{stanza}}"),
              unit="bytes", w=8, thresholds=alert_steps((s.wal_unarchived_bytes, "page")),
              custom={"thresholdsStyle": {"mode": "line"}})


def wal_archive_age(s: Settings) -> Panel:
    """Time since the last WAL file reached the repository."""
    return ts("Last WAL archived",
              Target(age("wasp_wal_archive_last_archived_timestamp_seconds",
                         ("target", "stanza")), "{{target}} {{stanza}}"), unit="s", w=8,
              description="Grows on an idle database: read it with the unarchived bytes.")


def wal_archive_failures(s: Settings) -> Panel:
    """WAL archive failures and segments waiting."""
    return ts("WAL archive failures / ready segments",
              Target(rate("wasp_wal_archive_failures_total", ("target", "stanza"),
                          fn="increase"), "{{target}} failures"),
              Target(sel("wasp_wal_archive_ready_segments"), "{{target}} ready segments"),
              w=8)


REPLICATION = Dashboard(
    "wasp-replication-backups", "wasp / Replication & backups",
    "Streaming replicas, heartbeat, slots and failovers; pgBackRest backups, drills and WAL "
    "archiving (the replication, replica and backup packs).",
    (lambda s: Row("Replication"), repl_standbys, repl_receiver, repl_timeline, repl_last_failover,
     repl_replay_delay, repl_lag_bytes, repl_heartbeat, repl_slot_retained, repl_slots,
     lambda s: Row("Backups"), backup_good_age, backup_completed_age, backup_last_attempt,
     backup_drill, backup_rto, backup_repository_up, backup_in_progress,
     lambda s: Row("WAL archive"), wal_unarchived, wal_archive_age, wal_archive_failures),
    variables=(("job", "Job", "wasp_target_up"), ("target", "Target", "wasp_target_up"),
               ("stanza", "Stanza", "wasp_backup_repository_up")),
    tags=("replication", "backup"),
)
