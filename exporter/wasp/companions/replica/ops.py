"""The operations of `wasp replica`: setup, promote and rejoin.

Each one first checks everything it can without changing anything (bad input
leaves the primary, the data directory and the status records as they were),
then acts with the standard tools (SQL, pg_basebackup, pg_ctl, pg_rewind) and
finally writes a status record that the exporter turns into metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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
    controldata,
    drop_slot,
    ensure_hba_rule,
    ensure_role,
    ensure_slot,
    hba_file_writable,
    hba_line,
    hba_needs_rule,
    lsn_to_int,
    read_auto_conf,
    replica_network,
    server_state,
    wait_until,
    write_auto_conf,
    write_passfile,
)
from wasp.companions.status import read_records, write_record

__all__ = ["Access", "CertFiles", "Node", "known_nodes", "promote", "rejoin", "setup"]

log = logging.getLogger(__name__)
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
def _check_name(name: str) -> None:
    if not SLOT_NAME_RE.match(name):
        raise UsageError(f"replica name {name!r} must be 1-63 of a-z, 0-9 and _ "
                         "(it names the replication slot and the standby's application_name)")


def _check_access(access: Access) -> tuple[str, Endpoint]:
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


def _empty_target(datadir: Path) -> bool:
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
    _check_searchable(parent)
    return True


def _check_searchable(path: Path) -> None:
    try:
        _check_traversable(path)
    except ClusterError as e:
        raise UsageError(str(e)) from None


def _check_port(node: Node) -> None:
    if not 0 < node.port < 65536:
        raise UsageError(f"port {node.port} is out of range")
    if port_in_use(node.port, node.host):
        raise UsageError(f"port {node.host}:{node.port} is already in use")


@dataclass
class _Prepared:
    conn: psycopg.Connection[Any]
    state: ServerState
    endpoint: Endpoint
    dsn: str
    hba_path: Path | None
    hba_rule: str | None
    slot_exists: bool


def _inspect_primary(access: Access, name: str) -> _Prepared:
    """Everything about the primary that decides whether we may go on; changes nothing."""
    dsn, ep = _check_access(access)
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
    return _Prepared(conn, st, ep, dsn, path, rule, slot_exists)


def _prepare_primary(p: _Prepared, access: Access, slot: str) -> list[str]:
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


def _replication_conninfo(access: Access, primary: Endpoint, *, app: str,
                          passfile: Path | None) -> str:
    parts: dict[str, Any] = {"host": primary.host, "port": str(primary.port),
                             "user": access.replication_user, "application_name": app}
    if access.cert is not None:
        parts.update(sslmode="verify-ca", sslcert=access.cert.cert, sslkey=access.cert.key,
                     sslrootcert=access.cert.root_cert)
    if passfile is not None:
        parts["passfile"] = str(passfile)
    return make_conninfo(**parts)


def _tool_env(access: Access) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PGPASSFILE", None)
    if access.password is not None and access.cert is None:
        env["PGPASSWORD"] = access.password
    return env


def _base_backup(access: Access, primary: Endpoint, node: Node, *, timeout: float) -> None:
    conninfo = _replication_conninfo(access, primary, app="pg_basebackup", passfile=None)
    node.datadir.mkdir(mode=0o700, exist_ok=True)
    chown_to_postgres(node.datadir)
    bindir = node.cluster().bindir
    try:
        run_as_postgres([bindir / "pg_basebackup", "-D", node.datadir, "-d", conninfo,
                         "-S", node.name, "-X", "stream", "-c", "fast", "-w"],
                        env=_tool_env(access), timeout=timeout)
    except ClusterError as e:
        raise ReplicaError(f"base backup failed: {e}") from None


def _configure_standby(node: Node, access: Access, p_state: ServerState, primary: Endpoint) -> None:
    """Standby settings in postgresql.auto.conf, the password file, standby.signal."""
    d = node.datadir
    passfile = None
    if access.cert is None and access.password is not None:
        passfile = d / PASSFILE
        write_passfile(passfile, access.replication_user, access.password)
    settings: dict[str, str | None] = {
        "port": str(node.port),
        "listen_addresses": node.host if not node.host.startswith("/") else "",
        "primary_conninfo": _replication_conninfo(access, primary, app=node.name,
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


def _streaming(conn: psycopg.Connection[Any], app: str) -> Callable[[], bool]:
    def check() -> bool:
        row = conn.execute("SELECT state FROM pg_stat_replication WHERE application_name = %s"
                           " ORDER BY state = 'streaming' DESC LIMIT 1", (app,)).fetchone()
        return row is not None and row[0] == "streaming"
    return check


def _start(node: Node, *, timeout: float) -> None:
    try:
        node.cluster().start(timeout=int(max(10, timeout)))
    except ClusterError as e:
        raise ReplicaError(f"the replica did not start: {e}") from None


def _record(status_dir: Path | None, action: str, node: str, rec: dict[str, Any]) -> None:
    if status_dir is None:
        return
    try:
        write_record(status_dir, KIND, f"{action}-{node}", rec)
    except OSError as e:
        log.warning("cannot write the status record to %s: %s", status_dir, e)


@contextlib.contextmanager
def _timed(action: str, node: Node, status_dir: Path | None, rec: dict[str, Any]
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
        _record(status_dir, action, node.name, rec)


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------
def setup(access: Access, node: Node, *, status_dir: Path | None, timeout: float = 300.0
          ) -> dict[str, Any]:
    """Prepare the primary and build a streaming replica of it in node.datadir."""
    _check_name(node.name)
    node = Node(node.name, node.datadir.resolve(), node.port, node.host)
    create_dir = _empty_target(node.datadir)
    _check_port(node)
    prep = _inspect_primary(access, node.name)
    rec: dict[str, Any] = {"primary": str(prep.endpoint), "slot": node.name}
    created_slot = False
    try:
        with _timed("setup", node, status_dir, rec):
            rec["steps"] = _prepare_primary(prep, access, node.name)
            created_slot = not prep.slot_exists
            try:
                _base_backup(access, prep.endpoint, node, timeout=timeout)
                rec["steps"].append("base backup taken")
                _configure_standby(node, access, prep.state, prep.endpoint)
                _start(node, timeout=timeout)
                rec["steps"].append("replica started")
                wait_until(f"{node.name} to stream from the primary",
                           _streaming(prep.conn, node.name), timeout=min(timeout, 120))
            except BaseException:
                _undo_setup(node, create_dir, prep.conn if created_slot else None)
                raise
            rec["timeline"] = server_state(prep.conn).timeline
            rec["steps"].append("streaming")
    finally:
        prep.conn.close()
    return rec


def _undo_setup(node: Node, created_dir: bool, conn: psycopg.Connection[Any] | None) -> None:
    """Leave no half-built replica behind: stop it, empty (or remove) its directory, drop the slot."""
    with contextlib.suppress(ClusterError):
        if node.cluster().is_running():
            node.cluster().stop("immediate")
    if node.datadir.exists():
        if created_dir:
            shutil.rmtree(node.datadir, ignore_errors=True)
        else:
            for child in node.datadir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    if conn is not None:
        drop_slot(conn, node.name)


# ---------------------------------------------------------------------------
# promote
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _OldPrimary:
    endpoint: Endpoint | None
    reachable: bool
    writable: bool
    lsn: int | None


def _probe_old_primary(dsn: str | None) -> _OldPrimary:
    if not dsn:
        return _OldPrimary(None, False, False, None)
    dsn, ep = clean_dsn(dsn, what="the old primary's DSN")
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3,
                               application_name="wasp-replica")
    except psycopg.OperationalError:
        return _OldPrimary(ep, False, False, None)
    with conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on',"
            " pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
            "                      ELSE pg_current_wal_lsn() END, '0/0')::bigint").fetchone()
    assert row is not None
    return _OldPrimary(ep, True, not row[0] and not row[1], int(row[2]))


def _upstream_dsn(node: Node, superuser: str) -> str | None:
    """The node's current upstream (from primary_conninfo), as an admin DSN."""
    conninfo = read_auto_conf(node.datadir).get("primary_conninfo")
    if not conninfo:
        return None
    with contextlib.suppress(psycopg.Error):
        parts = conninfo_to_dict(conninfo)
        if parts.get("host"):
            return make_conninfo(host=str(parts["host"]), port=str(parts.get("port", "5432")),
                                 user=superuser, dbname="postgres")
    return None


def _heartbeat_age(node: Node, superuser: str, dbname: str) -> float | None:
    """Age of the heartbeat row on `node` (None when there is none)."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(
            node.dsn(superuser, dbname), autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp() - beat_at)::float8"
                           " FROM wasp.heartbeat WHERE id = 1").fetchone()
        return None if row is None else round(float(row[0]), 3)
    return None


def promote(node: Node, *, superuser: str = "postgres", old_primary_dsn: str | None = None,
            old_primary_datadir: Path | None = None, force: bool = False,
            max_lag_bytes: int | None = None, followers: tuple[str, ...] = (),
            heartbeat_dbname: str = "postgres", status_dir: Path | None,
            timeout: float = 60.0) -> dict[str, Any]:
    """Promote a standby after the safety checks; returns the record (with the accepted lag)."""
    _check_name(node.name)
    if not (node.datadir / "PG_VERSION").exists():
        raise UsageError(f"{node.datadir} holds no PostgreSQL cluster")
    conn = admin_connect(node.dsn(superuser))
    with conn:
        st = server_state(conn)
        if not st.in_recovery:
            raise ReplicaError(f"{node.name} ({node.endpoint}) is already a primary on timeline "
                               f"{st.timeline}; nothing to promote")
        old = _probe_old_primary(old_primary_dsn or _upstream_dsn(node, superuser))
        received = max(st.receive_lsn or 0, st.wal_lsn or 0)
        lag: int | None = None
        lag_source = "unknown"
        if old.reachable and old.lsn is not None:
            lag, lag_source = max(0, old.lsn - received), "old primary"
        elif old_primary_datadir is not None:
            cd = controldata(old_primary_datadir)
            if cd.get("Database cluster state") == "shut down":
                end = lsn_to_int(cd["Latest checkpoint location"])
                lag, lag_source = max(0, end - received), "pg_controldata (clean shutdown)"
        hb_age = _heartbeat_age(node, superuser, heartbeat_dbname)
        refusals = []
        if old.writable:
            refusals.append(f"the old primary {old.endpoint} still accepts writes; stop it "
                            "first (or fence it), or pass --force to risk a split brain")
        if max_lag_bytes is not None and lag is not None and lag > max_lag_bytes:
            refusals.append(f"{node.name} is {lag} bytes behind the old primary, more than "
                            f"--max-lag-bytes {max_lag_bytes}")
        if lag is None and max_lag_bytes is not None:
            refusals.append("the lag behind the old primary is unknown (it is unreachable); "
                            "--max-lag-bytes cannot be checked")
        if refusals and not force:
            raise ReplicaError("promotion refused:\n  - " + "\n  - ".join(refusals))
        rec: dict[str, Any] = {
            "old_primary": str(old.endpoint) if old.endpoint else None,
            "old_primary_reachable": old.reachable, "old_primary_writable": old.writable,
            "forced": bool(refusals), "accepted_lag_bytes": lag, "lag_source": lag_source,
            "heartbeat_age_seconds": hb_age, "timeline_before": st.timeline,
            "overridden": refusals,
        }
        with _timed("promote", node, status_dir, rec):
            try:
                node.cluster().promote(timeout=int(max(10, timeout)))
            except ClusterError as e:
                raise ReplicaError(f"pg_ctl promote failed: {e}") from None
            wait_until(f"{node.name} to accept writes",
                       lambda: not server_state(conn).in_recovery, timeout=timeout)
            rec["timeline"] = server_state(conn).timeline
            write_auto_conf(node.datadir, {"primary_conninfo": None, "primary_slot_name": None})
            rec["slots_created"] = [f for f in followers if f != node.name and ensure_slot(conn, f)]
            rec["repoint"] = _repoint_advice(node, superuser, followers)
    return rec


def _repoint_advice(node: Node, superuser: str, followers: tuple[str, ...]) -> list[str]:
    dsn = node.dsn(superuser)
    out = [f"PgBouncer: point the [databases] entries at host={node.host} port={node.port} "
           "and run RELOAD on its admin console"]
    for f in followers:
        if f != node.name:
            out.append(f"replica {f}: wasp replica rejoin --name {f} --primary-dsn '{dsn}'")
    out.append(f"old primary: wasp replica rejoin --name NAME --datadir DIR --port PORT "
               f"--primary-dsn '{dsn}'")
    return out


# ---------------------------------------------------------------------------
# rejoin
# ---------------------------------------------------------------------------
def rejoin(access: Access, node: Node, *, rewind: bool = True, status_dir: Path | None,
           timeout: float = 300.0) -> dict[str, Any]:
    """Make node (an old primary or a standby of one) a streaming replica of access.primary_dsn."""
    _check_name(node.name)
    node = Node(node.name, node.datadir.resolve(), node.port, node.host)
    if not (node.datadir / "PG_VERSION").exists():
        raise UsageError(f"{node.datadir} holds no PostgreSQL cluster; use setup to build a "
                         "new replica")
    prep = _inspect_primary(access, node.name)
    if prep.endpoint.port == node.port and prep.endpoint.host in (node.host, "localhost"):
        prep.conn.close()
        raise UsageError(f"{node.name} is the primary itself ({prep.endpoint})")
    cluster = node.cluster()
    running = cluster.is_running()
    sysid = controldata(node.datadir).get("Database system identifier")
    if sysid != str(prep.state.system_identifier):
        prep.conn.close()
        raise ReplicaError(f"{node.datadir} is a different cluster (system identifier {sysid}, "
                           f"primary {prep.state.system_identifier}); use setup on an empty "
                           "directory instead")
    if not running:
        _check_port(node)
    rec: dict[str, Any] = {"primary": str(prep.endpoint), "slot": node.name, "method": None}
    try:
        with _timed("rejoin", node, status_dir, rec):
            rec["steps"] = _prepare_primary(prep, access, node.name)
            if running:
                _rejoin_running(node, access, prep, rec, timeout=timeout)
            if rec["method"] is None:
                _rejoin_stopped(node, access, prep, rec, rewind=rewind, timeout=timeout)
            rec["timeline"] = server_state(prep.conn).timeline
    finally:
        prep.conn.close()
    return rec


def _rejoin_running(node: Node, access: Access, prep: _Prepared, rec: dict[str, Any], *,
                    timeout: float) -> None:
    cluster = node.cluster()
    with admin_connect(node.dsn(access.superuser)) as nconn:
        in_recovery = server_state(nconn).in_recovery
    if not in_recovery:
        rec["steps"].append("stopped the old primary")
        cluster.stop("fast")
        return
    # a standby of the old primary may simply follow the new timeline
    _configure_standby(node, access, prep.state, prep.endpoint)
    cluster.reload()
    try:
        wait_until(f"{node.name} to stream from the new primary", _streaming(prep.conn, node.name),
                   timeout=min(30.0, timeout))
    except ReplicaError:
        rec["steps"].append("repointing did not work; stopping for pg_rewind")
        cluster.stop("fast")
        return
    rec["method"] = "repoint"
    rec["steps"].append("repointed and streaming")


def _rejoin_stopped(node: Node, access: Access, prep: _Prepared, rec: dict[str, Any], *,
                    rewind: bool, timeout: float) -> None:
    cluster = node.cluster()
    if rewind:
        err = _pg_rewind(node, prep.dsn, access.superuser, timeout=timeout)
        if err is None:
            rec["method"] = "rewind"
            rec["steps"].append("pg_rewind done")
        else:
            rec["steps"].append(f"pg_rewind failed: {err}")
            rec["rewind_error"] = err
    if rec["method"] is None:
        aside = node.datadir.with_name(f"{node.datadir.name}.before-rejoin-{int(time.time())}")
        os.replace(node.datadir, aside)
        rec["steps"].append(f"old data directory moved to {aside}")
        rec["moved_aside"] = str(aside)
        _base_backup(access, prep.endpoint, node, timeout=timeout)
        rec["method"] = "basebackup"
        rec["steps"].append("fresh base backup taken")
    _configure_standby(node, access, prep.state, prep.endpoint)
    _start(node, timeout=timeout)
    wait_until(f"{node.name} to stream from the new primary", _streaming(prep.conn, node.name),
               timeout=min(timeout, 120))
    rec["steps"].append("streaming")
    del cluster


def _pg_rewind(node: Node, primary_dsn: str, superuser: str, *, timeout: float) -> str | None:
    """Run pg_rewind against the new primary; None on success, else why it failed."""
    parts = conninfo_to_dict(primary_dsn)
    parts.setdefault("user", superuser)
    parts["dbname"] = "postgres"
    source = make_conninfo(**{k: str(v) for k, v in parts.items()})
    try:
        run_as_postgres([node.cluster().bindir / "pg_rewind", "--target-pgdata", node.datadir,
                         "--source-server", source], timeout=timeout)
    except ClusterError as e:
        return str(e).splitlines()[-1][:500] if str(e) else "pg_rewind failed"
    return None


# ---------------------------------------------------------------------------
# what the records know
# ---------------------------------------------------------------------------
def known_nodes(status_dir: Path | None) -> dict[str, Node]:
    """Nodes named by setup/rejoin/promote records, newest record first."""
    out: dict[str, Node] = {}
    if status_dir is None:
        return out
    recs = sorted(read_records(status_dir, KIND).values(),
                  key=lambda r: float(r.get("finished_at") or 0), reverse=True)
    for r in recs:
        n = r.get("node")
        name = r.get("replica")
        if not isinstance(n, dict) or not isinstance(name, str) or name in out:
            continue
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out[name] = Node(name, Path(n["datadir"]), int(n["port"]), str(n.get("host") or
                                                                           "127.0.0.1"))
    return out
