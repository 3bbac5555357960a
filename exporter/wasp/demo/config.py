"""The demo's wasp.yml: every pack over the primary, both replicas and PgBouncer, and the
backup and replica sections, with the query intervals of the demo's timing profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasp.demo.topology import Topology

__all__ = ["exporter_config"]

#: the demo's backup schedule: the production jobs, shortened so that they show in an hour
DEMO_SCHEDULE = {"full": "5 */6 * * *", "incr": "*/15 * * * *", "diff": None,
                 "drill": "35 * * * *", "verify": None}


def exporter_config(topo: Topology, *, backups: bool) -> dict[str, Any]:
    """The configuration `wasp exporter`, `wasp backup` and `wasp replica` read."""
    from wasp.demo.topology import DB, MONITOR_ROLE, REPLICAS, STATS_USER

    home, ports, timing = topo.home, topo.ports, topo.timing
    def dsn(port: int) -> str:
        return f"host=127.0.0.1 port={port} dbname={DB} user={MONITOR_ROLE} connect_timeout=3"

    targets: dict[str, Any] = {
        # the app pack on the primary only: on a replica it would count every booking twice
        "primary": {"dsn": dsn(ports["primary"]), "packs": ["app", "postgres", "replication"]},
        **{r: {"dsn": dsn(ports[r]), "packs": ["postgres", "replication"]} for r in REPLICAS},
    }
    if "pgbouncer" not in topo.skipped:
        targets["pgbouncer"] = {"type": "pgbouncer", "dsn": (
            f"host=127.0.0.1 port={ports['pgbouncer']} dbname=pgbouncer user={STATS_USER} "
            "connect_timeout=3")}
    packs: dict[str, Any] = {"app": {"options": {"top_salons": 10}}}
    # the readiness checks on the primary, on a slow interval
    targets["primary"]["packs"].append("doctor")
    packs["doctor"] = {"options": {"interval": "5m", **(
        {"pgbouncer_target": "pgbouncer"} if "pgbouncer" not in topo.skipped else {})}}
    if "pgbouncer" not in topo.skipped:
        # availability as the application sees it: through PgBouncer, every few seconds
        probe_dsn = home / "probe.dsn"
        probe_dsn.write_text(topo.bouncer_dsn() + "\n")
        probe_dsn.chmod(0o600)
        targets["primary"]["packs"].append("probe")
        packs["probe"] = {"options": {"dsn_file": str(probe_dsn), "interval": "5s",
                                      "timeout": "2s"}}
    cfg: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{ports['exporter']}", "status_dir": str(home / "status"),
                   "stale_after": "5m"},
        "targets": targets,
        "packs": packs,
        "replica": {
            "superuser": "postgres",
            "nodes": {r: {"datadir": str(home / r), "port": ports[r]} for r in REPLICAS},
        },
    }
    if backups:
        cfg["backup"] = _backup_section(topo)
    cap = timing.query_interval_max
    if cap is not None:
        _cap_intervals(cfg, cap)
    return cfg


def _backup_section(topo: Topology) -> dict[str, Any]:
    home, timing = topo.home, topo.timing
    short = timing.query_interval_max is not None
    return {
        "stanza": "demo",
        "target": "primary",
        "pg_path": str(home / "pg"),
        "pg_port": topo.ports["primary"],
        "pg_socket_path": str(home / "pg"),
        "config_dir": str(home / "pgbackrest" / "conf"),
        "lock_path": str(home / "pgbackrest" / "lock"),
        "log_path": str(home / "pgbackrest" / "log"),
        "spool_path": str(home / "pgbackrest" / "spool"),
        "archive_timeout": f"{int(timing.archive_timeout)}s",
        "options": {"archive-timeout": "10", "job-retry": "0"} if short else {},
        "repo": {"type": "posix", "path": str(home / "pgbackrest" / "repo")},
        "encryption": {"passphrase_file": str(home / "secrets" / "backup-passphrase")},
        "retention": {"full": 2},
        "drill": {"scratch_dir": str(home / "pgbackrest" / "drill"), "database": "salon",
                  "expected_rpo": "1h", "amcheck_sample": 4, "recovery_timeout": "300s",
                  "settings": {"shared_buffers": "32MB"}},
        "schedule": {k: None for k in DEMO_SCHEDULE} if short else DEMO_SCHEDULE,
        "metrics": {"interval": "5s", "timeout": "5s"} if short else {"interval": "30s"},
    }




def _cap_intervals(cfg: dict[str, Any], cap: float) -> None:
    """Override every pack query whose interval is longer than `cap` (the tests' profile)."""
    import tempfile
    from pathlib import Path

    import yaml

    from wasp.config.schema import load_config

    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "wasp.yml"
        probe.write_text(yaml.safe_dump(cfg))
        loaded = load_config(probe)
    packs = cfg.setdefault("packs", {})
    for q in loaded.queries:
        if q.pack is None or q.interval <= cap:
            continue
        ov = packs.setdefault(q.pack, {}).setdefault("override", {})
        ov[q.name] = {"interval": f"{cap:g}s", "timeout": f"{min(q.timeout, cap):g}s"}
    packs.setdefault("pgbouncer", {})["options"] = {"interval": f"{cap:g}s",
                                                   "timeout": f"{min(2.0, cap):g}s"}
