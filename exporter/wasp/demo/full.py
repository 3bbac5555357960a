"""`wasp demo` with the whole topology, and its actions: break, heal, notifications, drills."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import psycopg

from wasp.companions.pgcluster import ClusterError
from wasp.demo.alerting import DEMO, PRODUCTION
from wasp.demo.drills import DRILLS, run_drill_command
from wasp.demo.receiver import format_line, read_notifications
from wasp.demo.topology import REPLICAS, Topology

__all__ = ["action", "run"]

log = logging.getLogger("wasp.demo")


def run(args: argparse.Namespace) -> int:
    """Bring the topology up, print the banner, wait for Ctrl-C (or --duration), stop it."""
    home = Path(args.data_dir).resolve()
    if args.reset and home.exists():
        _reset(home)
    topo = Topology(home=home, timing=DEMO, salons=args.salons, days=args.days,
                    scale=args.scale, schema=args.schema, exporter_listen=args.listen,
                    live=not args.no_live)
    if args.no_prometheus:
        topo.skipped += ["prometheus", "alertmanager"]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        topo.up()
        _banner(topo, time.monotonic() - t0)
        stop.wait(args.duration if args.duration > 0 else None)
        log.info("stopping")
        return 0
    except (ClusterError, psycopg.Error, OSError, RuntimeError) as e:
        log.error("demo failed: %s", e)
        return 1
    finally:
        topo.stop()


def _reset(home: Path) -> None:
    from wasp.companions.pgcluster import LocalCluster
    from wasp.demo.run import _read_port

    for sub in ("pg", *REPLICAS):
        d = home / sub
        if (d / "PG_VERSION").exists():
            with contextlib.suppress(ClusterError):
                LocalCluster(datadir=d, port=_read_port(d) or 1).stop("immediate")
    shutil.rmtree(home)


def _banner(topo: Topology, took: float) -> None:
    width = max(len(k) for k in topo.urls)
    print(f"\nwasp demo is running ({'reused the data in ' + str(topo.home) if topo.reused else 'new data in ' + str(topo.home)}; "
          f"ready in {took:.0f}s):", file=sys.stderr)
    print(f"  {'primary':<{width}}  {topo.admin_dsn()}", file=sys.stderr)
    for r in REPLICAS:
        print(f"  {r:<{width}}  {topo.admin_dsn(r)}", file=sys.stderr)
    for k, v in topo.urls.items():
        print(f"  {k:<{width}}  {v}", file=sys.stderr)
    for part in topo.skipped:
        print(f"  (skipped: {part})", file=sys.stderr)
    print("Fault drills: wasp demo break NAME / wasp demo heal NAME, NAME one of "
          + ", ".join(DRILLS) + ".\nNotifications: wasp demo notifications. "
          "Press Ctrl-C to stop.\n", file=sys.stderr, flush=True)


def action(args: argparse.Namespace) -> int:
    """break, heal, notifications, drills."""
    home = Path(args.data_dir).resolve()
    if args.action == "drills":
        for d in DRILLS.values():
            print(f"{d.name:<9} {d.what}\n          -> {d.expect.alertname} [{d.expect.severity}] "
                  f"at {d.expect.where()}: ~{d.by_when(DEMO):.0f}s in the demo, "
                  f"~{d.by_when(PRODUCTION) / 60:.0f} min in production")
        return 0
    if args.action == "notifications":
        got = read_notifications(home / "notifications.jsonl")[-args.last:]
        for n in got:
            print(format_line(n))
        if not got:
            print(f"no notification in {home / 'notifications.jsonl'} (a healthy demo pages "
                  "nobody: try `wasp demo break replica`)")
        return 0
    if args.drill not in DRILLS:
        print(f"wasp demo {args.action}: give a drill name: {', '.join(DRILLS)}", file=sys.stderr)
        return 2
    try:
        topo = Topology.attach(home)
        return run_drill_command(topo, args.drill, heal=args.action == "heal",
                                 wait=not args.no_wait)
    except (ClusterError, psycopg.Error, OSError, RuntimeError) as e:
        print(f"wasp demo {args.action} {args.drill}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
