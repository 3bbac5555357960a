"""The backup companion's jobs: init, run (backup + expire), verify and status.

Each job writes a status record when it starts and when it ends (see
backup_records), so a failed attempt is visible even though pgBackRest's
`info` only lists completed backups. Jobs that touch the repository hold a
per-stanza lock, so a cron-started incremental waits for the nightly full and
a drill never restores a backup that expire is removing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from wasp.companions.backup.pgbackrest import (
    InfoError,
    PgBackRest,
    ProcResult,
    StanzaInfo,
    error_text,
    label_type,
    make_dir,
    parse_info,
    parse_progress,
    parse_verify,
    render_config,
    render_secrets,
    run_tool,
    write_private_file,
)
from wasp.companions.backup.records import BACKUP_TYPES, JobRecord
from wasp.companions.pgcluster import ClusterError, find_bindir
from wasp.config.backup import BackupSettings, Secrets, resolve_secrets

__all__ = [
    "BackupContext",
    "JobFailed",
    "Progress",
    "archive_command",
    "fetch_info",
    "format_size",
    "init_stanza",
    "psql",
    "run_backup",
    "verify_repo",
]

log = logging.getLogger("wasp.backup")

#: exit code recorded for a job stopped by SIGINT/SIGTERM (128 + SIGINT, as shells do)
INTERRUPTED = 130


class JobFailed(Exception):
    """A job failed; `exit_code` is pgBackRest's (or 1); `usage` marks a configuration problem."""

    def __init__(self, message: str, exit_code: int = 1, *, usage: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.usage = usage


@dataclass
class BackupContext:
    """What every job needs: settings, the status directory, secrets and the runner."""

    settings: BackupSettings
    status_dir: Path
    secrets: Secrets = field(init=False)
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.secrets = resolve_secrets(self.settings)

    def pgbackrest(self, *, config_dir: str | None = None) -> PgBackRest:
        """A runner with the secrets that could be read (pgBackRest's config file covers the rest)."""
        return PgBackRest(self.settings, self.secrets, config_dir=config_dir)

    @contextlib.contextmanager
    def lock(self, *, wait: float) -> Iterator[None]:
        """Hold the per-stanza wasp lock (waits up to `wait` seconds)."""
        folder = make_dir(self.settings.lock_path, self.settings.os_user, 0o770)
        path = folder / f"wasp-{self.settings.stanza}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise JobFailed(f"another wasp backup job holds {path} "
                                        f"(waited {wait:g}s)") from None
                    time.sleep(1.0)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)


class Progress:
    """A progress bar on a terminal, a log line every 10% elsewhere."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_step = -1
        self.pct = 0.0
        self.start = time.monotonic()
        self.last_log = self.start
        self.last_draw = 0.0

    def line(self, text: str) -> None:
        """Feed one line of pgBackRest output."""
        pct = parse_progress(text)
        if pct is not None:
            self.update(pct)
        elif " INFO: " in text or "WARN:" in text or "ERROR:" in text:
            self._clear()
            msg = text.split(": ", 1)[1] if ": " in text else text
            log.log(logging.WARNING if ("WARN" in text or "ERROR" in text) else logging.INFO,
                    "%s: %s", self.what, msg.strip())

    def update(self, pct: float) -> None:
        """Show `pct` percent done."""
        self.pct = pct
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.2 and pct < 100:
                return
            self.last_draw = now
            width = 30
            filled = int(width * pct / 100)
            elapsed = time.monotonic() - self.start
            self.stream.write(f"\r{self.what}: [{'#' * filled}{'.' * (width - filled)}] "
                              f"{pct:5.1f}% {elapsed:6.1f}s")
            self.stream.flush()
            return
        # plain logs: one line per 10% step, at most every 10 seconds
        step = int(pct // 10)
        now = time.monotonic()
        if step > self.last_step and step < 10 and now - self.last_log >= 10:
            self.last_step = step
            self.last_log = now
            log.info("%s: %d%% done", self.what, step * 10)

    def _clear(self) -> None:
        if self.tty and self.pct:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()

    def done(self) -> None:
        """End the bar."""
        if self.tty and self.pct:
            self.stream.write("\n")
            self.stream.flush()


def archive_command(s: BackupSettings) -> str:
    """The archive_command PostgreSQL runs (asynchronous archive-push; no secret in it)."""
    return (f"{shlex.quote(s.pgbackrest)} --config-path={shlex.quote(s.config_dir)} "
            f"--stanza={shlex.quote(s.stanza)} archive-push %p")


def fetch_info(ctx: BackupContext, *, timeout: float = 120.0) -> StanzaInfo:
    """`pgbackrest info` for the stanza, parsed; JobFailed when pgBackRest says nothing usable."""
    r = ctx.pgbackrest().capture("info", "--output=json", "--log-level-file=off", timeout=timeout)
    return info_from_result(r, ctx.settings.stanza)


def info_from_result(r: ProcResult, stanza: str) -> StanzaInfo:
    """The stanza's info from a finished `info` process, or JobFailed."""
    if r.timed_out:
        raise JobFailed("pgbackrest info timed out")
    try:
        stanzas = parse_info(r.stdout)
    except InfoError as e:
        raise JobFailed(f"pgbackrest info exited {r.returncode}: "
                        f"{error_text(r.stderr) or e}", r.returncode or 1) from None
    for st in stanzas:
        if st.name == stanza:
            return st
    raise JobFailed(f"pgbackrest info does not list stanza {stanza!r}", r.returncode or 1)


# ---------------------------------------------------------------------------
# psql as the OS user (the same socket pgBackRest uses)
# ---------------------------------------------------------------------------
def psql(s: BackupSettings, sql: str, *, timeout: float = 60.0, dbname: str = "postgres") -> str:
    """Run SQL on the source cluster through its socket as the PostgreSQL OS user."""
    try:
        binary = str(find_bindir() / "psql")
    except ClusterError:
        binary = shutil.which("psql") or "psql"
    argv = [binary, "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", s.pg_socket_path, "-p",
            str(s.pg_port), "-U", s.pg_user, "-d", dbname]
    try:
        proc = run_tool(s, argv, input=sql.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise JobFailed(f"psql timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        raise JobFailed(f"cannot run SQL on {s.pg_socket_path}:{s.pg_port}: "
                        + proc.stderr.decode(errors="replace").strip()[-500:])
    return proc.stdout.decode(errors="replace")


def _sql_literal(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


# ---------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------
def init_stanza(ctx: BackupContext, *, restart: bool = False) -> dict[str, Any]:
    """Write pgBackRest's configuration, set up archiving, create the stanza and check it."""
    s = ctx.settings
    rec = JobRecord(ctx.status_dir, s.stanza, "init", repo_type=s.repo.type)
    try:
        if ctx.secrets.missing:
            raise JobFailed("cannot read " + ", ".join(ctx.secrets.missing), 1, usage=True)
        write_config(ctx)
        log.info("wrote %s and %s (mode 0600)", s.config_file, s.secrets_file)
        restarted = configure_archiving(ctx, restart=restart)
        pgb = ctx.pgbackrest()
        for command in ("stanza-create", "check"):
            log.info("pgbackrest %s", command)
            r = pgb.run(command, "--log-level-console=info", timeout=600,
                        on_line=functools.partial(_log_line, command))
            if not r.ok:
                raise JobFailed(f"pgbackrest {command} failed (exit {r.returncode}): "
                                f"{error_text(r.stdout)}", r.returncode or 1)
    except JobFailed as e:
        rec.finish(ok=False, exit_code=e.exit_code, error=str(e))
        raise
    except (OSError, RuntimeError) as e:
        rec.finish(ok=False, exit_code=1, error=str(e))
        raise JobFailed(str(e)) from e
    except KeyboardInterrupt:
        rec.finish(ok=False, exit_code=INTERRUPTED, error="interrupted")
        raise
    return rec.finish(ok=True, exit_code=0, restarted=restarted,
                      archive_command=archive_command(s))


def write_config(ctx: BackupContext) -> None:
    """Create pgBackRest's folders and write its configuration and secrets files."""
    s = ctx.settings
    make_dir(s.config_dir, s.os_user, 0o750)
    make_dir(Path(s.config_dir) / "conf.d", s.os_user, 0o750)
    for p in (s.lock_path, s.log_path, s.spool_path):
        make_dir(p, s.os_user, 0o750)
    if s.repo.type == "posix":
        make_dir(s.repo.path, s.os_user, 0o750)
    write_private_file(s.config_file, render_config(s), os_user=s.os_user, mode=0o640)
    write_private_file(s.secrets_file, render_secrets(ctx.secrets), os_user=s.os_user, mode=0o600)


def configure_archiving(ctx: BackupContext, *, restart: bool) -> bool:
    """Set archive_mode/archive_command/archive_timeout; True when PostgreSQL was restarted."""
    s = ctx.settings
    current = dict(
        line.split("|", 1) for line in psql(
            s, "SELECT name, setting FROM pg_settings WHERE name IN "
               "('archive_mode', 'archive_command', 'archive_timeout', 'wal_level')").splitlines()
        if "|" in line
    )
    if current.get("wal_level") == "minimal":
        raise JobFailed("wal_level is minimal: set wal_level = replica and restart PostgreSQL")
    sql = []
    if current.get("archive_mode") not in ("on", "always"):
        sql.append("ALTER SYSTEM SET archive_mode = 'on';")
    cmd = archive_command(s)
    if current.get("archive_command") != cmd:
        sql.append(f"ALTER SYSTEM SET archive_command = {_sql_literal(cmd)};")
    timeout = f"{int(s.archive_timeout)}s"
    if current.get("archive_timeout") != str(int(s.archive_timeout)):
        sql.append(f"ALTER SYSTEM SET archive_timeout = {_sql_literal(timeout)};")
    if not sql:
        log.info("archiving already configured: %s", cmd)
        return False
    psql(s, "\n".join(sql) + "\nSELECT pg_reload_conf();")
    log.info("set %s", ", ".join(q.split()[3] for q in sql))
    time.sleep(0.5)
    pending = psql(s, "SELECT name FROM pg_settings WHERE pending_restart").split()
    if "archive_mode" not in pending:
        return False
    if not restart:
        raise JobFailed("archive_mode = on takes effect after a PostgreSQL restart: restart it "
                        "(or run init with --restart), then run `wasp backup init` again")
    # without -l the server would inherit pg_ctl's output pipes and log into them
    server_log = Path(s.log_path) / f"{s.stanza}-postgresql-restart.log"
    log.info("restarting PostgreSQL in %s to enable archive_mode (server log: %s)", s.pg_path,
             server_log)
    try:
        proc = run_tool(s, [str(find_bindir() / "pg_ctl"), "-D", s.pg_path, "-l", str(server_log),
                            "-m", "fast", "-w", "-t", "300", "restart"], timeout=330)
    except subprocess.TimeoutExpired:
        raise JobFailed("pg_ctl restart did not finish within 330s") from None
    if proc.returncode != 0:
        raise JobFailed("pg_ctl restart failed: " + (proc.stderr or proc.stdout).decode(
            errors="replace").strip()[-500:])
    # after a start the checkpointer ignores archive_timeout until it wakes (checkpoint_timeout
    # later): a reload wakes it, so that WAL is archived within archive_timeout from now on
    psql(s, "SELECT pg_reload_conf();")
    return True


def _log_line(what: str, line: str) -> None:
    if " INFO: " in line or "WARN:" in line or "ERROR:" in line:
        msg = line.split(": ", 1)[1] if ": " in line else line
        if " command begin " in msg:
            return  # the full option list: noise (secrets are redacted by pgBackRest anyway)
        log.log(logging.WARNING if ("WARN" in line or "ERROR" in line) else logging.INFO,
                "%s: %s", what, msg.strip())


# ---------------------------------------------------------------------------
# run: backup then expire
# ---------------------------------------------------------------------------
def run_backup(ctx: BackupContext, type_: str, *, lock_wait: float = 3600.0) -> dict[str, Any]:
    """Take a backup of `type_` (full/diff/incr), then expire; the record says how it went."""
    if type_ not in BACKUP_TYPES:
        raise ValueError(f"backup type must be one of {BACKUP_TYPES}")
    s = ctx.settings
    rec = JobRecord(ctx.status_dir, s.stanza, f"run.{type_}", type=type_, repo=s.repo_key)
    try:
        with ctx.lock(wait=lock_wait):
            rec.update(lock_acquired_at=time.time())
            result = _backup(ctx, type_, rec)
    except JobFailed as e:
        log.error("%s backup failed: %s", type_, e)
        rec.finish(ok=False, exit_code=e.exit_code, error=str(e))
        raise
    except (OSError, RuntimeError) as e:
        rec.finish(ok=False, exit_code=1, error=str(e))
        raise JobFailed(str(e)) from e
    except KeyboardInterrupt:
        rec.finish(ok=False, exit_code=INTERRUPTED, error="interrupted")
        raise
    return rec.finish(ok=True, exit_code=0, **result)


def _backup(ctx: BackupContext, type_: str, rec: JobRecord) -> dict[str, Any]:
    s = ctx.settings
    pgb = ctx.pgbackrest()
    progress = Progress(f"{type_} backup", ctx.stream)
    label: list[str] = []

    def on_line(line: str) -> None:
        if "new backup label = " in line:
            label.append(line.rsplit("= ", 1)[1].strip())
        if " command begin " in line:
            return
        progress.line(line)

    log.info("starting %s backup of stanza %s", type_, s.stanza)
    r = pgb.run("backup", f"--type={type_}", "--log-level-console=detail",
                timeout=s.backup_timeout, on_line=on_line)
    progress.done()
    if r.timed_out:
        raise JobFailed(f"backup did not finish within {s.backup_timeout:g}s and was stopped", 1)
    if r.returncode != 0:
        raise JobFailed(f"pgbackrest backup exited {r.returncode}: {error_text(r.stdout)}",
                        r.returncode)
    if not label:
        raise JobFailed("pgbackrest backup succeeded but printed no backup label")
    result: dict[str, Any] = {"label": label[0], "actual_type": label_type(label[0]),
                              "backup_seconds": round(r.seconds, 3)}
    rec.update(**result)
    log.info("backup %s done in %.1fs; expiring", label[0], r.seconds)
    e = pgb.run("expire", "--log-level-console=info", timeout=3600,
                on_line=lambda ln: _log_line("expire", ln))
    result["expire_exit_code"] = e.returncode
    if not e.ok:
        raise JobFailed(f"backup {label[0]} completed but expire failed (exit {e.returncode}): "
                        f"{error_text(e.stdout)}", e.returncode or 1)
    try:
        info = fetch_info(ctx)
    except JobFailed as err:
        log.warning("cannot read backup sizes: %s", err)
        return result
    entry = info.by_label().get(label[0])
    if entry is not None:
        result.update(database_bytes=entry.size, delta_bytes=entry.delta,
                      repository_bytes=entry.repo_size, repository_delta_bytes=entry.repo_delta,
                      backup_start=entry.start, backup_stop=entry.stop, wal_start=entry.wal_start,
                      wal_stop=entry.wal_stop)
        log.info("backup %s: database %s, repository %s", entry.label, format_size(entry.size),
                 format_size(entry.repo_size))
    result["kept"] = {t: sum(1 for b in info.backups if b.type == t) for t in BACKUP_TYPES}
    return result


def format_size(n: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------
def verify_repo(ctx: BackupContext, *, lock_wait: float = 3600.0) -> dict[str, Any]:
    """`pgbackrest verify`, judged by its report (2.45 exits 0 on invalid files)."""
    s = ctx.settings
    rec = JobRecord(ctx.status_dir, s.stanza, "verify")
    lines: list[str] = []
    try:
        with ctx.lock(wait=lock_wait):
            r = ctx.pgbackrest().run("verify", "--log-level-console=info", timeout=s.backup_timeout,
                                     on_line=lines.append)
    except JobFailed as e:
        rec.finish(ok=False, exit_code=e.exit_code, error=str(e))
        raise
    except KeyboardInterrupt:
        rec.finish(ok=False, exit_code=INTERRUPTED, error="interrupted")
        raise
    report = parse_verify("\n".join(lines), r.returncode if not r.timed_out else 1)
    for ln in lines:
        _log_line("verify", ln)
    fields: dict[str, Any] = {"invalid_files": report.invalid_files, "problems": list(report.problems),
              "invalid_backups": list(report.backups_invalid), "pgbackrest_exit_code": r.returncode}
    if not report.ok:
        msg = "; ".join(report.problems)
        rec.finish(ok=False, exit_code=r.returncode or 1, error=msg, **fields)
        raise JobFailed(f"verify found problems: {msg}", r.returncode or 1)
    return rec.finish(ok=True, exit_code=0, **fields)
