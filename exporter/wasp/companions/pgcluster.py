"""Local PostgreSQL clusters driven by the standard binaries (initdb, pg_ctl).

Used by `wasp demo`, the replica companion, restore drills and the tests.
When run as root, every server binary runs as the ``postgres`` system user
(PostgreSQL refuses to run as root) and the data directory is chowned to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ClusterError",
    "LocalCluster",
    "find_bindir",
    "free_port",
    "port_in_use",
    "run_as_postgres",
]

PG_MAJOR = "15"


class ClusterError(RuntimeError):
    """A local cluster could not be created, started or stopped."""


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/pg_basebackup (WASP_PG_BINDIR overrides)."""
    env = os.environ.get("WASP_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ClusterError(
        "PostgreSQL server binaries not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install postgresql-15 or set WASP_PG_BINDIR"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pg_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    name = os.environ.get("WASP_PG_OS_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError as e:
        raise ClusterError(
            f"running as root needs the system user {name!r} to run PostgreSQL "
            "(install postgresql-15, or set WASP_PG_OS_USER)"
        ) from e


def chown_to_postgres(path: Path) -> None:
    """Give `path` (recursively) to the postgres system user when running as root."""
    user = _pg_user()
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    if not path.is_dir():
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for n in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, n), user.pw_uid, user.pw_gid)


def run_as_postgres(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, dropping root to the postgres user when needed."""
    user = _pg_user()
    full_env = dict(os.environ if env is None else env)
    preexec = None
    if user is not None:
        uid, gid, home = user.pw_uid, user.pw_gid, user.pw_dir

        def preexec() -> None:
            os.setgid(gid)
            os.initgroups(user.pw_name, gid)
            os.setuid(uid)

        full_env["HOME"] = home
        full_env["USER"] = full_env["LOGNAME"] = user.pw_name
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            env=full_env,
            preexec_fn=preexec,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd if cwd is not None else "/",
            input=input,
        )
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"{Path(str(argv[0])).name} timed out after {timeout}s") from e
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{Path(str(argv[0])).name} exited {proc.returncode}: "
            + (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        )
    return proc


@dataclass
class LocalCluster:
    """One PostgreSQL data directory on a loopback port."""

    datadir: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    settings: dict[str, str] = field(default_factory=dict)
    bindir: Path = field(default_factory=find_bindir)

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()

    @property
    def logfile(self) -> Path:
        """Server log written by pg_ctl."""
        return self.datadir.parent / f"{self.datadir.name}.log"

    @property
    def socket_dir(self) -> Path:
        """Unix socket directory (inside the data directory, never /var/run)."""
        return self.datadir

    def dsn(self, dbname: str = "postgres", user: str | None = None, **extra: str) -> str:
        """A libpq connection string for this cluster."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": dbname,
            "user": user or self.superuser,
            "connect_timeout": "5",
        }
        parts.update(extra)
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        """The same as dsn() in URL form."""
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{dbname}"

    def exists(self) -> bool:
        """True when the data directory holds an initialised cluster."""
        return (self.datadir / "PG_VERSION").exists()

    def init(self, *, auth: str = "trust", extra_args: Sequence[str] = ()) -> None:
        """initdb, then append our settings to postgresql.conf."""
        if self.exists():
            raise ClusterError(f"{self.datadir} already holds a cluster")
        self.datadir.mkdir(parents=True, exist_ok=True)
        if any(self.datadir.iterdir()):
            raise ClusterError(f"{self.datadir} is not empty")
        self.datadir.chmod(0o700)
        _check_traversable(self.datadir.parent)
        chown_to_postgres(self.datadir)
        run_as_postgres(
            [
                self.bindir / "initdb",
                "-D",
                self.datadir,
                "-U",
                self.superuser,
                f"--auth={auth}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                *extra_args,
            ],
            timeout=300,
        )
        base = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "on",
            "shared_preload_libraries": "'pg_stat_statements'",
            "max_connections": "100",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        base.update(self.settings)
        self.write_settings(base)

    def write_settings(self, settings: Mapping[str, str]) -> None:
        """Append settings to postgresql.auto-style include file postgresql.wasp.conf."""
        conf = self.datadir / "postgresql.wasp.conf"
        existing: dict[str, str] = {}
        if conf.exists():
            for line in conf.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    k, v = line.split("=", 1)
                    existing[k.strip()] = v.strip()
        existing.update(settings)
        conf.write_text("".join(f"{k} = {v}\n" for k, v in existing.items()))
        main = self.datadir / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'postgresql.wasp.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'postgresql.wasp.conf'\n")
        chown_to_postgres(self.datadir)

    def pg_ctl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run pg_ctl against this data directory."""
        return run_as_postgres(
            [self.bindir / "pg_ctl", "-D", self.datadir, *args], timeout=timeout, check=check
        )

    def start(self, *, timeout: int = 60) -> None:
        """Start the server and wait until it accepts connections."""
        if self.is_running():
            return
        if port_in_use(self.port, self.host):
            raise ClusterError(f"port {self.host}:{self.port} is already in use")
        if os.geteuid() == 0 and not self.logfile.exists():
            self.logfile.touch()
            chown_to_postgres(self.logfile)
        proc = self.pg_ctl("-l", str(self.logfile), "-w", "-t", str(timeout), "start", check=False,
                           timeout=timeout + 10)
        if proc.returncode != 0:
            raise ClusterError(
                f"pg_ctl start failed for {self.datadir}: {proc.stderr.strip() or proc.stdout.strip()}\n"
                + self.log_tail()
            )
        # PostgreSQL 15's checkpointer starts while the server still recovers, and then sleeps
        # checkpoint_timeout before it looks at archive_timeout: no WAL segment is switched (so
        # none archived) for up to 5 minutes after each start. A reload wakes it, now that the
        # recovery is over, and archive_timeout holds from the start.
        self.pg_ctl("reload", check=False)

    def stop(self, mode: str = "fast", *, timeout: int = 60) -> None:
        """Stop the server if it runs."""
        if not self.is_running():
            return
        self.pg_ctl("-m", mode, "-w", "-t", str(timeout), "stop", timeout=timeout + 10)

    def restart(self) -> None:
        """Stop then start."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Ask the server to re-read its configuration."""
        self.pg_ctl("reload")

    def promote(self, *, timeout: int = 60) -> None:
        """Promote a standby and wait until it accepts writes."""
        self.pg_ctl("-w", "-t", str(timeout), "promote", timeout=timeout + 10)

    def is_running(self) -> bool:
        """True when pg_ctl status says the postmaster runs."""
        if not self.exists():
            return False
        return self.pg_ctl("status", check=False).returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def psql(self, sql: str, *, dbname: str = "postgres", user: str | None = None) -> str:
        """Run SQL through psql (no driver needed); returns unaligned tuples-only output."""
        proc = run_as_postgres(
            [
                self.bindir / "psql",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                user or self.superuser,
                "-d",
                dbname,
            ],
            input=sql,
            timeout=600,
        )
        return proc.stdout

    def destroy(self) -> None:
        """Stop the server and remove the data directory and log."""
        with contextlib.suppress(ClusterError):
            self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.logfile.unlink()


def _check_traversable(path: Path) -> None:
    # As root, the server runs as another user: every ancestor must let it through.
    user = _pg_user()
    if user is None:
        return
    for p in [path, *path.parents]:
        st = p.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            raise ClusterError(
                f"{p} is not searchable by the {user.pw_name!r} user that runs PostgreSQL; "
                f"choose a data directory under a world-searchable path (chmod o+x {p})"
            )


def _quote(v: str) -> str:
    if v and all(c.isalnum() or c in "._-/:" for c in v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def temporary_cluster(base: Path, name: str = "pg", **kw: object) -> Iterator[LocalCluster]:
    """A started cluster under `base` that is destroyed on exit."""
    c = LocalCluster(datadir=base / name, port=free_port(), **kw)  # type: ignore[arg-type]
    c.init()
    c.start()
    try:
        yield c
    finally:
        c.destroy()


def wait_ready(cluster: LocalCluster, timeout: float = 30) -> None:
    """Poll pg_isready until the server answers or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = run_as_postgres(
            [cluster.bindir / "pg_isready", "-h", cluster.host, "-p", str(cluster.port)], check=False
        )
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise ClusterError(f"{cluster.host}:{cluster.port} not ready after {timeout}s")
