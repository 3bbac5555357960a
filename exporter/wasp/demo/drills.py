"""Fault drills on a running demo: `wasp demo break NAME` and `wasp demo heal NAME`.

Each drill breaks one real part (stops a server, breaks the WAL archive, holds
the PgBouncer pool...), says which alert should reach which stand-in and by
when, then follows the receiver's file and says when it arrived. The same
functions drive the drill tests. Drills the running demo must apply itself
(the live writer's webhooks, connections holding the pool) are flag files in
``<data-dir>/drills/`` that its `DrillAgent` watches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from wasp.demo.alerting import Timing, fault_to_notification
from wasp.demo.receiver import Notification, follow, format_line

if TYPE_CHECKING:
    from wasp.demo.topology import Topology

__all__ = ["DRILLS", "Drill", "DrillAgent", "Expect", "run_drill_command"]

log = logging.getLogger("wasp.demo.drills")

STANDBY = "replica2"


@dataclass(frozen=True, slots=True)
class Expect:
    """A notification a drill must cause: at which stand-in, which alert, severity, target."""

    receiver: str
    alertname: str
    severity: str
    target: str = ""

    def matches(self, n: Notification) -> bool:
        """True when `n` is this alert (firing or resolved)."""
        return (n.receiver == self.receiver and n.alertname == self.alertname
                and n.severity == self.severity and (not self.target or n.target == self.target))

    def where(self) -> str:
        """Human name of the stand-in."""
        return {"slack": "Slack", "pagerduty": "PagerDuty"}[self.receiver]


@dataclass(frozen=True, slots=True)
class Drill:
    """One fault: what it does, what must arrive, and how to break and heal it."""

    name: str
    what: str
    expect: Expect
    #: the alert's generated `for`
    alert_for: str
    #: seconds from the fault until the exporter's metric shows it, under a timing profile
    detect: Callable[[Timing], float]
    breaks: Callable[[Topology], None]
    heals: Callable[[Topology], None]
    #: other alerts the fault may raise too (warnings to Slack; never a page)
    also: tuple[str, ...] = ()

    def by_when(self, timing: Timing) -> float:
        """Worst-case seconds from the fault to the notification under `timing`."""
        return fault_to_notification(self.alert_for, timing, detect=self.detect(timing),
                                     alert=self.expect.alertname)


def _query(t: Timing, production: float) -> float:
    return min(production, t.query_interval_max or production)


# -- break and heal ---------------------------------------------------------------------
def _stop(name: str) -> Callable[[Topology], None]:
    return lambda topo: topo.cluster(name).stop("fast")


def _start(name: str) -> Callable[[Topology], None]:
    return lambda topo: topo.cluster(name).start()


def _archive_dirs(topo: Topology) -> list[Path]:
    root = topo.home / "pgbackrest" / "repo" / "archive" / "demo"
    return [root, *sorted(p for p in root.rglob("*") if p.is_dir())]


def _break_archive(topo: Topology) -> None:
    # the repository stays readable (pgbackrest info works), but archive-push, which runs as
    # the server's user, may not write a segment: every push fails
    for d in _archive_dirs(topo):
        d.chmod(0o550)
    with psycopg.connect(topo.admin_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")


def _heal_archive(topo: Topology) -> None:
    for d in _archive_dirs(topo):
        d.chmod(0o750)
    # a new segment wakes PostgreSQL's archiver now instead of at its next retry
    with psycopg.connect(topo.admin_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")


def _backup_ctx(topo: Topology, *, broken: bool) -> object:
    from wasp.companions.backup.ops import BackupContext
    from wasp.config.backup import Secrets
    from wasp.config.schema import load_config

    ctx = BackupContext(load_config(topo.home / "wasp.yml").section("backup"), topo.home / "status")
    if broken:  # a wrong repository key: pgBackRest cannot decrypt the repository, the backup fails
        ctx.secrets = Secrets(passphrase="not-the-passphrase-" + os.urandom(8).hex())
    return ctx


def _run_backup(topo: Topology, *, broken: bool) -> None:
    from wasp.companions.backup.ops import JobFailed, run_backup

    try:
        rec = run_backup(_backup_ctx(topo, broken=broken), "incr", lock_wait=600)  # type: ignore[arg-type]
        log.info("incremental backup %s: %s", rec.get("label"), rec.get("state"))
    except JobFailed as e:
        log.info("incremental backup failed%s: %s", " (as the drill wants)" if broken else "",
                 str(e).splitlines()[0][:200])


def _signal_exporter(sig: signal.Signals) -> Callable[[Topology], None]:
    def send(topo: Topology) -> None:
        pid = topo.pid("exporter")
        if pid is None:
            raise RuntimeError("the demo's exporter is not running")
        os.kill(pid, sig)
    return send


def _flag(name: str, on: bool) -> Callable[[Topology], None]:
    def set_flag(topo: Topology) -> None:
        path = topo.drills_dir / name
        if on:
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"{time.time()}\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return set_flag


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("replica", f"stop {STANDBY} (pg_ctl stop -m fast)",
          Expect("slack", "WaspStandbyTargetDown", "warning", STANDBY), "5m",
          lambda t: _query(t, 15.0), _stop(STANDBY), _start(STANDBY),
          also=("WaspStandbysMissing",)),
    Drill("archive", "make WAL archiving fail (archive-push may not write to the repository)",
          Expect("pagerduty", "WaspWALArchiveBehind", "page"), "10m",
          lambda t: t.rules_config().rpo_seconds + t.archive_timeout
          + _query(t, 30.0), _break_archive, _heal_archive,
          also=("WaspWALArchiveFailing", "WaspPostgresArchiverFailing")),
    Drill("webhooks", "the live writer stops writing webhooks",
          Expect("pagerduty", "WaspWebhooksSilent", "page", "primary"), "5m",
          lambda t: t.rules_config().webhook_silent_seconds + _query(t, 15.0),
          _flag("webhooks", True), _flag("webhooks", False)),
    Drill("primary", "stop the primary (pg_ctl stop -m fast)",
          Expect("pagerduty", "WaspTargetDown", "page", "primary"), "5m",
          lambda t: _query(t, 15.0), _stop("primary"), _start("primary")),
    Drill("backup", "an incremental backup fails (run with a wrong repository key)",
          Expect("slack", "WaspBackupFailed", "warning"), "5m",
          lambda t: _query(t, 30.0), lambda topo: _run_backup(topo, broken=True),
          lambda topo: _run_backup(topo, broken=False)),
    Drill("exporter", "the exporter stops answering (SIGSTOP; heal sends SIGCONT)",
          Expect("pagerduty", "WaspExporterDown", "page"), "5m",
          lambda t: t.scrape_interval + min(10.0, t.scrape_interval),
          _signal_exporter(signal.SIGSTOP), _signal_exporter(signal.SIGCONT)),
    # a full pool with clients waiting pages (pool_usage_ratio, pool_waiting_clients_page)
    Drill("pool", "clients hold every PgBouncer server connection; more clients queue",
          Expect("pagerduty", "WaspPgBouncerPoolExhausted", "page", "pgbouncer"), "5m",
          lambda t: 2 * _query(t, 15.0), _flag("pool", True), _flag("pool", False),
          also=("WaspPgBouncerPoolSaturated", "WaspPgBouncerClientsWaiting")),
)}


class DrillAgent:
    """Runs inside the demo: applies the drills that need a long-lived client (the pool)."""

    def __init__(self, topo: Topology, *, holders: int | None = None) -> None:
        from wasp.demo.topology import POOL_SIZE

        self.topo = topo
        self.holders = holders or POOL_SIZE + 2
        self.active: list[threading.Thread] = []

    def run(self) -> None:
        """Poll the flag files until the demo stops."""
        flag = self.topo.drills_dir / "pool"
        while not self.topo.stop_event.wait(0.5):
            self.active = [t for t in self.active if t.is_alive()]
            if flag.exists() and not self.active:
                log.info("drill pool: %d clients take the pool", self.holders)
                for i in range(self.holders):
                    t = threading.Thread(target=self._hold, args=(flag,), daemon=True,
                                         name=f"wasp-demo-pool-{i}")
                    t.start()
                    self.active.append(t)

    def _hold(self, flag: os.PathLike[str]) -> None:
        # session pooling: a client keeps its server connection until it disconnects
        with contextlib.suppress(psycopg.Error), psycopg.connect(
                self.topo.bouncer_dsn(), autocommit=True,
                application_name="wasp-demo-pool-drill") as conn:
            while os.path.exists(flag) and not self.topo.stop_event.is_set():
                conn.execute("SELECT pg_sleep(0.5)")


def run_drill_command(topo: Topology, name: str, *, heal: bool, wait: bool = True,
                      out: Callable[[str], None] = print) -> int:
    """`wasp demo break|heal NAME`: act, say what should arrive where and by when, follow it."""
    drill = DRILLS[name]
    e = drill.expect
    by = drill.by_when(topo.timing)
    started = time.time()
    t0 = time.monotonic()
    if heal:
        drill.heals(topo)
        out(f"healed {name}. Expect RESOLVED {e.alertname} [{e.severity}] at {e.where()} "
            f"within ~{by:.0f}s (Alertmanager's group_interval "
            f"{topo.timing.group_interval:g}s after the alert clears).")
    else:
        drill.breaks(topo)
        out(f"broke {name}: {drill.what}.\nExpect {e.alertname} [{e.severity}]"
            + (f" target={e.target}" if e.target else "")
            + f" at {e.where()} within ~{by:.0f}s ({topo.timing.name} timings: "
            f"`for` {topo.timing.for_of(drill.alert_for, e.alertname)}, scrape "
            f"{topo.timing.scrape_interval:g}s, group_wait {topo.timing.group_wait:g}s; "
            f"production: ~{drill.by_when(_production()) / 60:.0f} min)."
            + (f" It may also raise {', '.join(drill.also)} (warnings)." if drill.also else ""))
    if not wait:
        return 0
    want = "resolved" if heal else "firing"
    deadline = t0 + 2 * by + 120
    for n in follow(topo.notifications, since=started, deadline=deadline):
        out(f"  +{n.at - started:5.1f}s  {format_line(n)}")
        if e.matches(n) and n.status == want:
            out(f"arrived after {n.at - started:.1f}s.")
            return 0
    out(f"nothing matching arrived within {deadline - t0:.0f}s: see "
        f"{topo.urls.get('Alertmanager', 'Alertmanager')} and {topo.home / 'prometheus.log'}")
    return 1


def _production() -> Timing:
    from wasp.demo.alerting import PRODUCTION

    return PRODUCTION


def production_table() -> list[tuple[str, str, float]]:
    """(drill, alert, worst-case seconds from fault to notification) under production timings."""
    from wasp.demo.alerting import PRODUCTION

    return [(d.name, d.expect.alertname, d.by_when(PRODUCTION)) for d in DRILLS.values()]

