"""Alerts on the cluster's shape: a restart, two primaries, a failover, Patroni without a
leader or paused."""

from __future__ import annotations

from wasp.mixin.rules.boundary import Bound, Point, Probe, gauge, switch, when
from wasp.mixin.rules.fourcases import four
from wasp.mixin.rules.model import Builder, Group, Series, T, series, t
from wasp.mixin.settings import Settings

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


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    by = {k: T[k] for k in cfg.cluster_by if k in T}

    def primaries(p: Point, n: int, every: int) -> tuple[Series, ...]:
        # three answering servers of one cluster, the first `primaries` of them not in recovery
        return tuple(x for i in (1, 2, 3) for x in (
            gauge("wasp_pg_in_recovery", 0 if i <= p["primaries"] else 1, n, **t(target=f"pg{i}")),
            gauge("wasp_target_up", 1, n, **t(target=f"pg{i}"))))

    def changed(alert_metric: str, before: float, after: float, what: str) -> Probe:
        # the value changes at minute 1 (`changes` needs a sample before it), or never
        return Probe({what: 1}, (Bound(what, ">", quiet=0),),
                     lambda p, n, every: (switch(alert_metric, before,
                                                 after if p[what] else before, 1, n, **T),),
                     lambda p, at: when(p[what] > 0, "warning", T, 1),
                     onset=1)

    return {
        "WaspPostgresRestarted": changed("wasp_pg_start_timestamp_seconds", 1700000000,
                                         1700086400, "restarted"),
        "WaspPostgresTwoPrimaries": Probe(
            {"primaries": 2}, (Bound("primaries", ">", literal=1, quiet=1),), primaries,
            lambda p, at: when(p["primaries"] > 1, "page", by, p["primaries"])),
        "WaspPostgresFailover": changed("wasp_pg_timeline_id", 1, 2, "promoted"),
        "WaspPatroniNoLeader": Probe(
            {"leaders": 0}, (Bound("leaders", "<", literal=1, quiet=1),),
            lambda p, n, every: (
                gauge("wasp_patroni_member_leader", p["leaders"], n, **P, member="pg1"),
                gauge("wasp_patroni_member_leader", 0, n, **P, member="pg2")),
            lambda p, at: when(p["leaders"] < 1, "page", P, p["leaders"])),
        "WaspPatroniPaused": Probe(
            {"paused": 1}, (Bound("paused", "==", literal=1, quiet=0),),
            lambda p, n, every: (gauge("wasp_patroni_paused", p["paused"], n, **P),),
            lambda p, at: when(p["paused"] == 1, "warning", P, 1)),
    }
