"""Writing generated files, or checking that the committed ones are exactly what would be written."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from wasp.mixin.settings import Settings, SettingsError, load_settings

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "add_common_arguments", "settings_from",
           "write_or_check"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_common_arguments(p: argparse.ArgumentParser, default_out: str) -> None:
    """--out, --check and --settings, shared by `wasp rules` and `wasp dashboards`."""
    p.add_argument("--out", default=default_out, metavar="DIR",
                   help=f"directory to write the files into (default: {default_out})")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a file in DIR differs from what would be "
                   "generated (or is missing)")
    p.add_argument("--settings", metavar="FILE", default=None,
                   help="YAML file overriding the mixin settings (selectors, thresholds, for, "
                   "ranges; see docs/mixin.md)")


def settings_from(args: argparse.Namespace) -> Settings | None:
    """The settings named by --settings (the defaults without it); None after printing an error."""
    path = getattr(args, "settings", None)
    if not path:
        return Settings()
    try:
        return load_settings(path)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def write_or_check(out: Path, files: Mapping[str, str], *, check: bool, command: str) -> int:
    """Write the files that differ under `out`, or (check) report them and exit 1."""
    if check:
        stale = [p for p, text in files.items()
                 if not (out / p).is_file() or (out / p).read_text() != text]
        for p in stale:
            print(f"{out / p}: differs from the generated file (run {command} --out {out})",
                  file=sys.stderr)
        if not stale:
            print(f"{out}: {len(files)} files up to date")
        return EXIT_FAILED if stale else EXIT_OK
    for p, text in files.items():
        path = out / p
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return EXIT_OK
