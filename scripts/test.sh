#!/usr/bin/env bash
# Runs the test suite (all of it by default; pass pytest arguments to narrow it,
# e.g. `scripts/test.sh -m "not slow"` for the fast set). Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "test: no .venv here yet: run 'bash scripts/setup.sh' first (it installs PostgreSQL 15," \
       "the other servers the tests use, and wasp with its test tools)" >&2
  exit 2
fi
exec .venv/bin/python -m pytest "$@"
