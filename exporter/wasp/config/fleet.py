"""The fleet: section: sharding, a connection budget, probes and their auth modules.

```yaml
fleet:
  shard: 0/2                 # collect only targets whose hashmod(name, 2) is 0 (or --shard)
  max_connections: 40        # database connections open at once, all targets together
  probe_idle: 10m            # a probed target nobody asked for this long is dropped
  auth_modules:
    salon_shards:            # /probe?target=db7.internal:5432/app&auth_module=salon_shards
      user: wasp_monitor
      password_env: WASP_SHARD_PASSWORD     # or password_file
      allowed_hosts: '^db[0-9]+\\.internal$'
      allowed_databases: '^(app|app_eu)$'
      allowed_ports: [5432, 6432]
      packs: [app, postgres]
      options: {sslmode: verify-full, sslrootcert: /etc/wasp/ca.pem}
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from wasp.config.nodes import ConfigError, Node

__all__ = ["AuthModule", "FleetSettings", "Shard", "parse_section", "parse_shard"]

SECTION_KEYS = {"shard", "max_connections", "probe_idle", "auth_modules"}
MODULE_KEYS = {"user", "password_env", "password_file", "allowed_hosts", "allowed_databases",
               "allowed_ports", "packs", "options", "pool_max", "connect_timeout"}
#: libpq options an auth module may set (anything else could redirect the connection)
MODULE_OPTIONS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout",
                  "target_session_attrs", "gssencmode"}
SHARD_RE = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    """This exporter's share of the fleet: targets whose hashmod(name, count) is index."""

    index: int
    count: int


def parse_shard(text: str) -> Shard | None:
    """`I/N` -> Shard (None when malformed or I >= N)."""
    m = SHARD_RE.match(text.strip())
    if not m:
        return None
    i, n = int(m.group(1)), int(m.group(2))
    return Shard(i, n) if n >= 1 and 0 <= i < n else None


@dataclass(frozen=True, slots=True)
class AuthModule:
    """Credentials for targets named by a probe, and where they may point."""

    name: str
    user: str
    password_env: str | None = None
    password_file: str | None = field(default=None)
    allowed_hosts: re.Pattern[str] = re.compile(r"^$")
    allowed_databases: re.Pattern[str] = re.compile(r"^$")
    allowed_ports: tuple[int, ...] = (5432,)
    packs: tuple[str, ...] = ("app", "postgres", "replication")
    options: tuple[tuple[str, str], ...] = ()
    pool_max: int = 1
    connect_timeout: float = 5.0

    def password(self) -> str | None:
        """Resolve the password now (environment or file); never logged."""
        if self.password_env:
            v = os.environ.get(self.password_env)
            if v is None:
                raise ConfigError("<environment>", None, f"fleet.auth_modules.{self.name}",
                                  f"environment variable {self.password_env} is not set")
            return v
        if self.password_file:
            try:
                return Path(self.password_file).read_text().strip()
            except OSError as e:
                raise ConfigError(self.password_file, None, f"fleet.auth_modules.{self.name}",
                                  f"cannot read password file: {e.strerror or e}") from None
        return None


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """The validated fleet: section."""

    shard: Shard | None = None
    max_connections: int | None = None
    probe_idle: float = 600.0
    auth_modules: tuple[AuthModule, ...] = ()

    def auth_module(self, name: str) -> AuthModule | None:
        """The auth module called `name`."""
        return next((m for m in self.auth_modules if m.name == name), None)


def _pattern(node: Node) -> re.Pattern[str]:
    text = node.str()
    if not (text.startswith("^") and text.endswith("$")):
        node.error("anchor the pattern with ^ and $ so it matches whole names")
    try:
        return re.compile(text)
    except re.error as e:
        node.error(f"not a regular expression: {e}")


def parse_section(node: Node) -> FleetSettings:
    """Validate the fleet: section (errors name file:line and the dotted key)."""
    node.mapping(SECTION_KEYS)
    shard = None
    if node.has("shard"):
        s = node.child("shard")
        shard = parse_shard(s.str())
        if shard is None:
            s.error("expected I/N with 0 <= I < N, e.g. 0/2")
    budget = node.child("max_connections").int(minimum=1) if node.has("max_connections") else None
    modules = []
    for name, m in node.child("auth_modules").items():
        m.mapping(MODULE_KEYS, required={"user", "allowed_hosts", "allowed_databases"})
        if m.has("password_env") and m.has("password_file"):
            m.error("give password_env or password_file, not both")
        options = m.child("options").str_map() if m.has("options") else {}
        for k in options:
            if k not in MODULE_OPTIONS:
                m.child("options").child(k).error(
                    f"not allowed here; allowed: {', '.join(sorted(MODULE_OPTIONS))}")
        ports = tuple(p.int(minimum=1, maximum=65535) for p in m.child("allowed_ports").sequence()) \
            if m.has("allowed_ports") else (5432,)
        modules.append(AuthModule(
            name=name, user=m.child("user").str(),
            password_env=m.child("password_env").opt_str(),
            password_file=m.child("password_file").opt_str(),
            allowed_hosts=_pattern(m.child("allowed_hosts")),
            allowed_databases=_pattern(m.child("allowed_databases")),
            allowed_ports=ports,
            packs=m.child("packs").str_list(("app", "postgres", "replication")),
            options=tuple(sorted(options.items())),
            pool_max=m.child("pool_max").int(1, minimum=1, maximum=10),
            connect_timeout=m.child("connect_timeout").duration(5.0, minimum=0.5),
        ))
    return FleetSettings(shard=shard, max_connections=budget,
                         probe_idle=node.child("probe_idle").duration(600.0, minimum=10.0),
                         auth_modules=tuple(modules))
