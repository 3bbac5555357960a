#!/usr/bin/env bash
# Installs what wasp, its demo and its tests need on a fresh Debian 12 machine:
# PostgreSQL 15 (with contrib), pgBackRest, PgBouncer, Prometheus (promtool),
# Alertmanager (amtool), node_exporter (filesystem space), nginx (TLS in front of the local S3 endpoint), and a
# virtualenv in .venv with wasp installed editable with its test extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  postgresql-15 postgresql-contrib postgresql-client-15
  pgbackrest pgbouncer
  prometheus prometheus-alertmanager prometheus-node-exporter
  nginx-light openssl
  docker-compose
  patroni etcd-server
  python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  # A policy-rc.d that says "no" (exit 101) keeps the packages' own services (a
  # system PostgreSQL, Prometheus on :9090, nginx, ...) from starting during the
  # install: wasp starts what it needs itself. One already there is left alone.
  policy=${WASP_POLICY_RC_D:-/usr/sbin/policy-rc.d}  # overridable for the tests
  if [ ! -e "$policy" ]; then
    echo "setup: creating $policy (exit 101) for the install: the packages' services stay stopped" >&2
    printf '#!/bin/sh\n# created by wasp scripts/setup.sh for the duration of an apt-get install\nexit 101\n' \
      | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$(trap -p EXIT)" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT
    echo "setup: removed $policy" >&2
  fi
fi
# services started before (or by an existing policy that allowed it); tests and the demo use their own
for svc in postgresql pgbouncer prometheus prometheus-alertmanager prometheus-node-exporter nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "setup: note: system service $svc is running (wasp does not use it)" >&2
  fi
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import wasp, pytest, psycopg, moto, mypy" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.wasp-installed ]; then
  echo "setup: installing wasp with its test and lint tools into .venv (pip, about a minute)" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,s3]'
  touch .venv/.wasp-installed
fi
echo "setup: ok ($(.venv/bin/python --version), $(/usr/lib/postgresql/15/bin/postgres --version))" >&2
