#!/bin/bash
# PgBouncer: write its auth file from the docker secrets onto a tmpfs, then run it in
# the foreground (as the postgres OS user: PgBouncer refuses to run as root).
set -euo pipefail

SECRETS=${WASP_SECRETS_DIR:-/run/secrets}
for f in app_password pgbouncer_stats_password; do
  if [ ! -s "$SECRETS/$f" ]; then echo "pgbouncer: secret $f is missing" >&2; exit 1; fi
done
APP_PASSWORD=$(< "$SECRETS/app_password")
PGBOUNCER_STATS_PASSWORD=$(< "$SECRETS/pgbouncer_stats_password")
AUTH_FILE=${PGBOUNCER_AUTH_FILE:-/run/pgbouncer/userlist.txt}

quote() { printf '"%s"' "${1//\"/\"\"}"; }
umask 077
{
  printf '%s %s\n' "$(quote app)" "$(quote "$APP_PASSWORD")"
  printf '%s %s\n' "$(quote wasp_stats)" "$(quote "$PGBOUNCER_STATS_PASSWORD")"
} > "$AUTH_FILE"

exec pgbouncer "${PGBOUNCER_INI:-/etc/pgbouncer/pgbouncer.ini}"
