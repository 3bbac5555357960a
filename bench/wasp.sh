#!/bin/sh
# wasp for the exporter benchmark harness, wherever its virtualenv lives.
#
#   bench/wasp.sh convert --queries Q --out CONFIG   neutral queries.yaml -> wasp
#                                                    config, then check-config
#   bench/wasp.sh ARGS...                            exec wasp ARGS
#
# The wasp executable is the first of: $WASP_BIN; <repo>/.venv/bin/wasp
# (scripts/setup.sh); `wasp` on PATH.  The converter runs with the python
# beside that executable (its venv has PyYAML), else python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ -n "${WASP_BIN:-}" ]; then
  wasp=$WASP_BIN
elif [ -x "$repo/.venv/bin/wasp" ]; then
  wasp=$repo/.venv/bin/wasp
elif command -v wasp >/dev/null 2>&1; then
  wasp=$(command -v wasp)
else
  echo "bench/wasp.sh: no wasp executable: set WASP_BIN, run scripts/setup.sh (creates $repo/.venv)," \
       "or put wasp on PATH" >&2
  exit 2
fi
if [ "${1:-}" = convert ]; then
  shift
  py=$(dirname "$wasp")/python
  [ -x "$py" ] || py=python3
  exec "$py" "$here/neutral_to_wasp.py" --check "$wasp" "$@"
fi
exec "$wasp" "$@"
