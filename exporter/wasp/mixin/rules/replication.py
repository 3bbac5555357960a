"""Alerts on replication: replay delay, heartbeat, standbys, slots (inactive, lost, near their
limit), WAL receiver."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import four
from wasp.mixin.rules.model import Builder, Case, Fired, Group, T, series, t


def build(b: Builder) -> None:
    cfg = b.cfg
    g = b.group("wasp-replication")
    cl = ", ".join(cfg.cluster_by)
    q = b.q()
    b.alert(g, "WaspStandbyReplayDelayHigh", "warning", q, f"""
{q("wasp_pg_standby_replay_delay_seconds")} > {num(cfg.replay_delay_seconds)}
""",
        "Standby {{ $labels.target }} is {{ $value | humanizeDuration }} behind",
        "Standby {{ $labels.target }} has WAL it received but has not replayed for "
        "{{ $value | humanizeDuration }}: reads there are stale and a failover would wait for "
        "replay. Replay conflicts, a paused replay (wasp_pg_standby_replay_paused) or slow I/O.",
        [Case("replay stuck behind a long query", (
            series("wasp_pg_standby_replay_delay_seconds", "0x5 60+60x30", **t(target="replica1")),),
            "20m", (Fired(t(target="replica1"), 900, "warning"),)),
         Case("idle primary: nothing to replay is no lag", (
             series("wasp_pg_standby_replay_delay_seconds", "0x30", **t(target="replica1")),
             series("wasp_pg_standby_last_replay_timestamp_seconds", "0x30", **t(target="replica1")),
         ), "20m")])

    q = b.q()
    hb, rec = q("wasp_pg_heartbeat_age_seconds"), q("wasp_pg_in_recovery")
    stale = num(cfg.heartbeat_stale_seconds)
    b.alert(g, "WaspStandbyHeartbeatStale", "warning", q, f"""
({hb} > {stale} and {rec} == 1)
unless on ({cl}) ({hb} > {stale} and {rec} == 0)
""",
        "Standby {{ $labels.target }} sees a heartbeat {{ $value | humanizeDuration }} old",
        "The heartbeat row that the primary rewrites every few seconds is "
        "{{ $value | humanizeDuration }} old on standby {{ $labels.target }} while the primary's "
        "own copy is fresh: the replication link is broken (even if the LSN gap reads 0).",
        [Case("broken link, primary fresh", (
            series("wasp_pg_heartbeat_age_seconds", "0+60x20", **t(target="replica1")),
            series("wasp_pg_in_recovery", "1x20", **t(target="replica1")),
            series("wasp_pg_heartbeat_age_seconds", "3x20", **t(target="primary")),
            series("wasp_pg_in_recovery", "0x20", **t(target="primary")),
        ), "15m", (Fired(t(target="replica1"), 900, "warning"),)),
         Case("heartbeat writer stopped: stale everywhere, only the writer alert", (
             series("wasp_pg_heartbeat_age_seconds", "0+60x20", **t(target="replica1")),
             series("wasp_pg_in_recovery", "1x20", **t(target="replica1")),
             series("wasp_pg_heartbeat_age_seconds", "0+60x20", **t(target="primary")),
             series("wasp_pg_in_recovery", "0x20", **t(target="primary")),
         ), "15m"),
         Case("idle primary, healthy link", (
             series("wasp_pg_heartbeat_age_seconds", "4x20", **t(target="replica1")),
             series("wasp_pg_in_recovery", "1x20", **t(target="replica1")),
         ), "15m")])

    q = b.q()
    hb, rec = q("wasp_pg_heartbeat_age_seconds"), q("wasp_pg_in_recovery")
    b.alert(g, "WaspHeartbeatWriterStopped", "warning", q, f"""
{hb} > {stale} and {rec} == 0
""",
        "The heartbeat on primary {{ $labels.target }} is {{ $value | humanizeDuration }} old",
        "The heartbeat row on primary {{ $labels.target }} has not been rewritten for "
        "{{ $value | humanizeDuration }}: `wasp replica heartbeat` stopped, so standby delay "
        "cannot be measured end to end.",
        [Case("writer stopped", (
            series("wasp_pg_heartbeat_age_seconds", "0+60x20", **t(target="primary")),
            series("wasp_pg_in_recovery", "0x20", **t(target="primary")),
        ), "15m", (Fired(t(target="primary"), 900, "warning"),)),
         Case("writer running", (
             series("wasp_pg_heartbeat_age_seconds", "2x20", **t(target="primary")),
             series("wasp_pg_in_recovery", "0x20", **t(target="primary")),
         ), "15m")])

    q = b.q()
    b.alert(g, "WaspStandbysMissing", "warning", q, f"""
{q("wasp_pg_replication_connected_standbys")} < {cfg.expected_standbys}
and {q("wasp_pg_in_recovery")} == 0
""",
        "Primary {{ $labels.target }} has {{ $value }} of " f"{cfg.expected_standbys} standbys",
        "Only {{ $value }} standbys are connected to primary {{ $labels.target }} (expected "
        f"{cfg.expected_standbys}): a replica is down or cannot connect; a failover has fewer "
        "candidates and its slot retains WAL meanwhile.",
        [Case("one standby lost", (
            series("wasp_pg_replication_connected_standbys", "2x5 1x20", **t(target="primary")),
            series("wasp_pg_in_recovery", "0x25", **t(target="primary")),
        ), "20m", (Fired(t(target="primary"), 1, "warning"),)),
         Case("a standby has no standbys of its own", (
             series("wasp_pg_replication_connected_standbys", "0x25", **t(target="replica1")),
             series("wasp_pg_in_recovery", "1x25", **t(target="replica1")),
         ), "20m"),
         Case("both standbys connected", (
             series("wasp_pg_replication_connected_standbys", "2x25", **t(target="primary")),
             series("wasp_pg_in_recovery", "0x25", **t(target="primary")),
         ), "20m")])

    q = b.q()
    b.alert(g, "WaspReplicationSlotInactive", "warning", q, f"""
{q("wasp_pg_replication_slot_wal_retained_bytes")} > {num(cfg.slot_inactive_retained_bytes)}
and {q("wasp_pg_replication_slot_active")} == 0
""",
        "Inactive slot {{ $labels.slot_name }} on {{ $labels.target }} retains {{ $value | humanize1024 }}B of WAL",
        "Replication slot {{ $labels.slot_name }} on {{ $labels.target }} has no consumer and "
        "keeps {{ $value | humanize1024 }}B of WAL on disk, growing until pg_wal fills the disk. "
        "Bring its standby back or drop the slot.",
        [Case("slot of a dead replica", (
            series("wasp_pg_replication_slot_wal_retained_bytes", "0+268435456x40",
               **t(slot_name="r2", slot_type="physical")),
            series("wasp_pg_replication_slot_active", "0x40", **t(slot_name="r2", slot_type="physical")),
        ), "30m", (Fired(t(slot_name="r2", slot_type="physical"), 30 * 268435456, "warning"),)),
         Case("active slot with lag", (
             series("wasp_pg_replication_slot_wal_retained_bytes", "0+268435456x40",
                **t(slot_name="r1", slot_type="physical")),
             series("wasp_pg_replication_slot_active", "1x40", **t(slot_name="r1", slot_type="physical")),
         ), "30m")])

    q = b.q()
    b.alert(g, "WaspReplicationSlotWALLost", "warning", q, f"""
{q("wasp_pg_replication_slot_wal_status", wal_status="=~unreserved|lost")} == 1
""",
        "Slot {{ $labels.slot_name }} on {{ $labels.target }} is {{ $labels.wal_status }}",
        "Replication slot {{ $labels.slot_name }} on {{ $labels.target }} has wal_status "
        "{{ $labels.wal_status }}: its consumer needs WAL that max_slot_wal_keep_size lets go "
        "(unreserved) or already removed (lost: the standby must be rebuilt).",
        [Case("slot lost", (
            series("wasp_pg_replication_slot_wal_status", "0x20",
               **t(slot_name="r2", slot_type="physical", wal_status="reserved")),
            series("wasp_pg_replication_slot_wal_status", "1x20",
               **t(slot_name="r2", slot_type="physical", wal_status="lost")),
        ), "10m", (Fired(t(slot_name="r2", slot_type="physical", wal_status="lost"), 1, "warning"),)),
         Case("slot reserved", (
             series("wasp_pg_replication_slot_wal_status", "1x20",
                **t(slot_name="r2", slot_type="physical", wal_status="reserved")),
             series("wasp_pg_replication_slot_wal_status", "0x20",
                **t(slot_name="r2", slot_type="physical", wal_status="lost")),
         ), "10m")])

    q = b.q()
    b.alert(g, "WaspWALReceiverNotStreaming", "warning", q, f"""
{q("wasp_pg_standby_wal_receiver_streaming")} == 0
""",
        "Standby {{ $labels.target }} is not streaming WAL",
        "The WAL receiver of standby {{ $labels.target }} is not streaming from its upstream: it "
        "falls behind (or replays from the archive only). Check primary_conninfo, the slot and "
        "pg_hba on the primary.",
        [Case("receiver gone", (
            series("wasp_pg_standby_wal_receiver_streaming", "1x3 0x20", **t(target="replica1")),),
            "15m", (Fired(t(target="replica1"), 0, "warning"),)),
         Case("streaming", (
             series("wasp_pg_standby_wal_receiver_streaming", "1x20", **t(target="replica1")),), "15m")])

    _slot_near_limit(b, g)


def _slot_near_limit(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspReplicationSlotNearLimit"
    slot = t(slot_name="r1", slot_type="physical")
    b.alert(g, name, "warning", q, f"""
{q("wasp_pg_replication_slot_safe_wal_size_bytes")}
  / ignoring (slot_name, slot_type) group_left {q("wasp_pg_replication_max_slot_wal_keep_size_bytes")}
  < {num(cfg.slot_safe_wal_ratio)}
and {q("wasp_pg_replication_slot_active")} == 1
""",
        "Slot {{ $labels.slot_name }} on {{ $labels.target }} has {{ $value | humanizePercentage }} of its WAL limit left",
        "Active replication slot {{ $labels.slot_name }} on {{ $labels.target }} can lose only "
        "{{ $value | humanizePercentage }} of max_slot_wal_keep_size more before PostgreSQL "
        "invalidates it: its standby falls behind faster than it replays and will need a "
        "rebuild once the slot is lost.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pg_replication_slot_safe_wal_size_bytes",
                   f"{1_900_000_000 if firing else 2_100_000_000}x{n}", **slot),
            series("wasp_pg_replication_max_slot_wal_keep_size_bytes", f"10000000000x{n}", **T),
            series("wasp_pg_replication_slot_active", f"1x{n}", **slot)),
            slot, 1.9e9 / 1e10))
