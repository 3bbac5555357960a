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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wasp.companions.pgcluster import (
    ClusterError,
    run_as_postgres,
)
from wasp.companions.replica.pg import (
    Endpoint,
    ReplicaError,
    UsageError,
    admin_connect,
    clean_dsn,
    controldata,
    drop_slot,
    ensure_slot,
    lsn_to_int,
    read_auto_conf,
    server_state,
    wait_until,
    write_auto_conf,
)
from wasp.companions.replica.steps import (
    KIND,
    Access,
    CertFiles,
    Node,
    PreparedPrimary,
    base_backup,
    check_name,
    check_port,
    configure_standby,
    drop_copied_socket_locks,
    empty_target,
    inspect_primary,
    prepare_primary,
    start_node,
    streaming_check,
    timed_action,
)
from wasp.companions.status import read_records

__all__ = ["Access", "CertFiles", "Node", "known_nodes", "promote", "rejoin", "setup"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------
def setup(access: Access, node: Node, *, status_dir: Path | None, timeout: float = 300.0
          ) -> dict[str, Any]:
    """Prepare the primary and build a streaming replica of it in node.datadir."""
    check_name(node.name)
    node = Node(node.name, node.datadir.resolve(), node.port, node.host)
    create_dir = empty_target(node.datadir)
    check_port(node)
    prep = inspect_primary(access, node.name)
    rec: dict[str, Any] = {"primary": str(prep.endpoint), "slot": node.name}
    created_slot = False
    try:
        with timed_action("setup", node, status_dir, rec):
            rec["steps"] = prepare_primary(prep, access, node.name)
            created_slot = not prep.slot_exists
            try:
                base_backup(access, prep.endpoint, node, timeout=timeout)
                rec["steps"].append("base backup taken")
                configure_standby(node, access, prep.state, prep.endpoint)
                start_node(node, timeout=timeout)
                rec["steps"].append("replica started")
                wait_until(f"{node.name} to stream from the primary",
                           streaming_check(prep.conn, node.name), timeout=min(timeout, 120))
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
    check_name(node.name)
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
        with timed_action("promote", node, status_dir, rec):
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
    check_name(node.name)
    node = Node(node.name, node.datadir.resolve(), node.port, node.host)
    if not (node.datadir / "PG_VERSION").exists():
        raise UsageError(f"{node.datadir} holds no PostgreSQL cluster; use setup to build a "
                         "new replica")
    prep = inspect_primary(access, node.name)
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
        check_port(node)
    rec: dict[str, Any] = {"primary": str(prep.endpoint), "slot": node.name, "method": None}
    try:
        with timed_action("rejoin", node, status_dir, rec):
            rec["steps"] = prepare_primary(prep, access, node.name)
            if running:
                _rejoin_running(node, access, prep, rec, timeout=timeout)
            if rec["method"] is None:
                _rejoin_stopped(node, access, prep, rec, rewind=rewind, timeout=timeout)
            rec["timeline"] = server_state(prep.conn).timeline
    finally:
        prep.conn.close()
    return rec


def _rejoin_running(node: Node, access: Access, prep: PreparedPrimary, rec: dict[str, Any], *,
                    timeout: float) -> None:
    cluster = node.cluster()
    with admin_connect(node.dsn(access.superuser)) as nconn:
        in_recovery = server_state(nconn).in_recovery
    if not in_recovery:
        rec["steps"].append("stopped the old primary")
        cluster.stop("fast")
        return
    # a standby of the old primary may simply follow the new timeline
    configure_standby(node, access, prep.state, prep.endpoint)
    cluster.reload()
    try:
        wait_until(f"{node.name} to stream from the new primary", streaming_check(prep.conn, node.name),
                   timeout=min(30.0, timeout))
    except ReplicaError:
        rec["steps"].append("repointing did not work; stopping for pg_rewind")
        cluster.stop("fast")
        return
    rec["method"] = "repoint"
    rec["steps"].append("repointed and streaming")


def _rejoin_stopped(node: Node, access: Access, prep: PreparedPrimary, rec: dict[str, Any], *,
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
        base_backup(access, prep.endpoint, node, timeout=timeout)
        rec["method"] = "basebackup"
        rec["steps"].append("fresh base backup taken")
    configure_standby(node, access, prep.state, prep.endpoint)
    start_node(node, timeout=timeout)
    wait_until(f"{node.name} to stream from the new primary", streaming_check(prep.conn, node.name),
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
    drop_copied_socket_locks(node.datadir)
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
