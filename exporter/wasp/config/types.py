"""The frozen objects a configuration parses into, and the choices its keys allow.

Every closed set of strings is a `Literal` with the tuple of its values beside
it (for the validator: `Node.choice(ROLES)` returns a `Role`), so mypy checks
each use and the error message lists exactly what the type allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from wasp.config.events import EventsDef
from wasp.config.nodes import ConfigError
from wasp.config.top import TopDef
from wasp.model import METRIC_TYPES, MetricType

__all__ = [
    "DEFAULT_TARGET_PACKS",
    "DIRECTIONS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "METRIC_TYPES",
    "ROLES",
    "TARGET_TYPES",
    "Config",
    "Direction",
    "LogFormat",
    "LogLevel",
    "MetricType",
    "PackSettings",
    "QueryDef",
    "Requires",
    "Role",
    "ServerConfig",
    "TargetConfig",
    "TargetType",
    "ValueDef",
    "WindowDef",
]

Role = Literal["any", "primary", "standby"]
ROLES: tuple[Role, ...] = get_args(Role)
Direction = Literal["past", "future"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
TargetType = Literal["postgres", "pgbouncer"]
TARGET_TYPES: tuple[TargetType, ...] = get_args(TargetType)
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)

#: packs a postgres target runs when it does not say
DEFAULT_TARGET_PACKS = ("app", "postgres", "replication")


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
    direction: Direction = "past"


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
    #: rows counted once into counters when they settle (wasp.config.events)
    events: EventsDef | None = None
    #: a stable top N of the rows (one per entity) get series; see config/top.py
    top: TopDef | None = None
    #: target names; None = every postgres target that runs this query's pack
    targets: tuple[str, ...] | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """A database (or PgBouncer console) to watch. The DSN is a secret: never logged."""

    name: str
    type: TargetType
    dsn_env: str | None = None
    dsn_file: str | None = None
    dsn_inline: str | None = field(default=None, repr=False)
    packs: tuple[str, ...] = DEFAULT_TARGET_PACKS
    pool_max: int = 2
    connect_timeout: float = 5.0
    labels: tuple[tuple[str, str], ...] = ()
    #: a file holding only the password (a Docker secret), added to the DSN
    password_file: str | None = None

    def dsn(self) -> str:
        """Resolve the DSN now (env variable or file), with the password of password_file."""
        dsn = self._base_dsn()
        if self.password_file is None:
            return dsn
        try:
            password = Path(self.password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(self.password_file, None, f"targets.{self.name}.password_file",
                              f"cannot read the password file: {e.strerror or e}") from None
        if not password:
            raise ConfigError(self.password_file, None, f"targets.{self.name}.password_file",
                              "the password file is empty")
        from psycopg.conninfo import make_conninfo  # quotes it, for key=value and URL DSNs

        return make_conninfo(dsn, password=password)

    def _base_dsn(self) -> str:
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
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    max_concurrent_queries: int = 4
    #: the exporter-toolkit web configuration file (TLS, basic auth, headers)
    web_config: str | None = None
    #: paths served without basic auth (liveness and readiness probes)
    unauthenticated_paths: tuple[str, ...] = ()


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
