"""Building blocks of `wasp replica`: connections, server checks, pg_hba, configuration files.

Nothing here decides an operation; ops (with steps) strings these together. Every
function either reads state or changes exactly one thing, so an operation can
check everything first and touch nothing on bad input.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wasp.companions.pgcluster import ClusterError, chown_to_postgres, find_bindir, run_as_postgres

__all__ = [
    "Endpoint",
    "ReplicaError",
    "ServerState",
    "UsageError",
    "admin_connect",
    "check_primary_settings",
    "clean_dsn",
    "controldata",
    "ensure_hba_rule",
    "ensure_role",
    "ensure_slot",
    "hba_needs_rule",
    "read_auto_conf",
    "server_state",
    "wait_until",
    "write_auto_conf",
    "write_passfile",
]

log = logging.getLogger(__name__)

SLOT_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
HBA_MARK = "# added by wasp replica"


class ReplicaError(Exception):
    """An operation failed or was refused (exit code 1)."""


class UsageError(ReplicaError):
    """Bad flags, configuration or input (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a server listens (TCP host or socket directory, and port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def clean_dsn(dsn: str, *, what: str = "DSN", several: bool = False) -> tuple[str, Endpoint]:
    """Validate a libpq DSN: it must name host and port and carry no password.

    With `several`, a list of hosts is fine (the endpoint is then the first one).
    """
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as e:
        raise UsageError(f"{what} is not a valid connection string: {e}") from None
    if parts.get("password"):
        raise UsageError(f"{what} must not contain a password; put it in a .pgpass file "
                         "(PGPASSFILE) or the PGPASSWORD environment variable")
    host = str(parts.get("host") or "")
    port = str(parts.get("port") or "5432")
    if not host:
        raise UsageError(f"{what} must name the server's host (host=...)")
    if ("," in host or "," in port) and not several:
        raise UsageError(f"{what} must name one server, not a list")
    host, port = host.split(",")[0], port.split(",")[0] or "5432"
    if not port.isdigit():
        raise UsageError(f"{what} has an invalid port {port!r}")
    return make_conninfo(dsn), Endpoint(host, int(port))


def admin_connect(dsn: str, *, timeout: float = 5.0, dbname: str | None = None,
                  ) -> psycopg.Connection[Any]:
    """An autocommit session (superuser expected) used to check and prepare a server."""
    kw: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(timeout)),
                          "application_name": "wasp-replica"}
    if dbname:
        kw["dbname"] = dbname
    try:
        return psycopg.connect(dsn, **kw)
    except psycopg.OperationalError as e:
        raise ReplicaError(f"cannot connect to {_where(dsn)}: {_first_line(e)}") from None


def _where(dsn: str) -> str:
    with contextlib.suppress(Exception):
        p = conninfo_to_dict(dsn)
        return f"{p.get('host', 'localhost')}:{p.get('port', '5432')}"
    return "the server"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the replica companion needs to know about one server."""

    in_recovery: bool
    is_superuser: bool
    version_num: int
    system_identifier: int
    timeline: int
    settings: Mapping[str, str]
    pending_restart: tuple[str, ...]
    wal_senders: int
    slots: Mapping[str, bool]  # physical + logical slot name -> active
    wal_lsn: int | None  # current (primary) or replayed (standby) WAL position
    receive_lsn: int | None

    def setting(self, name: str) -> str:
        """A setting's current value ('' when unknown)."""
        return self.settings.get(name, "")


_SETTINGS = ("wal_level", "max_wal_senders", "max_replication_slots", "hba_file",
             "data_directory", "unix_socket_directories", "wal_log_hints", "data_checksums",
             "ssl", "hot_standby", "listen_addresses", "port", "max_slot_wal_keep_size",
             "wal_keep_size")


def server_state(conn: psycopg.Connection[Any]) -> ServerState:
    """Read recovery state, settings, slots and WAL positions in one go."""
    row = conn.execute(
        "SELECT pg_is_in_recovery(), current_setting('is_superuser') = 'on',"
        " current_setting('server_version_num')::int,"
        " (SELECT system_identifier FROM pg_control_system())").fetchone()
    assert row is not None
    in_rec, su, ver, sysid = row
    settings: dict[str, str] = {}
    pending: list[str] = []
    for name, value, pend in conn.execute(
            "SELECT name, setting, pending_restart FROM pg_settings WHERE name = ANY(%s)",
            (list(_SETTINGS),)):
        settings[name] = value
        if pend:
            pending.append(name)
    senders = conn.execute(
        "SELECT count(*) FROM pg_stat_replication").fetchone()
    slots = dict(conn.execute("SELECT slot_name::text, active FROM pg_replication_slots").fetchall())
    if in_rec:
        pos = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,"
            " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint,"
            " coalesce((SELECT received_tli FROM pg_stat_wal_receiver),"
            "          (pg_control_checkpoint()).timeline_id)").fetchone()
    else:
        pos = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, NULL::bigint,"
            " ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
        ).fetchone()
    assert pos is not None and senders is not None
    return ServerState(
        in_recovery=bool(in_rec), is_superuser=bool(su), version_num=int(ver),
        system_identifier=int(sysid), timeline=int(pos[2]), settings=settings,
        pending_restart=tuple(pending), wal_senders=int(senders[0]), slots=slots,
        wal_lsn=None if pos[0] is None else int(pos[0]),
        receive_lsn=None if pos[1] is None else int(pos[1]),
    )


def check_primary_settings(st: ServerState, *, new_slot: bool, where: str) -> list[str]:
    """Why `st` cannot serve one more streaming replica, each with its fix; [] when it can."""
    problems: list[str] = []
    if st.in_recovery:
        problems.append(f"{where} is a standby (in recovery); point at the primary")
        return problems
    if not st.is_superuser:
        problems.append(f"the session on {where} is not a superuser; the primary needs a "
                        "superuser connection to create roles and slots")
    restart: list[str] = []
    wl = st.setting("wal_level")
    if wl not in ("replica", "logical"):
        restart.append(f"wal_level is {wl!r} and must be 'replica' (or 'logical'): "
                       "ALTER SYSTEM SET wal_level = 'replica'")
    senders = int(st.setting("max_wal_senders") or 0)
    # a base backup streams WAL on a second connection beside the one it copies with
    if senders < st.wal_senders + 2:
        restart.append(f"max_wal_senders is {senders} with {st.wal_senders} in use; a new "
                       f"replica needs 2 more during its base backup: ALTER SYSTEM SET "
                       f"max_wal_senders = {max(10, st.wal_senders + 2)}")
    if new_slot:
        slots = int(st.setting("max_replication_slots") or 0)
        if slots < len(st.slots) + 1:
            restart.append(f"max_replication_slots is {slots} with {len(st.slots)} in use: "
                           f"ALTER SYSTEM SET max_replication_slots = {max(10, len(st.slots) + 1)}")
    for name in st.pending_restart:
        if name in ("wal_level", "max_wal_senders", "max_replication_slots"):
            restart.append(f"{name} was changed but the new value waits for a restart")
    if restart:
        problems.append(f"{where} is not ready for streaming replication:\n  - "
                        + "\n  - ".join(restart)
                        + "\nthese settings take effect only after a restart of the primary "
                        "(pg_ctl restart, or systemctl restart postgresql); a reload is not enough")
    return problems


# ---------------------------------------------------------------------------
# roles, slots, pg_hba
# ---------------------------------------------------------------------------
def ensure_role(conn: psycopg.Connection[Any], user: str, *, password: str | None,
                attributes: str = "REPLICATION LOGIN") -> str:
    """Create or update a role; the password travels as a SCRAM verifier, never in clear."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    stmt = sql.SQL("{} ROLE {} WITH " + attributes).format(sql.SQL(verb), sql.Identifier(user))
    if password is not None:
        verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
        stmt = stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(verifier.decode()))
    conn.execute(stmt)
    return "updated" if exists else "created"


def ensure_slot(conn: psycopg.Connection[Any], name: str) -> bool:
    """Create a physical slot reserving WAL now; False when it already existed."""
    row = conn.execute("SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = %s",
                       (name,)).fetchone()
    if row is not None:
        if row[0] != "physical":
            raise ReplicaError(f"slot {name!r} exists and is a {row[0]} slot")
        return False
    conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    return True


def drop_slot(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop a slot if it exists and nobody uses it."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                     " WHERE slot_name = %s AND NOT active", (name,))


def replica_network(primary_host: str, given: str | None) -> str:
    """The pg_hba address of the replica: given CIDR, or loopback when the primary is local."""
    if given:
        try:
            return str(ipaddress.ip_network(given, strict=False))
        except ValueError:
            if given in ("samehost", "samenet"):
                return given
            raise UsageError(f"--replica-address {given!r} is not an address or CIDR") from None
    if primary_host in ("127.0.0.1", "localhost") or primary_host.startswith("/"):
        return "127.0.0.1/32"
    if primary_host == "::1":
        return "::1/128"
    raise UsageError(f"the primary {primary_host} is not local: say from which address the "
                     "replica connects with --replica-address (e.g. 10.0.0.12/32)")


def hba_line(user: str, network: str, *, cert: bool) -> str:
    """The pg_hba.conf line a replica needs."""
    kind, method = ("hostssl", "cert") if cert else ("host", "scram-sha-256")
    return f"{kind}\treplication\t{user}\t{network}\t{method}\t{HBA_MARK}"


def hba_needs_rule(conn: psycopg.Connection[Any], user: str, network: str, *, cert: bool) -> bool:
    """True unless the first pg_hba rule matching a replication connection of `user` lets it in."""
    try:
        rules = conn.execute(
            "SELECT type, database, user_name, address, netmask, auth_method, error"
            " FROM pg_hba_file_rules ORDER BY line_number").fetchall()
    except psycopg.Error:
        return True
    probe: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if network not in ("samehost", "samenet"):
        probe = ipaddress.ip_network(network, strict=False).network_address
    for type_, dbs, users, address, netmask, method, error in rules:
        if error or type_ == "local" or (cert and type_ == "hostnossl") or (
                not cert and type_ == "hostssl"):
            continue
        if "replication" not in (dbs or []):
            continue
        if not ({user, "all"} & set(users or [])):
            continue
        if not _address_matches(address, netmask, probe, network):
            continue
        if method == "reject":
            return True
        return bool((method == "cert") != cert)
    return True


def _address_matches(address: str | None, netmask: str | None, probe: Any, network: str) -> bool:
    if address in (None, "all"):
        return True
    if address in ("samehost", "samenet"):
        return network == address or (probe is not None and probe.is_loopback)
    if probe is None:
        return False
    try:
        net = ipaddress.ip_network(f"{address}/{netmask}" if netmask else address, strict=False)
    except ValueError:
        return False
    return probe in net


def hba_file_writable(conn: psycopg.Connection[Any]) -> Path | None:
    """The primary's pg_hba.conf when this host can edit it, else None."""
    row = conn.execute("SELECT current_setting('hba_file')").fetchone()
    path = Path(row[0]) if row else None
    if path is None or not path.is_file() or not os.access(path, os.W_OK):
        return None
    return path


def ensure_hba_rule(conn: psycopg.Connection[Any], path: Path, line: str) -> None:
    """Insert `line` before the first rule of pg_hba.conf, then reload the primary."""
    lines = path.read_text().splitlines()
    if line in lines:
        return
    at = next((i for i, t in enumerate(lines) if t.strip() and not t.lstrip().startswith("#")),
              len(lines))
    lines.insert(at, line)
    tmp = path.with_name(path.name + ".wasp-tmp")
    st = path.stat()
    tmp.write_text("\n".join(lines) + "\n")
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o777)
    os.replace(tmp, path)
    conn.execute("SELECT pg_reload_conf()")
    # the postmaster reloads asynchronously; wait until the new rule shows up loaded
    time.sleep(0.3)


# ---------------------------------------------------------------------------
# files in a data directory
# ---------------------------------------------------------------------------
def quote_conf(value: str) -> str:
    """A value quoted for postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def read_auto_conf(datadir: Path) -> dict[str, str]:
    """Settings of postgresql.auto.conf, unquoted."""
    out: dict[str, str] = {}
    p = datadir / "postgresql.auto.conf"
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$", line)
        if not m:
            continue
        v = m.group(2)
        if v.startswith("'") and v.endswith("'") and len(v) >= 2:
            v = v[1:-1].replace("''", "'").replace("\\\\", "\\")
        out[m.group(1)] = v
    return out


def write_auto_conf(datadir: Path, settings: Mapping[str, str | None]) -> None:
    """Set (or with None remove) settings in postgresql.auto.conf, keeping the others."""
    p = datadir / "postgresql.auto.conf"
    keep: list[str] = []
    if p.exists():
        for line in p.read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=", line)
            if m and m.group(1) in settings:
                continue
            keep.append(line)
    if not keep:
        keep = ["# Do not edit this file manually!",
                "# It will be overwritten by the ALTER SYSTEM command."]
    for k, v in settings.items():
        if v is not None:
            keep.append(f"{k} = {quote_conf(v)}")
    p.write_text("\n".join(keep) + "\n")
    os.chmod(p, 0o600)
    chown_to_postgres(p)


def write_passfile(path: Path, user: str, password: str) -> None:
    """A libpq password file (0600, owned by the server's user) for `user`."""
    esc = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"*:*:*:{user}:{esc}\n")
    os.chmod(path, 0o600)
    chown_to_postgres(path)


def controldata(datadir: Path) -> dict[str, str]:
    """pg_controldata of a local data directory as a dict."""
    try:
        proc = run_as_postgres([find_bindir() / "pg_controldata", "-D", datadir], timeout=30)
    except ClusterError as e:
        raise ReplicaError(f"pg_controldata {datadir}: {e}") from None
    out = {}
    for line in proc.stdout.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def lsn_to_int(lsn: str) -> int:
    """'16/B374D848' -> byte position."""
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_until(what: str, check: Any, *, timeout: float, interval: float = 0.2) -> Any:
    """Poll check() until it returns something truthy; ReplicaError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            v = check()
            if v:
                return v
        except (psycopg.Error, ReplicaError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {_first_line(last_error)})" if last_error else ""
            raise ReplicaError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


@contextlib.contextmanager
def child_env(password: str | None) -> Iterator[dict[str, str]]:
    """Environment for a PostgreSQL tool: the password in PGPASSWORD, never on its command line."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    yield env
