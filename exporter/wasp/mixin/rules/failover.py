"""Alerts on the cluster's shape: a restart, two primaries, a failover, Patroni without a
leader or paused."""

from __future__ import annotations

from wasp.mixin.rules.boundary import four
from wasp.mixin.rules.model import Builder, Group, T, series, t

#: labels of the Patroni test series (the replica pack's collector adds no target)
P = {"instance": "wasp-1:9645", "job": "wasp", "scope": "salon"}


def build(b: Builder) -> None:
    g = b.group("wasp-failover")
    _restart_and_failover(b, g)
    _patroni(b, g)


def _restart_and_failover(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspPostgresRestarted"
    b.alert(g, name, "warning", q, f"""
changes({q("wasp_pg_start_timestamp_seconds")}[{cfg.restart_window}]) > 0
""",
        "PostgreSQL on {{ $labels.target }} restarted",
        "The postmaster of {{ $labels.target }} started again within the last "
        f"{cfg.restart_window}: a crash (the server log says why: out of memory, a signal, "
        "a full disk), a failover or a restart nobody announced. Every session was cut.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pg_start_timestamp_seconds",
                   f"1700000000 1700086400x{n}" if firing else f"1700000000x{n}", **T),),
            T, 1, lead=1))

    q = b.q()
    name = "WaspPostgresTwoPrimaries"
    cl = ", ".join(cfg.cluster_by)
    by = {k: T[k] for k in cfg.cluster_by if k in T}
    # a primary that stopped answering keeps its last series until stale_after: only targets
    # that answer now count, or every failover would look like two primaries for minutes
    b.alert(g, name, "page", q, f"""
count by ({cl}) ({q("wasp_pg_in_recovery")} == 0 and {q("wasp_target_up")} == 1) > 1
""",
        "{{ $value }} primaries at once",
        "{{ $value }} servers of one cluster accept writes (not in recovery): a split brain. "
        "Writes to the old primary are lost when it is rebuilt; fence it now (stop it, or take "
        "it out of PgBouncer) and keep the one with the higher timeline.",
        # below the threshold: the old primary still shows in_recovery 0 but no longer answers
        four(cfg, name, "page", lambda firing, n: (
            series("wasp_pg_in_recovery", f"0x{n}", **t(target="pg1")),
            series("wasp_pg_in_recovery", f"0x{n}", **t(target="pg2")),
            series("wasp_target_up", f"1x{n}", **t(target="pg1")),
            series("wasp_target_up", f"{1 if firing else 0}x{n}", **t(target="pg2"))),
            by, 2))

    q = b.q()
    name = "WaspPostgresFailover"
    b.alert(g, name, "warning", q, f"""
changes({q("wasp_pg_timeline_id")}[{cfg.failover_window}]) > 0
""",
        "{{ $labels.target }} moved to a new timeline: a failover",
        "The timeline of {{ $labels.target }} changed within the last "
        f"{cfg.failover_window}: a standby was promoted. Check that the application writes to "
        "the new primary, that the old one is fenced, and that the standbys follow (rejoin).",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pg_timeline_id", f"1 2x{n}" if firing else f"1x{n}", **T),),
            T, 1, lead=1))


def _patroni(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    name = "WaspPatroniNoLeader"
    b.alert(g, name, "page", q, f"""
sum without (member) ({q("wasp_patroni_member_leader")}) < 1
""",
        "Patroni cluster {{ $labels.scope }} has no leader",
        "No member of Patroni cluster {{ $labels.scope }} holds the leader lock: nobody accepts "
        "writes. Patroni elects a new leader within seconds unless the DCS (etcd) is "
        "unreachable or no member is healthy enough; `patronictl list` shows why.",
        four(cfg, name, "page", lambda firing, n: (
            series("wasp_patroni_member_leader", f"{0 if firing else 1}x{n}", **P, member="pg1"),
            series("wasp_patroni_member_leader", f"0x{n}", **P, member="pg2")), P, 0))

    q = b.q()
    name = "WaspPatroniPaused"
    b.alert(g, name, "warning", q, f"""
{q("wasp_patroni_paused")} == 1
""",
        "Patroni cluster {{ $labels.scope }} is paused",
        "Patroni cluster {{ $labels.scope }} has been in maintenance mode (paused) for "
        "a while: nothing fails over automatically. Resume it (`patronictl resume`) when the "
        "maintenance is over.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_patroni_paused", f"{1 if firing else 0}x{n}", **P),), P, 1))
