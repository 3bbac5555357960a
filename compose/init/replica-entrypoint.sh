#!/bin/bash
# A streaming replica: on first start (empty $PGDATA) take a base backup of the
# primary through a physical slot named after the replica, write the standby
# settings, then run PostgreSQL in the foreground. Later starts just run it.
set -euo pipefail

: "${REPLICA_NAME:?REPLICA_NAME is not set}"
SECRETS=${WASP_SECRETS_DIR:-/run/secrets}
# TLS to the primary: verify-full against the stack's CA (PGSSLMODE, PGSSLROOTCERT)
SSLMODE=${PGSSLMODE:-verify-full}
SSLROOTCERT=${PGSSLROOTCERT:-$SECRETS/wasp_ca_crt}
export PGSSLMODE=$SSLMODE PGSSLROOTCERT=$SSLROOTCERT
PRIMARY_HOST=${PRIMARY_HOST:-primary}
PRIMARY_PORT=${PRIMARY_PORT:-5432}
PG_CONFIG_FILE=${PG_CONFIG_FILE:-/etc/wasp/postgresql.conf}
PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  exec gosu postgres "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ ! -s "$SECRETS/wasp_replication_password" ]; then
    echo "replica $REPLICA_NAME: secret wasp_replication_password is missing" >&2; exit 1
  fi
  pgpass="$PGDATA.pgpass"
  umask 077
  printf '*:*:*:wasp_replication:%s\n' "$(< "$SECRETS/wasp_replication_password")" > "$pgpass"
  export PGPASSFILE="$pgpass"
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; do
    echo "replica $REPLICA_NAME: waiting for $PRIMARY_HOST" >&2; sleep 2
  done
  exists=$(psql -XAtq "host=$PRIMARY_HOST port=$PRIMARY_PORT dbname=postgres user=wasp_replication" \
    -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$REPLICA_NAME'")
  create_slot=(--create-slot)
  [ "$exists" = 1 ] && create_slot=()
  pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U wasp_replication -D "$PGDATA" \
    -X stream -c fast -S "$REPLICA_NAME" "${create_slot[@]}" --progress --verbose
  # the password stays in a 0600 file in the data directory, never in primary_conninfo
  mv "$pgpass" "$PGDATA/wasp_replication.pgpass"
  cat >> "$PGDATA/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=$PRIMARY_HOST port=$PRIMARY_PORT user=wasp_replication passfile=$PGDATA/wasp_replication.pgpass application_name=$REPLICA_NAME sslmode=$SSLMODE sslrootcert=$SSLROOTCERT'
primary_slot_name = '$REPLICA_NAME'
CONF
  touch "$PGDATA/standby.signal"
fi

exec postgres -c config_file="$PG_CONFIG_FILE" "$@"
