"""The `wasp` command: parses arguments and hands over to one of the subsystems."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from wasp import __version__
from wasp.config.nodes import ConfigError

__all__ = ["main"]

log = logging.getLogger("wasp")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

class Subcommand(Protocol):
    """A subcommand implemented in another module."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser, /) -> None: ...

    def main(self, args: argparse.Namespace, /) -> int: ...


# each loader imports its module only when called, so `wasp --help` stays light
def _demo() -> Subcommand:
    from wasp.demo import run
    return run


def _datagen() -> Subcommand:
    from wasp.demo.datagen import cli
    return cli


def _backup() -> Subcommand:
    from wasp.companions.backup import cli
    return cli


def _replica() -> Subcommand:
    from wasp.companions.replica import cli
    return cli


def _logtail() -> Subcommand:
    from wasp.packs.log import cli
    return cli


def _doctor() -> Subcommand:
    from wasp.doctor import cli
    return cli


def _catalog() -> Subcommand:
    from wasp import catalog
    return catalog


def _rules() -> Subcommand:
    from wasp.mixin import rules
    return rules


def _alertmanager() -> Subcommand:
    from wasp.mixin import alertmanager
    return alertmanager


def _dashboards() -> Subcommand:
    from wasp.mixin import dashboards
    return dashboards


#: subcommands implemented in other modules: name -> (loader, help)
DELEGATED: dict[str, tuple[Callable[[], Subcommand], str]] = {
    "demo": (_demo, "run the demo: local PostgreSQL, synthetic salon data, the exporter"),
    "datagen": (_datagen, "create the application schema and load synthetic data"),
    "backup": (_backup, "pgBackRest backups, WAL archiving and restore drills"),
    "replica": (_replica, "streaming replicas: setup, status, promote, rejoin"),
    "logtail": (_logtail, "follow PostgreSQL's jsonlog beside the server (the log pack alone)"),
    "doctor": (_doctor, "check a live cluster for production readiness: score, evidence, fixes"),
    "catalog": (_catalog, "list every metric wasp exports (the metric catalog)"),
    "rules": (_rules, "generate Prometheus alert and recording rules"),
    "alertmanager": (_alertmanager, "generate the Alertmanager configuration and templates"),
    "dashboards": (_dashboards, "generate Grafana dashboards"),
}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Log lines to stderr: time, level, logger, message."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
        logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    p = argparse.ArgumentParser(
        prog="wasp",
        description="wasp: monitoring for a multi-tenant WhatsApp booking service on PostgreSQL.",
        epilog="Exit codes: 0 ok, 1 the operation failed, 2 bad usage or configuration.",
    )
    p.add_argument("--version", action="version", version=f"wasp {__version__}")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                   help="log verbosity (default: the config's server.log_level, else info)")
    # --log-level is accepted after the subcommand too
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS,
                        choices=("debug", "info", "warning", "error"), help="log verbosity")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser("exporter", parents=[common], help="run the Prometheus exporter",
                        description="Run every configured query in the background and serve "
                        "/metrics, /healthz and /readyz. SIGTERM or SIGINT stops it cleanly.")
    ex.add_argument("--config", "-c", required=True, metavar="FILE", help="wasp YAML configuration")
    ex.add_argument("--listen", metavar="ADDR:PORT", help="override server.listen (e.g. 127.0.0.1:9645)")
    ex.add_argument("--shard", metavar="I/N",
                    help="collect only the targets whose hashmod(name, N) is I, as Prometheus's "
                    "hashmod relabelling computes it (overrides fleet.shard)")
    ex.add_argument("--once", action="store_true",
                    help="run every query once, print the exposition to stdout and exit "
                    "(exit 1 when any query failed)")
    ex.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                    help="exporter-toolkit web configuration: TLS, basic auth, headers "
                    "(overrides server.web_config)")
    ex.add_argument("--allow-superuser", action="store_true",
                    help="run even when a target's role is a superuser (by default the exporter "
                    "refuses: a monitor needs pg_monitor, see exporter/wasp/sql/roles.sql)")
    ex.set_defaults(func=cmd_exporter)

    cc = sub.add_parser("check-config", parents=[common],
                        help="validate a configuration without starting",
                        description="Parse and validate FILE (and the built-in packs it uses). "
                        "Exit 0 when valid, 2 with file:line: key: message otherwise.")
    cc.add_argument("file", metavar="FILE")
    cc.add_argument("--list", action="store_true", help="list targets, queries and metrics")
    cc.set_defaults(func=cmd_check_config)

    for name, (load, help_) in DELEGATED.items():
        mod = load()
        sp = sub.add_parser(name, parents=[common], help=help_,
                            description=(mod.__doc__ or help_).strip())
        if name in ("backup", "replica"):
            sp.add_argument("--config", "-c", metavar="FILE", default=None,
                            help="wasp YAML configuration (its backup:/replica: section)")
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
    return p


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a configuration file."""
    from wasp.config.schema import load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    n_enabled = sum(1 for q in cfg.queries if q.enabled)
    print(f"{args.file}: ok ({len(cfg.targets)} targets, {n_enabled} queries enabled)")
    if args.list:
        for t in cfg.targets:
            print(f"target {t.name} ({t.type}): packs {', '.join(t.packs) or '-'}")
            for q in cfg.queries_for(t):
                metrics = ", ".join(sorted({v.metric for v in q.values}))
                print(f"  {q.name} every {q.interval:g}s ({q.pack or 'user'}): {metrics}")
    return EXIT_OK


def cmd_exporter(args: argparse.Namespace) -> int:
    """Run the exporter until SIGTERM/SIGINT."""
    from wasp.config.schema import load_config

    try:
        cfg = load_config(args.config)
        if args.listen:
            from dataclasses import replace

            from wasp.config.nodes import Node
            from wasp.config.schema import parse_listen

            host, port = parse_listen(Node(args.listen, "--listen", "listen"))
            cfg = replace(cfg, server=replace(cfg.server, host=host, port=port))
        cfg = _apply_shard(cfg, args.shard)
        for t in cfg.targets:
            t.dsn()  # fail now on a missing DSN
        guard = None if args.once else _web_guard(cfg, args.web_config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(args.log_level or cfg.server.log_level, cfg.server.log_format)
    superusers, unreachable = _check_roles(cfg)
    if superusers and not args.allow_superuser:
        print(f"error: refusing to run as a superuser on target(s) {', '.join(superusers)}: "
              "a monitor needs only pg_monitor and SELECT on the tables it reads, and a "
              "superuser session could change anything if wasp were misused. Connect as the "
              "role of exporter/wasp/sql/roles.sql (wasp_monitor), or pass --allow-superuser.",
              file=sys.stderr)
        return EXIT_USAGE
    # an unreachable target was logged with libpq's whole reason; --once still runs the round,
    # so the exposition shows it (wasp_target_up 0, the connection error's cause) and exits 1,
    # without trying it a second time
    if args.once:
        return asyncio.run(_once(cfg, unreachable))
    return asyncio.run(_serve(cfg, guard))


def _web_guard(cfg: Any, override: str | None) -> Any:
    """The basic-auth and TLS guard of the web configuration file, or None without one."""
    path = override or cfg.server.web_config
    if path is None:
        return None
    from wasp.exporter.webauth import WebGuard
    from wasp.exporter.webconfig import WebConfigWatcher, load_web_config

    return WebGuard(WebConfigWatcher(load_web_config(path)),
                    unauthenticated=cfg.server.unauthenticated_paths)


def _check_roles(cfg: Any) -> tuple[list[str], dict[str, Exception]]:
    """The PostgreSQL targets whose role is a superuser, and why the others cannot be reached.

    The server reports ``is_superuser`` when the session starts, so this costs
    one connection per target and no statement, all targets at once (so N
    unreachable targets cost one connect timeout, not N). A target that cannot
    be reached is logged with libpq's whole reason (a certificate that does not
    match the host name, an unknown CA, a refused password).
    """
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    def check(t: Any) -> bool | Exception:
        try:
            with psycopg.connect(t.dsn(), connect_timeout=max(1, round(t.connect_timeout)),
                                 application_name="wasp") as conn:
                return conn.info.parameter_status("is_superuser") == "on"
        except psycopg.Error as e:
            return e

    targets = [t for t in cfg.targets if t.type == "postgres"]
    if not targets:
        return [], {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        results = list(pool.map(check, targets))
    out, unreachable = [], {}
    for t, r in zip(targets, results, strict=True):
        if isinstance(r, Exception):
            unreachable[t.name] = r
            reason = " ".join(line.strip() for line in str(r).splitlines() if line.strip())
            log.error("target %s: cannot connect: %s", t.name, reason or type(r).__name__)
        elif r:
            out.append(t.name)
    return out, unreachable


def _apply_shard(cfg: Any, shard_arg: str | None) -> Any:
    """`cfg` with the fleet section's shard (or --shard) applied to its targets."""
    from dataclasses import replace

    from wasp.config.fleet import FleetSettings, parse_shard
    from wasp.exporter.fleet import shard_config

    settings: FleetSettings = cfg.section("fleet") or FleetSettings()
    if shard_arg is not None:
        shard = parse_shard(shard_arg)
        if shard is None:
            raise ConfigError("--shard", None, "shard", "expected I/N with 0 <= I < N, e.g. 0/2")
        settings = replace(settings, shard=shard)
        sections = tuple((n, s) for n, s in cfg.sections if n != "fleet")
        cfg = replace(cfg, sections=(*sections, ("fleet", settings)))
    return shard_config(cfg, settings.shard)


def _fleet(cfg: Any) -> Any:
    """The engine for `cfg` and its fleet (probes, service discovery, connection budget)."""
    from wasp.config.fleet import FleetSettings
    from wasp.exporter.budget import ConnectionBudget
    from wasp.exporter.fleet import Fleet
    from wasp.packs import make_engine

    settings: FleetSettings = cfg.section("fleet") or FleetSettings()
    budget = ConnectionBudget(settings.max_connections) if settings.max_connections else None
    engine = make_engine(cfg, budget=budget)
    return Fleet(engine, settings, factory=make_engine, budget=budget)


async def _once(cfg: Any, unreachable: dict[str, Exception] | None = None) -> int:
    from wasp.exporter.db import ConnectError, connect_cause, first_line

    engine = _fleet(cfg).engine
    # the attempt that just failed counts as this round's one try of the target
    for name, e in (unreachable or {}).items():
        t = engine.targets.get(name)
        if t is not None and t.db is not None:
            t.failed(ConnectError(connect_cause(e), f"cannot connect to target {name!r}: "
                                               f"{first_line(e)}"),
                     one_round=True)
            t.checked_once = True
    try:
        rendered = await engine.run_once()
    finally:
        await engine.stop()
    sys.stdout.write(rendered.text.decode())
    failed = [s for s in engine.states.values() if s.runs and not s.last_ok]
    return EXIT_FAILED if failed else EXIT_OK


async def _serve(cfg: Any, guard: Any = None) -> int:
    from aiohttp import web

    from wasp.exporter.web import make_app

    fleet = _fleet(cfg)
    engine = fleet.engine
    app = make_app(engine, fleet, guard=guard)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tls = guard.watcher.tls_context() if guard is not None else None
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port, reuse_address=True,
                       ssl_context=tls)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", cfg.server.host, cfg.server.port, e.strerror or e)
        await runner.cleanup()
        return EXIT_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    await fleet.start()
    log.info("listening on %s://%s:%d/metrics%s", "https" if tls else "http", cfg.server.host,
             cfg.server.port, " (basic auth)" if guard and guard.watcher.config.users else "")
    await stop.wait()
    log.info("shutting down")
    await fleet.stop()
    await engine.stop()
    await runner.cleanup()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command not in ("exporter",):
        setup_logging(args.log_level or "info")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
