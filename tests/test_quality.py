"""The package and its tests stay lint-clean and type-check under mypy --strict (pyproject settings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import require_tool

ROOT = Path(__file__).resolve().parents[1]
DEV = " (pip install -e '.[dev]')"


def test_ruff_is_clean() -> None:
    r = subprocess.run([require_tool("ruff", DEV), "check", "exporter", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    r = subprocess.run([require_tool("mypy", DEV)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


#: every program the tests run, as scripts/setup.sh installs it (a missing one is a broken set-up)
SETUP_TOOLS = ("ruff", "mypy", "lint-imports", "moto_server", "promtool", "amtool", "prometheus",
               "prometheus-alertmanager", "pgbackrest", "pgbouncer", "patroni", "etcd", "nginx",
               "openssl", "pg_ctlcluster")


def test_setup_installed_every_tool() -> None:
    missing = [t for t in SETUP_TOOLS
               if not (Path(sys.executable).parent / t).exists() and shutil.which(t) is None
               and not Path(f"/usr/sbin/{t}").exists()]
    assert not missing, f"not installed: {missing}; run scripts/setup.sh"


def test_import_contracts_hold() -> None:
    r = subprocess.run([require_tool("lint-imports", DEV)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
