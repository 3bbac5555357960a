"""Least-privilege roles (exporter/wasp/sql/roles.sql), verified TLS to the database, no superuser.

One cluster with its own CA (made with openssl): ``ssl = on`` with a server
certificate for ``localhost`` only, and a pg_hba.conf that lets the wasp
roles in over ``hostssl`` with ``scram-sha-256`` only (``wasp_monitor`` must
show a client certificate as well). The application schema and a little data
come from wasp.demo.datagen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
import pytest
import yaml

from helpers import make_ca, make_cert, samples
from wasp.companions.pgcluster import LocalCluster, chown_to_postgres, find_bindir, free_port
from wasp.demo.datagen.generate import generate
from wasp.demo.datagen.schema import create_schema

PASSWORDS = {
    "WASP_MONITOR_PASSWORD": "monitor-Pa55-xyzzy",
    "WASP_REPLICATION_PASSWORD": "replication-Pa55-plugh",
    "WASP_BACKUP_PASSWORD": "backup-Pa55-frotz",
    "WASP_HEARTBEAT_PASSWORD": "heartbeat-Pa55-grue",
}
HBA = """\
local     all          all                                      trust
host      all          postgres          127.0.0.1/32           trust
hostssl   all          wasp_monitor      127.0.0.1/32           scram-sha-256 clientcert=verify-full
hostssl   all          all               127.0.0.1/32           scram-sha-256
host      all          all               all                    reject
"""


@dataclass
class SecureDB:
    cluster: LocalCluster
    pki: Path
    client: Path
    dbname: str

    def dsn(self, user: str, *, host: str = "localhost", ca: str = "ca.crt", **extra: str) -> str:
        parts = {"host": host, "hostaddr": "127.0.0.1", "port": str(self.cluster.port),
                 "dbname": self.dbname, "user": user, "sslmode": "verify-full",
                 "sslrootcert": str(self.client / ca), "connect_timeout": "5", **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())


@pytest.fixture(scope="module")
def secure_db(cluster_base: Path) -> Iterator[SecureDB]:
    base = cluster_base / f"secure-{free_port()}"
    pki = base / "pki"
    make_ca(pki)
    make_cert(pki, "server", "localhost", sans=("DNS:localhost",))
    make_cert(pki, "client", "wasp_monitor")
    other = base / "other"
    make_ca(other)
    # the client's copies (libpq wants the key 0600 and owned by the user running wasp)
    client = base / "client"
    client.mkdir()
    for name, src in (("ca.crt", pki / "ca.crt"), ("other-ca.crt", other / "ca.crt"),
                      ("client.crt", pki / "client.crt"), ("client.key", pki / "client.key")):
        (client / name).write_bytes(src.read_bytes())
        (client / name).chmod(0o600)
    for f in pki.iterdir():
        f.chmod(0o600)
    pki.chmod(0o700)
    chown_to_postgres(pki)
    base.chmod(0o755)
    c = LocalCluster(datadir=base / "pg", port=free_port(), settings={
        "ssl": "on", "ssl_cert_file": f"'{pki / 'server.crt'}'",
        "ssl_key_file": f"'{pki / 'server.key'}'", "ssl_ca_file": f"'{pki / 'ca.crt'}'",
        "password_encryption": "'scram-sha-256'", "log_statement": "'all'"})
    c.init()
    (c.datadir / "pg_hba.conf").write_text(HBA)
    c.start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE salon")
        with psycopg.connect(c.dsn("salon"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            create_schema(conn)
            generate(conn, days=0.2, scale=0.02, salons=20, workers=1)
        roles = resources.files("wasp").joinpath("sql/roles.sql")
        r = subprocess.run([str(find_bindir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1",
                            "-f", str(roles), c.dsn("salon")],
                           env=dict(os.environ, **PASSWORDS), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        for pw in PASSWORDS.values():
            assert pw not in r.stdout + r.stderr
        yield SecureDB(c, pki, client, "salon")
    finally:
        c.destroy()


def _exporter(db: SecureDB, tmp_path: Path, dsn: str, *args: str,
              packs: tuple[str, ...] = ("app", "postgres", "replication"),
              ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "dsn").write_text(dsn)
    cfg = tmp_path / "wasp.yml"
    cfg.write_text(yaml.safe_dump({
        "server": {"status_dir": str(tmp_path / "status")},
        "targets": {"main": {"dsn_file": str(tmp_path / "dsn"), "packs": list(packs)}}}))
    return subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--once",
                           *args], capture_output=True, text=True, timeout=180)


def _sql(dsn: str, q: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(q).fetchall()


def test_roles_are_least_privilege_with_scram_passwords(secure_db: SecureDB) -> None:
    su = secure_db.cluster.dsn("salon")
    rows = dict((r[0], r[1:]) for r in _sql(su, """
        SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
               rolpassword LIKE 'SCRAM-SHA-256$%'
        FROM pg_authid WHERE rolname LIKE 'wasp\\_%'"""))
    assert set(rows) == {"wasp_monitor", "wasp_replication", "wasp_backup", "wasp_heartbeat"}
    for role, (sup, crole, cdb, repl, bypass, scram) in rows.items():
        assert not (sup or crole or cdb or bypass), role
        assert scram, f"{role}: password is not a SCRAM verifier"
        assert repl == (role == "wasp_replication"), role
    checks = _sql(su, """SELECT
        pg_has_role('wasp_monitor', 'pg_monitor', 'MEMBER'),
        has_table_privilege('wasp_monitor', 'public.bookings', 'SELECT'),
        has_table_privilege('wasp_monitor', 'public.bookings', 'INSERT'),
        has_table_privilege('wasp_monitor', 'public.templates', 'SELECT'),
        has_function_privilege('wasp_backup', 'pg_backup_start(text, boolean)', 'EXECUTE'),
        has_function_privilege('wasp_monitor', 'pg_backup_start(text, boolean)', 'EXECUTE'),
        pg_has_role('wasp_backup', 'pg_checkpoint', 'MEMBER'),
        has_table_privilege('wasp_heartbeat', 'wasp.heartbeat', 'UPDATE'),
        has_table_privilege('wasp_heartbeat', 'public.bookings', 'SELECT')""")[0]
    assert checks == (True, True, False, False, True, False, True, True, False)
    # the passwords reached neither the server log nor pg_stat_statements
    texts = " ".join(str(r[0]) for r in _sql(su, "SELECT query FROM pg_stat_statements"))
    log = secure_db.cluster.logfile.read_text(errors="replace")
    assert "ALTER ROLE wasp_heartbeat SET synchronous_commit" not in log  # statements not logged
    for pw in PASSWORDS.values():
        assert pw not in texts and pw not in log


def test_every_pack_runs_under_the_monitor_role_over_verify_full(secure_db: SecureDB,
                                                                 tmp_path: Path) -> None:
    pw = PASSWORDS["WASP_MONITOR_PASSWORD"]
    dsn = secure_db.dsn("wasp_monitor", password=pw,
                        sslcert=str(secure_db.client / "client.crt"),
                        sslkey=str(secure_db.client / "client.key"))
    r = _exporter(secure_db, tmp_path, dsn)
    assert r.returncode == 0, r.stderr[-3000:]
    assert pw not in r.stdout + r.stderr
    errors = [(lab, v) for lab, v in samples(r.stdout, "wasp_query_errors_total") if v]
    assert errors == [], errors
    runs = samples(r.stdout, "wasp_query_runs_total")
    assert len(runs) > 20 and all(v >= 1 for lab, v in runs
                                  if dict(lab).get("query") and lab.get("target") == "main"
                                  and _enabled(r.stdout, lab["query"]))
    # the session really is TLS: the server saw a verified client certificate
    rows = _sql(dsn, "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert rows == [(True, "/CN=wasp_monitor")]


def _enabled(text: str, query: str) -> bool:
    return any(v == 1 for lab, v in samples(text, "wasp_query_enabled") if lab["query"] == query)


def test_verify_full_refuses_a_certificate_for_another_host(secure_db: SecureDB,
                                                            tmp_path: Path) -> None:
    pw = PASSWORDS["WASP_MONITOR_PASSWORD"]
    client = {"sslcert": str(secure_db.client / "client.crt"),
              "sslkey": str(secure_db.client / "client.key"), "password": pw}
    # the server's certificate names localhost; we dial 127.0.0.1 by that name
    r = _exporter(secure_db, tmp_path, secure_db.dsn("wasp_monitor", host="127.0.0.1", **client),
                  packs=("postgres",))
    assert 'target main: cannot connect' in r.stderr and 'server certificate for "localhost"' in \
        r.stderr and 'does not match host name "127.0.0.1"' in r.stderr, r.stderr[-2000:]
    assert r.returncode == 1
    assert pw not in r.stdout + r.stderr
    # a CA that did not sign the server's certificate: refused as well
    r = _exporter(secure_db, tmp_path, secure_db.dsn("wasp_monitor", ca="other-ca.crt", **client),
                  packs=("postgres",))
    assert "certificate verify failed" in r.stderr and r.returncode == 1, r.stderr[-2000:]
    # without a client certificate, pg_hba.conf's clientcert=verify-full refuses the monitor
    r = _exporter(secure_db, tmp_path, secure_db.dsn("wasp_monitor", password=pw),
                  packs=("postgres",))
    assert "certificate" in r.stderr and r.returncode == 1, r.stderr[-2000:]


def test_the_heartbeat_companion_over_verify_full(secure_db: SecureDB, tmp_path: Path) -> None:
    dsn = secure_db.dsn("wasp_heartbeat")
    env = dict(os.environ, PGPASSWORD=PASSWORDS["WASP_HEARTBEAT_PASSWORD"])
    before = _sql(secure_db.cluster.dsn("salon"), "SELECT seq FROM wasp.heartbeat")[0][0]
    r = subprocess.run([sys.executable, "-m", "wasp", "replica", "heartbeat", "--dsn", dsn,
                        "--interval", "1", "--count", "2"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    after = _sql(secure_db.cluster.dsn("salon"), "SELECT seq FROM wasp.heartbeat")[0][0]
    assert int(str(after)) >= int(str(before)) + 2
    # a mismatch: the heartbeat keeps retrying (it outlives a primary's restart) and says why
    import time

    err_file = tmp_path / "heartbeat.err"
    with open(err_file, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "wasp", "replica", "heartbeat", "--dsn",
                                 secure_db.dsn("wasp_heartbeat", host="127.0.0.1"),
                                 "--interval", "1", "--count", "1"],
                                stdout=subprocess.DEVNULL, stderr=sink, env=env)
    try:
        deadline = time.monotonic() + 90
        while "does not match host name" not in err_file.read_text():
            assert proc.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, err_file.read_text()
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert 'server certificate for "localhost"' in err_file.read_text()


def test_the_exporter_refuses_a_superuser(secure_db: SecureDB, tmp_path: Path) -> None:
    dsn = secure_db.cluster.dsn("salon")
    r = _exporter(secure_db, tmp_path, dsn, packs=("postgres",))
    assert r.returncode == 2
    assert "refusing to run as a superuser on target(s) main" in r.stderr
    assert "--allow-superuser" in r.stderr and "pg_monitor" in r.stderr
    assert r.stdout == ""
    r = _exporter(secure_db, tmp_path, dsn, "--allow-superuser", packs=("postgres",))
    assert r.returncode == 0, r.stderr[-2000:]


def test_no_secret_reaches_logs_metrics_help_errors_or_titles(secure_db: SecureDB,
                                                              tmp_path: Path) -> None:
    """A served exporter with every secret in play (database password, basic-auth password,
    pgBackRest passphrase): grep everything it shows for each."""
    import base64
    import http.client
    import ssl
    import time

    import bcrypt

    monitor_pw = PASSWORDS["WASP_MONITOR_PASSWORD"]
    scrape_pw, passphrase = "scrape-Pa55-zork", "passphrase-Pa55-bedquilt"
    secrets = tmp_path / "secrets"
    make_ca(secrets)
    make_cert(secrets, "exporter", "exporter", sans=("IP:127.0.0.1",))
    (secrets / "monitor_password").write_text(monitor_pw + "\n")
    (secrets / "passphrase").write_text(passphrase)
    (secrets / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "exporter.crt", "key_file": "exporter.key"},
        "basic_auth_users": {"prometheus": bcrypt.hashpw(scrape_pw.encode(),
                                                         bcrypt.gensalt(4)).decode()}}))
    port = free_port()
    work = tmp_path / "pgbackrest"
    cfg = tmp_path / "wasp.yml"
    cfg.write_text(yaml.safe_dump({
        "server": {"listen": f"127.0.0.1:{port}", "status_dir": str(tmp_path / "status"),
                   "web_config": str(secrets / "web.yml")},
        "targets": {"main": {
            "dsn": secure_db.dsn("wasp_monitor", sslcert=str(secure_db.client / "client.crt"),
                                 sslkey=str(secure_db.client / "client.key")),
            "password_file": str(secrets / "monitor_password"),
            "packs": ["app", "postgres", "replication", "backup"]}},
        "backup": {"stanza": "main", "target": "main", "pg_path": str(secure_db.cluster.datadir),
                   "config_dir": str(work / "conf"), "lock_path": str(work / "lock"),
                   "log_path": str(work / "log"), "spool_path": str(work / "spool"),
                   "repo": {"type": "posix", "path": str(work / "repo")},
                   "encryption": {"passphrase_file": str(secrets / "passphrase")}}}))
    out = tmp_path / "out.log"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg)],
                                stdout=sink, stderr=subprocess.STDOUT, text=True)
    ctx = ssl.create_default_context(cafile=str(secrets / "ca.crt"))

    def get(path: str, pw: str | None) -> tuple[int, str]:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
        headers = {"Authorization": "Basic " + base64.b64encode(
            f"prometheus:{pw}".encode()).decode()} if pw else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        return resp.status, body

    shown: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, out.read_text()[-3000:]
            try:
                status, _ = get("/readyz", scrape_pw)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        status, metrics = get("/metrics", scrape_pw)
        assert status == 200 and "wasp_backup_" in metrics and "wasp_pg_" in metrics
        shown.append(metrics)
        for path, pw in (("/metrics", "wrong"), ("/", None), ("/readyz", monitor_pw)):
            status, body = get(path, pw)
            assert status == 401
            shown.append(body)
        # the process title and its whole command line
        shown.append(Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        shown.append(subprocess.run(["ps", "-o", "args=", "-p", str(proc.pid)],
                                    capture_output=True, text=True).stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for argv in (["exporter", "--help"], ["--help"], ["backup", "--help"],
                 ["check-config", "--list", str(cfg)]):
        r = subprocess.run([sys.executable, "-m", "wasp", *argv], capture_output=True,
                           text=True, timeout=60)
        shown.append(r.stdout + r.stderr)
    # error messages: a wrong database password, and a password pasted where a hash belongs
    (secrets / "monitor_password").write_text("wrong-" + monitor_pw)
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "password authentication failed" in r.stderr, r.stderr[-2000:]
    shown.append(r.stdout + r.stderr)
    (secrets / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": scrape_pw}}))
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "basic_auth_users.prometheus" in r.stderr
    shown.append(r.stdout + r.stderr)
    log = out.read_text()
    assert "listening on https://" in log and "(basic auth)" in log
    shown.append(log)
    shown.extend(p.read_text(errors="replace") for p in work.rglob("*") if p.is_file())
    everything = "\n".join(shown)
    for secret in (monitor_pw, scrape_pw, passphrase):
        assert secret not in everything


def test_a_missing_or_empty_password_file_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "wasp.yml"
    for content, what in ((None, "cannot read the password file"),
                          ("\n", "the password file is empty")):
        pw = tmp_path / "pw"
        if content is not None:
            pw.write_text(content)
        cfg.write_text(yaml.safe_dump({"targets": {"main": {
            "dsn": "host=localhost", "password_file": "pw", "packs": []}}}))
        r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--once"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert f"{pw}: targets.main.password_file: {what}" in r.stderr, r.stderr
