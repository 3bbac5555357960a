"""The steps the replica operations share: checks that change nothing, then the base
backup, the standby's configuration, its start, and the status record of each action.

`ops` strings them together into setup, promote and rejoin.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from wasp.companions.pgcluster import (
    ClusterError,
    LocalCluster,
    _check_traversable,
    chown_to_postgres,
    port_in_use,
    run_as_postgres,
)
from wasp.companions.replica.pg import (
    ROLE_NAME_RE,
    SLOT_NAME_RE,
    Endpoint,
    ReplicaError,
    ServerState,
    UsageError,
    admin_connect,
    check_primary_settings,
    clean_dsn,
    ensure_hba_rule,
    ensure_role,
    ensure_slot,
    hba_file_writable,
    hba_line,
    hba_needs_rule,
    replica_network,
    server_state,
    write_auto_conf,
    write_passfile,
)
from wasp.companions.status import write_record

__all__ = [
    "KIND",
    "PASSFILE",
    "Access",
    "CertFiles",
    "Node",
    "PreparedPrimary",
    "base_backup",
    "check_access",
    "check_name",
    "check_port",
    "check_searchable",
    "configure_standby",
    "empty_target",
    "inspect_primary",
    "prepare_primary",
    "replication_conninfo",
    "start_node",
    "streaming_check",
    "timed_action",
    "tool_env",
    "write_action_record",
]

# the operations' logger, so their log lines keep one origin
log = logging.getLogger("wasp.companions.replica.ops")
KIND = "replica"
PASSFILE = "wasp_replication.pgpass"


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Client certificate files for certificate authentication of the replication role."""

    cert: str
    key: str
    root_cert: str


@dataclass(frozen=True, slots=True)
class Access:
    """How to reach the primary and how replicas authenticate to it."""

    primary_dsn: str | None
    replication_user: str = "wasp_replication"
    password: str | None = field(default=None, repr=False)
    cert: CertFiles | None = None
    replica_address: str | None = None
    superuser: str = "postgres"


@dataclass(frozen=True, slots=True)
class Node:
    """One local server managed by the companion."""

    name: str
    datadir: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> Endpoint:
        """Where it listens."""
        return Endpoint(self.host, self.port)

    def cluster(self) -> LocalCluster:
        """pg_ctl access to its data directory."""
        return LocalCluster(datadir=self.datadir, port=self.port, host=self.host)

    def dsn(self, user: str, dbname: str = "postgres") -> str:
        """Admin DSN of this node."""
        return make_conninfo(host=self.host, port=str(self.port), user=user, dbname=dbname)


# ---------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------
def check_name(name: str) -> None:
    if not SLOT_NAME_RE.match(name):
        raise UsageError(f"replica name {name!r} must be 1-63 of a-z, 0-9 and _ "
                         "(it names the replication slot and the standby's application_name)")


def check_access(access: Access) -> tuple[str, Endpoint]:
    if not access.primary_dsn:
        raise UsageError("no primary: give --primary-dsn (or replica.primary_dsn_env/_file in the "
                         "configuration)")
    if not ROLE_NAME_RE.match(access.replication_user):
        raise UsageError(f"replication user {access.replication_user!r} is not a plain role name")
    if access.password is None and access.cert is None:
        raise UsageError("the replication role needs a password (--password-env VAR or "
                         "--password-file FILE) or a client certificate (--auth cert)")
    if access.cert is not None:
        for p in (access.cert.cert, access.cert.key, access.cert.root_cert):
            if not Path(p).is_file():
                raise UsageError(f"certificate file {p} does not exist")
    dsn, ep = clean_dsn(access.primary_dsn, what="the primary DSN")
    if ep.host.startswith("/"):
        raise UsageError("the primary DSN names a socket directory; give the address the "
                         "replica streams from (host=IP or name)")
    return dsn, ep


def empty_target(datadir: Path) -> bool:
    """Check a new data directory; True when we must create it."""
    if datadir.exists():
        if not datadir.is_dir():
            raise UsageError(f"{datadir} exists and is not a directory")
        if any(datadir.iterdir()):
            raise UsageError(f"{datadir} is not empty; a replica needs an empty or new data "
                             "directory (use rejoin for an existing cluster)")
        return False
    parent = datadir.parent
    if not parent.is_dir():
        raise UsageError(f"{parent} does not exist")
    check_searchable(parent)
    return True


def check_searchable(path: Path) -> None:
    try:
        _check_traversable(path)
    except ClusterError as e:
        raise UsageError(str(e)) from None


def check_port(node: Node) -> None:
    if not 0 < node.port < 65536:
        raise UsageError(f"port {node.port} is out of range")
    if port_in_use(node.port, node.host):
        raise UsageError(f"port {node.host}:{node.port} is already in use")


@dataclass
class PreparedPrimary:
    conn: psycopg.Connection[Any]
    state: ServerState
    endpoint: Endpoint
    dsn: str
    hba_path: Path | None
    hba_rule: str | None
    slot_exists: bool


def inspect_primary(access: Access, name: str) -> PreparedPrimary:
    """Everything about the primary that decides whether we may go on; changes nothing."""
    dsn, ep = check_access(access)
    conn = admin_connect(dsn)
    try:
        st = server_state(conn)
        slot_exists = name in st.slots
        problems = check_primary_settings(st, new_slot=not slot_exists, where=f"the primary {ep}")
        if slot_exists and st.slots[name]:
            problems.append(f"slot {name!r} on the primary is in use by a running standby; "
                            "choose another replica name")
        network = replica_network(ep.host, access.replica_address)
        cert = access.cert is not None
        rule: str | None = None
        path: Path | None = None
        if not problems and hba_needs_rule(conn, access.replication_user, network, cert=cert):
            rule = hba_line(access.replication_user, network, cert=cert)
            path = hba_file_writable(conn)
            if path is None:
                problems.append("the primary's pg_hba.conf has no rule that lets the replica in "
                                "and is not writable from here; add this line before the other "
                                f"rules and reload the primary:\n  {rule}")
        if cert and st.setting("ssl") != "on":
            problems.append("certificate authentication needs ssl = on on the primary")
        if problems:
            raise ReplicaError("\n".join(problems))
    except BaseException:
        conn.close()
        raise
    return PreparedPrimary(conn, st, ep, dsn, path, rule, slot_exists)


def prepare_primary(p: PreparedPrimary, access: Access, slot: str) -> list[str]:
    """Role, pg_hba rule and slot on the primary; returns what was done."""
    done = []
    verb = ensure_role(p.conn, access.replication_user,
                       password=access.password if access.cert is None else None)
    done.append(f"role {access.replication_user} {verb}")
    if p.hba_rule and p.hba_path:
        ensure_hba_rule(p.conn, p.hba_path, p.hba_rule)
        done.append(f"pg_hba.conf rule added: {p.hba_rule.split(chr(9) + '#')[0]}")
    if ensure_slot(p.conn, slot):
        done.append(f"slot {slot} created")
    return done


def replication_conninfo(access: Access, primary: Endpoint, *, app: str,
                          passfile: Path | None) -> str:
    parts: dict[str, Any] = {"host": primary.host, "port": str(primary.port),
                             "user": access.replication_user, "application_name": app}
    if access.cert is not None:
        parts.update(sslmode="verify-ca", sslcert=access.cert.cert, sslkey=access.cert.key,
                     sslrootcert=access.cert.root_cert)
    if passfile is not None:
        parts["passfile"] = str(passfile)
    return make_conninfo(**parts)


def tool_env(access: Access) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PGPASSFILE", None)
    if access.password is not None and access.cert is None:
        env["PGPASSWORD"] = access.password
    return env


def base_backup(access: Access, primary: Endpoint, node: Node, *, timeout: float) -> None:
    conninfo = replication_conninfo(access, primary, app="pg_basebackup", passfile=None)
    node.datadir.mkdir(mode=0o700, exist_ok=True)
    chown_to_postgres(node.datadir)
    bindir = node.cluster().bindir
    try:
        run_as_postgres([bindir / "pg_basebackup", "-D", node.datadir, "-d", conninfo,
                         "-S", node.name, "-X", "stream", "-c", "fast", "-w"],
                        env=tool_env(access), timeout=timeout)
    except ClusterError as e:
        raise ReplicaError(f"base backup failed: {e}") from None
    drop_copied_socket_locks(node.datadir)


def drop_copied_socket_locks(datadir: Path) -> None:
    """Remove socket lock files that pg_basebackup or pg_rewind copied from the source.

    A server whose socket directory is its data directory keeps `.s.PGSQL.<port>.lock` there,
    and neither tool leaves it out. Such a file names the source's postmaster: when that
    process id is still taken (a zombie, a reused pid) the new server refuses to start.
    The server writes its own lock when it starts, so a copied one is never right.
    """
    for lock in datadir.glob(".s.PGSQL.*.lock"):
        lock.unlink(missing_ok=True)


def configure_standby(node: Node, access: Access, p_state: ServerState, primary: Endpoint) -> None:
    """Standby settings in postgresql.auto.conf, the password file, standby.signal."""
    d = node.datadir
    passfile = None
    if access.cert is None and access.password is not None:
        passfile = d / PASSFILE
        write_passfile(passfile, access.replication_user, access.password)
    settings: dict[str, str | None] = {
        "port": str(node.port),
        "listen_addresses": node.host if not node.host.startswith("/") else "",
        "primary_conninfo": replication_conninfo(access, primary, app=node.name,
                                                  passfile=passfile),
        "primary_slot_name": node.name,
        "hot_standby": "on",
    }
    # the source's socket directory may be its own data directory: do not share it
    sockets = p_state.setting("unix_socket_directories")
    source_dir = p_state.setting("data_directory")
    if sockets and source_dir and source_dir in sockets:
        settings["unix_socket_directories"] = str(d)
    if not (d / "postgresql.conf").exists():
        (d / "postgresql.conf").write_text("# written by wasp replica; see postgresql.auto.conf\n")
    write_auto_conf(d, settings)
    (d / "recovery.signal").unlink(missing_ok=True)
    (d / "standby.signal").touch()
    chown_to_postgres(d / "standby.signal")
    chown_to_postgres(d / "postgresql.conf")


def streaming_check(conn: psycopg.Connection[Any], app: str) -> Callable[[], bool]:
    def check() -> bool:
        row = conn.execute("SELECT state FROM pg_stat_replication WHERE application_name = %s"
                           " ORDER BY state = 'streaming' DESC LIMIT 1", (app,)).fetchone()
        return row is not None and row[0] == "streaming"
    return check


def start_node(node: Node, *, timeout: float) -> None:
    try:
        node.cluster().start(timeout=int(max(10, timeout)))
    except ClusterError as e:
        raise ReplicaError(f"the replica did not start: {e}") from None


def write_action_record(status_dir: Path | None, action: str, node: str, rec: dict[str, Any]) -> None:
    if status_dir is None:
        return
    try:
        write_record(status_dir, KIND, f"{action}-{node}", rec)
    except OSError as e:
        log.warning("cannot write the status record to %s: %s", status_dir, e)


@contextlib.contextmanager
def timed_action(action: str, node: Node, status_dir: Path | None, rec: dict[str, Any]
           ) -> Iterator[dict[str, Any]]:
    """Fill started/finished/duration/ok/error of `rec` and write it, whatever happens."""
    t0 = time.time()
    m0 = time.monotonic()
    rec.update(action=action, replica=node.name, started_at=t0, ok=False, error=None,
               node={"host": node.host, "port": node.port, "datadir": str(node.datadir)})
    try:
        yield rec
        rec["ok"] = True
    except ReplicaError as e:
        rec["error"] = str(e)
        raise
    except Exception as e:
        rec["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        rec["finished_at"] = time.time()
        rec["duration_seconds"] = round(time.monotonic() - m0, 3)
        write_action_record(status_dir, action, node.name, rec)
