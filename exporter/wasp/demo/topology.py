"""The topology an operator runs, on one machine: what `wasp demo` starts and the drill tests use.

    primary ──streaming──> replica1, replica2        (wasp replica setup; heartbeat writer)
       │  └─ async WAL archiving ─> pgBackRest repo   (encrypted; full backup + drill at start)
    PgBouncer ──> primary  <── live writer (synthetic salon traffic through the pool)
    exporter (every pack; 3 servers + PgBouncer) <── Prometheus (generated rules)
       ──> Alertmanager (generated routing) ──> receiver (Slack/PagerDuty stand-ins)

Everything lives under one folder; `state.json` there says what runs on which
port, so `wasp demo break/heal` and a second run find it. `stop()` stops what
this process started and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import yaml

from wasp.companions.pgcluster import (
    ClusterError,
    LocalCluster,
    chown_to_postgres,
    free_port,
    port_in_use,
    run_as_postgres,
)
from wasp.demo.alerting import (
    DEMO,
    Timing,
    prometheus_config,
    write_alertmanager,
    write_rules,
)
from wasp.demo.receiver import Receiver

__all__ = ["DB", "MONITOR_ROLE", "REPLICAS", "Topology", "install_hint", "wait_http"]

log = logging.getLogger("wasp.demo")

DB = "salon"
MONITOR_ROLE = "wasp_monitor"
REPLICAS = ("replica1", "replica2")
STATS_USER = "wasp_stats"
POOL_SIZE = 5
PORT_NAMES = ("primary", *REPLICAS, "pgbouncer", "exporter", "prometheus", "alertmanager",
              "receiver")

#: how to install each optional part (Debian package names, as scripts/setup.sh does)
INSTALL = {
    "pgbackrest": "apt-get install pgbackrest",
    "pgbouncer": "apt-get install pgbouncer",
    "prometheus": "apt-get install prometheus",
    "alertmanager": "apt-get install prometheus-alertmanager",
}


def install_hint(part: str) -> str:
    """One line: what is skipped and how to install it."""
    return f"{part} is not installed: skipping it ({INSTALL[part]}, or bash scripts/setup.sh)"


def _which(part: str) -> str | None:
    if part == "alertmanager":
        return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if part == "pgbouncer":
        return shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    return shutil.which(part)


def wait_http(url: str, timeout: float) -> bool:
    """True once `url` answers 200 within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return True
        time.sleep(0.3)
    return False


def _wait_scraped(prometheus: str, timeout: float) -> bool:
    """True once Prometheus has scraped the wasp job successfully."""
    url = prometheus + "/api/v1/query?query=up%7Bjob%3D%22wasp%22%7D%3D%3D1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError), \
                urllib.request.urlopen(url, timeout=2) as r:
            if json.load(r)["data"]["result"]:
                return True
        time.sleep(0.3)
    log.warning("Prometheus has not scraped the exporter within %.0fs", timeout)
    return False


def _die_with_parent() -> None:
    # a demo killed without a chance to clean up must not leave its children behind
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Topology:
    """The whole stack under `home`, with the timings of one profile."""

    home: Path
    timing: Timing = DEMO
    salons: int = 1000
    days: float = 3.0
    scale: float = 0.25
    schema: str = "v2"
    exporter_listen: str = "127.0.0.1:9645"
    backups: bool = True
    scheduler: bool = True
    live: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    reused: bool = False
    urls: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    started_clusters: list[LocalCluster] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    receiver: Receiver | None = None
    bouncer_pid: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: notifications recorded while the stack settled after start (the tests' healthy baseline)
    baseline: list[Any] = field(default_factory=list)
    #: the alerts Prometheus had firing then (names)
    baseline_alerts: set[str] = field(default_factory=set)
    #: pids of the processes of a demo this object attached to (break/heal)
    attached: dict[str, int] = field(default_factory=dict)

    @classmethod
    def attach(cls, home: Path) -> Topology:
        """The running demo under `home` (from its state.json), to break and heal it."""
        from wasp.demo.alerting import PRODUCTION, TEST

        try:
            state = json.loads((home / "state.json").read_text())
        except (OSError, ValueError) as e:
            raise ClusterError(f"no running demo in {home} (start `wasp demo` first): "
                               f"{getattr(e, 'strerror', None) or e}") from None
        timing = {t.name: t for t in (DEMO, TEST, PRODUCTION)}[state["timing"]]
        return cls(home=home, timing=timing, ports=state["ports"], urls=state["urls"],
                   skipped=state["skipped"], attached=state["procs"])

    def pid(self, name: str) -> int | None:
        """Pid of a process of the demo (started here, or by the demo attached to)."""
        p = self.proc(name)
        return p.pid if p is not None else self.attached.get(name)

    # -- layout -----------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        """Ports and paths of the running demo, for break/heal and the next run."""
        return self.home / "state.json"

    @property
    def notifications(self) -> Path:
        """The receiver's JSON-lines file."""
        return self.home / "notifications.jsonl"

    @property
    def times(self) -> Path:
        """Measured times from fault to notification, per drill (written by the drill tests)."""
        return self.home / "drill-times.json"

    @property
    def drills_dir(self) -> Path:
        """Flag files of the drills the running demo applies itself (webhooks, pool)."""
        return self.home / "drills"

    def cluster(self, name: str) -> LocalCluster:
        """The primary ("primary") or a replica by name."""
        sub = "pg" if name == "primary" else name
        return LocalCluster(datadir=self.home / sub, port=self.ports[name])

    def admin_dsn(self, name: str = "primary", dbname: str = DB) -> str:
        """Superuser DSN of a server."""
        return self.cluster(name).dsn(dbname)

    def bouncer_dsn(self, user: str = "postgres", dbname: str = DB) -> str:
        """A DSN through PgBouncer."""
        return (f"host=127.0.0.1 port={self.ports['pgbouncer']} dbname={dbname} user={user} "
                "connect_timeout=5")

    # -- up ---------------------------------------------------------------------------
    def up(self, *, progress: Callable[[str], None] | None = None) -> None:
        """Start every part (reusing the data of an earlier run) and write state.json."""
        say = progress or (lambda m: log.info("%s", m))
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.home.chmod(0o755)
        self._ports()
        self.drills_dir.mkdir(exist_ok=True)
        for flag in self.drills_dir.iterdir():
            flag.unlink()  # a drill left broken by an earlier run is healed
        steps: list[tuple[str, Callable[[], None]]] = [
            ("primary", self._primary), ("backups", self._backups),
            ("replicas", self._replicas), ("heartbeat", self._heartbeat),
            ("pgbouncer", self._pgbouncer), ("live writer", self._live),
            ("receiver", self._receiver), ("alertmanager", self._alertmanager),
            ("exporter", self._exporter), ("prometheus", self._prometheus),
        ]
        for name, step in steps:
            t0 = time.monotonic()
            step()
            self.timings[name] = round(time.monotonic() - t0, 1)
            self._save()
        say("ready: " + ", ".join(f"{k} {v:g}s" for k, v in self.timings.items()))

    def _ports(self) -> None:
        old: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(self.state_file.read_text()).get("ports", {})
        self.reused = (self.home / "pg" / "PG_VERSION").exists()
        port = self.exporter_listen.rpartition(":")[2]
        for name in PORT_NAMES:
            p = old.get(name)
            if name == "exporter":
                p = int(port) or p
            if not isinstance(p, int) or (name not in ("primary", *REPLICAS) and port_in_use(p)):
                p = free_port()
            self.ports[name] = p

    def _save(self) -> None:
        state = {"ports": self.ports, "urls": self.urls, "pid": os.getpid(),
                 "notifications": str(self.notifications), "timing": self.timing.name,
                 "skipped": self.skipped, "procs": {n: p.pid for n, p in self.procs},
                 "pgbouncer_pid": self.bouncer_pid, "config": str(self.home / "wasp.yml")}
        self.state_file.write_text(json.dumps(state, indent=1, sort_keys=True))

    def _start(self, c: LocalCluster) -> None:
        if not c.is_running():
            c.start()
            self.started_clusters.append(c)

    def _primary(self) -> None:
        c = self.cluster("primary")
        if not c.exists():
            log.info("initialising the primary in %s", c.datadir)
            c.settings.update({"wal_level": "replica", "max_wal_senders": "10",
                               "max_replication_slots": "10", "hot_standby": "on",
                               "wal_keep_size": "256MB", "max_connections": "100"})
            c.init()
        else:
            log.info("reusing the data in %s (--reset starts over)", self.home)
            c.write_settings({"port": str(c.port)})
        self._start(c)
        with psycopg.connect(c.dsn("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DB}"')
        self._load(c.dsn(DB))

    def _load(self, dsn: str) -> None:
        from wasp.demo.datagen import create_schema, generate

        with psycopg.connect(dsn, autocommit=True) as conn:
            has = conn.execute("SELECT to_regclass('public.salons') IS NOT NULL").fetchone()
            if not (has and has[0]):
                create_schema(conn, self.schema)  # type: ignore[arg-type]
            empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM salons)").fetchone()
            if empty and empty[0]:
                log.info("loading %.1f days of history for %d salons at %.2fx the daily volumes",
                         self.days, self.salons, self.scale)
                generate(conn, days=self.days, scale=self.scale, salons=self.salons,
                         progress=lambda m: log.info("  %s", m))
            conn.execute(resources.files("wasp.sql").joinpath("monitor_role.sql").read_text())
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR_ROLE}")
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _backups(self) -> None:
        self._write_config()
        if not self.backups:
            return
        if not _which("pgbackrest"):
            self.skipped.append("pgbackrest")
            log.info("%s", install_hint("pgbackrest"))
            self._write_config()
            return
        from wasp.companions.backup.ops import BackupContext, init_stanza
        from wasp.companions.backup.records import load_records
        from wasp.config.schema import load_config

        settings = load_config(self.home / "wasp.yml").section("backup")
        ctx = BackupContext(settings, self.home / "status")
        init_stanza(ctx, restart=True)
        rec = load_records(self.home / "status", settings.stanza)
        if not (rec.drill and rec.drill.get("ok")):
            self._first_backup(ctx)
        else:
            log.info("backups: the stanza has a full backup and a passing drill already")
        if self.scheduler:  # then the schedule of wasp.yml (shortened for the demo)
            self._spawn("scheduler", [sys.executable, "-m", "wasp", "backup", "--config",
                                      str(self.home / "wasp.yml"), "schedule"])

    def _first_backup(self, ctx: Any) -> None:
        from wasp.companions.backup.drill import run_drill
        from wasp.companions.backup.ops import run_backup

        full = run_backup(ctx, "full")
        log.info("backups: full backup %s (%s)", full.get("label"), full.get("state"))
        drill = run_drill(ctx)
        log.info("backups: restore drill of %s %s", drill.label, "passed" if drill.ok else
                 f"FAILED: {drill.error}")

    def _replicas(self) -> None:
        from wasp.companions.replica.ops import Access, Node, setup

        password = self._secret("replication-password")
        for name in REPLICAS:
            c = self.cluster(name)
            if c.exists():
                c.write_settings({"port": str(c.port)})
                self._start(c)
                continue
            rec = setup(Access(primary_dsn=self.cluster("primary").dsn("postgres"),
                               password=password),
                        Node(name, c.datadir, c.port), status_dir=self.home / "status",
                        timeout=600)
            self.started_clusters.append(c)
            log.info("%s streams from the primary (setup took %.1fs)", name,
                     rec["duration_seconds"])

    def _heartbeat(self) -> None:
        from wasp.companions.replica.heartbeat import install, run

        install(self.cluster("primary").dsn("postgres"), user="wasp_heartbeat", password=None,
                dbname=DB)
        dsn = self.cluster("primary").dsn(DB, user="wasp_heartbeat")
        interval = min(5.0, max(1.0, self.timing.scrape_interval))
        self._thread("heartbeat", lambda: run(dsn, interval=interval, stop=self.stop_event))

    def _pgbouncer(self) -> None:
        exe = _which("pgbouncer")
        if not exe:
            self.skipped.append("pgbouncer")
            log.info("%s", install_hint("pgbouncer"))
            return
        wd = self.home / "pgbouncer"
        wd.mkdir(exist_ok=True)
        (wd / "userlist.txt").write_text(f'"postgres" ""\n"{STATS_USER}" ""\n')
        # session pooling: PgBouncer 1.18 cannot carry psycopg's prepared statements in
        # transaction mode; the live writer holds one server connection, drills take the rest
        (wd / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{DB} = host=127.0.0.1 port={self.ports['primary']} dbname={DB} "
            f"pool_size={POOL_SIZE} reserve_pool=0\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.ports['pgbouncer']}\n"
            "unix_socket_dir =\nauth_type = trust\n"
            f"auth_file = {wd}/userlist.txt\nadmin_users = postgres\n"
            f"stats_users = {STATS_USER}\npool_mode = session\n"
            f"stats_period = {max(1, int(self.timing.scrape_interval))}\n"
            f"logfile = {wd}/pgbouncer.log\npidfile = {wd}/pgbouncer.pid\n")
        chown_to_postgres(wd)
        run_as_postgres([exe, "-d", wd / "pgbouncer.ini"], timeout=30)
        deadline = time.monotonic() + 10
        while not port_in_use(self.ports["pgbouncer"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError, ValueError):
            self.bouncer_pid = int((wd / "pgbouncer.pid").read_text().strip())
        self.urls["PgBouncer"] = f"127.0.0.1:{self.ports['pgbouncer']} (database {DB})"

    def _live(self) -> None:
        if not self.live:
            return
        from wasp.demo.datagen import run_live

        dsn = self.bouncer_dsn() if "pgbouncer" not in self.skipped else self.admin_dsn()
        paused = self.drills_dir / "webhooks"
        self._thread("live", lambda: run_live(dsn, rate=self.scale, stop=self.stop_event,
                                              pause=lambda: {"webhooks"} if paused.exists()
                                              else set()))

    def _receiver(self) -> None:
        self.receiver = Receiver(self.notifications, port=self.ports["receiver"]).start()
        self.urls["notifications"] = self.receiver.url + "/"
        from wasp.demo.drills import DrillAgent

        agent = DrillAgent(self)
        self._thread("drill agent", agent.run)

    def _alertmanager(self) -> None:
        exe = _which("alertmanager")
        if not exe:
            self.skipped.append("alertmanager")
            log.info("%s", install_hint("alertmanager"))
            return
        assert self.receiver is not None
        d = self.home / "alertmanager"
        d.mkdir(exist_ok=True)
        write_alertmanager(d, self.receiver.url, self.timing)
        port = self.ports["alertmanager"]
        self._spawn("alertmanager", [exe, f"--config.file={d / 'alertmanager.yml'}",
                                     f"--storage.path={d / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{port}",
                                     "--cluster.listen-address="])
        self.urls["Alertmanager"] = f"http://127.0.0.1:{port}/"
        wait_http(f"http://127.0.0.1:{port}/-/ready", 30)

    def _exporter(self) -> None:
        port = self.ports["exporter"]
        self._spawn("exporter", [sys.executable, "-m", "wasp", "exporter", "--config",
                                 str(self.home / "wasp.yml"), "--listen", f"127.0.0.1:{port}"])
        self.urls["exporter"] = f"http://127.0.0.1:{port}/metrics"
        if not wait_http(f"http://127.0.0.1:{port}/readyz", 120):
            log.warning("the exporter is not ready after 120s (see %s)",
                        self.home / "exporter.log")

    def _prometheus(self) -> None:
        exe = _which("prometheus")
        if not exe:
            self.skipped.append("prometheus")
            log.info("%s", install_hint("prometheus"))
            return
        d = self.home / "prometheus"
        counts = write_rules(d / "rules", self.timing)
        am = None if "alertmanager" in self.skipped else f"127.0.0.1:{self.ports['alertmanager']}"
        conf = prometheus_config(exporter=f"127.0.0.1:{self.ports['exporter']}",
                                 rules_dir=None, alertmanager=am, timing=self.timing)
        (d / "prometheus.yml").write_text(yaml.safe_dump(conf, sort_keys=False))
        port = self.ports["prometheus"]
        self._spawn("prometheus", [exe, f"--config.file={d / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={d / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}",
                                   "--storage.tsdb.retention.time=2d"])
        self.urls["Prometheus"] = f"http://127.0.0.1:{port}/"
        wait_http(f"http://127.0.0.1:{port}/-/ready", 60)
        # the rules load once the exporter was scraped: before that, every `absent()` holds
        # and a short `for` would page about the start-up itself
        _wait_scraped(f"http://127.0.0.1:{port}", 60)
        conf["rule_files"] = prometheus_config(exporter="", rules_dir=d / "rules",
                                               alertmanager=None, timing=self.timing)["rule_files"]
        (d / "prometheus.yml").write_text(yaml.safe_dump(conf, sort_keys=False))
        prom = self.proc("prometheus")
        if prom is not None:
            prom.send_signal(signal.SIGHUP)
        log.info("prometheus: %s alert rules (%s)", sum(counts.values()),
                 ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))

    # -- configuration ----------------------------------------------------------------
    def _secret(self, name: str) -> str:
        path = self.home / "secrets" / name
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.write_text(secrets.token_hex(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def _write_config(self) -> None:
        """wasp.yml: every pack over the three servers and PgBouncer, the backup section."""
        from wasp.demo.config import exporter_config

        self._secret("backup-passphrase")
        cfg = exporter_config(self, backups=self.backups and "pgbackrest" not in self.skipped)
        (self.home / "wasp.yml").write_text("# written by `wasp demo`\n"
                                            + yaml.safe_dump(cfg, sort_keys=False))

    # -- processes --------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        logf = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        log.info("started %s (pid %d, log %s)", name, proc.pid, self.home / f"{name}.log")

    def _thread(self, name: str, target: Callable[[], object]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:  # a helper thread must say why it stopped
                log.exception("%s stopped", name)

        t = threading.Thread(target=run, name=f"wasp-demo-{name}", daemon=True)
        t.start()
        self.threads.append(t)

    def proc(self, name: str) -> subprocess.Popen[bytes] | None:
        """A process this topology started, by name."""
        return next((p for n, p in self.procs if n == name), None)

    # -- stop -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop what this topology started, in reverse order, and nothing else."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a drill may have paused it
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.info("stopped %s", name)
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)
        if self.receiver is not None:
            self.receiver.stop()
        if self.bouncer_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.bouncer_pid, signal.SIGTERM)
                log.info("stopped pgbouncer")
        for c in reversed(self.started_clusters):
            with contextlib.suppress(ClusterError):
                c.stop()
                log.info("stopped PostgreSQL in %s", c.datadir)
        with contextlib.suppress(OSError):
            self.state_file.unlink()
