#!/bin/bash
# PostgreSQL's TLS key must belong to the server's user with mode 0600; docker secrets keep
# the host's owner and mode. As root, copy the certificate and key from the secrets to
# /var/lib/postgresql/tls (owned by postgres), then run the given command.
set -euo pipefail

SECRETS=${WASP_SECRETS_DIR:-/run/secrets}
TLS_DIR=${PG_TLS_DIR:-/var/lib/postgresql/tls}
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$TLS_DIR"
  install -o postgres -g postgres -m 0644 "$SECRETS/postgres_tls_crt" "$TLS_DIR/server.crt"
  install -o postgres -g postgres -m 0600 "$SECRETS/postgres_tls_key" "$TLS_DIR/server.key"
fi
exec "$@"
