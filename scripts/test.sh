#!/usr/bin/env bash
# Runs the test suite (all of it by default; pass pytest arguments to narrow it,
# e.g. `scripts/test.sh -m "not slow"` for the fast set). Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
