"""The backup section, schedules, pgBackRest output parsing and the pack's families (no servers)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from wasp.companions.backup.pgbackrest import (
    InfoError,
    error_text,
    parse_info,
    parse_progress,
    parse_verify,
    render_config,
    render_secrets,
    wal_segment_end,
)
from wasp.companions.backup.records import StanzaRecords, merge_verdicts, newest_good
from wasp.config.backup import Secrets, parse_section, resolve_secrets
from wasp.config.nodes import Node, load_yaml
from wasp.config.schema import ConfigError, parse_config
from wasp.model import check_metric_name
from wasp.packs.backup import (
    METRICS,
    families_from_info,
    families_from_records,
    families_from_wal,
)

SUPPORT = Path(__file__).parent / "backup_support"

BASE = """\
server:
  status_dir: /tmp/wasp-test-status
targets:
  main:
    dsn: host=127.0.0.1
    packs: [backup]
backup:
  stanza: main
  target: main
  pg_path: /var/lib/postgresql/15/main
  encryption:
    passphrase_env: WASP_BACKUP_PASSPHRASE
"""


def section(extra: str = "", base: str = BASE) -> Any:
    """Parse BASE plus `extra` lines (indented under backup:) and return the backup settings."""
    text = base + "".join(f"  {line}\n" for line in extra.splitlines())
    return parse_config(load_yaml(text, "wasp.yml"), "wasp.yml").section("backup")


def error_of(extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        section(extra)
    return e.value


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------
def test_defaults() -> None:
    s = section()
    assert s.stanza == "main" and s.target == "main"
    assert s.repo.type == "posix" and s.repo.path == "/var/lib/pgbackrest"
    assert s.archive_timeout == 60
    assert s.retention.full == 2 and s.retention.diff is None
    assert s.passphrase.env == "WASP_BACKUP_PASSPHRASE"
    assert (s.schedule.full, s.schedule.incr, s.schedule.drill) == (
        "0 1 * * *", "0 * * * *", "30 3 * * 0")
    assert s.drill.tables[0] == "salons" and s.drill.amcheck_sample == 10


def test_s3_section() -> None:
    s = section("repo:\n  type: s3\n  bucket: b\n  endpoint: s3.example.com\n  port: 9443\n"
                "  uri_style: path\n  verify_tls: false\n  key_env: K\n  secret_file: /run/s3")
    assert (s.repo.bucket, s.repo.endpoint, s.repo.port, s.repo.uri_style) == (
        "b", "s3.example.com", 9443, "path")
    assert not s.repo.verify_tls and s.repo.path == "/pgbackrest"
    assert s.repo.key.env == "K" and s.repo.secret.file == "/run/s3"
    text = render_config(s)
    assert "repo1-s3-uri-style=path" in text and "repo1-storage-verify-tls=n" in text
    assert "repo1-storage-port=9443" in text


@pytest.mark.parametrize(("extra", "key", "line", "words"), [
    ("archive_timeout: 5m", "backup.archive_timeout", 13, "at most 60s"),
    ("repo:\n  type: s3\n  bucket: b", "backup.repo", 13, "endpoint"),
    ("repo:\n  type: s3\n  bucket: b\n  endpoint: https://x", "backup.repo.endpoint", 16, "no scheme"),
    ("repo:\n  type: s3\n  bucket: b\n  endpoint: x\n  key_env: K", "backup.repo", 13, "secret_env"),
    ("repo:\n  bucket: b", "backup.repo.bucket", 14, "only applies to repo type s3"),
    ("repo:\n  path: relative", "backup.repo.path", 14, "absolute path"),
    ("options:\n  repo1-cipher-pass: x", "backup.options.repo1-cipher-pass", 14, "secrets never"),
    ("options:\n  pg1-path: /x", "backup.options.pg1-path", 14, "set by wasp"),
    ("schedule:\n  full: 0 25 * * *", "backup.schedule.full", 14, "out of range"),
    ("schedule:\n  incr: hourly", "backup.schedule.incr", 14, "5 fields"),
    ("drill:\n  tables: [\"x; drop\"]", "backup.drill.tables[0]", 14, "table name"),
    ("retention:\n  full: 0", "backup.retention.full", 14, ">= 1"),
    ("bogus: 1", "backup.bogus", 13, "unknown key"),
    ("metrics:\n  interval: 10s\n  timeout: 20s", "backup.metrics.timeout", 15, "interval"),
])
def test_errors_name_line_and_key(extra: str, key: str, line: int, words: str) -> None:
    e = error_of(extra)
    assert e.key == key, e
    assert e.line == line, e
    assert words in e.message, e
    assert str(e).startswith(f"wasp.yml:{line}: {key}:")


def test_encryption_is_required_and_never_inline() -> None:
    base = BASE.replace("  encryption:\n    passphrase_env: WASP_BACKUP_PASSPHRASE\n", "")
    with pytest.raises(ConfigError, match=r"backup\.encryption: is required"):
        section("", base=base)
    with pytest.raises(ConfigError, match="unknown key"):
        section("", base=base + "  encryption:\n    passphrase: hunter2\n")
    with pytest.raises(ConfigError, match="not both"):
        section("", base=base + "  encryption:\n    passphrase_env: A\n    passphrase_file: /x\n")


def test_secrets_resolve_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "s3-secret"
    secret_file.write_text("from-file\n")
    s = section(f"repo:\n  type: s3\n  bucket: b\n  endpoint: e\n  key_env: WASP_T_KEY\n"
                f"  secret_file: {secret_file}")
    monkeypatch.setenv("WASP_BACKUP_PASSPHRASE", "pass-from-env")
    monkeypatch.delenv("WASP_T_KEY", raising=False)
    got = resolve_secrets(s)
    assert got.passphrase == "pass-from-env" and got.s3_secret == "from-file"
    assert got.missing == ("S3 key (environment variable WASP_T_KEY)",)
    assert "pass-from-env" not in repr(got)
    assert got.env() == {"PGBACKREST_REPO1_CIPHER_PASS": "pass-from-env",
                         "PGBACKREST_REPO1_S3_KEY_SECRET": "from-file"}


def test_config_file_holds_no_secret() -> None:
    s = section("options:\n  process-max: '4'")
    text = render_config(s)
    assert "cipher-pass" not in text and "s3-key" not in text
    assert "repo1-cipher-type=aes-256-cbc" in text and "archive-async=y" in text
    assert "process-max=4" in text and "[main]\npg1-path=/var/lib/postgresql/15/main" in text
    secrets = render_secrets(Secrets("p4ss", "k", "s"))
    assert "repo1-cipher-pass=p4ss" in secrets and "repo1-s3-key-secret=s" in secrets


def test_parse_section_standalone() -> None:
    node = Node(load_yaml("stanza: x\npg_path: /d\nencryption: {passphrase_file: /p}\n", "f.yml"),
                "f.yml", "backup")
    s = parse_section(node)
    assert s.stanza == "x" and s.passphrase.file == "/p" and s.source == "f.yml:1"


# ---------------------------------------------------------------------------
# pgBackRest output
# ---------------------------------------------------------------------------
def test_parse_info() -> None:
    [st] = parse_info((SUPPORT / "info_ok.json").read_bytes())
    assert st.name == "main" and st.code == 0 and st.repos[0].code == 0
    b = st.backups[-1]
    assert b.type == "full" and b.size > 0 and b.repo_size > 0 and b.stop >= b.start
    assert st.archive_min is not None and st.archive_max is not None
    assert b.chain == (b.label,) and st.archive_min <= st.archive_max


def test_wrong_passphrase_info_with_raw_bytes_parses() -> None:
    raw = (SUPPORT / "info_wrong_passphrase.json.bin").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    [st] = parse_info(raw)
    assert st.repos[0].code == 99 and st.backups == ()
    assert st.repos[0].message.isprintable()


@pytest.mark.parametrize("raw", [b"", b"ERROR: nope", b"{}", b"[{"])
def test_unusable_info_raises(raw: bytes) -> None:
    with pytest.raises(InfoError):
        parse_info(raw)


def test_verify_report_beats_exit_code() -> None:
    text = (SUPPORT / "verify_invalid.txt").read_text()
    rep = parse_verify(text, 0)
    assert not rep.ok and rep.invalid_files == 1
    assert any("invalid checksum" in p for p in rep.problems)
    assert rep.backups_invalid and rep.backups_invalid[0].endswith("F")
    clean = "P00   INFO: verify command end: completed successfully (234ms)"
    assert parse_verify(clean, 0).ok
    assert not parse_verify(clean, 56).ok


def test_error_text_and_progress() -> None:
    out = "x\nERROR: [037]: info command requires option: repo1-cipher-pass\n"
    assert error_text(out) == "[037] info command requires option: repo1-cipher-pass"
    assert error_text("a\nb\n") == "a / b"
    line = "P01 DETAIL: backup file /d/base/5/1255 (768KB, 3.42%) checksum adb7"
    assert parse_progress(line) == 3.42
    assert parse_progress("P01 DETAIL: restore file /d/x - exists and matches backup (0B, 100.00%)") == 100.0
    assert parse_progress("INFO: backup start") is None


def test_wal_segment_end() -> None:
    mb16 = 16 * 1024 * 1024
    assert wal_segment_end("000000010000000000000003", mb16) == 4 * mb16
    assert wal_segment_end("000000010000000100000002", mb16) == 0x100000000 + 3 * mb16
    assert wal_segment_end("000000010000000000000009.00000028.backup", mb16) == 10 * mb16
    assert wal_segment_end("00000002.history", mb16) is None


# ---------------------------------------------------------------------------
# families
# ---------------------------------------------------------------------------
def test_metric_names_follow_conventions() -> None:
    for m in METRICS.values():
        assert check_metric_name(m.name, m.type) is None
        assert m.name.startswith(("wasp_backup_", "wasp_wal_archive_"))
        assert m.help.endswith(".") and len(m.help) > 20


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "backup.md").read_text()
    missing = [name for name in METRICS if f"| `{name}` |" not in doc]
    assert not missing, f"docs/backup.md does not list {missing}"


def _info_two_backups() -> Any:
    raw = json.loads((SUPPORT / "info_ok.json").read_text())
    full = raw[0]["backup"][0]
    stop = full["timestamp"]["stop"]
    incr = dict(full, label=full["label"] + "_20990101-000000I", type="incr",
                reference=[full["label"]], timestamp={"start": stop + 100, "stop": stop + 110})
    raw[0]["backup"].append(incr)
    return parse_info(json.dumps(raw))[0]


def test_good_needs_a_passing_drill_of_the_chain() -> None:
    info = _info_two_backups()
    full, incr = info.backups
    assert newest_good(info, None) == {}
    verdicts = merge_verdicts({}, incr.chain, ok=True, at=1.0)
    good = newest_good(info, {"verdicts": verdicts})
    assert good[(1, "full")] == full and good[(1, "incr")] == incr
    verdicts = merge_verdicts(verdicts, incr.chain, ok=False, at=2.0, keep=[full.label])
    assert newest_good(info, {"verdicts": verdicts}) == {}


def test_info_families() -> None:
    info = _info_two_backups()
    full, incr = info.backups
    recs = StanzaRecords(runs={}, drill={"verdicts": {full.label: {"ok": True, "at": 1}}},
                         verify=None, init=None)
    fams = {f.name: f for f in families_from_info("main", "1", info, recs, now=incr.stop + 10)}
    assert fams["wasp_backup_repository_up"].samples == ((("main", "1"), 1.0),)
    good = dict(fams["wasp_backup_last_good_timestamp_seconds"].samples)
    assert good == {("main", "1", "full"): full.stop}
    age = dict(fams["wasp_backup_last_completed_age_seconds"].samples)
    assert age[("main", "1", "incr")] == 10
    kept = dict(fams["wasp_backup_kept_backups"].samples)
    assert kept == {("main", "1", "full"): 1, ("main", "1", "diff"): 0, ("main", "1", "incr"): 1}
    broken = {f.name: f for f in families_from_info("main", "1", None, recs, now=0,
                                                    fallback_code=-1, errors={("main", "1"): 3})}
    assert broken["wasp_backup_repository_up"].samples == ((("main", "1"), 0.0),)
    assert broken["wasp_backup_pgbackrest_status_code"].samples == ((("main", "1"), -1.0),)
    assert broken["wasp_backup_repository_errors_total"].samples == ((("main", "1"), 3.0),)
    assert "wasp_backup_last_good_timestamp_seconds" not in broken


def test_record_families_running_attempt_keeps_previous_outcome() -> None:
    recs = StanzaRecords(
        runs={"full": {"state": "running", "previous_state": "failed", "attempts": 3,
                       "failures": 1, "started_at": 100.0, "exit_code": None}},
        drill={"state": "failed", "finished_at": 50.0, "checks_run": 5, "checks_failed": 2,
               "rto_seconds": 0.0, "attempts": 2, "failures": 1},
        verify={"state": "ok", "finished_at": 60.0, "invalid_files": 0}, init=None)
    fams = {f.name: f for f in families_from_records("main", recs)}
    lab = ("main", "full")
    assert dict(fams["wasp_backup_last_attempt_running"].samples)[lab] == 1
    assert dict(fams["wasp_backup_last_attempt_success"].samples)[lab] == 0
    assert "wasp_backup_last_attempt_exit_code" not in fams
    assert dict(fams["wasp_backup_failures_total"].samples)[lab] == 1
    assert fams["wasp_backup_drill_checks_failed"].samples == ((("main",), 2.0),)
    assert "wasp_backup_drill_restore_duration_seconds" not in fams  # nothing was restored
    assert fams["wasp_backup_verify_last_success"].samples == ((("main",), 1.0),)


def test_wal_families() -> None:
    mb16 = 16 * 1024 * 1024
    row = {"enabled": True, "current_lsn": float(4 * mb16 + 500), "last_archived_wal": "x",
           "last_archived_time": 10.0, "last_archived_age": 5.0, "archived_count": 7,
           "failed_count": 2, "last_failed_time": None, "ready": 1}
    fams = {f.name: f for f in families_from_wal("main", row, float(4 * mb16))}
    assert fams["wasp_wal_archive_unarchived_bytes"].samples == ((("main",), 500.0),)
    assert fams["wasp_wal_archive_failures_total"].type == "counter"
    assert "wasp_wal_archive_last_failed_timestamp_seconds" not in fams
    assert "wasp_wal_archive_unarchived_bytes" not in {
        f.name for f in families_from_wal("main", row, None)}


def test_no_pgbackrest_environment_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    from wasp.companions.backup.pgbackrest import PgBackRest

    monkeypatch.setenv("PGBACKREST_REPO1_CIPHER_PASS", "stray")
    monkeypatch.setenv("WASP_BACKUP_PASSPHRASE", "configured")
    s = section()
    env = PgBackRest(s, resolve_secrets(s)).env()
    assert env["PGBACKREST_REPO1_CIPHER_PASS"] == "configured"
    argv = PgBackRest(s, resolve_secrets(s)).argv("backup", "--type=full")
    assert "configured" not in " ".join(argv)
    assert os.environ["PGBACKREST_REPO1_CIPHER_PASS"] == "stray"


def test_unknown_target(tmp_path: Path) -> None:
    from wasp.companions.backup.cli import load_settings

    path = tmp_path / "wasp.yml"
    path.write_text(BASE.replace("  target: main\n", "  target: nope\n"))
    with pytest.raises(ConfigError) as e:
        load_settings(str(path))
    assert e.value.key == "backup.target" and e.value.line == 9
    assert "'nope'" in e.value.message
    # the exporter refuses it too, before anything runs
    with pytest.raises(ConfigError, match="names target 'nope'"):
        parse_config(load_yaml(path.read_text(), str(path)), str(path))
