"""Follow PostgreSQL's jsonlog beside the server and serve the log pack's metrics.

For when the exporter runs on another host: `wasp logtail` runs the log pack
alone (the same collector as the exporter's, with the configuration's log:
section and status_dir) and serves /metrics, /healthz and /readyz for
Prometheus to scrape as a second job. SIGTERM or SIGINT stops it after the
round in progress, with the read positions saved.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace

from wasp.config.nodes import ConfigError, Node
from wasp.config.schema import Config, load_config, parse_listen
from wasp.exporter.engine import Engine
from wasp.packs.log import build_collectors

__all__ = ["DEFAULT_LISTEN", "add_arguments", "main"]

log = logging.getLogger("wasp.logtail")
DEFAULT_LISTEN = "127.0.0.1:9646"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp logtail`."""
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="wasp YAML configuration (its log: section, server.status_dir, and the "
                   "target the section names)")
    p.add_argument("--listen", metavar="ADDR:PORT", default=DEFAULT_LISTEN,
                   help=f"where to serve /metrics (default {DEFAULT_LISTEN})")
    p.add_argument("--once", action="store_true",
                   help="read what is new once, print the exposition and exit")


def engine_for(cfg: Config) -> Engine:
    """An engine running the log collector alone (no target queries)."""
    collectors = build_collectors(cfg)
    return Engine(replace(cfg, targets=(), queries=()), collectors=collectors)


def main(args: argparse.Namespace) -> int:
    """Run the log pack alone."""
    try:
        cfg = load_config(args.config)
        if cfg.section("log") is None:
            raise ConfigError(cfg.path, None, "log", "wasp logtail needs a log: section")
        host, port = parse_listen(Node(args.listen, "--listen", "listen"))
        engine = engine_for(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.once:
        return asyncio.run(_once(engine))
    return asyncio.run(_serve(engine, host, port))


async def _once(engine: Engine) -> int:
    try:
        rendered = await engine.run_once()
    finally:
        await engine.stop()
    sys.stdout.write(rendered.text.decode())
    return 1 if any(s.runs and not s.last_ok for s in engine.states.values()) else 0


async def _serve(engine: Engine, host: str, port: int) -> int:
    from aiohttp import web

    from wasp.exporter.web import make_app

    runner = web.AppRunner(make_app(engine), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", host, port, e.strerror or e)
        await runner.cleanup()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    log.info("following the log; listening on http://%s:%d/metrics", host, port)
    await stop.wait()
    await engine.stop()
    await runner.cleanup()
    return 0
