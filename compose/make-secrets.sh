#!/bin/bash
# Create every secret of the compose stack as a file under compose/secrets/ (git-ignored):
# random passwords, the backup passphrase, a private CA with certificates for PostgreSQL
# and the exporter, and the exporter's web configuration (TLS + a bcrypt hash of
# Prometheus's scrape password). Existing files are kept: run it again after deleting one
# to make that one anew (a rotation). Nothing secret is printed or put on a command line.
#
#   bash compose/make-secrets.sh [DIR]      # DIR defaults to compose/secrets
#
# Needs openssl, and a Python with bcrypt (WASP_PYTHON, default python3; the wasp
# virtualenv has it).
set -euo pipefail

dir=${1:-$(dirname "$0")/secrets}
py=${WASP_PYTHON:-python3}
install -d -m 0700 "$dir"
cd "$dir"
# The files are mounted into the containers as docker secrets, which keep the host's
# owner and mode; the services run as other users, so the files are world-readable and
# the folder is not (only its owner can reach them on the host).
umask 022

password() {  # password FILE: 32 random characters without quotes, spaces or slashes
  [ -s "$1" ] || openssl rand -base64 48 | tr -d '/+=\n' | head -c 32 > "$1"
}
for f in postgres_password app_password wasp_monitor_password wasp_replication_password \
         wasp_heartbeat_password wasp_backup_password pgbouncer_stats_password \
         grafana_admin_password prometheus_scrape_password; do
  password "$f"
done
[ -s wasp_backup_passphrase ] || openssl rand -base64 48 | tr -d '\n' > wasp_backup_passphrase

if [ ! -s ca.key ]; then
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out ca.key)
  openssl req -x509 -new -key ca.key -out ca.crt -days 3650 -subj "/CN=wasp compose CA" 2>/dev/null
fi
cert() {  # cert NAME CN SANS: a key and a certificate signed by the CA (825 days)
  [ -s "$1.crt" ] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days 825 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
cert postgres primary "DNS:primary,DNS:replica1,DNS:replica2,DNS:localhost,IP:127.0.0.1"
cert exporter exporter "DNS:exporter,DNS:localhost,IP:127.0.0.1"
chmod 0644 ./*.crt ./*.key ./*_password wasp_backup_passphrase
chmod 0600 ca.key   # never mounted anywhere: it signs new certificates

if [ ! -s wasp_web.yml ]; then
  hash=$("$py" -c 'import sys, bcrypt
print(bcrypt.hashpw(sys.stdin.buffer.read().strip(), bcrypt.gensalt(12)).decode())' \
    < prometheus_scrape_password)
  cat > wasp_web.yml <<YAML
# the exporter's web configuration (exporter-toolkit format): made by make-secrets.sh
tls_server_config:
  cert_file: /run/secrets/exporter_tls_crt
  key_file: /run/secrets/exporter_tls_key
  min_version: TLS12
http_server_config:
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Content-Type-Options: nosniff
    X-Frame-Options: deny
basic_auth_users:
  prometheus: $hash
YAML
  chmod 0644 wasp_web.yml
fi
echo "secrets ready in $dir"
