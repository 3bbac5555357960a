"""Built-in YAML packs: their names, and loading one with the user's settings applied."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from typing import Any

from wasp.config.nodes import ConfigError, Node, load_yaml
from wasp.config.queries import parse_query
from wasp.config.types import PackSettings, QueryDef

__all__ = ["BUILTIN_PACKS", "PYTHON_PACK_NAMES", "YAML_PACKS", "load_pack", "pack_path"]

#: packs written as YAML query files inside the package (wasp/packs/<name>.yaml)
YAML_PACKS = ("app", "postgres", "replication")
#: packs implemented in Python (their collectors: wasp.packs.PYTHON_PACKS)
PYTHON_PACK_NAMES = ("pgbouncer", "backup", "replica", "log", "doctor", "probe")
BUILTIN_PACKS = YAML_PACKS + PYTHON_PACK_NAMES

PACK_KEYS = {"pack", "description", "options", "defaults", "queries"}


def pack_path(name: str) -> Any:
    """The packaged YAML file of a built-in pack."""
    return resources.files("wasp").joinpath(f"packs/{name}.yaml")


def load_pack(name: str, settings: PackSettings | None = None, *,
              text: str | None = None, file: str | None = None) -> list[QueryDef]:
    """Parse a YAML pack (built-in by name, or from `text`) with the user's settings applied."""
    settings = settings or PackSettings()
    if text is None:
        res = pack_path(name)
        text = res.read_text()
        file = file or f"<wasp pack {name}>"
    file = file or f"<pack {name}>"
    root = Node(load_yaml(text, file), file).mapping(PACK_KEYS, required={"queries"})
    declared: dict[str, Any] = {}
    if root.has("options"):
        for k, v in root.child("options").items():
            declared[k] = v.value
    user_opts = dict(settings.options)
    for k in user_opts:
        if k not in declared:
            raise ConfigError("<config>", None, f"packs.{name}.options.{k}",
                              f"unknown option; pack {name} has: {', '.join(sorted(declared)) or 'none'}")
    opts = {**declared, **user_opts}
    defaults: dict[str, Any] = {}
    if root.has("defaults"):
        dn = root.child("defaults").mapping({"interval", "timeout", "max_series"})
        if dn.has("interval"):
            defaults["interval"] = dn.child("interval").duration()
        if dn.has("timeout"):
            defaults["timeout"] = dn.child("timeout").duration()
        if dn.has("max_series"):
            defaults["max_series"] = dn.child("max_series").int(minimum=1)
    out = []
    overrides = dict(settings.overrides)
    for qname, qnode in root.child("queries").items():
        q = parse_query(qname, qnode, pack=name, options=opts, defaults=defaults)
        if qname in settings.disable:
            q = replace(q, enabled=False)
        if qname in overrides:
            q = replace(q, **dict(overrides[qname]))
            if q.timeout > q.interval:
                raise ConfigError("<config>", None, f"packs.{name}.override.{qname}.timeout",
                                  f"must not exceed the interval ({q.interval:g}s)")
        out.append(q)
    known = {q.name for q in out}
    for qname in [*settings.disable, *overrides]:
        if qname not in known:
            raise ConfigError("<config>", None, f"packs.{name}", f"names query {qname!r} that the pack does not have")
    return out
