#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, then `wasp demo`
# (a local PostgreSQL with synthetic salon data, live writes, the exporter,
# and Prometheus + Alertmanager when installed). Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/wasp demo "$@"
