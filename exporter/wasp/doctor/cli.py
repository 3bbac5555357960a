"""Check a live cluster against the production-readiness list: a score, evidence, fixes.

Read-only: every statement runs in a read-only session with a timeout. Exit
codes: 0 when no check fails, 1 when one does (or the server is down), 2 for
bad usage or configuration. Without --config, the DSN comes from WASP_DSN.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from wasp.config.nodes import ConfigError
from wasp.config.schema import Config, load_config, parse_config
from wasp.doctor import Check, Setup, gather, run_checks
from wasp.doctor.options import parse_options, setup_for
from wasp.doctor.report import render_json, render_markdown, render_text
from wasp.exporter.db import TargetDB

__all__ = ["add_arguments", "examine", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The doctor's options."""
    p.add_argument("--config", "-c", metavar="FILE", default=None,
                   help="wasp YAML configuration (targets, backup:, packs.doctor.options); "
                   "without it, the DSN comes from WASP_DSN")
    p.add_argument("--target", metavar="NAME", default=None,
                   help="the postgres target to examine (default: the first one)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", const="json", dest="format",
                     help="print the report as JSON (schema: wasp/doctor/report.schema.json)")
    fmt.add_argument("--markdown", action="store_const", const="markdown", dest="format",
                     help="print the report as markdown")


def _config(args: argparse.Namespace) -> Config:
    if args.config is not None:
        return load_config(args.config)
    if not os.environ.get("WASP_DSN"):
        raise ConfigError("<command line>", None, "--config",
                          "give --config FILE or set WASP_DSN")
    return parse_config({"targets": {"main": {"dsn_env": "WASP_DSN", "packs": []}}},
                        "<WASP_DSN>")


async def examine(setup: Setup) -> tuple[list[Check], float]:
    """Gather the facts of `setup` and run every check; (checks, time)."""
    db = TargetDB(setup.target, setup.dsn, pool_max=1, application_name="wasp-doctor")
    await db.open()
    try:
        facts = await gather(db, setup)
    finally:
        await db.close()
    return run_checks(facts, setup), facts.now


def main(args: argparse.Namespace) -> int:
    """Run the doctor once and print the report."""
    cfg = _config(args)
    postgres = [t.name for t in cfg.targets if t.type == "postgres"]
    name = args.target or (postgres[0] if postgres else None)
    if name is None or name not in postgres:
        raise ConfigError(cfg.path, None, "--target",
                          f"no postgres target {name!r} (targets: {', '.join(postgres) or 'none'})")
    setup = setup_for(cfg, name, parse_options(cfg))
    checks, now = asyncio.run(examine(setup))
    render = {"json": render_json, "markdown": render_markdown}.get(args.format or "",
                                                                     render_text)
    sys.stdout.write(render(name, checks, now=now or time.time()))
    return 1 if any(c.status == "fail" for c in checks) else 0
