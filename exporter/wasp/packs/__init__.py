"""Every built-in pack in one place.

YAML packs (``app``, ``postgres``, ``replication``) are query files beside this
module, loaded by the configuration layer. Python packs (``pgbouncer``,
``backup``, ``replica``, ``log``, ``doctor``, ``probe``) are modules here with a metric list and a collector
builder; ``PYTHON_PACKS`` is their typed registry, and ``make_engine`` builds an
engine with the collectors of every pack a configuration asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from wasp.config.schema import PYTHON_PACK_NAMES, YAML_PACKS, Config
from wasp.exporter.collector import Collector
from wasp.exporter.engine import Engine
from wasp.model import MetricSpec
from wasp.packs import backup, doctor, log, pgbouncer, probe, replica

__all__ = ["PYTHON_PACKS", "YAML_PACKS", "PythonPack", "make_engine", "pack_metrics",
           "python_collectors"]


class PythonPack(Protocol):
    """A pack written in Python: its metrics and the collectors a configuration needs."""

    @property
    def METRICS(self) -> Mapping[str, MetricSpec] | tuple[MetricSpec, ...]: ...

    def build_collectors(self, cfg: Config) -> list[Collector]: ...


PYTHON_PACKS: dict[str, PythonPack] = {
    "pgbouncer": pgbouncer,
    "backup": backup,
    "replica": replica,
    "log": log,
    "doctor": doctor,
    "probe": probe,
}
assert tuple(PYTHON_PACKS) == PYTHON_PACK_NAMES


def pack_metrics(pack: PythonPack) -> Iterable[MetricSpec]:
    """The metric specs a Python pack declares."""
    m = pack.METRICS
    return m.values() if isinstance(m, Mapping) else m


def python_collectors(cfg: Config) -> list[Collector]:
    """The collectors of every Python pack that `cfg` uses (by a target or a section)."""
    wanted = {p for t in cfg.targets for p in t.packs}
    out: list[Collector] = []
    for name, pack in PYTHON_PACKS.items():
        if name not in wanted and cfg.section(name) is None:
            continue
        if not cfg.pack_settings(name).enabled:
            continue
        out.extend(pack.build_collectors(cfg))
    return out


def make_engine(cfg: Config, **kw: Any) -> Engine:
    """An engine running the queries of `cfg` and the collectors of its Python packs."""
    names = {t.name for t in cfg.targets}
    # a shard's configuration keeps some targets only: their packs' collectors come along
    extra = [c for c in python_collectors(cfg) if c.target is None or c.target in names]
    return Engine(cfg, extra=extra, **kw)
