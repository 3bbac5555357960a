"""Set up and run streaming replicas with the standard tools (pg_basebackup, pg_ctl, pg_rewind, SQL).

Actions: setup prepares the primary (role, slot, pg_hba) and builds a replica;
status shows the replication picture of every known node (a table, or JSON);
promote performs a manual failover with safety checks and prints what to
repoint; rejoin brings an old primary (or a standby of it) back as a replica;
heartbeat updates one row on the primary every few seconds (the end-to-end
delay). Each action writes a status record that the exporter turns into
metrics. Passwords come from environment variables or files, never from the
command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from wasp.companions.replica.pg import ReplicaError, UsageError
from wasp.config.nodes import ConfigError
from wasp.config.replica import (
    HeartbeatSettings,
    NodeSettings,
    PatroniSettings,
    ReplicaSettings,
    parse_section,
)

__all__ = [
    "HeartbeatSettings",
    "NodeSettings",
    "PatroniSettings",
    "ReplicaSettings",
    "add_arguments",
    "main",
    "parse_section",
]

log = logging.getLogger(__name__)

DEFAULT_PASSWORD_ENV = "WASP_REPLICATION_PASSWORD"
DEFAULT_PRIMARY_DSN_ENV = "WASP_PRIMARY_DSN"


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status-dir", metavar="DIR",
                   help="where action records go (default: the config's server.status_dir, "
                   "else $WASP_STATUS_DIR, else /var/lib/wasp/status)")


def _primary(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--primary-dsn", metavar="DSN",
                   help=f"libpq connection string of {what}, as a superuser, without a "
                   "password (use PGPASSFILE or PGPASSWORD); default: "
                   f"${DEFAULT_PRIMARY_DSN_ENV} or the config's replica.primary_dsn_env/_file")


def _auth(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replication role")
    g.add_argument("--replication-user", metavar="ROLE",
                   help="role the replica streams as (default wasp_replication)")
    g.add_argument("--auth", choices=("password", "cert"), help="how the role authenticates")
    g.add_argument("--password-env", metavar="VAR",
                   help=f"environment variable holding its password (default {DEFAULT_PASSWORD_ENV})")
    g.add_argument("--password-file", metavar="FILE", help="file holding its password")
    g.add_argument("--sslcert", metavar="FILE", help="client certificate (--auth cert)")
    g.add_argument("--sslkey", metavar="FILE", help="client key (--auth cert)")
    g.add_argument("--sslrootcert", metavar="FILE", help="CA of the primary's certificate")
    g.add_argument("--replica-address", metavar="CIDR",
                   help="address the replica connects from, for the pg_hba rule "
                   "(default 127.0.0.1/32 when the primary is local)")


def _node(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--name", required=True,
                   help="replica name: its slot on the primary and its application_name")
    p.add_argument("--datadir", metavar="DIR", required=required,
                   help="its data directory" + ("" if required else
                                                 " (default: from the config or the records)"))
    p.add_argument("--port", type=int, required=required,
                   help="its port" + ("" if required else " (default: config or records)"))
    p.add_argument("--host", default=None, help="address it listens on (default 127.0.0.1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `wasp replica` subcommands."""
    sub = parser.add_subparsers(dest="replica_command", metavar="ACTION", required=True)

    s = sub.add_parser("setup", help="prepare the primary and build a streaming replica",
                       description="Check the primary (wal_level, max_wal_senders, "
                       "max_replication_slots), create the replication role, its pg_hba rule "
                       "and a physical slot, then pg_basebackup into an empty DATADIR, write "
                       "the standby configuration and start the replica on PORT. Nothing is "
                       "touched when a check fails.")
    _node(s, required=True)
    _primary(s, "the primary")
    _auth(s)
    s.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole setup")
    _common(s)

    st = sub.add_parser("status", help="show the replication picture (both sides)",
                        description="Query the primary and every known replica (from the "
                        "config, the action records and --node) with the replication pack's "
                        "queries and print nodes, standbys, slots and the last actions.")
    _primary(st, "the primary (optional)")
    st.add_argument("--node", action="append", default=[], metavar="NAME=DSN",
                    help="another server to show (repeatable)")
    st.add_argument("--user", default=None, help="role for nodes found in the records "
                    "(default: the config's replica.superuser, else postgres)")
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")
    _common(st)

    pr = sub.add_parser("promote", help="manual failover: promote a replica",
                        description="Promote the replica NAME. Refuses while the old primary "
                        "still accepts writes (unless --force), reports the lag it accepted, "
                        "creates slots for the other replicas and prints what to repoint.")
    _node(pr, required=False)
    pr.add_argument("--old-primary-dsn", metavar="DSN",
                    help="the old primary (default: the replica's primary_conninfo host/port)")
    pr.add_argument("--old-primary-datadir", metavar="DIR",
                    help="the old primary's data directory, when local: after a clean "
                    "shutdown its last WAL position gives the exact accepted lag")
    pr.add_argument("--follower", action="append", default=[], metavar="NAME",
                    help="another replica that will follow the new primary: its slot is "
                    "created right away (default: the other nodes of the config and records)")
    pr.add_argument("--max-lag-bytes", type=int, default=None,
                    help="refuse when the known lag is larger (unless --force)")
    pr.add_argument("--force", action="store_true",
                    help="promote even though a safety check failed (recorded)")
    pr.add_argument("--user", default=None, help="superuser role on the replica")
    pr.add_argument("--heartbeat-dbname", default=None, metavar="DB",
                    help="database holding wasp.heartbeat (default: the heartbeat DSN's, "
                    "else postgres): its age at promotion bounds the data-loss window")
    pr.add_argument("--timeout", type=float, default=60.0)
    _common(pr)

    rj = sub.add_parser("rejoin", help="bring an old primary (or a standby) back as a replica",
                        description="Point the node NAME at the (new) primary: a running "
                        "standby is repointed in place; otherwise pg_rewind, or a fresh base "
                        "backup when rewinding is impossible (the old directory is moved "
                        "aside, never deleted).")
    _node(rj, required=False)
    _primary(rj, "the new primary")
    _auth(rj)
    rj.add_argument("--no-rewind", action="store_true",
                    help="skip pg_rewind and take a fresh base backup")
    rj.add_argument("--timeout", type=float, default=600.0)
    _common(rj)

    hb = sub.add_parser("heartbeat", help="update the heartbeat row on the primary",
                        description="Run as its own small process with its own role: every "
                        "INTERVAL it updates wasp.heartbeat on the primary; the replication "
                        "pack reads the row's age on every server. With --install, create the "
                        "table and the role first (needs --primary-dsn as a superuser).")
    hb.add_argument("--dsn", metavar="DSN", help="the heartbeat role's DSN, without password "
                    "(list every node with target_session_attrs=read-write to follow failovers)")
    hb.add_argument("--dsn-env", metavar="VAR", help="environment variable holding that DSN")
    hb.add_argument("--interval", type=float, default=None, help="seconds between beats (5)")
    hb.add_argument("--count", type=int, default=None, help="stop after this many beats")
    hb.add_argument("--install", action="store_true",
                    help="create wasp.heartbeat and the role, then exit")
    _primary(hb, "the primary, for --install")
    hb.add_argument("--dbname", default=None, help="database for --install (default: the DSN's)")
    hb.add_argument("--user", default=None, help="heartbeat role (default wasp_heartbeat)")
    hb.add_argument("--password-env", metavar="VAR", help="its password, for --install")
    hb.add_argument("--password-file", metavar="FILE", help="its password, for --install")


# ---------------------------------------------------------------------------
# resolving flags + configuration
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Ctx:
    settings: ReplicaSettings
    status_dir: Path


def _load(args: argparse.Namespace) -> _Ctx:
    settings = ReplicaSettings()
    status_dir = os.environ.get("WASP_STATUS_DIR", "/var/lib/wasp/status")
    path = getattr(args, "config", None)
    if path:
        from wasp.config.schema import load_config

        cfg = load_config(path)
        settings = cfg.section("replica") or settings
        status_dir = cfg.server.status_dir
    if getattr(args, "status_dir", None):
        status_dir = args.status_dir
    return _Ctx(settings, Path(status_dir))


def _read_secret(env: str | None, file: str | None, what: str) -> str | None:
    if file:
        try:
            value = Path(file).read_text().rstrip("\n")
        except OSError as e:
            raise UsageError(f"cannot read {what} from {file}: {e.strerror or e}") from None
        if not value:
            raise UsageError(f"{file} is empty ({what})")
        return value
    if env:
        from_env = os.environ.get(env)
        if not from_env:
            raise UsageError(f"environment variable {env} ({what}) is not set")
        return from_env
    return None


def _primary_dsn(args: argparse.Namespace, s: ReplicaSettings) -> str | None:
    if getattr(args, "primary_dsn", None):
        return str(args.primary_dsn)
    if s.primary_dsn_env or s.primary_dsn_file:
        return _read_secret(s.primary_dsn_env, s.primary_dsn_file, "the primary DSN")
    return os.environ.get(DEFAULT_PRIMARY_DSN_ENV) or None


def _access(args: argparse.Namespace, s: ReplicaSettings) -> Any:
    from wasp.companions.replica.ops import Access, CertFiles

    auth = args.auth or s.auth
    cert = None
    password = None
    if auth == "cert":
        files = (args.sslcert or s.ssl_cert, args.sslkey or s.ssl_key,
                 args.sslrootcert or s.ssl_root_cert)
        if not all(files):
            raise UsageError("--auth cert needs --sslcert, --sslkey and --sslrootcert")
        cert = CertFiles(*files)  # type: ignore[arg-type]
    elif args.password_env or args.password_file:
        password = _read_secret(args.password_env, args.password_file, "the replication password")
    elif s.password_env or s.password_file:
        password = _read_secret(s.password_env, s.password_file, "the replication password")
    elif os.environ.get(DEFAULT_PASSWORD_ENV):
        password = os.environ[DEFAULT_PASSWORD_ENV]
    return Access(primary_dsn=_primary_dsn(args, s),
                  replication_user=args.replication_user or s.replication_user,
                  password=password, cert=cert,
                  replica_address=args.replica_address or s.replica_address,
                  superuser=s.superuser)


def _node_of(args: argparse.Namespace, ctx: _Ctx) -> Any:
    from wasp.companions.replica.ops import Node, known_nodes

    conf = ctx.settings.node(args.name)
    rec = known_nodes(ctx.status_dir).get(args.name)
    datadir = args.datadir or (conf.datadir if conf else None) or (rec.datadir if rec else None)
    port = args.port or (conf.port if conf else None) or (rec.port if rec else None)
    host = args.host or (conf.host if conf else None) or (rec.host if rec else "127.0.0.1")
    if not datadir or not port:
        raise UsageError(f"where is {args.name}? give --datadir and --port (or list it under "
                         "replica.nodes in the configuration)")
    return Node(args.name, Path(datadir), int(port), host)


# ---------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------
def _cmd_setup(args: argparse.Namespace, ctx: _Ctx) -> int:
    from wasp.companions.replica.ops import Node, setup

    node = Node(args.name, Path(args.datadir), args.port, args.host or "127.0.0.1")
    rec = setup(_access(args, ctx.settings), node, status_dir=ctx.status_dir,
                timeout=args.timeout)
    print(f"replica {node.name} streams from {rec['primary']} on timeline {rec['timeline']} "
          f"(setup took {rec['duration_seconds']:.1f}s)")
    for step in rec["steps"]:
        print(f"  - {step}")
    return 0


def _cmd_status(args: argparse.Namespace, ctx: _Ctx) -> int:
    from psycopg.conninfo import make_conninfo

    from wasp.companions.replica.ops import known_nodes
    from wasp.companions.replica.pg import clean_dsn
    from wasp.companions.replica.status import gather, render_json, render_table

    user = args.user or ctx.settings.superuser
    nodes: dict[str, str] = {}
    dsn = _primary_dsn(args, ctx.settings)
    if dsn:
        nodes["primary"] = clean_dsn(dsn, what="the primary DSN")[0]
    for n in ctx.settings.nodes:
        nodes[n.name] = make_conninfo(host=n.host, port=str(n.port), user=user, dbname="postgres")
    for name, kn in known_nodes(ctx.status_dir).items():
        nodes.setdefault(name, kn.dsn(user))
    for spec in args.node:
        name, sep, d = spec.partition("=")
        if not sep or not name:
            raise UsageError(f"--node wants NAME=DSN, got {spec!r}")
        nodes[name] = clean_dsn(d, what=f"the DSN of node {name}")[0]
    if not nodes:
        raise UsageError("no node known: give --primary-dsn or --node, or run setup first")
    picture = gather(nodes, status_dir=ctx.status_dir)
    print(render_json(picture) if args.json else render_table(picture), end="")
    return 0 if all(n.get("reachable") for n in picture["nodes"]) else 1


def _cmd_promote(args: argparse.Namespace, ctx: _Ctx) -> int:
    from wasp.companions.replica.ops import known_nodes, promote

    node = _node_of(args, ctx)
    followers = tuple(args.follower) or tuple(sorted(
        {n.name for n in ctx.settings.nodes} | set(known_nodes(ctx.status_dir))))
    rec = promote(node, superuser=args.user or ctx.settings.superuser,
                  old_primary_dsn=args.old_primary_dsn,
                  old_primary_datadir=Path(args.old_primary_datadir)
                  if args.old_primary_datadir else None,
                  force=args.force, max_lag_bytes=args.max_lag_bytes,
                  followers=tuple(f for f in followers if f != node.name),
                  heartbeat_dbname=args.heartbeat_dbname or _heartbeat_dbname(ctx.settings),
                  status_dir=ctx.status_dir, timeout=args.timeout)
    lag = rec["accepted_lag_bytes"]
    print(f"{node.name} is the primary now, timeline {rec['timeline_before']} -> "
          f"{rec['timeline']} (promotion took {rec['duration_seconds']:.1f}s)")
    print("accepted lag: " + (f"{lag} bytes ({rec['lag_source']})" if lag is not None else
                              "unknown (old primary unreachable)")
          + (f"; heartbeat age {rec['heartbeat_age_seconds']}s"
             if rec.get("heartbeat_age_seconds") is not None else ""))
    for r in rec["overridden"]:
        print(f"FORCED past: {r}")
    if rec["slots_created"]:
        print("slots created for: " + ", ".join(rec["slots_created"]))
    print("now repoint:")
    for line in rec["repoint"]:
        print(f"  - {line}")
    return 0


def _heartbeat_dbname(s: ReplicaSettings) -> str:
    hs = s.heartbeat
    try:
        dsn = _read_secret(hs.dsn_env, hs.dsn_file, "the heartbeat DSN") if hs else None
        return str(conninfo_to_dict(dsn).get("dbname") or "postgres") if dsn else "postgres"
    except (UsageError, ValueError, psycopg.Error):
        return "postgres"


def _cmd_rejoin(args: argparse.Namespace, ctx: _Ctx) -> int:
    from wasp.companions.replica.ops import rejoin

    node = _node_of(args, ctx)
    rec = rejoin(_access(args, ctx.settings), node, rewind=not args.no_rewind,
                 status_dir=ctx.status_dir, timeout=args.timeout)
    print(f"{node.name} streams from {rec['primary']} again (method: {rec['method']}, "
          f"took {rec['duration_seconds']:.1f}s)")
    for step in rec["steps"]:
        print(f"  - {step}")
    return 0


def _cmd_heartbeat(args: argparse.Namespace, ctx: _Ctx) -> int:
    from wasp.companions.replica.heartbeat import install, run

    hs = ctx.settings.heartbeat or HeartbeatSettings()
    user = args.user or hs.user
    if args.install:
        dsn = _primary_dsn(args, ctx.settings)
        if not dsn:
            raise UsageError("--install needs --primary-dsn (a superuser on the primary)")
        password = _read_secret(args.password_env or (None if args.password_file else hs.password_env),
                                args.password_file or hs.password_file, "the heartbeat password")
        for step in install(dsn, user=user, password=password, dbname=args.dbname):
            print(f"  - {step}")
        return 0
    dsn = args.dsn
    if not dsn:
        env = args.dsn_env or hs.dsn_env
        dsn = _read_secret(env, None if args.dsn_env else hs.dsn_file, "the heartbeat DSN")
    if not dsn:
        raise UsageError("give --dsn or --dsn-env (or replica.heartbeat.dsn_env/_file)")
    interval = args.interval or hs.interval
    if interval <= 0:
        raise UsageError("--interval must be positive")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    written = run(dsn, interval=interval, count=args.count, stop=stop)
    log.info("heartbeat stopped after %d beats", written)
    return 0


COMMANDS = {"setup": _cmd_setup, "status": _cmd_status, "promote": _cmd_promote,
            "rejoin": _cmd_rejoin, "heartbeat": _cmd_heartbeat}


def main(args: argparse.Namespace) -> int:
    """Run one `wasp replica` action; 0 ok, 1 failed or refused, 2 bad usage or config."""
    action = args.replica_command
    try:
        ctx = _load(args)
        return COMMANDS[action](args, ctx)
    except ConfigError as e:
        print(f"wasp replica {action}: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"wasp replica {action}: {e}", file=sys.stderr)
        return 2
    except ReplicaError as e:
        print(f"wasp replica {action}: {e}", file=sys.stderr)
        return 1
