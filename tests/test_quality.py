"""The package stays lint-clean and type-checks under mypy --strict (pyproject settings)."""

from __future__ import annotations

import subprocess
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
