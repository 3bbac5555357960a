"""The `log` pack: security signals and statement latency from PostgreSQL's jsonlog.

Modules: ``parse`` (a line -> an event), ``follow`` (files, rotation,
truncation, read positions), ``metrics`` (bounded counters, the latency
histogram, saved state), ``collector`` (a round, the settings check) and
``cli`` (`wasp logtail`, the same collector beside the server). See
docs/log-pack.md.
"""

from __future__ import annotations

from wasp.config.log import LogSettings
from wasp.config.schema import Config, ConfigError
from wasp.exporter.collector import Collector
from wasp.packs.log.collector import LogCollector
from wasp.packs.log.metrics import METRICS

__all__ = ["METRICS", "LogCollector", "build_collectors"]


def build_collectors(cfg: Config) -> list[Collector]:
    """The log collector of the configuration's log: section."""
    settings: LogSettings | None = cfg.section("log")
    if settings is None:
        raise ConfigError(cfg.path, None, "log",
                          "the log pack needs a log: section (at least its directory)")
    dsn = None
    timeout = 5.0
    if settings.target is not None:
        t = cfg.target(settings.target)
        if t.type != "postgres":
            raise ConfigError(cfg.path, None, "log.target",
                              f"names target {t.name!r} of type {t.type}; a postgres target "
                              "is needed")
        dsn, timeout = t.dsn(), t.connect_timeout
    return [LogCollector(settings, dsn=dsn, connect_timeout=timeout)]
