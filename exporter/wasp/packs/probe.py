"""The `probe` pack: database availability as the application sees it, good or bad.

Every few seconds the probe connects the way the application does (through
PgBouncer, with the application's DSN), runs ``SELECT 1`` and disconnects; a
probe that finishes within its timeout is good, anything else (refused,
authentication failed, pool exhausted, slow) is bad. The counts are counters,
the SLI of the database-availability SLO: ``rate(bad) / rate(all)`` over any
window. The probe does not use the engine's pool: a pooled session would not
see a pooler that refuses new clients, and a down primary must count as bad,
not pause the probe.

Options (``packs.probe.options``): ``dsn_env`` or ``dsn_file`` (the DSN is a
secret: never logged), ``interval`` (5s), ``timeout`` (2s). One postgres
target lists ``probe`` in its packs; its name is the ``target`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from wasp.config.nodes import ConfigError, Node
from wasp.config.schema import Config
from wasp.exporter.collector import CollectContext, Collector
from wasp.model import Family, MetricSpec

__all__ = ["METRICS", "ProbeCollector", "ProbeOptions", "build_collectors"]

log = logging.getLogger(__name__)

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("wasp_sli_db_probes_total", "counter", ("target", "result"),
               "Synthetic availability probes (connect through the application's path, "
               "SELECT 1) by result: good within the timeout, bad otherwise."),
    MetricSpec("wasp_sli_db_probe_duration_seconds", "gauge", ("target",),
               "How long the last availability probe took (connect, SELECT 1, disconnect)."),
)
KEYS = ("dsn_env", "dsn_file", "interval", "timeout")


@dataclass(frozen=True)
class ProbeOptions:
    """Where and how often to probe."""

    target: str
    dsn_env: str | None = None
    dsn_file: str | None = None
    interval: float = 5.0
    timeout: float = 2.0

    def dsn(self) -> str:
        """The application's DSN, read now (never logged)."""
        if self.dsn_env is not None:
            v = os.environ.get(self.dsn_env)
            if not v:
                raise ConfigError("<environment>", None, "packs.probe.options.dsn_env",
                                  f"environment variable {self.dsn_env} is not set")
            return v
        assert self.dsn_file is not None
        try:
            return Path(self.dsn_file).read_text().strip()
        except OSError as e:
            raise ConfigError(self.dsn_file, None, "packs.probe.options.dsn_file",
                              f"cannot read DSN file: {e.strerror or e}") from None


def parse_options(cfg: Config) -> ProbeOptions | None:
    """The probe's options, or None when no target runs the probe pack."""
    targets = [t.name for t in cfg.targets if "probe" in t.packs]
    if not targets:
        return None
    if len(targets) > 1:
        raise ConfigError(cfg.path, None, "targets",
                          f"only one target may run the probe pack, got {', '.join(targets)}")
    kw: dict[str, object] = {}
    for key, raw in dict(cfg.pack_settings("probe").options).items():
        node = Node(raw, cfg.path, f"packs.probe.options.{key}")
        if key not in KEYS:
            raise ConfigError(cfg.path, None, node.key,
                              f"unknown option; pack probe has: {', '.join(KEYS)}")
        kw[key] = node.duration(minimum=0.1) if key in ("interval", "timeout") else node.str()
    if ("dsn_env" in kw) == ("dsn_file" in kw):
        raise ConfigError(cfg.path, None, "packs.probe.options",
                          "give exactly one of dsn_env and dsn_file (the application's DSN, "
                          "through PgBouncer)")
    opts = ProbeOptions(target=targets[0], **kw)  # type: ignore[arg-type]
    if opts.timeout >= opts.interval:
        raise ConfigError(cfg.path, None, "packs.probe.options.timeout",
                          f"must be shorter than the interval ({opts.interval:g}s)")
    return opts


def build_collectors(cfg: Config) -> list[Collector]:
    """The probe collector, when a target runs the probe pack."""
    opts = parse_options(cfg)
    return [] if opts is None else [ProbeCollector(opts, opts.dsn())]


class ProbeCollector(Collector):
    """Connects, runs SELECT 1, disconnects; counts good and bad probes."""

    def __init__(self, options: ProbeOptions, dsn: str) -> None:
        self.options = options
        self.name = "availability_probe"
        self.target = None  # its own connection: the engine's pool and pings stay out of it
        self.interval = options.interval
        self.timeout = options.timeout + 1.0
        self._dsn = dsn
        self.good = 0
        self.bad = 0
        self.last_duration = 0.0
        self._failing: str | None = None

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """One probe; a failed probe is a bad count, not a failed round."""
        problem = await self._probe()
        if problem is None:
            self.good += 1
            if self._failing is not None:
                log.info("availability probe of %s good again", self.options.target)
        else:
            self.bad += 1
            if problem != self._failing:
                log.warning("availability probe of %s bad: %s", self.options.target, problem)
        self._failing = problem
        t = self.options.target
        return [
            METRICS[0].family([((t, "good"), float(self.good)), ((t, "bad"), float(self.bad))]),
            METRICS[1].family([((t,), self.last_duration)]),
        ]

    async def _probe(self) -> str | None:
        start = time.monotonic()
        conn: psycopg.AsyncConnection[object] | None = None
        try:
            async with asyncio.timeout(self.options.timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, application_name="wasp-probe",
                    connect_timeout=max(1, round(self.options.timeout)))
                cur = await conn.execute("SELECT 1")
                if await cur.fetchone() != (1,):
                    return "SELECT 1 did not return 1"
        except TimeoutError:
            return f"no answer within {self.options.timeout:g}s"
        except (psycopg.Error, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return first
        finally:
            self.last_duration = time.monotonic() - start
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        return None
