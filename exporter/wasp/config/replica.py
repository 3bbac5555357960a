"""The replica: section of the main configuration (companion `wasp replica`, pack `replica`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from wasp.config.nodes import Node

__all__ = [
    "HeartbeatSettings",
    "NodeSettings",
    "PatroniSettings",
    "ReplicaSettings",
    "parse_section",
]


Auth = Literal["password", "cert"]
AUTHS: tuple[Auth, ...] = get_args(Auth)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """A server the companion manages on this host."""

    name: str
    datadir: str
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class HeartbeatSettings:
    """The heartbeat writer: its DSN (the heartbeat role's), interval and role."""

    dsn_env: str | None = None
    dsn_file: str | None = None
    interval: float = 5.0
    user: str = "wasp_heartbeat"
    password_env: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class PatroniSettings:
    """Patroni REST API endpoints the exporter reads /cluster from."""

    urls: tuple[str, ...]
    interval: float = 15.0
    timeout: float = 3.0
    name: str = "patroni"


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """The validated replica: section."""

    primary_dsn_env: str | None = None
    primary_dsn_file: str | None = None
    superuser: str = "postgres"
    replication_user: str = "wasp_replication"
    password_env: str | None = None
    password_file: str | None = None
    auth: Auth = "password"
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_root_cert: str | None = None
    replica_address: str | None = None
    status_interval: float = 15.0
    nodes: tuple[NodeSettings, ...] = ()
    heartbeat: HeartbeatSettings | None = None
    patroni: PatroniSettings | None = None

    def node(self, name: str) -> NodeSettings | None:
        """The configured node called `name`."""
        return next((n for n in self.nodes if n.name == name), None)


SECTION_KEYS = {"primary_dsn_env", "primary_dsn_file", "superuser", "replication_user",
                "password_env", "password_file", "auth", "ssl_cert", "ssl_key", "ssl_root_cert",
                "replica_address", "status_interval", "nodes", "heartbeat", "patroni"}
NODE_KEYS = {"datadir", "port", "host"}
HEARTBEAT_KEYS = {"dsn_env", "dsn_file", "interval", "user", "password_env", "password_file"}
PATRONI_KEYS = {"url", "urls", "interval", "timeout", "name"}


def parse_section(node: Node) -> ReplicaSettings:
    """Validate the replica: section (every error names file:line and the dotted key)."""
    node.mapping(SECTION_KEYS)
    if node.has("primary_dsn_env") and node.has("primary_dsn_file"):
        node.error("give primary_dsn_env or primary_dsn_file, not both")
    if node.has("password_env") and node.has("password_file"):
        node.error("give password_env or password_file, not both")
    auth = node.child("auth").choice(AUTHS, "password")
    ssl = {k: node.child(k).opt_str() for k in ("ssl_cert", "ssl_key", "ssl_root_cert")}
    if auth == "cert" and not all(ssl.values()):
        node.child("auth").error("cert needs ssl_cert, ssl_key and ssl_root_cert")
    nodes = []
    for name, n in node.child("nodes").items():
        if not name or not all(c.islower() or c.isdigit() or c == "_" for c in name):
            n.error("node names are the slot names: use a-z, 0-9 and _")
        n.mapping(NODE_KEYS, required={"datadir", "port"})
        nodes.append(NodeSettings(name=name, datadir=n.child("datadir").str(),
                                  port=n.child("port").int(minimum=1, maximum=65535),
                                  host=n.child("host").str("127.0.0.1")))
    hb = None
    if node.has("heartbeat"):
        h = node.child("heartbeat").mapping(HEARTBEAT_KEYS)
        if h.has("dsn_env") and h.has("dsn_file"):
            h.error("give dsn_env or dsn_file, not both")
        hb = HeartbeatSettings(
            dsn_env=h.child("dsn_env").opt_str(), dsn_file=h.child("dsn_file").opt_str(),
            interval=h.child("interval").duration(5.0, minimum=0.5),
            user=h.child("user").str("wasp_heartbeat"),
            password_env=h.child("password_env").opt_str(),
            password_file=h.child("password_file").opt_str())
    pat = None
    if node.has("patroni"):
        p = node.child("patroni").mapping(PATRONI_KEYS)
        urls = p.child("urls").str_list() if p.has("urls") else ()
        if p.has("url"):
            urls = (p.child("url").str(), *urls)
        if not urls:
            p.error("give url (or urls) of the Patroni REST API, e.g. http://10.0.0.11:8008")
        for i, u in enumerate(urls):
            if not u.startswith(("http://", "https://")):
                (p.child("url") if p.has("url") and i == 0 else p.child("urls")).error(
                    f"{u!r} is not an http(s) URL")
        interval = p.child("interval").duration(15.0, minimum=1.0)
        timeout = p.child("timeout").duration(3.0, minimum=0.1)
        if timeout > interval:
            p.child("timeout").error(f"must not exceed the interval ({interval:g}s)")
        pat = PatroniSettings(urls=tuple(u.rstrip("/") for u in urls), interval=interval,
                              timeout=timeout, name=p.child("name").str("patroni"))
    return ReplicaSettings(
        primary_dsn_env=node.child("primary_dsn_env").opt_str(),
        primary_dsn_file=node.child("primary_dsn_file").opt_str(),
        superuser=node.child("superuser").str("postgres"),
        replication_user=node.child("replication_user").str("wasp_replication"),
        password_env=node.child("password_env").opt_str(),
        password_file=node.child("password_file").opt_str(),
        auth=auth, ssl_cert=ssl["ssl_cert"], ssl_key=ssl["ssl_key"],
        ssl_root_cert=ssl["ssl_root_cert"],
        replica_address=node.child("replica_address").opt_str(),
        status_interval=node.child("status_interval").duration(15.0, minimum=1.0),
        nodes=tuple(nodes), heartbeat=hb, patroni=pat,
    )
