"""Configuration: YAML -> validated, frozen objects.

Two layers: fields are checked while parsing (types, ranges, unknown keys),
then references between sections (targets named by queries, packs named by
targets, one definition per metric name). Every error is a ConfigError that
names the file, the line and the dotted key.

This module reads the whole file; the objects live in `types`, query
definitions in `queries`, the built-in YAML packs in `packs`, and the
companions' sections in `backup` and `replica`. Their public names are
re-exported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from wasp.config import backup as backup_section
from wasp.config import fleet as fleet_section
from wasp.config import log as log_section
from wasp.config import replica as replica_section
from wasp.config.nodes import ConfigError, Node, load_yaml_file
from wasp.config.packs import BUILTIN_PACKS, PYTHON_PACK_NAMES, YAML_PACKS, load_pack, pack_path
from wasp.config.queries import parse_query
from wasp.config.types import (
    DEFAULT_TARGET_PACKS,
    LOG_FORMATS,
    LOG_LEVELS,
    TARGET_TYPES,
    Config,
    PackSettings,
    QueryDef,
    Requires,
    Role,
    ServerConfig,
    TargetConfig,
    ValueDef,
    WindowDef,
)

__all__ = [
    "BUILTIN_PACKS",
    "DEFAULT_TARGET_PACKS",
    "PYTHON_PACK_NAMES",
    "YAML_PACKS",
    "Config",
    "ConfigError",
    "PackSettings",
    "QueryDef",
    "Requires",
    "Role",
    "ServerConfig",
    "TargetConfig",
    "ValueDef",
    "WindowDef",
    "load_config",
    "load_pack",
    "pack_path",
    "parse_config",
    "parse_listen",
    "parse_query",
]

TARGET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: top-level sections of the companions and their packs: name -> parser
SECTIONS: dict[str, Callable[[Node], Any]] = {
    "backup": backup_section.parse_section,
    "replica": replica_section.parse_section,
    "fleet": fleet_section.parse_section,
    "log": log_section.parse_section,
}

TOP_KEYS = {"server", "targets", "packs", "queries", *SECTIONS}
SERVER_KEYS = {"listen", "stale_after", "status_dir", "log_level", "log_format",
               "max_concurrent_queries", "web_config", "unauthenticated_paths"}
#: paths that server.unauthenticated_paths may open to probes
EXEMPTABLE_PATHS = ("/healthz", "/readyz")
TARGET_KEYS = {"type", "dsn_env", "dsn_file", "dsn", "packs", "pool_max", "connect_timeout",
               "labels", "password_file"}
PACK_SETTINGS_KEYS = {"enabled", "options", "disable", "override"}
OVERRIDE_KEYS = {"interval", "timeout", "max_series", "enabled"}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a configuration file."""
    return parse_config(load_yaml_file(path), str(path))


def parse_config(data: Any, file: str = "<config>") -> Config:
    """Validate parsed YAML into a Config."""
    root = Node(data, file).mapping(TOP_KEYS)
    server = _parse_server(root.child("server"))
    targets = _parse_targets(root.child("targets"))
    packs = _parse_pack_settings(root.child("packs"))
    queries: list[QueryDef] = []
    used_packs = {p for t in targets for p in t.packs}
    for pname in YAML_PACKS:
        ps = packs.get(pname, PackSettings())
        if not ps.enabled or pname not in used_packs:
            continue
        try:
            queries.extend(load_pack(pname, ps))
        except ConfigError as e:
            if e.file == "<config>":
                pnode = root.child("packs").child(pname)
                raise ConfigError(file, pnode.line, e.key, e.message) from None
            raise
    user_q = root.child("queries")
    for qname, qnode in user_q.items():
        if any(q.name == qname for q in queries):
            qnode.error(f"a query named {qname!r} already exists in a built-in pack; "
                        "choose another name or disable the pack's query")
        queries.append(parse_query(qname, qnode, pack=None, options={}))
    sections: list[tuple[str, Any]] = []
    for sname, parse in SECTIONS.items():
        if root.has(sname):
            sections.append((sname, parse(root.child(sname))))
    cfg = Config(path=file, server=server, targets=targets, queries=tuple(queries),
                 packs=tuple(sorted(packs.items())), sections=tuple(sections))
    _check_references(cfg, root)
    return cfg


def _parse_server(node: Node) -> ServerConfig:
    node.mapping(SERVER_KEYS)
    host, port = "0.0.0.0", 9645
    if node.has("listen"):
        host, port = parse_listen(node.child("listen"))
    return ServerConfig(
        host=host,
        port=port,
        stale_after=node.child("stale_after").duration(300.0, minimum=1.0),
        status_dir=node.child("status_dir").str(os.environ.get("WASP_STATUS_DIR", "/var/lib/wasp/status")),
        log_level=node.child("log_level").choice(LOG_LEVELS, "info"),
        log_format=node.child("log_format").choice(LOG_FORMATS, "text"),
        max_concurrent_queries=node.child("max_concurrent_queries").int(4, minimum=1, maximum=64),
        web_config=_relative(node.child("web_config")),
        unauthenticated_paths=tuple(
            p.choice(EXEMPTABLE_PATHS) for p in node.child("unauthenticated_paths").sequence()),
    )


def _relative(node: Node) -> str | None:
    """A path option: relative paths are taken from the configuration file's folder."""
    text = node.opt_str()
    if text is None or os.path.isabs(text) or node.file.startswith("<"):
        return text
    return os.path.join(os.path.dirname(os.path.abspath(node.file)), text)


def parse_listen(node: Node) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or '[::1]:PORT'."""
    text = node.str()
    host, sep, port_s = text.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        node.error(f"must be HOST:PORT (e.g. 0.0.0.0:9645), got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_s)


def _parse_targets(node: Node) -> tuple[TargetConfig, ...]:
    if node.is_missing():
        node.error("at least one target is required")
    out = []
    for name, t in node.items():
        if not TARGET_RE.match(name):
            t.error("target names may hold letters, digits, '_', '.', '-'")
        t.mapping(TARGET_KEYS)
        given = [k for k in ("dsn_env", "dsn_file", "dsn") if t.has(k)]
        if len(given) != 1:
            t.error("give exactly one of dsn_env (an environment variable), dsn_file or dsn")
        type_ = t.child("type").choice(TARGET_TYPES, "postgres")
        default_packs = DEFAULT_TARGET_PACKS if type_ == "postgres" else ("pgbouncer",)
        packs = t.child("packs").str_list(default_packs)
        for i, p in enumerate(packs):
            if p not in BUILTIN_PACKS:
                t.child("packs").sequence()[i].error(
                    f"unknown pack {p!r}; built-in packs are: {', '.join(BUILTIN_PACKS)}")
        labels = tuple(sorted(t.child("labels").str_map().items())) if t.has("labels") else ()
        out.append(TargetConfig(
            name=name,
            type=type_,
            dsn_env=t.child("dsn_env").opt_str(),
            dsn_file=t.child("dsn_file").opt_str(),
            dsn_inline=t.child("dsn").opt_str(),
            packs=packs,
            pool_max=t.child("pool_max").int(2, minimum=1, maximum=20),
            connect_timeout=t.child("connect_timeout").duration(5.0, minimum=0.5),
            labels=labels,
            password_file=_relative(t.child("password_file")),
        ))
    if not out:
        node.error("at least one target is required")
    return tuple(out)


def _parse_pack_settings(node: Node) -> dict[str, PackSettings]:
    out: dict[str, PackSettings] = {}
    for name, p in node.items():
        if name not in BUILTIN_PACKS:
            p.error(f"unknown pack; built-in packs are: {', '.join(BUILTIN_PACKS)}")
        p.mapping(PACK_SETTINGS_KEYS)
        overrides = []
        for qname, o in p.child("override").items():
            o.mapping(OVERRIDE_KEYS)
            ov: dict[str, Any] = {}
            if o.has("interval"):
                ov["interval"] = o.child("interval").duration(minimum=1.0)
            if o.has("timeout"):
                ov["timeout"] = o.child("timeout").duration(minimum=0.1)
            if o.has("max_series"):
                ov["max_series"] = o.child("max_series").int(minimum=1)
            if o.has("enabled"):
                ov["enabled"] = o.child("enabled").bool()
            overrides.append((qname, tuple(sorted(ov.items()))))
        opts = tuple(sorted((k, v.value) for k, v in p.child("options").items()))
        out[name] = PackSettings(
            enabled=p.child("enabled").bool(True),
            options=opts,
            disable=p.child("disable").str_list(),
            overrides=tuple(overrides),
        )
    return out


def _check_references(cfg: Config, root: Node) -> None:
    target_names = {t.name for t in cfg.targets}
    for sname, section in cfg.sections:
        ref = getattr(section, "target", None)
        if isinstance(ref, str) and ref not in target_names:
            root.child(sname).child("target").error(
                f"names target {ref!r}, which is not defined (targets: {', '.join(sorted(target_names))})")
    metrics: dict[str, tuple[ValueDef, QueryDef]] = {}
    for q in cfg.queries:
        where = root.child("queries").child(q.name) if q.pack is None else None
        if q.targets is not None:
            for t in q.targets:
                if t not in target_names:
                    (where.child("targets") if where else root).error(
                        f"names target {t!r}, which is not defined")
        for v in q.values:
            labelset = tuple(sorted((*q.labels, *(k for k, _ in v.const_labels))))
            prev = metrics.get(v.metric)
            if prev is None:
                metrics[v.metric] = (v, q)
                continue
            pv, pq = prev
            plabels = tuple(sorted((*pq.labels, *(k for k, _ in pv.const_labels))))
            if pv.type != v.type or plabels != labelset:
                msg = (f"metric {v.metric!r} is also defined by query {pq.name!r} ({pq.source}) "
                       f"with type {pv.type} and labels {list(plabels)}; one metric name needs one "
                       "type and one label set")
                if where is not None:
                    where.child("values").error(msg)
                raise ConfigError(q.source.rsplit(":", 1)[0], None, f"queries.{q.name}.values", msg)
