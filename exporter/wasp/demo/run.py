"""Run the demo: the topology an operator runs (a primary and two streaming replicas with
the heartbeat writer, pgBackRest with async archiving, PgBouncer with the live writer
behind it, the exporter with every pack, Prometheus, Alertmanager and a local
notification receiver standing in for Slack and PagerDuty), or with --minimal one
PostgreSQL and the exporter. Ctrl-C stops everything it started.

    wasp demo                      run it (a second run reuses the data)
    wasp demo break NAME           a fault drill on the running demo (NAME: see `wasp demo drills`)
    wasp demo heal NAME            undo it, and follow the resolved notification
    wasp demo notifications        what the Slack and PagerDuty stand-ins received
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import yaml

from wasp.companions.pgcluster import ClusterError, LocalCluster, free_port, port_in_use

__all__ = ["add_arguments", "main"]

log = logging.getLogger("wasp.demo.run")

DB = "salon"
MONITOR_ROLE = "wasp_monitor"


ACTIONS = ("run", "break", "heal", "notifications", "drills")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp demo`."""
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                   help="run (default), break NAME, heal NAME, notifications, drills")
    p.add_argument("drill", nargs="?", metavar="NAME", help="the drill to break or heal")
    p.add_argument("--minimal", action="store_true",
                   help="one PostgreSQL, the exporter, Prometheus and Alertmanager (the small demo)")
    p.add_argument("--no-wait", action="store_true",
                   help="break/heal: do not follow the receiver for the notification")
    p.add_argument("--last", type=int, default=20, metavar="N",
                   help="notifications: how many (default 20)")
    p.add_argument("--data-dir", default=".wasp-demo", metavar="DIR",
                   help="where the demo keeps its cluster, configs and Prometheus data "
                   "(default: ./.wasp-demo; reused on the next run)")
    p.add_argument("--dsn", metavar="DSN",
                   help="use this existing database instead of a local cluster (the schema and "
                   "data are created when its salons table is missing)")
    p.add_argument("--days", type=float, default=3.0, help="days of history to load (default 3)")
    p.add_argument("--scale", type=float, default=0.25,
                   help="fraction of the real daily volumes for history and live writes (default 0.25)")
    p.add_argument("--salons", type=int, default=1000, help="number of salons (default 1000)")
    p.add_argument("--schema", choices=("v1", "v2"), default="v2",
                   help="application schema variant (default v2, the newer one)")
    p.add_argument("--listen", default="127.0.0.1:9645", metavar="ADDR:PORT",
                   help="exporter address (default 127.0.0.1:9645)")
    p.add_argument("--pg-port", type=int, default=0, help="local cluster port (default: a free one)")
    p.add_argument("--no-prometheus", action="store_true",
                   help="do not start Prometheus and Alertmanager even when installed")
    p.add_argument("--no-live", action="store_true", help="load history only, no live writes")
    p.add_argument("--reset", action="store_true", help="throw away the demo's data folder first")
    p.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                   help="stop by itself after this many seconds (default: run until Ctrl-C)")


@dataclass
class Demo:
    """Everything the demo started, so that it stops exactly that."""

    args: argparse.Namespace
    home: Path
    cluster: LocalCluster | None = None
    started_cluster: bool = False
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    live_stop: threading.Event = field(default_factory=threading.Event)
    live_thread: threading.Thread | None = None
    urls: dict[str, str] = field(default_factory=dict)
    receiver: Any = None

    # -- database ---------------------------------------------------------------------
    def database(self) -> tuple[str, str]:
        """(admin DSN, monitor DSN) of the demo database, creating what is missing."""
        if self.args.dsn:
            return self.args.dsn, self.args.dsn
        pgdir = self.home / "pg"
        port = self.args.pg_port
        if (pgdir / "PG_VERSION").exists():
            port = port or _read_port(pgdir) or free_port()
        else:
            port = port or free_port()
        c = LocalCluster(datadir=pgdir, port=port)
        if not c.exists():
            log.info("initialising a PostgreSQL cluster in %s", pgdir)
            c.init()
        else:
            c.write_settings({"port": str(port)})
        if not c.is_running():
            log.info("starting PostgreSQL on 127.0.0.1:%d", port)
            c.start()
            self.started_cluster = True
        self.cluster = c
        with psycopg.connect(c.dsn("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DB}"')
        return c.dsn(DB), c.dsn(DB, user=MONITOR_ROLE)

    def load(self, admin_dsn: str) -> None:
        """Schema, history and the monitoring role, unless already there."""
        from wasp.demo.datagen import create_schema, generate

        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            has = conn.execute("SELECT to_regclass('public.salons') IS NOT NULL").fetchone()
            if not (has and has[0]):
                log.info("creating the application schema (%s)", self.args.schema)
                create_schema(conn, self.args.schema)
            empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM salons)").fetchone()
            if empty and empty[0]:
                log.info("loading %.1f days of history at %.2fx the daily volumes",
                         self.args.days, self.args.scale)
                t0 = time.monotonic()
                counts = generate(conn, days=self.args.days, scale=self.args.scale,
                                  salons=self.args.salons, progress=lambda m: log.info("  %s", m))
                log.info("loaded %d rows in %.1fs", sum(counts.values()), time.monotonic() - t0)
            if not self.args.dsn:
                role_sql = resources.files("wasp.sql").joinpath("monitor_role.sql").read_text()
                conn.execute(role_sql)
                conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR_ROLE}")
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def start_live(self, admin_dsn: str) -> None:
        """Keep writing and updating rows at the application's rates, in a thread."""
        from wasp.demo.datagen import run_live

        def run() -> None:
            stats = run_live(admin_dsn, rate=self.args.scale, stop=self.live_stop,
                             log=lambda m: log.info("%s", m))
            log.info("live writer stopped after %d ticks: %d rows inserted, %d updated",
                     stats.ticks, sum(stats.inserted.values()), sum(stats.updated.values()))

        self.live_thread = threading.Thread(target=run, name="wasp-demo-live", daemon=True)
        self.live_thread.start()

    # -- Prometheus and Alertmanager ---------------------------------------------------
    def start_prometheus(self, exporter: str) -> None:
        """Prometheus scraping the exporter, with wasp's rules and Alertmanager when present."""
        prom = shutil.which("prometheus")
        am = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if self.args.no_prometheus or not prom:
            if not prom:
                log.info("prometheus is not installed: skipping it (apt-get install prometheus)")
            return
        from wasp.demo.alerting import MINIMAL, prometheus_config, write_alertmanager
        from wasp.demo.alerting import write_rules as write_demo_rules
        from wasp.demo.receiver import Receiver

        pdir = self.home / "prometheus"
        write_demo_rules(pdir / "rules", MINIMAL)
        am_addr = None
        if am:
            # never the production config: its secrets are files that do not exist here
            self.receiver = Receiver(self.home / "notifications.jsonl").start()
            self.urls["notifications"] = self.receiver.url + "/"
            am_port = free_port()
            am_dir = self.home / "alertmanager"
            am_dir.mkdir(parents=True, exist_ok=True)
            am_conf = write_alertmanager(am_dir, self.receiver.url, MINIMAL)
            self._spawn("alertmanager", [am, f"--config.file={am_conf}",
                                         f"--storage.path={am_dir / 'data'}",
                                         f"--web.listen-address=127.0.0.1:{am_port}",
                                         "--cluster.listen-address="])
            am_addr = f"127.0.0.1:{am_port}"
            self.urls["Alertmanager"] = f"http://{am_addr}/"
        conf = prometheus_config(exporter=exporter, rules_dir=pdir / "rules", alertmanager=am_addr,
                                 timing=MINIMAL)
        pdir = self.home / "prometheus"
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "prometheus.yml").write_text(yaml.safe_dump(conf, sort_keys=False))
        port = 9090 if not port_in_use(9090) else free_port()
        self._spawn("prometheus", [prom, f"--config.file={pdir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={pdir / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}",
                                   "--storage.tsdb.retention.time=2d"])
        self.urls["Prometheus"] = f"http://127.0.0.1:{port}/"
        _wait_http(f"http://127.0.0.1:{port}/-/ready", "prometheus", 30)

    def _spawn(self, name: str, argv: list[str]) -> None:
        logf = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        log.info("started %s (pid %d, log %s)", name, proc.pid, self.home / f"{name}.log")

    # -- stop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop what the demo started, in reverse order, and nothing else."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.info("stopped %s", name)
        self.live_stop.set()
        if self.receiver is not None:
            self.receiver.stop()
        if self.live_thread is not None:
            self.live_thread.join(timeout=15)
        if self.cluster is not None and self.started_cluster:
            with contextlib.suppress(ClusterError):
                self.cluster.stop()
                log.info("stopped PostgreSQL")


def _die_with_parent() -> None:
    # a demo killed without a chance to clean up must not leave Prometheus behind
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_http(url: str, name: str, timeout: float) -> None:
    """Wait until `url` answers 200 (a started server is ready), or log that it did not."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    log.warning("%s did not become ready within %.0fs (see its log)", name, timeout)


def _read_port(pgdir: Path) -> int | None:
    conf = pgdir / "postgresql.wasp.conf"
    if conf.exists():
        for line in conf.read_text().splitlines():
            k, _, v = line.partition("=")
            if k.strip() == "port" and v.strip().isdigit():
                return int(v.strip())
    return None


def _exporter_config(home: Path, monitor_dsn: str, listen: str) -> Path:
    cfg = {
        "server": {"listen": listen, "status_dir": str(home / "status"), "stale_after": "5m"},
        "targets": {"main": {"dsn": monitor_dsn, "packs": ["app", "postgres", "replication"]}},
        "packs": {"app": {"options": {"top_salons": 10}}},
    }
    path = home / "wasp.yml"
    path.write_text("# written by `wasp demo`\n" + yaml.safe_dump(cfg, sort_keys=False))
    return path


def main(args: argparse.Namespace) -> int:
    """Run the demo (or one of its actions)."""
    from wasp.demo import full

    if args.action != "run":
        return full.action(args)
    if args.drill:
        print(f"wasp demo: unexpected argument {args.drill!r}", file=sys.stderr)
        return 2
    if args.minimal or args.dsn:
        return main_minimal(args)
    return full.run(args)


def main_minimal(args: argparse.Namespace) -> int:
    """The small demo (--minimal): one PostgreSQL, the exporter, Prometheus + Alertmanager."""
    from wasp.config.schema import load_config

    home = Path(args.data_dir).resolve()
    if args.reset and home.exists():
        stale = LocalCluster(datadir=home / "pg", port=_read_port(home / "pg") or free_port())
        with contextlib.suppress(ClusterError):
            stale.stop("immediate")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        home.chmod(0o755)
    demo = Demo(args=args, home=home)
    try:
        admin_dsn, monitor_dsn = demo.database()
        demo.load(admin_dsn)
        cfg = load_config(_exporter_config(home, monitor_dsn, args.listen))
        if not args.no_live:
            demo.start_live(admin_dsn)
        demo.start_prometheus(f"{cfg.server.host}:{cfg.server.port}")
        return asyncio.run(_run_exporter(cfg, demo, args.duration))
    except (ClusterError, psycopg.Error, OSError) as e:
        log.error("demo failed: %s", e)
        return 1
    finally:
        demo.stop()


async def _run_exporter(cfg: Any, demo: Demo, duration: float) -> int:
    from aiohttp import web

    from wasp.exporter.web import make_app
    from wasp.packs import make_engine

    engine = make_engine(cfg)
    runner = web.AppRunner(make_app(engine), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.server.host, cfg.server.port, reuse_address=True).start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s (use --listen)", cfg.server.host, cfg.server.port,
                  e.strerror or e)
        await runner.cleanup()
        return 1
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    urls = {"exporter": f"http://{cfg.server.host}:{cfg.server.port}/metrics", **demo.urls}
    width = max(len(k) for k in urls)
    print("\nwasp demo is running:", file=sys.stderr)
    for k, v in urls.items():
        print(f"  {k:<{width}}  {v}", file=sys.stderr)
    print("Press Ctrl-C to stop.\n", file=sys.stderr, flush=True)
    try:
        if duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
        else:
            await stop.wait()
    finally:
        log.info("stopping")
        await engine.stop()
        await runner.cleanup()
    return 0
