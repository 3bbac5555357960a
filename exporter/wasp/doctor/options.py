"""The doctor's options (packs.doctor.options) and the Setup they describe."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasp.config.backup import BackupSettings
from wasp.config.nodes import ConfigError, Node
from wasp.config.schema import Config
from wasp.doctor.gather import Setup

__all__ = ["DoctorOptions", "parse_options", "parse_size", "setup_for"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
              "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
KEYS = ("interval", "timeout", "app_role", "memory", "min_replicas", "pgbouncer_target")


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """How the doctor runs (CLI and pack)."""

    interval: float = 300.0
    timeout: float = 10.0
    app_role: str | None = None
    memory_bytes: float | None = None
    min_replicas: int = 1
    pgbouncer_target: str | None = None


def parse_size(node: Node) -> float:
    """Bytes from an integer or a string such as 16GiB or 512MB."""
    v = node.value
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return float(v)
    m = _SIZE_RE.match(str(v)) if isinstance(v, str) else None
    if m is None:
        node.error(f"expected a size such as 16GiB, 512MB or bytes, got {v!r}")
    return float(m.group(1)) * _SIZE_UNIT[(m.group(2) or "b").lower()]


def parse_options(cfg: Config) -> DoctorOptions:
    """Validate packs.doctor.options (unknown keys and bad values are ConfigErrors)."""
    raw = dict(cfg.pack_settings("doctor").options)
    kw: dict[str, Any] = {}
    for key, value in raw.items():
        node = Node(value, cfg.path, f"packs.doctor.options.{key}")
        if key not in KEYS:
            raise ConfigError(cfg.path, None, node.key,
                              f"unknown option; pack doctor has: {', '.join(sorted(KEYS))}")
        if key in ("interval", "timeout"):
            kw[key] = node.duration(minimum=1.0)
        elif key == "memory":
            kw["memory_bytes"] = parse_size(node)
        elif key == "min_replicas":
            kw[key] = node.int(minimum=0)
        else:
            kw[key] = node.str()
    opts = DoctorOptions(**kw)
    if opts.timeout > opts.interval:
        raise ConfigError(cfg.path, None, "packs.doctor.options.timeout",
                          f"must not exceed the interval ({opts.interval:g}s)")
    if opts.pgbouncer_target is not None:
        names = [t.name for t in cfg.targets if t.type == "pgbouncer"]
        if opts.pgbouncer_target not in names:
            raise ConfigError(cfg.path, None, "packs.doctor.options.pgbouncer_target",
                              f"no pgbouncer target named {opts.pgbouncer_target!r}"
                              f" (pgbouncer targets: {', '.join(names) or 'none'})")
    return opts


def setup_for(cfg: Config, target: str, opts: DoctorOptions) -> Setup:
    """The Setup of one postgres target: its pooler, its backup section, the options."""
    t = cfg.target(target)
    bouncers = [b for b in cfg.targets if b.type == "pgbouncer"]
    bouncer = next((b for b in bouncers if b.name == opts.pgbouncer_target), None) or (
        bouncers[0] if bouncers else None)
    backup: BackupSettings | None = cfg.section("backup")
    if backup is not None and backup.target not in (None, target):
        backup = None
    return Setup(target=target, dsn=t.dsn(),
                 pgbouncer_dsn=bouncer.dsn() if bouncer is not None else None,
                 backup=backup, status_dir=Path(cfg.server.status_dir),
                 app_role=opts.app_role, memory_bytes=opts.memory_bytes,
                 min_replicas=opts.min_replicas, timeout=opts.timeout)
