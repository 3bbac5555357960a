#!/bin/bash
# PgBouncer: write its auth file from the environment onto a tmpfs, then run it in
# the foreground (as the postgres OS user: PgBouncer refuses to run as root).
set -euo pipefail

: "${APP_PASSWORD:?APP_PASSWORD is not set}"
: "${PGBOUNCER_STATS_PASSWORD:?PGBOUNCER_STATS_PASSWORD is not set}"
AUTH_FILE=${PGBOUNCER_AUTH_FILE:-/run/pgbouncer/userlist.txt}

quote() { printf '"%s"' "${1//\"/\"\"}"; }
umask 077
{
  printf '%s %s\n' "$(quote app)" "$(quote "$APP_PASSWORD")"
  printf '%s %s\n' "$(quote wasp_stats)" "$(quote "$PGBOUNCER_STATS_PASSWORD")"
} > "$AUTH_FILE"

exec pgbouncer "${PGBOUNCER_INI:-/etc/pgbouncer/pgbouncer.ini}"
