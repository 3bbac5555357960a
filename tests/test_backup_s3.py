"""The backup scenario against an S3-compatible repository run locally (moto behind nginx TLS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backup_support.env import BackupEnv, env_var, make_backup_env, value
from backup_support.s3 import local_s3
from backup_support.scenario import backup_and_drill_scenario
from wasp.companions.backup.pgbackrest import render_config
from wasp.companions.pgcluster import LocalCluster

pytestmark = [
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def s3_env(make_cluster: Any, cluster_base: Path) -> Iterator[BackupEnv]:
    """A cluster whose repository is a bucket on the local S3 endpoint."""
    with local_s3(cluster_base / "s3") as s3:
        key_env, secret_file = "WASP_TEST_S3_KEY", cluster_base / "s3" / "secret"
        secret_file.write_text(s3.secret_key + "\n")
        secret_file.chmod(0o600)
        cluster: LocalCluster = make_cluster("backup-s3", archive_mode="on")
        repo = {
            "type": "s3",
            "bucket": s3.bucket,
            "endpoint": s3.host,
            "port": s3.port,
            "region": "us-east-1",
            "uri_style": "path",
            "verify_tls": False,
            "path": "/wasp",
            "key_env": key_env,
            "secret_file": str(secret_file),
        }
        with env_var(key_env, s3.access_key):
            e = make_backup_env(cluster, cluster_base / "backup-s3-env", repo=repo, name="s3main")
            try:
                yield e
            finally:
                cluster.destroy()
                os.environ.pop(e.passphrase_env, None)


@pytest.fixture(scope="module")
def s3_scenario(s3_env: BackupEnv) -> dict[str, Any]:
    """The stanza, backups and drill on the bucket, made once whichever test asks first."""
    return backup_and_drill_scenario(s3_env)


def test_scenario_s3(s3_env: BackupEnv, s3_scenario: dict[str, Any]) -> None:
    s = s3_env.settings()
    assert "repo1-type=s3" in render_config(s)
    result = s3_scenario
    assert result["pitr"].label == result["full"]["label"]
    # the S3 credentials live in the 0600 include file, never in pgbackrest.conf
    conf = s.config_file.read_text()
    assert "wasp-test-secret" not in conf and "wasp-test-key" not in conf
    assert "repo1-s3-key-secret=wasp-test-secret" in s.secrets_file.read_text()


def test_s3_wrong_passphrase_is_a_failed_repository(s3_env: BackupEnv,
                                                    s3_scenario: dict[str, Any]) -> None:
    # the stanza exists and holds backups: only the passphrase is wrong
    assert s3_scenario["full"]["label"]
    with env_var(s3_env.passphrase_env, "wrong"):
        fams = s3_env.collect()
    assert value(fams, "wasp_backup_repository_up", stanza="s3main") == 0
    assert value(fams, "wasp_backup_pgbackrest_status_code", stanza="s3main") == 99
    assert "wasp_backup_last_good_timestamp_seconds" not in fams
