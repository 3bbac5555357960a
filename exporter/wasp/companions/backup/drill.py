"""Restore drills: the proof that a backup is good.

A drill restores a backup (the latest, a given label, or a point in time) into
a scratch data directory, starts it on a free port with archiving off,
waits for recovery to finish, runs checks, and removes the scratch cluster.

The drill uses its own pgBackRest configuration in the scratch directory,
holding only the secrets read from the configured sources (environment
variable or file): a passing drill proves that the passphrase the operators
keep decrypts the repository, for the backup files and for every WAL segment
replayed by `restore_command`.

Checks: the application's tables exist and hold rows; the newest
`created_at` is within the expected RPO of the backup's stop time (or of the
target time); for a point in time, no row is newer than the target; amcheck
(`bt_index_check` with `heapallindexed`) on a sample of B-tree indexes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from wasp.companions.backup.ops import (
    INTERRUPTED,
    BackupContext,
    JobFailed,
    Progress,
    info_from_result,
)
from wasp.companions.backup.pgbackrest import (
    PgBackRest,
    StanzaInfo,
    error_text,
    make_dir,
    render_config,
    render_secrets,
    run_tool,
    write_private_file,
)
from wasp.companions.backup.records import JobRecord, drill_verdicts, merge_verdicts
from wasp.companions.pgcluster import find_bindir, free_port

__all__ = ["Check", "DrillResult", "ScratchCluster", "run_drill"]

log = logging.getLogger("wasp.backup")


@dataclass(frozen=True, slots=True)
class Check:
    """One drill check and its outcome."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ScratchCluster:
    """The restored cluster of a drill (left running only with keep=True)."""

    root: Path
    datadir: Path
    port: int
    user: str

    def dsn(self, dbname: str) -> str:
        """libpq DSN over the scratch socket."""
        return (f"host={self.root} port={self.port} user={self.user} dbname={dbname} "
                "connect_timeout=10 options='-c TimeZone=UTC'")


@dataclass
class DrillResult:
    """What a drill did and found."""

    ok: bool
    label: str | None
    checks: list[Check] = field(default_factory=list)
    restore_seconds: float = 0.0
    recovery_seconds: float = 0.0
    rto_seconds: float = 0.0
    error: str | None = None
    exit_code: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    scratch: ScratchCluster | None = None


def run_drill(ctx: BackupContext, *, label: str | None = None,
              target_time: dt.datetime | None = None, keep: bool = False,
              lock_wait: float = 3600.0,
              inspect: Callable[[ScratchCluster], None] | None = None) -> DrillResult:
    """Restore, start, check, measure, remove; the record says whether the backup is good."""
    s = ctx.settings
    if target_time is not None:
        if target_time.tzinfo is None:
            target_time = target_time.replace(tzinfo=dt.UTC)
        target_time = target_time.astimezone(dt.UTC)
    rec = JobRecord(ctx.status_dir, s.stanza, "drill", requested_label=label,
                    target_time=target_time.timestamp() if target_time else None,
                    target_type="time" if target_time else ("set" if label else "latest"))
    result = DrillResult(ok=False, label=None)
    info: StanzaInfo | None = None
    scratch: ScratchCluster | None = None
    interrupted = False
    try:
        with ctx.lock(wait=lock_wait):
            if not ctx.secrets.passphrase:
                raise JobFailed("the drill must prove the configured passphrase, but "
                                + ", ".join(ctx.secrets.missing) + " cannot be read")
            if ctx.secrets.missing:
                raise JobFailed("cannot read " + ", ".join(ctx.secrets.missing))
            r = ctx.pgbackrest().capture("info", "--output=json", "--log-level-file=off",
                                         timeout=300)
            info = info_from_result(r, s.stanza)
            unreadable = [rp for rp in info.repos if rp.code not in (0, 2)]
            if unreadable:
                raise JobFailed(f"pgBackRest cannot read repo{unreadable[0].key}: status "
                                f"{unreadable[0].code}: {unreadable[0].message}")
            if not info.backups:
                raise JobFailed(f"stanza {s.stanza} has no completed backup to restore")
            if label is not None and label not in info.by_label():
                raise JobFailed(f"backup {label} is not in the repository")
            scratch = _prepare_scratch(ctx)
            _restore(ctx, scratch, label, target_time, result)
            _start(ctx, scratch, result)
            backup = info.by_label().get(result.label or "")
            reference = (target_time.timestamp() if target_time
                         else backup.stop if backup else time.time())
            result.checks += run_checks(ctx, scratch, reference=reference,
                                        target_time=target_time)
            if inspect is not None:
                inspect(scratch)
    except JobFailed as e:
        result.error = str(e)
        result.exit_code = e.exit_code
        log.error("drill failed: %s", e)
    except (OSError, RuntimeError, psycopg.Error) as e:
        result.error = f"{type(e).__name__}: {e}"
        result.exit_code = 1
        log.error("drill failed: %s", result.error)
    except KeyboardInterrupt:
        result.error = "interrupted"
        result.exit_code = INTERRUPTED
        interrupted = True
    finally:
        if scratch is not None:
            if keep and result.error is None:
                result.scratch = scratch
                log.info("scratch cluster kept running: %s", scratch.dsn(s.drill.database))
            else:
                remove_scratch(ctx, scratch)
    failed = [c for c in result.checks if not c.ok]
    result.ok = result.error is None and not failed and bool(result.checks)
    if result.error is None and failed:
        result.error = "; ".join(f"{c.name}: {c.detail}" for c in failed)[:2000]
        result.exit_code = 1
    verdicts = drill_verdicts(rec.previous)
    if result.label is not None and info is not None:
        chain = info.by_label()[result.label].chain if result.label in info.by_label() \
            else (result.label,)
        verdicts = merge_verdicts(verdicts, chain, ok=result.ok, at=time.time(),
                                  keep=info.by_label())
    backup = info.by_label().get(result.label or "") if info else None
    result.record = rec.finish(
        ok=result.ok,
        exit_code=0 if result.ok else (result.exit_code or 1),
        error=result.error,
        label=result.label,
        backup_type=backup.type if backup else None,
        backup_stop=backup.stop if backup else None,
        restore_seconds=round(result.restore_seconds, 3),
        recovery_seconds=round(result.recovery_seconds, 3),
        rto_seconds=round(result.rto_seconds, 3),
        checks=[{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
        checks_run=len(result.checks),
        checks_failed=len(failed) + (1 if result.error and not failed else 0),
        data_lag_seconds=_lag(result.checks),
        passphrase_source=ctx.settings.passphrase.describe(),
        verdicts=verdicts,
    )
    if interrupted:
        raise KeyboardInterrupt
    if result.ok:
        log.info("drill passed: backup %s restored and checked in %.1fs (RTO), %d checks",
                 result.label, result.rto_seconds, len(result.checks))
    return result


def _lag(checks: list[Check]) -> float | None:
    for c in checks:
        if c.name == "freshness" and c.detail.startswith("lag "):
            with contextlib.suppress(ValueError):
                return float(c.detail.split()[1].rstrip("s"))
    return None


# ---------------------------------------------------------------------------
# scratch cluster
# ---------------------------------------------------------------------------
def _prepare_scratch(ctx: BackupContext) -> ScratchCluster:
    s = ctx.settings
    base = make_dir(s.drill.scratch_dir, s.os_user, 0o750)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    root = make_dir(base / f"{s.stanza}-{stamp}-{os.getpid()}", s.os_user, 0o700)
    datadir = make_dir(root / "data", s.os_user, 0o700)
    conf = make_dir(root / "pgbackrest", s.os_user, 0o700)
    make_dir(conf / "conf.d", s.os_user, 0o700)
    for sub in ("spool", "lock", "log"):
        make_dir(root / sub, s.os_user, 0o700)
    text = render_config(s, overrides={
        "spool-path": str(root / "spool"),
        "lock-path": str(root / "lock"),
        "log-path": str(root / "log"),
        "log-level-file": "off",
    })
    write_private_file(conf / "pgbackrest.conf", text, os_user=s.os_user, mode=0o600)
    # only the secrets read from the configured sources: this is what the drill proves
    write_private_file(conf / "conf.d" / "secrets.conf", render_secrets(ctx.secrets),
                       os_user=s.os_user, mode=0o600)
    return ScratchCluster(root=root, datadir=datadir, port=free_port(), user=s.drill.user)


def _restore(ctx: BackupContext, scratch: ScratchCluster, label: str | None,
             target_time: dt.datetime | None, result: DrillResult) -> None:
    s = ctx.settings
    pgb = PgBackRest(s, ctx.secrets, config_dir=str(scratch.root / "pgbackrest"))
    opts = [f"--pg1-path={scratch.datadir}", "--archive-mode=off", "--log-level-console=detail"]
    if label:
        opts.append(f"--set={label}")
    if target_time is not None:
        opts += ["--type=time", f"--target={target_time.strftime('%Y-%m-%d %H:%M:%S.%f+00')}",
                 "--target-action=promote"]
    else:
        opts.append("--type=default")
    labels: list[str] = []
    progress = Progress("restore", ctx.stream)

    def on_line(line: str) -> None:
        if "restore backup set " in line:
            labels.append(line.split("restore backup set ", 1)[1].split(",")[0].strip())
        if " command begin " in line:
            return
        progress.line(line)

    what = f"backup {label}" if label else "the latest backup"
    if target_time is not None:
        what += f" to {target_time.isoformat()}"
    log.info("drill: restoring %s into %s", what, scratch.datadir)
    start = time.monotonic()
    r = pgb.run("restore", *opts, timeout=s.drill.restore_timeout, on_line=on_line)
    progress.done()
    result.restore_seconds = time.monotonic() - start
    result.label = labels[0] if labels else label
    if r.timed_out:
        raise JobFailed(f"restore did not finish within {s.drill.restore_timeout:g}s")
    if r.returncode != 0:
        raise JobFailed(f"pgbackrest restore exited {r.returncode}: {error_text(r.stdout)}",
                        r.returncode)
    result.checks.append(Check("restore", True, f"backup {result.label} restored in "
                               f"{result.restore_seconds:.1f}s"))
    result.checks.append(Check("passphrase", True, "repository decrypted with the passphrase from "
                               + s.passphrase.describe()))


def _start(ctx: BackupContext, scratch: ScratchCluster, result: DrillResult) -> None:
    s = ctx.settings
    data = scratch.datadir
    if not (data / "postgresql.conf").exists():
        # Debian keeps the configuration outside the data directory
        write_private_file(data / "postgresql.conf", "", os_user=s.os_user, mode=0o600)
    write_private_file(data / "pg_hba.conf", "local all all trust\n", os_user=s.os_user, mode=0o600)
    settings = {
        "port": str(scratch.port),
        "listen_addresses": "''",
        "unix_socket_directories": f"'{scratch.root}'",
        "archive_mode": "'off'",
        "archive_command": "''",
        # recovery runs to its end before the server accepts connections
        "hot_standby": "'off'",
        "logging_collector": "'off'",
        "log_destination": "'stderr'",
        "external_pid_file": "''",
        "hba_file": f"'{data / 'pg_hba.conf'}'",
        "ident_file": f"'{data / 'pg_ident.conf'}'",
        "cluster_name": "'wasp-drill'",
        "max_wal_senders": "0",
        "max_replication_slots": "0",
        "wal_level": "'replica'",
        **{k: _conf_value(v) for k, v in s.drill.settings},
    }
    if not (data / "pg_ident.conf").exists():
        write_private_file(data / "pg_ident.conf", "", os_user=s.os_user, mode=0o600)
    auto = data / "postgresql.auto.conf"
    text = auto.read_text() if auto.exists() else ""
    text += "\n# wasp restore drill\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    write_private_file(auto, text, os_user=s.os_user, mode=0o600)
    log.info("drill: starting the restored cluster on port %d, waiting for recovery", scratch.port)
    pg_ctl = str(find_bindir() / "pg_ctl")
    start = time.monotonic()
    timeout = s.drill.recovery_timeout
    try:
        proc = run_tool(s, [pg_ctl, "-D", str(data), "-l", str(scratch.root / "postgres.log"),
                            "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        raise JobFailed(f"recovery did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        raise JobFailed("the restored cluster did not start or recover: "
                        + _log_tail(scratch.root / "postgres.log"))
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(scratch.dsn("postgres"), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                break
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise JobFailed("the restored cluster is still in recovery")
        time.sleep(0.5)
    result.recovery_seconds = time.monotonic() - start
    result.rto_seconds = result.restore_seconds + result.recovery_seconds
    result.checks.append(Check("recovery", True, f"recovered and promoted in "
                               f"{result.recovery_seconds:.1f}s"))


def _conf_value(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-1500:]
    except OSError:
        return "(no server log)"


def remove_scratch(ctx: BackupContext, scratch: ScratchCluster) -> None:
    """Stop the scratch cluster (immediate) and delete its directory."""
    s = ctx.settings
    if (scratch.datadir / "postmaster.pid").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            run_tool(s, [str(find_bindir() / "pg_ctl"), "-D", str(scratch.datadir), "-m",
                         "immediate", "-w", "-t", "60", "stop"], timeout=90)
    shutil.rmtree(scratch.root, ignore_errors=True)


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------
_AMCHECK_SAMPLE = """
SELECT c.oid::regclass::text, n.nspname = 'pg_catalog' AS catalog
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence = 'p'
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg_toast%%'
  AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY (n.nspname = 'pg_catalog'), random()
LIMIT %s
"""


def run_checks(ctx: BackupContext, scratch: ScratchCluster, *, reference: float,
               target_time: dt.datetime | None) -> list[Check]:
    """Data checks on the restored database."""
    d = ctx.settings.drill
    checks: list[Check] = []
    try:
        conn = psycopg.connect(scratch.dsn(d.database), autocommit=True)
    except psycopg.Error as e:
        return [Check("connect", False, f"cannot connect to database {d.database!r}: "
                      f"{str(e).strip()[:300]}")]
    with conn:
        newest: float | None = None
        for table in d.tables:
            ident = sql.Identifier(*table.split("."))
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
            if not exists or not exists[0]:
                checks.append(Check(f"table {table}", False, "missing"))
                continue
            row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(ident)).fetchone()
            has_rows = bool(row and row[0])
            checks.append(Check(f"table {table}", has_rows, "holds rows" if has_rows else "empty"))
            has_col = conn.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
                "AND NOT attisdropped", (table, d.freshness_column)).fetchone()
            if has_col:
                m = conn.execute(sql.SQL("SELECT extract(epoch FROM max({}))::float8 FROM {}")
                                 .format(sql.Identifier(d.freshness_column), ident)).fetchone()
                if m and m[0] is not None:
                    newest = m[0] if newest is None else max(newest, m[0])
        checks += _freshness(newest, reference, d.expected_rpo, d.freshness_column, target_time)
        checks += _amcheck(conn, d.amcheck_sample)
    return checks


def _freshness(newest: float | None, reference: float, rpo: float, column: str,
               target_time: dt.datetime | None) -> list[Check]:
    if newest is None:
        return [Check("freshness", False, f"no table with a {column} column holds rows")]
    lag = reference - newest
    out = [Check("freshness", lag <= rpo, f"lag {lag:.1f}s (newest {column} "
                 f"{_iso(newest)}, reference {_iso(reference)}, expected RPO {rpo:g}s)")]
    if target_time is not None:
        ok = newest <= target_time.timestamp()
        out.append(Check("target", ok, f"newest {column} {_iso(newest)} "
                         + ("is not after" if ok else "is AFTER") + f" the target {_iso(target_time.timestamp())}"))
    return out


def _amcheck(conn: psycopg.Connection[Any], sample: int) -> list[Check]:
    if sample <= 0:
        return []
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    except psycopg.Error as e:
        return [Check("amcheck", False, f"cannot create extension amcheck: {str(e).strip()[:200]}")]
    out = []
    for (index, _catalog) in conn.execute(_AMCHECK_SAMPLE, (sample,)).fetchall():
        try:
            conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
            out.append(Check(f"amcheck {index}", True, "ok"))
        except psycopg.Error as e:
            out.append(Check(f"amcheck {index}", False, str(e).strip()[:300]))
    return out


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
