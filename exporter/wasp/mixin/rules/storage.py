"""Alerts on storage: filesystems filling (node_exporter), pg_wal growing, corrupt pages,
autovacuum behind, bloat, requested checkpoints.

Disk space comes from node_exporter (job `node` by default, `node_selector`):
its filesystems cannot be tied to a database target without site knowledge,
so the filesystem alerts watch every real filesystem of the hosts, and pg_wal
is watched against its own bound (max_wal_size + wal_keep_size).
"""

from __future__ import annotations

from collections.abc import Callable

from wasp.mixin.promql import Selectors, num
from wasp.mixin.rules.boundary import Bound, Fires, Point, Probe, gauge, jump, when
from wasp.mixin.rules.fourcases import four
from wasp.mixin.rules.model import Builder, Group, Series, T, series, t
from wasp.mixin.settings import Settings

#: labels of the node_exporter test series
N = {"instance": "db-1:9100", "job": "node", "device": "/dev/vda1", "fstype": "ext4",
     "mountpoint": "/var/lib/postgresql"}
_GB = 1e9


def build(b: Builder) -> None:
    g = b.group("wasp-storage")
    _filesystems(b, g)
    _wal_and_pages(b, g)
    _vacuum(b, g)


def _node(b: Builder) -> Selectors:
    return Selectors(fixed=b.cfg.node_selector)


def _fs(avail: str, n: int) -> tuple[Series, ...]:
    return (series("node_filesystem_avail_bytes", avail, **N),
            series("node_filesystem_size_bytes", f"{100 * _GB:.0f}x{n}", **N),
            series("node_filesystem_readonly", f"0x{n}", **N))


def _filesystems(b: Builder, g: Group) -> None:
    cfg = b.cfg
    for name, severity, free, horizon, start, quiet_start, slope in (
            ("WaspFilesystemFillingUp", "warning", cfg.filesystem_free_warning,
             cfg.filesystem_warning_horizon_seconds, 30, 45, 30e6),
            ("WaspFilesystemFillingUpFast", "page", cfg.filesystem_free_page,
             cfg.filesystem_page_horizon_seconds, 12, 21, 60e6)):
        q = _node(b)
        fs = {"fstype": f"!~{cfg.filesystem_fstypes_excluded}"}
        avail = q("node_filesystem_avail_bytes", **fs)
        b.alert(g, name, severity, q, f"""
{avail} / {q("node_filesystem_size_bytes", **fs)} < {num(free)}
and predict_linear({avail}[{cfg.filesystem_trend_window}], {num(horizon)}) < 0
and {q("node_filesystem_readonly", **fs)} == 0
""",
            "{{ $labels.mountpoint }} on {{ $labels.instance }} has {{ $value | humanizePercentage }} free and fills up",
            "Filesystem {{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} "
            f"has {{{{ $value | humanizePercentage }}}} free and, at the rate of the last "
            f"{cfg.filesystem_trend_window}, is full within {_hours(horizon)}. On a database host "
            "a full disk stops PostgreSQL (pg_wal) or the backups: find what grows.",
            four(cfg, name, severity, _draining(start, quiet_start, slope), N,
                 _free_at(start, slope), lead=1))


def _draining(start: float, quiet_start: float, slope: float) -> Callable[[bool, int], tuple[Series, ...]]:
    """A 100 GB filesystem losing `slope` bytes a minute from `start` GB; the quiet one starts
    at `quiet_start` and loses twice as fast, so that only its free share keeps it quiet."""
    def make(firing: bool, n: int) -> tuple[Series, ...]:
        d = slope if firing else 2 * slope
        return _fs(f"{(start if firing else quiet_start) * _GB:.0f}-{d:.0f}x{n}", n)
    return make


def _free_at(start: float, slope: float) -> Callable[[int], float]:
    """The free share of that filesystem at minute `at`."""
    return lambda at: (start * _GB - slope * at) / (100 * _GB)


def _hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{num(h)} hour" + ("" if h == 1 else "s")


def _wal_and_pages(b: Builder, g: Group) -> None:
    cfg = b.cfg
    q = b.q()
    wal = q("wasp_pg_wal_directory_bytes")
    bound = f'({q("wasp_pg_max_wal_size_bytes")} + {q("wasp_pg_wal_keep_size_bytes")})'
    name = "WaspPostgresWALGrowing"
    b.alert(g, name, "warning", q, f"""
{wal} / {bound} > {num(cfg.wal_directory_bound_ratio)}
and
predict_linear({wal}[{cfg.wal_directory_trend_window}], {num(cfg.wal_directory_horizon_seconds)}) / {bound}
  > {num(cfg.wal_directory_predicted_ratio)}
""",
        "pg_wal on {{ $labels.target }} is {{ $value | humanize }}x its bound and growing",
        "pg_wal on {{ $labels.target }} holds {{ $value | humanize }} times max_wal_size + "
        f"wal_keep_size and, at the rate of the last {cfg.wal_directory_trend_window}, reaches "
        f"{num(cfg.wal_directory_predicted_ratio)} times within "
        f"{_hours(cfg.wal_directory_horizon_seconds)}: something keeps WAL (a replication slot, "
        "a failing archiver) and the disk fills.",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pg_wal_directory_bytes",
                   f"1500000000+{20_000_000 if firing else 5_000_000}x{n}", **T),
            series("wasp_pg_max_wal_size_bytes", f"1000000000x{n}", **T),
            series("wasp_pg_wal_keep_size_bytes", f"0x{n}", **T)),
            T, lambda at: (1.5e9 + 20e6 * at) / 1e9, lead=1,
            # growing as fast, from just under the bound (quiet) or just over it (fires)
            guard=("the bound", lambda firing, n: (
                series("wasp_pg_wal_directory_bytes",
                       f"{1_010_000_000 if firing else 550_000_000}+20000000x{n}", **T),
                series("wasp_pg_max_wal_size_bytes", f"1000000000x{n}", **T),
                series("wasp_pg_wal_keep_size_bytes", f"0x{n}", **T)),
                lambda at: (1.01e9 + 20e6 * at) / 1e9)))

    q = b.q()
    name = "WaspPostgresPageChecksumFailures"
    db = t(database="app")
    b.alert(g, name, "page", q, f"""
increase({q("wasp_pg_database_checksum_failures_total")}[{cfg.checksum_failures_window}]) > 0
""",
        "Corrupt pages read in {{ $labels.target }}/{{ $labels.database }}",
        "PostgreSQL read data pages whose checksum does not match in database "
        "{{ $labels.database }} on {{ $labels.target }} within the last "
        f"{cfg.checksum_failures_window}: the storage corrupted data. The server log names the "
        "file and block; do not fail over to or restore from anything unchecked.",
        four(cfg, name, "page", lambda firing, n: (
            series("wasp_pg_database_checksum_failures_total",
                   f"0 1x{n}" if firing else f"0x{n}", **db),), db, 1, lead=1))


def _vacuum(b: Builder, g: Group) -> None:
    cfg = b.cfg
    tab = t(schema="public", table="webhook_logs")
    q = b.q()
    dead = q("wasp_pg_table_dead_tuples")
    name = "WaspPostgresAutovacuumBehind"
    b.alert(g, name, "warning", q, f"""
{dead} > {num(cfg.autovacuum_behind_ratio)} * {q("wasp_pg_table_autovacuum_threshold_tuples")}
and {dead} > {num(cfg.autovacuum_behind_min_dead_rows)}
""",
        "{{ $labels.schema }}.{{ $labels.table }} on {{ $labels.target }} has {{ $value | humanize }} dead rows",
        "Table {{ $labels.schema }}.{{ $labels.table }} on {{ $labels.target }} has "
        f"{{{{ $value | humanize }}}} dead rows, over {num(cfg.autovacuum_behind_ratio)} times "
        "the point where autovacuum should have vacuumed it: autovacuum is off for it, "
        "busy elsewhere, or cannot remove them (a long transaction or slot holds them).",
        four(cfg, name, "warning", lambda firing, n: (
            series("wasp_pg_table_dead_tuples", f"{12100 if firing else 11900}x{n}", **tab),
            series("wasp_pg_table_autovacuum_threshold_tuples", f"6000x{n}", **tab)),
            tab, 12100, guard=("the minimum of dead rows", lambda firing, n: (
                series("wasp_pg_table_dead_tuples",
                       f"{num(cfg.autovacuum_behind_min_dead_rows + (1 if firing else -1))}x{n}",
                       **tab),
                series("wasp_pg_table_autovacuum_threshold_tuples", f"100x{n}", **tab)),
                cfg.autovacuum_behind_min_dead_rows + 1)))

    q = b.q()
    name = "WaspPostgresAutovacuumWorkersBusy"
    b.alert(g, name, "info", q, f"""
{q("wasp_pg_autovacuum_workers")}
  >= {num(cfg.autovacuum_workers_busy_ratio)} * {q("wasp_pg_autovacuum_max_workers")}
""",
        "All autovacuum workers on {{ $labels.target }} are busy",
        "{{ $value }} autovacuum workers, all of autovacuum_max_workers, have been busy on "
        "{{ $labels.target }}: tables queue for vacuum. Large tables vacuumed slowly (cost "
        "limits), or more tables need it than workers can serve.",
        four(cfg, name, "info", lambda firing, n: (
            series("wasp_pg_autovacuum_workers", f"{3 if firing else 2}x{n}", **T),
            series("wasp_pg_autovacuum_max_workers", f"3x{n}", **T)), T, 3))

    q = b.q()
    name = "WaspPostgresTableBloated"
    b.alert(g, name, "info", q, f"""
{q("wasp_pg_table_bloat_ratio")} > {num(cfg.table_bloat_ratio)}
and {q("wasp_pg_table_size_bytes")} > {num(cfg.table_bloat_min_bytes)}
""",
        "{{ $labels.schema }}.{{ $labels.table }} on {{ $labels.target }} is {{ $value | humanizePercentage }} bloat",
        "An estimated {{ $value | humanizePercentage }} of table {{ $labels.schema }}."
        "{{ $labels.table }} on {{ $labels.target }} is empty space: scans read pages of "
        "nothing. Find why vacuum fell behind, then rewrite it (pg_repack) in a quiet hour.",
        four(cfg, name, "info", lambda firing, n: (
            series("wasp_pg_table_bloat_ratio", f"{0.51 if firing else 0.49}x{n}", **tab),
            series("wasp_pg_table_size_bytes", f"{2 * 1024 ** 3}x{n}", **tab)), tab, 0.51,
            guard=("the minimum table size", lambda firing, n: (
                series("wasp_pg_table_bloat_ratio", f"0.51x{n}", **tab),
                series("wasp_pg_table_size_bytes",
                       f"{num(cfg.table_bloat_min_bytes + (1 if firing else -1))}x{n}", **tab)),
                0.51)))

    q = b.q()
    cp = "wasp_pg_checkpoints_total"
    w = cfg.checkpoints_window
    req = f'sum without (kind) (increase({q(cp, kind="requested")}[{w}]))'
    name = "WaspPostgresCheckpointsRequested"
    b.alert(g, name, "info", q, f"""
{req}
  / sum without (kind) (increase({q(cp)}[{w}])) > {num(cfg.checkpoints_requested_ratio)}
and {req} >= {num(cfg.checkpoints_requested_min)}
""",
        "{{ $value | humanizePercentage }} of the checkpoints on {{ $labels.target }} are requested",
        f"{{{{ $value | humanizePercentage }}}} of the checkpoints in the last {w} on "
        "{{ $labels.target }} were requested, not timed: WAL fills max_wal_size before "
        "checkpoint_timeout, so checkpoints come early and write more (full-page images). "
        "Raise max_wal_size (wasp_pg_max_wal_size_bytes), or find the bulk writes.",
        four(cfg, name, "info", lambda firing, n: (
            series(cp, f"0+{1 if firing else 0.9}x{n}", **t(kind="requested")),
            series(cp, f"0+{0 if firing else 1}x{n}", **t(kind="timed"))), T, 1, lead=3))



def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group.

    The filesystem and pg_wal alerts read a trend, so their quantities move while a case
    runs (`Probe.evolve`): a filesystem with `free` of its size left and `to_empty` seconds
    until it is empty at the rate it loses space; pg_wal at `ratio` times its bound, growing
    so that `predict_linear` sees `predicted` times the bound at the horizon.
    """
    tab = t(schema="public", table="webhook_logs")
    db = t(database="app")
    size = 100 * _GB

    def filling(severity: str, free_field: str, horizon_field: str) -> Probe:
        free, horizon = float(getattr(cfg, free_field)), float(getattr(cfg, horizon_field))

        def make(p: Point, n: int, every: int) -> tuple[Series, ...]:
            avail = p["free"] * size
            return (series("node_filesystem_avail_bytes",
                           f"{num(avail)}-{num(avail / p['to_empty'] * 60 * every)}x{n}", **N),
                    gauge("node_filesystem_size_bytes", size, n, **N),
                    gauge("node_filesystem_readonly", 0, n, **N))

        def evolve(p: Point, minutes: float) -> Point:
            left = p["to_empty"] - 60 * minutes
            return {"free": p["free"] * left / p["to_empty"], "to_empty": left}

        return Probe({"free": free / 2, "to_empty": horizon / 2},
                     (Bound("free", "<", free_field), Bound("to_empty", "<", horizon_field)),
                     make,
                     lambda p, at: when(p["free"] < free and p["to_empty"] < horizon, severity, N,
                                        p["free"]),
                     onset=1, evolve=evolve)

    horizon = cfg.wal_directory_horizon_seconds

    def wal(p: Point, n: int, every: int) -> tuple[Series, ...]:
        growth = (p["predicted"] - p["ratio"]) / horizon  # bounds a second
        return (series("wasp_pg_wal_directory_bytes",
                       f"{num(p['ratio'] * _GB)}+{num(growth * _GB * 60 * every)}x{n}", **T),
                gauge("wasp_pg_max_wal_size_bytes", 0.8 * _GB, n, **T),
                gauge("wasp_pg_wal_keep_size_bytes", 0.2 * _GB, n, **T))

    def wal_evolve(p: Point, minutes: float) -> Point:
        grown = (p["predicted"] - p["ratio"]) / horizon * 60 * minutes
        return {"ratio": p["ratio"] + grown, "predicted": p["predicted"] + grown}

    def checkpoints(p: Point, n: int, every: int) -> tuple[Series, ...]:
        timed = p["requested"] / p["ratio"] - p["requested"]
        return (jump("wasp_pg_checkpoints_total", 1, p["requested"], n, **t(kind="requested")),
                jump("wasp_pg_checkpoints_total", 1, timed, n, **t(kind="timed")))

    def checkpoints_fire(p: Point, at: int) -> Fires:
        ratio = p["requested"] / (p["requested"] + (p["requested"] / p["ratio"] - p["requested"]))
        return when(ratio > cfg.checkpoints_requested_ratio
                    and p["requested"] >= cfg.checkpoints_requested_min, "info", T, ratio)

    busy_of = 100  # autovacuum_max_workers of the test series: busy shares in whole workers
    return {
        "WaspFilesystemFillingUp": filling("warning", "filesystem_free_warning",
                                           "filesystem_warning_horizon_seconds"),
        "WaspFilesystemFillingUpFast": filling("page", "filesystem_free_page",
                                               "filesystem_page_horizon_seconds"),
        "WaspPostgresWALGrowing": Probe(
            {"ratio": 2 * cfg.wal_directory_bound_ratio,
             "predicted": 2 * cfg.wal_directory_predicted_ratio},
            (Bound("ratio", ">", "wal_directory_bound_ratio"),
             Bound("predicted", ">", "wal_directory_predicted_ratio")),
            wal,
            lambda p, at: when(p["ratio"] > cfg.wal_directory_bound_ratio
                               and p["predicted"] > cfg.wal_directory_predicted_ratio, "warning",
                               T, p["ratio"]),
            onset=1, evolve=wal_evolve, params=("wal_directory_horizon_seconds",)),
        "WaspPostgresPageChecksumFailures": Probe(
            {"failures": 2}, (Bound("failures", ">", quiet=0),),
            lambda p, n, every: (jump("wasp_pg_database_checksum_failures_total", 1,
                                      p["failures"], n, **db),),
            lambda p, at: when(p["failures"] > 0, "page", db, p["failures"]),
            onset=1),
        "WaspPostgresAutovacuumBehind": Probe(
            {"dead": 2 * cfg.autovacuum_behind_min_dead_rows,
             "ratio": 2 * cfg.autovacuum_behind_ratio},
            (Bound("ratio", ">", "autovacuum_behind_ratio"),
             Bound("dead", ">", "autovacuum_behind_min_dead_rows", step=1)),
            lambda p, n, every: (gauge("wasp_pg_table_dead_tuples", p["dead"], n, **tab),
                                 gauge("wasp_pg_table_autovacuum_threshold_tuples",
                                       p["dead"] / p["ratio"], n, **tab)),
            lambda p, at: when(p["dead"] > cfg.autovacuum_behind_ratio * (p["dead"] / p["ratio"])
                               and p["dead"] > cfg.autovacuum_behind_min_dead_rows, "warning",
                               tab, p["dead"])),
        "WaspPostgresAutovacuumWorkersBusy": Probe(
            {"busy": 1}, (Bound("busy", ">=", "autovacuum_workers_busy_ratio"),),
            lambda p, n, every: (gauge("wasp_pg_autovacuum_workers", round(busy_of * p["busy"]),
                                       n, **T),
                                 gauge("wasp_pg_autovacuum_max_workers", busy_of, n, **T)),
            lambda p, at: when(round(busy_of * p["busy"])
                               >= cfg.autovacuum_workers_busy_ratio * busy_of, "info", T,
                               round(busy_of * p["busy"]))),
        "WaspPostgresTableBloated": Probe(
            {"ratio": (1 + cfg.table_bloat_ratio) / 2, "bytes": 2 * cfg.table_bloat_min_bytes},
            (Bound("ratio", ">", "table_bloat_ratio"),
             Bound("bytes", ">", "table_bloat_min_bytes", step=1)),
            lambda p, n, every: (gauge("wasp_pg_table_bloat_ratio", p["ratio"], n, **tab),
                                 gauge("wasp_pg_table_size_bytes", p["bytes"], n, **tab)),
            lambda p, at: when(p["ratio"] > cfg.table_bloat_ratio
                               and p["bytes"] > cfg.table_bloat_min_bytes, "info", tab,
                               p["ratio"])),
        "WaspPostgresCheckpointsRequested": Probe(
            {"ratio": (1 + cfg.checkpoints_requested_ratio) / 2,
             "requested": 3 * cfg.checkpoints_requested_min},
            (Bound("ratio", ">", "checkpoints_requested_ratio"),
             Bound("requested", ">=", "checkpoints_requested_min", step=1)),
            checkpoints, checkpoints_fire, onset=1),
    }
