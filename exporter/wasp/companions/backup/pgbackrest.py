"""Driving the pgbackrest binary: configuration files, processes, and reading its output.

pgBackRest runs as the PostgreSQL OS user (root drops to it). Secrets reach it
through its configuration include file (mode 0600, for archive-push, which
PostgreSQL starts) or through PGBACKREST_* environment variables; never
through the command line, where `ps` would show them.

Reading what pgBackRest prints (info JSON, verify text, progress lines) lives
in `output`; its names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasp.companions.backup.output import (
    STATUS_CODES,
    BackupEntry,
    InfoError,
    RepoStatus,
    StanzaInfo,
    VerifyReport,
    chain_labels,
    error_text,
    label_type,
    parse_info,
    parse_progress,
    parse_verify,
    wal_segment_end,
)
from wasp.config.backup import BackupSettings, Secrets

__all__ = [
    "STATUS_CODES",
    "BackupEntry",
    "InfoError",
    "PgBackRest",
    "ProcResult",
    "RepoStatus",
    "StanzaInfo",
    "VerifyReport",
    "chain_labels",
    "error_text",
    "label_type",
    "parse_info",
    "parse_progress",
    "parse_verify",
    "render_config",
    "render_secrets",
    "run_tool",
    "wal_segment_end",
    "write_private_file",
]

# ---------------------------------------------------------------------------
# configuration files
# ---------------------------------------------------------------------------
def render_config(s: BackupSettings, *, overrides: Mapping[str, str] | None = None) -> str:
    """The pgbackrest.conf wasp writes for `s` (no secrets in it)."""
    g: dict[str, str] = {
        "repo1-type": s.repo.type,
        "repo1-path": s.repo.path,
        "repo1-cipher-type": "aes-256-cbc",
        "repo1-retention-full": str(s.retention.full),
        "repo1-retention-full-type": "count",
    }
    if s.retention.diff is not None:
        g["repo1-retention-diff"] = str(s.retention.diff)
    if s.retention.archive is not None:
        g["repo1-retention-archive"] = str(s.retention.archive)
        g["repo1-retention-archive-type"] = s.retention.archive_type
    if s.repo.type == "s3":
        assert s.repo.bucket and s.repo.endpoint and s.repo.region
        g["repo1-s3-bucket"] = s.repo.bucket
        g["repo1-s3-endpoint"] = s.repo.endpoint
        g["repo1-s3-region"] = s.repo.region
        g["repo1-s3-uri-style"] = s.repo.uri_style
        g["repo1-storage-verify-tls"] = "y" if s.repo.verify_tls else "n"
        if s.repo.port:
            g["repo1-storage-port"] = str(s.repo.port)
    g.update({
        "archive-async": "y",
        "spool-path": s.spool_path,
        "lock-path": s.lock_path,
        "log-path": s.log_path,
        "log-level-file": "info",
        "process-max": str(s.process_max),
        "compress-type": s.compress_type,
        "start-fast": "y",
    })
    g.update(dict(s.options))
    if overrides:
        g.update(overrides)
    stanza = {
        "pg1-path": s.pg_path,
        "pg1-port": str(s.pg_port),
        "pg1-socket-path": s.pg_socket_path,
        "pg1-user": s.pg_user,
    }
    lines = ["# Written by `wasp backup init` from the wasp configuration; edits are overwritten.",
             "# Secrets live in conf.d/ (mode 0600), never here.", "", "[global]"]
    lines += [f"{k}={v}" for k, v in g.items()]
    lines += ["", f"[{s.stanza}]"]
    lines += [f"{k}={v}" for k, v in stanza.items()]
    return "\n".join(lines) + "\n"


def render_secrets(secrets: Secrets) -> str:
    """The include file with the repository secrets (mode 0600)."""
    lines = ["# Written by `wasp backup init`: repository secrets, readable by the "
             "PostgreSQL OS user only.", "[global]"]
    if secrets.passphrase:
        lines.append(f"repo1-cipher-pass={secrets.passphrase}")
    if secrets.s3_key:
        lines.append(f"repo1-s3-key={secrets.s3_key}")
    if secrets.s3_secret:
        lines.append(f"repo1-s3-key-secret={secrets.s3_secret}")
    return "\n".join(lines) + "\n"


def os_user_ids(name: str) -> tuple[int, int] | None:
    """(uid, gid) of `name` when we run as root and must drop to it; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        u = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"OS user {name!r} (backup.os_user) does not exist") from None
    return u.pw_uid, u.pw_gid


def make_dir(path: str | Path, os_user: str, mode: int = 0o750) -> Path:
    """Create `path` (and parents) owned by the OS user pgBackRest runs as."""
    p = Path(path)
    missing = [q for q in [p, *p.parents] if not q.exists()]
    p.mkdir(parents=True, exist_ok=True)
    ids = os_user_ids(os_user)
    for q in missing:
        q.chmod(mode if q == p else 0o755)
        if ids is not None and q == p:
            os.chown(q, *ids)
    if ids is not None and p.stat().st_uid != ids[0]:
        os.chown(p, *ids)
    return p


def write_private_file(path: str | Path, text: str, *, os_user: str, mode: int) -> None:
    """Atomically write `text` to `path` with `mode`, owned by `os_user` when we are root."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        os.fchmod(fd, mode)
        ids = os_user_ids(os_user)
        if ids is not None:
            os.fchown(fd, *ids)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProcResult:
    """How a pgbackrest process ended."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool = False

    @property
    def text(self) -> str:
        """stdout and stderr as text (undecodable bytes replaced)."""
        return (self.stdout + b"\n" + self.stderr).decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """Exit code 0 and no timeout."""
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class PgBackRest:
    """Runs pgbackrest for one stanza as the configured OS user, secrets in the environment."""

    settings: BackupSettings
    secrets: Secrets | None = None
    config_dir: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, command: str, *options: str, stanza: bool = True) -> list[str]:
        """The full command line (it never holds a secret)."""
        out = [self.settings.pgbackrest, f"--config-path={self.config_dir or self.settings.config_dir}"]
        if stanza:
            out.append(f"--stanza={self.settings.stanza}")
        out += list(options)
        out.append(command)
        return out

    def env(self) -> dict[str, str]:
        """The child's environment: ours minus stray PGBACKREST_* plus the secrets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGBACKREST_")}
        ids = os_user_ids(self.settings.os_user)
        if ids is not None:
            u = pwd.getpwuid(ids[0])
            env.update(HOME=u.pw_dir, USER=u.pw_name, LOGNAME=u.pw_name)
        if self.secrets is not None:
            env.update(self.secrets.env())
        env.update(self.extra_env)
        return env

    def _popen_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"env": self.env(), "cwd": "/", "start_new_session": True}
        ids = os_user_ids(self.settings.os_user)
        if ids is not None:
            uid, gid = ids
            name = pwd.getpwuid(uid).pw_name
            kw.update(user=uid, group=gid,
                      extra_groups=[g for g in os.getgrouplist(name, gid) if _group_exists(g)])
        return kw

    def run(self, command: str, *options: str, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None, stanza: bool = True) -> ProcResult:
        """Run and wait; stdout and stderr merged into stdout, fed line by line to `on_line`."""
        argv = self.argv(command, *options, stanza=stanza)
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, **self._popen_kwargs())
        chunks: list[bytes] = []
        timed_out = False
        deadline = None if timeout is None else start + timeout
        assert proc.stdout is not None
        try:
            with proc.stdout:
                if deadline is not None:
                    watchdog = _Watchdog(proc, deadline)
                    watchdog.start()
                for raw in iter(proc.stdout.readline, b""):
                    chunks.append(raw)
                    if on_line is not None:
                        on_line(raw.decode("utf-8", "replace").rstrip("\n"))
        except BaseException:
            # interrupted (SIGINT/SIGTERM) or a callback failed: pgBackRest must not run on alone
            _kill_group(proc.pid)
            proc.wait()
            raise
        rc = proc.wait()
        if deadline is not None:
            watchdog.cancel()
            timed_out = watchdog.fired
        return ProcResult(tuple(argv), rc, b"".join(chunks), b"", time.monotonic() - start, timed_out)

    def capture(self, command: str, *options: str, timeout: float | None = None,
                stanza: bool = True) -> ProcResult:
        """Run and wait, stdout and stderr kept apart (for JSON output)."""
        argv = self.argv(command, *options, stanza=stanza)
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, **self._popen_kwargs())
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            timed_out = True
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        return ProcResult(tuple(argv), proc.returncode, out, err, time.monotonic() - start, timed_out)

    async def capture_async(self, command: str, *options: str, timeout: float,
                            stanza: bool = True) -> ProcResult:
        """`capture` without blocking the event loop; the process group dies on timeout."""
        argv = self.argv(command, *options, stanza=stanza)
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL, **self._popen_kwargs())
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            timed_out = False
        except (TimeoutError, asyncio.CancelledError) as e:
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                out, err = await asyncio.wait_for(proc.communicate(), 5)
            if isinstance(e, asyncio.CancelledError):
                raise
            out, err = b"", b""
            timed_out = True
        rc = proc.returncode if proc.returncode is not None else -9
        return ProcResult(tuple(argv), rc, out, err, time.monotonic() - start, timed_out)


def run_tool(s: BackupSettings, argv: Sequence[str], *, input: bytes | None = None,
             timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run a PostgreSQL tool (psql, pg_ctl) as the OS user; TimeoutExpired on timeout."""
    kw = PgBackRest(s)._popen_kwargs()
    kw.pop("start_new_session")
    return subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL, **kw)


def _group_exists(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Watchdog:
    """Kills a process group when a deadline passes (for streaming reads)."""

    def __init__(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        self.proc = proc
        self.deadline = deadline
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if time.monotonic() >= self.deadline and self.proc.poll() is None:
                self.fired = True
                _kill_group(self.proc.pid)
                return
