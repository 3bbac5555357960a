"""Configuration: YAML -> validated, frozen objects.

Two layers: fields are checked while parsing (types, ranges, unknown keys),
then references between sections (targets named by queries, packs named by
targets, one definition per metric name). Every error is a ConfigError that
names the file, the line and the dotted key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from wasp.config import backup as backup_section
from wasp.config import fleet as fleet_section
from wasp.config import replica as replica_section
from wasp.config.nodes import ConfigError, Node, load_yaml, load_yaml_file
from wasp.model import LABEL_NAME_RE, MetricType, check_metric_name

__all__ = [
    "BUILTIN_PACKS",
    "Config",
    "ConfigError",
    "PackSettings",
    "QueryDef",
    "Requires",
    "ServerConfig",
    "TargetConfig",
    "ValueDef",
    "WindowDef",
    "load_config",
    "load_pack",
    "parse_config",
]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TARGET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OPTION_RE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")

#: packs written as YAML query files inside the package (wasp/packs/<name>.yaml)
YAML_PACKS = ("app", "postgres", "replication")
#: packs implemented in Python (their collectors: wasp.packs.PYTHON_PACKS)
PYTHON_PACK_NAMES = ("pgbouncer", "backup", "replica")
BUILTIN_PACKS = YAML_PACKS + PYTHON_PACK_NAMES
#: packs a postgres target runs when it does not say
DEFAULT_TARGET_PACKS = ("app", "postgres", "replication")
#: top-level sections of the companions and their packs: name -> parser
SECTIONS: dict[str, Callable[[Node], Any]] = {
    "backup": backup_section.parse_section,
    "replica": replica_section.parse_section,
    "fleet": fleet_section.parse_section,
}

Role = Literal["any", "primary", "standby"]


@dataclass(frozen=True, slots=True)
class ValueDef:
    """One value column of a query and the metric it feeds."""

    column: str
    metric: str
    type: MetricType
    help: str
    unit: str | None = None
    const_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class WindowDef:
    """The structured form of a time-window query (for incremental evaluation).

    ``direction: past`` (the default) is a trailing window, rows with
    ``time > now - length``; ``future`` a window ahead, rows with
    ``now <= time < now + length`` (bookings starting in the next 24 h).
    """

    table: str
    time_column: str
    length: float
    where: str | None
    group_by: tuple[tuple[str, str], ...]
    aggregates: tuple[tuple[str, str], ...]
    #: rows may change their group or values for this long after insert (0 never, None any time)
    changes_after_insert: float | None
    updated_column: str | None = None
    #: a column that identifies a row (for moving a changed row between groups)
    key_column: str = "id"
    #: rows may be committed this long after their time stamp (slow transactions)
    late_commit: float = 60.0
    #: never incremental: evaluate the whole window every time
    incremental: bool = True
    #: past: time > now - length; future: now <= time < now + length
    direction: str = "past"


@dataclass(frozen=True, slots=True)
class Requires:
    """Conditions checked against each target; an unmet one disables the query there."""

    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    min_server_version: int = 0
    superuser: bool = False

    def __bool__(self) -> bool:
        return bool(self.tables or self.columns or self.extensions or self.min_server_version
                    or self.superuser)


@dataclass(frozen=True, slots=True)
class QueryDef:
    """A query: SQL, how its rows become metrics, and how often it runs."""

    name: str
    sql: str
    labels: tuple[str, ...]
    values: tuple[ValueDef, ...]
    interval: float = 60.0
    timeout: float = 10.0
    max_series: int = 1000
    enabled: bool = True
    role: Role = "any"
    pack: str | None = None
    help: str = ""
    requires: Requires = field(default_factory=Requires)
    window: WindowDef | None = None
    #: target names; None = every postgres target that runs this query's pack
    targets: tuple[str, ...] | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """A database (or PgBouncer console) to watch. The DSN is a secret: never logged."""

    name: str
    type: Literal["postgres", "pgbouncer"]
    dsn_env: str | None = None
    dsn_file: str | None = None
    dsn_inline: str | None = field(default=None, repr=False)
    packs: tuple[str, ...] = DEFAULT_TARGET_PACKS
    pool_max: int = 2
    connect_timeout: float = 5.0
    labels: tuple[tuple[str, str], ...] = ()

    def dsn(self) -> str:
        """Resolve the DSN now (env variable or file)."""
        if self.dsn_inline is not None:
            return self.dsn_inline
        if self.dsn_env is not None:
            v = os.environ.get(self.dsn_env)
            if not v:
                raise ConfigError("<environment>", None, f"targets.{self.name}.dsn_env",
                                  f"environment variable {self.dsn_env} is not set")
            return v
        assert self.dsn_file is not None
        try:
            return Path(self.dsn_file).read_text().strip()
        except OSError as e:
            raise ConfigError(self.dsn_file, None, f"targets.{self.name}.dsn_file",
                              f"cannot read DSN file: {e.strerror or e}") from None


@dataclass(frozen=True, slots=True)
class PackSettings:
    """How the user tuned one built-in pack."""

    enabled: bool = True
    options: tuple[tuple[str, Any], ...] = ()
    disable: tuple[str, ...] = ()
    overrides: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP server and engine-wide settings."""

    host: str = "0.0.0.0"
    port: int = 9645
    stale_after: float = 300.0
    status_dir: str = "/var/lib/wasp/status"
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    max_concurrent_queries: int = 4


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    path: str
    server: ServerConfig
    targets: tuple[TargetConfig, ...]
    queries: tuple[QueryDef, ...]
    packs: tuple[tuple[str, PackSettings], ...] = ()
    sections: tuple[tuple[str, Any], ...] = ()

    def target(self, name: str) -> TargetConfig:
        """The target named `name`."""
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def section(self, name: str) -> Any:
        """A companion's parsed section, or None."""
        return dict(self.sections).get(name)

    def pack_settings(self, name: str) -> PackSettings:
        """Settings of one pack (defaults when not configured)."""
        return dict(self.packs).get(name, PackSettings())

    def queries_for(self, target: TargetConfig) -> list[QueryDef]:
        """The enabled queries that run against `target`."""
        out = []
        for q in self.queries:
            if not q.enabled:
                continue
            if q.targets is not None:
                if target.name in q.targets:
                    out.append(q)
            elif (q.pack is not None and q.pack in target.packs and target.type == "postgres") or (q.pack is None and target.type == "postgres"):
                out.append(q)
        return out


# ---------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------
QUERY_KEYS = {
    "sql", "labels", "values", "interval", "timeout", "max_series", "enabled", "role",
    "help", "requires", "window", "targets",
}
VALUE_KEYS = {"column", "metric", "type", "help", "unit", "const_labels"}
WINDOW_KEYS = {"table", "time_column", "length", "where", "group_by", "aggregates",
               "changes_after_insert", "updated_column", "key_column", "late_commit",
               "incremental", "direction"}
REQUIRES_KEYS = {"tables", "columns", "extensions", "min_server_version", "superuser"}


def parse_query(name: str, node: Node, *, pack: str | None, options: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> QueryDef:
    """Parse one query definition (pack or user)."""
    if not NAME_RE.match(name):
        node.error("query names must match [a-z][a-z0-9_]*")
    node.mapping(QUERY_KEYS, required={"sql", "values"})
    d = defaults or {}
    sql = _substitute(node.child("sql"), options)
    labels = node.child("labels").str_list()
    for i, lab in enumerate(labels):
        if not LABEL_NAME_RE.match(lab) or lab.startswith("__"):
            node.child("labels").sequence()[i].error(f"{lab!r} is not a valid label name")
    if len(set(labels)) != len(labels):
        node.child("labels").error("label names must be unique")
    values_node = node.child("values")
    values = tuple(_parse_value(v, labels) for v in values_node.sequence())
    if not values:
        values_node.error("must list at least one value column")
    cols = [v.column for v in values]
    for col in cols:
        if col in labels:
            values_node.error(f"column {col!r} is both a label and a value")
    interval = node.child("interval").duration(d.get("interval", 60.0), minimum=1.0)
    timeout = node.child("timeout").duration(d.get("timeout", min(10.0, interval)), minimum=0.1)
    if timeout > interval:
        node.child("timeout").error(f"must not exceed the interval ({interval:g}s)")
    role_node = node.child("role")
    role: Role = role_node.str("any", choices=("any", "primary", "standby"))  # type: ignore[assignment]
    window = None
    if node.has("window"):
        wnode = node.child("window")
        window = _parse_window(wnode, options)
        if {k for k, _ in window.group_by} != set(labels):
            wnode.child("group_by").error(
                f"must group by exactly the query's labels {list(labels)}, "
                f"got {[k for k, _ in window.group_by]}")
        agg_cols = {k for k, _ in window.aggregates}
        for v in values:
            if v.column not in agg_cols:
                wnode.child("aggregates").error(f"has no aggregate for value column {v.column!r}")
    targets = None
    if node.has("targets"):
        targets = node.child("targets").str_list()
    return QueryDef(
        name=name,
        sql=sql,
        labels=labels,
        values=values,
        interval=interval,
        timeout=timeout,
        max_series=node.child("max_series").int(d.get("max_series", 1000), minimum=1),
        enabled=node.child("enabled").bool(True),
        role=role,
        pack=pack,
        help=node.child("help").str(""),
        requires=_parse_requires(node.child("requires")),
        window=window,
        targets=targets,
        source=f"{node.file}:{node.line}",
    )


def _parse_value(node: Node, labels: tuple[str, ...]) -> ValueDef:
    node.mapping(VALUE_KEYS, required={"column", "metric", "type", "help"})
    type_ = node.child("type").str(choices=("gauge", "counter"))
    metric = node.child("metric").str()
    unit = node.child("unit").opt_str()
    problem = check_metric_name(metric, type_, unit)  # type: ignore[arg-type]
    if problem:
        node.child("metric").error(problem)
    const: tuple[tuple[str, str], ...] = ()
    if node.has("const_labels"):
        cl = node.child("const_labels").str_map()
        for k in cl:
            if not LABEL_NAME_RE.match(k):
                node.child("const_labels").child(k).error("not a valid label name")
            if k in labels:
                node.child("const_labels").child(k).error("also a label column")
        const = tuple(sorted(cl.items()))
    return ValueDef(
        column=node.child("column").str(),
        metric=metric,
        type=type_,  # type: ignore[arg-type]
        help=node.child("help").str(),
        unit=unit,
        const_labels=const,
    )


def _parse_window(node: Node, options: Mapping[str, Any]) -> WindowDef:
    # changes_after_insert is required: 0 = rows never change, null = they may change any time
    node.mapping(WINDOW_KEYS, required={"table", "time_column", "length", "aggregates",
                                        "changes_after_insert"})
    cai = node.child("changes_after_insert")
    changes: float | None = None if cai.is_missing() else cai.duration()
    where = node.child("where")
    return WindowDef(
        table=node.child("table").str(),
        time_column=node.child("time_column").str(),
        length=node.child("length").duration(minimum=1.0),
        where=None if where.is_missing() else _substitute(where, options),
        group_by=tuple(node.child("group_by").str_map().items()) if node.has("group_by") else (),
        aggregates=tuple(node.child("aggregates").str_map().items()),
        changes_after_insert=changes,
        updated_column=node.child("updated_column").opt_str(),
        key_column=node.child("key_column").str("id"),
        late_commit=node.child("late_commit").duration(60.0),
        incremental=node.child("incremental").bool(True),
        direction=node.child("direction").str("past", choices=("past", "future")),
    )


def _parse_requires(node: Node) -> Requires:
    if node.is_missing():
        return Requires()
    node.mapping(REQUIRES_KEYS)
    cols = node.child("columns").str_list()
    for i, c in enumerate(cols):
        if c.count(".") != 1:
            node.child("columns").sequence()[i].error("must be table.column")
    return Requires(
        tables=node.child("tables").str_list(),
        columns=cols,
        extensions=node.child("extensions").str_list(),
        min_server_version=node.child("min_server_version").int(0, minimum=0),
        superuser=node.child("superuser").bool(False),
    )


def _substitute(node: Node, options: Mapping[str, Any]) -> str:
    text = node.str()

    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in options:
            node.error(f"uses option {{{{{key}}}}} that its pack does not define")
        return str(options[key])

    return OPTION_RE.sub(repl, text)


# ---------------------------------------------------------------------------
# packs
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# the whole file
# ---------------------------------------------------------------------------
TOP_KEYS = {"server", "targets", "packs", "queries", *SECTIONS}
SERVER_KEYS = {"listen", "stale_after", "status_dir", "log_level", "log_format",
               "max_concurrent_queries"}
TARGET_KEYS = {"type", "dsn_env", "dsn_file", "dsn", "packs", "pool_max", "connect_timeout",
               "labels"}
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
    lvl = node.child("log_level").str("info", choices=("debug", "info", "warning", "error"))
    return ServerConfig(
        host=host,
        port=port,
        stale_after=node.child("stale_after").duration(300.0, minimum=1.0),
        status_dir=node.child("status_dir").str(os.environ.get("WASP_STATUS_DIR", "/var/lib/wasp/status")),
        log_level=lvl,
        log_format=node.child("log_format").str("text", choices=("text", "json")),  # type: ignore[arg-type]
        max_concurrent_queries=node.child("max_concurrent_queries").int(4, minimum=1, maximum=64),
    )


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
        type_ = t.child("type").str("postgres", choices=("postgres", "pgbouncer"))
        default_packs = DEFAULT_TARGET_PACKS if type_ == "postgres" else ("pgbouncer",)
        packs = t.child("packs").str_list(default_packs)
        for i, p in enumerate(packs):
            if p not in BUILTIN_PACKS:
                t.child("packs").sequence()[i].error(
                    f"unknown pack {p!r}; built-in packs are: {', '.join(BUILTIN_PACKS)}")
        labels = tuple(sorted(t.child("labels").str_map().items())) if t.has("labels") else ()
        out.append(TargetConfig(
            name=name,
            type=type_,  # type: ignore[arg-type]
            dsn_env=t.child("dsn_env").opt_str(),
            dsn_file=t.child("dsn_file").opt_str(),
            dsn_inline=t.child("dsn").opt_str(),
            packs=packs,
            pool_max=t.child("pool_max").int(2, minimum=1, maximum=20),
            connect_timeout=t.child("connect_timeout").duration(5.0, minimum=0.5),
            labels=labels,
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
