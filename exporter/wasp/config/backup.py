"""The `backup:` section of the wasp configuration: validated, frozen settings.

Secrets (the repository passphrase, S3 keys) are named here by where they
live (an environment variable or a file), never by value; `resolve_secrets`
reads them when a command needs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from wasp.config.nodes import ConfigError, Node

if TYPE_CHECKING:
    from wasp.config.schema import Config

__all__ = [
    "BackupSettings",
    "DrillSettings",
    "RepoSettings",
    "RetentionSettings",
    "ScheduleSettings",
    "SecretRef",
    "Secrets",
    "parse_section",
    "resolve_secrets",
]

STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPTION_RE = re.compile(r"^[a-z][a-z0-9-]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
# options wasp writes itself; the free-form `options` map must not fight them
RESERVED_OPTIONS = frozenset({
    "stanza", "config", "config-path", "config-include-path", "lock-path", "log-path",
    "spool-path", "archive-async", "pg1-path", "pg1-port", "pg1-socket-path", "pg1-user",
})
SECRET_OPTION_RE = re.compile(r"(cipher-pass|key-secret|s3-key|s3-token|password|pass)$")

DEFAULT_TABLES = ("salons", "bookings", "messages", "conversations", "ai_conversations",
                  "ai_messages", "webhook_logs")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file (never the value)."""

    key: str
    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        """Where to find it, for error messages."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def read(self) -> str | None:
        """The secret, or None when the variable is unset/empty or the file unreadable."""
        if self.env:
            return os.environ.get(self.env) or None
        assert self.file is not None
        try:
            value = Path(self.file).read_text().strip()
        except OSError:
            return None
        return value or None


RepoType = Literal["posix", "s3"]
REPO_TYPES: tuple[RepoType, ...] = get_args(RepoType)
UriStyle = Literal["host", "path"]
URI_STYLES: tuple[UriStyle, ...] = get_args(UriStyle)
ArchiveType = Literal["full", "diff", "incr"]
ARCHIVE_TYPES: tuple[ArchiveType, ...] = get_args(ArchiveType)
CompressType = Literal["none", "gz", "lz4", "zst", "bz2"]
COMPRESS_TYPES: tuple[CompressType, ...] = get_args(CompressType)
Cipher = Literal["aes-256-cbc"]
CIPHERS: tuple[Cipher, ...] = get_args(Cipher)


@dataclass(frozen=True, slots=True)
class RepoSettings:
    """Where the repository lives: a local path or an S3-compatible bucket."""

    type: RepoType = "posix"
    path: str = "/var/lib/pgbackrest"
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    port: int | None = None
    uri_style: UriStyle = "host"
    verify_tls: bool = True
    key: SecretRef | None = None
    secret: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How many full/differential backups and how much WAL to keep."""

    full: int = 2
    diff: int | None = None
    archive: int | None = None
    archive_type: ArchiveType = "full"


@dataclass(frozen=True, slots=True)
class DrillSettings:
    """How a restore drill runs and what it checks."""

    scratch_dir: str = "/var/lib/wasp/drill"
    database: str = "postgres"
    user: str = "postgres"
    tables: tuple[str, ...] = DEFAULT_TABLES
    freshness_column: str = "created_at"
    expected_rpo: float = 3600.0
    amcheck_sample: int = 10
    recovery_timeout: float = 3600.0
    restore_timeout: float = 6 * 3600.0
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Cron expressions (5 fields, UTC) for each job; None disables a job."""

    full: str | None = "0 1 * * *"
    diff: str | None = None
    incr: str | None = "0 * * * *"
    drill: str | None = "30 3 * * 0"
    verify: str | None = None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """The whole `backup:` section."""

    stanza: str
    pg_path: str
    target: str | None = None
    pg_port: int = 5432
    pg_socket_path: str = "/var/run/postgresql"
    pg_user: str = "postgres"
    os_user: str = "postgres"
    pgbackrest: str = "pgbackrest"
    config_dir: str = "/etc/pgbackrest"
    lock_path: str = "/tmp/pgbackrest"
    log_path: str = "/var/log/pgbackrest"
    spool_path: str = "/var/spool/pgbackrest"
    archive_timeout: float = 60.0
    process_max: int = 2
    compress_type: CompressType = "lz4"
    options: tuple[tuple[str, str], ...] = ()
    repo: RepoSettings = field(default_factory=RepoSettings)
    passphrase: SecretRef = field(default_factory=lambda: SecretRef("passphrase",
                                                                    env="WASP_BACKUP_PASSPHRASE"))
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    drill: DrillSettings = field(default_factory=DrillSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    backup_timeout: float = 12 * 3600.0
    info_interval: float = 60.0
    info_timeout: float = 30.0
    source: str = ""

    @property
    def repo_key(self) -> str:
        """The repository index used in option names and metric labels."""
        return "1"

    @property
    def config_file(self) -> Path:
        """The pgBackRest configuration file wasp writes (no secrets in it)."""
        return Path(self.config_dir) / "pgbackrest.conf"

    @property
    def secrets_file(self) -> Path:
        """The include file holding the secrets, mode 0600 (archive-push needs them)."""
        return Path(self.config_dir) / "conf.d" / f"wasp-{self.stanza}-secrets.conf"


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    """Resolved secret values; repr never shows them."""

    passphrase: str | None
    s3_key: str | None = None
    s3_secret: str | None = None
    missing: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Secrets(missing={self.missing!r})"

    def env(self) -> dict[str, str]:
        """PGBACKREST_* variables carrying the secrets to a pgBackRest process."""
        out = {}
        if self.passphrase:
            out["PGBACKREST_REPO1_CIPHER_PASS"] = self.passphrase
        if self.s3_key:
            out["PGBACKREST_REPO1_S3_KEY"] = self.s3_key
        if self.s3_secret:
            out["PGBACKREST_REPO1_S3_KEY_SECRET"] = self.s3_secret
        return out


def resolve_secrets(s: BackupSettings) -> Secrets:
    """Read every configured secret now; `missing` says which could not be read and where."""
    missing = []
    passphrase = s.passphrase.read()
    if passphrase is None:
        missing.append(f"passphrase ({s.passphrase.describe()})")
    key = secret = None
    if s.repo.type == "s3":
        assert s.repo.key is not None and s.repo.secret is not None
        key = s.repo.key.read()
        secret = s.repo.secret.read()
        if key is None:
            missing.append(f"S3 key ({s.repo.key.describe()})")
        if secret is None:
            missing.append(f"S3 secret ({s.repo.secret.describe()})")
    return Secrets(passphrase, key, secret, tuple(missing))


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------
SECTION_KEYS = {
    "stanza", "target", "pg_path", "pg_port", "pg_socket_path", "pg_user", "os_user",
    "pgbackrest", "config_dir", "lock_path", "log_path", "spool_path", "archive_timeout",
    "process_max", "compress_type", "options", "repo", "encryption", "retention", "drill",
    "schedule", "backup_timeout", "metrics",
}
REPO_KEYS = {"type", "path", "bucket", "endpoint", "region", "port", "uri_style", "verify_tls",
             "key_env", "key_file", "secret_env", "secret_file"}
S3_ONLY = {"bucket", "endpoint", "region", "port", "uri_style", "verify_tls", "key_env",
           "key_file", "secret_env", "secret_file"}
ENCRYPTION_KEYS = {"cipher", "passphrase_env", "passphrase_file"}
RETENTION_KEYS = {"full", "diff", "archive", "archive_type"}
DRILL_KEYS = {"scratch_dir", "database", "user", "tables", "freshness_column", "expected_rpo",
              "amcheck_sample", "recovery_timeout", "restore_timeout", "settings"}
SCHEDULE_KEYS = {"full", "diff", "incr", "drill", "verify"}
METRICS_KEYS = {"interval", "timeout"}


def parse_section(node: Node) -> BackupSettings:
    """Validate the `backup:` section; every error names file:line and the dotted key."""
    node.mapping(SECTION_KEYS, required={"stanza", "pg_path"})
    stanza = node.child("stanza").str(pattern=STANZA_RE, what="a valid stanza name "
                                      "(letters, digits, '_', '.', '-')")
    archive_timeout = node.child("archive_timeout").duration(60.0, minimum=1.0)
    if archive_timeout > 60:
        node.child("archive_timeout").error(
            "must be at most 60s: it bounds how much WAL may stay unarchived")
    metrics = node.child("metrics").mapping(METRICS_KEYS)
    info_interval = metrics.child("interval").duration(60.0, minimum=5.0)
    info_timeout = metrics.child("timeout").duration(min(30.0, info_interval), minimum=1.0)
    if info_timeout > info_interval:
        metrics.child("timeout").error(f"must not exceed the interval ({info_interval:g}s)")
    return BackupSettings(
        stanza=stanza,
        target=node.child("target").opt_str(),
        pg_path=_abs_path(node.child("pg_path")),
        pg_port=node.child("pg_port").int(5432, minimum=1, maximum=65535),
        pg_socket_path=_abs_path(node.child("pg_socket_path"), "/var/run/postgresql"),
        pg_user=node.child("pg_user").str("postgres"),
        os_user=node.child("os_user").str("postgres"),
        pgbackrest=node.child("pgbackrest").str("pgbackrest"),
        config_dir=_abs_path(node.child("config_dir"), "/etc/pgbackrest"),
        lock_path=_abs_path(node.child("lock_path"), "/tmp/pgbackrest"),
        log_path=_abs_path(node.child("log_path"), "/var/log/pgbackrest"),
        spool_path=_abs_path(node.child("spool_path"), "/var/spool/pgbackrest"),
        archive_timeout=archive_timeout,
        process_max=node.child("process_max").int(2, minimum=1, maximum=64),
        compress_type=node.child("compress_type").choice(COMPRESS_TYPES, "lz4"),
        options=_parse_options(node.child("options")),
        repo=_parse_repo(node.child("repo")),
        passphrase=_parse_encryption(node.child("encryption")),
        retention=_parse_retention(node.child("retention")),
        drill=_parse_drill(node.child("drill")),
        schedule=_parse_schedule(node.child("schedule")),
        backup_timeout=node.child("backup_timeout").duration(12 * 3600.0, minimum=10.0),
        info_interval=info_interval,
        info_timeout=info_timeout,
        source=f"{node.file}:{node.line}" if node.line else node.file,
    )


def _abs_path(node: Node, default: str | None = None) -> str:
    value = node.str(default)
    if not value.startswith("/"):
        node.error(f"must be an absolute path, got {value!r}")
    return value.rstrip("/") or "/"


def _secret_ref(node: Node, key: str, env_key: str, file_key: str, *, required: bool) -> SecretRef | None:
    given = [k for k in (env_key, file_key) if node.has(k)]
    if len(given) > 1:
        node.child(file_key).error(f"give either {env_key} or {file_key}, not both")
    if not given:
        if required:
            node.error(f"missing {env_key} (an environment variable) or {file_key} "
                       f"(a file) for the {key}; secrets are never written in this file")
        return None
    if given[0] == env_key:
        env = node.child(env_key).str(pattern=ENV_RE, what="an environment variable name")
        return SecretRef(key, env=env)
    path = _abs_path(node.child(file_key))
    return SecretRef(key, file=path)


def _parse_repo(node: Node) -> RepoSettings:
    node.mapping(REPO_KEYS)
    type_ = node.child("type").choice(REPO_TYPES, "posix")
    if type_ == "posix":
        for k in S3_ONLY:
            if node.has(k):
                node.child(k).error("only applies to repo type s3")
        return RepoSettings(type="posix", path=_abs_path(node.child("path"), "/var/lib/pgbackrest"))
    for k in ("bucket", "endpoint"):
        if not node.has(k):
            node.error(f"missing required key {k!r} for repo type s3")
    endpoint = node.child("endpoint").str()
    if "://" in endpoint or "/" in endpoint:
        node.child("endpoint").error("must be a host name such as s3.eu-west-1.amazonaws.com "
                                     "(no scheme or path; set port separately)")
    port = node.child("port").int(0, minimum=0, maximum=65535) or None
    return RepoSettings(
        type="s3",
        path=_abs_path(node.child("path"), "/pgbackrest"),
        bucket=node.child("bucket").str(),
        endpoint=endpoint,
        region=node.child("region").str("us-east-1"),
        port=port,
        uri_style=node.child("uri_style").choice(URI_STYLES, "host"),
        verify_tls=node.child("verify_tls").bool(True),
        key=_secret_ref(node, "S3 access key", "key_env", "key_file", required=True),
        secret=_secret_ref(node, "S3 secret key", "secret_env", "secret_file", required=True),
    )


def _parse_encryption(node: Node) -> SecretRef:
    if node.is_missing():
        node.error("is required: the repository is always encrypted (aes-256-cbc); "
                   "give passphrase_env or passphrase_file")
    node.mapping(ENCRYPTION_KEYS)
    node.child("cipher").choice(CIPHERS, "aes-256-cbc")
    ref = _secret_ref(node, "repository passphrase", "passphrase_env", "passphrase_file",
                      required=True)
    assert ref is not None
    return ref


def _parse_retention(node: Node) -> RetentionSettings:
    node.mapping(RETENTION_KEYS)
    full = node.child("full").int(2, minimum=1, maximum=9999999)
    diff = node.child("diff").int(0, minimum=0, maximum=9999999) or None
    archive = node.child("archive").int(0, minimum=0, maximum=9999999) or None
    archive_type = node.child("archive_type").choice(ARCHIVE_TYPES, "full")
    if archive_type != "full" and archive is None:
        node.child("archive_type").error("needs retention.archive (a number of backups)")
    return RetentionSettings(full=full, diff=diff, archive=archive, archive_type=archive_type)


def _parse_drill(node: Node) -> DrillSettings:
    node.mapping(DRILL_KEYS)
    tables = node.child("tables").str_list(DEFAULT_TABLES)
    for i, t in enumerate(tables):
        if not IDENT_RE.match(t):
            node.child("tables").sequence()[i].error("must be a table name (optionally schema.table)")
    column = node.child("freshness_column").str("created_at")
    if not IDENT_RE.match(column) or "." in column:
        node.child("freshness_column").error("must be a column name")
    settings: tuple[tuple[str, str], ...] = ()
    if node.has("settings"):
        sm = node.child("settings").str_map()
        for k in sm:
            if not re.match(r"^[a-z_][a-z0-9_.]*$", k):
                node.child("settings").child(k).error("not a PostgreSQL setting name")
        settings = tuple(sorted(sm.items()))
    return DrillSettings(
        scratch_dir=_abs_path(node.child("scratch_dir"), "/var/lib/wasp/drill"),
        database=node.child("database").str("postgres"),
        user=node.child("user").str("postgres"),
        tables=tables,
        freshness_column=column,
        expected_rpo=node.child("expected_rpo").duration(3600.0, minimum=1.0),
        amcheck_sample=node.child("amcheck_sample").int(10, minimum=0, maximum=10000),
        recovery_timeout=node.child("recovery_timeout").duration(3600.0, minimum=5.0),
        restore_timeout=node.child("restore_timeout").duration(6 * 3600.0, minimum=5.0),
        settings=settings,
    )


def _parse_schedule(node: Node) -> ScheduleSettings:
    from wasp.config.cron import CronError, parse_cron

    node.mapping(SCHEDULE_KEYS)
    defaults = ScheduleSettings()
    values: dict[str, str | None] = {}
    for k in sorted(SCHEDULE_KEYS):
        child = node.child(k)
        if not node.has(k):
            values[k] = getattr(defaults, k)
            continue
        if child.value is None or child.value is False or child.value == "off":
            values[k] = None
            continue
        text = child.str()
        try:
            parse_cron(text)
        except CronError as e:
            child.error(str(e))
        values[k] = text
    return ScheduleSettings(**values)


def _parse_options(node: Node) -> tuple[tuple[str, str], ...]:
    if node.is_missing():
        return ()
    out = node.str_map()
    for k in out:
        if not OPTION_RE.match(k):
            node.child(k).error("not a pgBackRest option name (lower case with dashes)")
        if k in RESERVED_OPTIONS:
            node.child(k).error("is set by wasp from the other keys of this section")
        if SECRET_OPTION_RE.search(k):
            node.child(k).error("secrets never go in this file: use encryption.passphrase_env/"
                                "_file or repo.key_env/secret_env")
    return tuple(sorted(out.items()))


def section_error(s: BackupSettings, key: str, message: str) -> ConfigError:
    """A ConfigError pointing at the backup section (for checks made after parsing)."""
    file, _, line = s.source.rpartition(":")
    if not file or not line.isdigit():
        return ConfigError(s.source, None, f"backup.{key}" if key else "backup", message)
    return ConfigError(file, int(line), f"backup.{key}" if key else "backup", message)


def target_problem(cfg: Config, name: str) -> str | None:
    """Why target `name` cannot serve the backup section (LSN, archiver), or None."""
    try:
        t = cfg.target(name)
    except KeyError:
        return f"names target {name!r}, which is not defined"
    if t.type != "postgres":
        return f"target {name!r} is a {t.type} target, not postgres"
    return None
