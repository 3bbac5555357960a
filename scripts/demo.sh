#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, then `wasp demo`
# (a primary and two replicas, pgBackRest, PgBouncer, synthetic salon data
# written live, the exporter, Prometheus, Alertmanager and local Slack and
# PagerDuty stand-ins). Ctrl-C stops all of it; `wasp demo break NAME` drills.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/wasp demo "$@"
