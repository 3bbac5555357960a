"""`wasp replica setup --auth cert`: the replication role authenticates with a client certificate.

A throwaway CA, a server certificate for the primary and a client certificate
whose CN is the replication role, all made with the openssl command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from wasp.companions.pgcluster import LocalCluster, chown_to_postgres, free_port
from wasp.companions.replica import cli as replica


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _cert(d: Path, name: str, cn: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
             cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", cwd=d)


def test_setup_with_a_client_certificate(cluster_base: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = cluster_base / "cert"
    pki = base / "pki"
    pki.mkdir(parents=True)
    base.chmod(0o755)
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj",
             "/CN=wasp test CA", cwd=pki)
    _cert(pki, "server", "127.0.0.1")
    _cert(pki, "client", "wasp_replication")
    for f in pki.iterdir():
        os.chmod(f, 0o600)
    pki.chmod(0o700)
    chown_to_postgres(pki)
    p = LocalCluster(datadir=base / "p", port=free_port(), settings={
        "ssl": "on", "ssl_cert_file": f"'{pki / 'server.crt'}'",
        "ssl_key_file": f"'{pki / 'server.key'}'", "ssl_ca_file": f"'{pki / 'ca.crt'}'"})
    r = LocalCluster(datadir=base / "r", port=free_port())
    p.init()
    (p.datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    p.start()
    try:
        ap = argparse.ArgumentParser()
        ap.add_argument("--config")
        replica.add_arguments(ap)
        args = ap.parse_args([
            "setup", "--name", "r", "--datadir", str(r.datadir), "--port", str(r.port),
            "--primary-dsn", p.dsn(), "--status-dir", str(base / "status"), "--auth", "cert",
            "--sslcert", str(pki / "client.crt"), "--sslkey", str(pki / "client.key"),
            "--sslrootcert", str(pki / "ca.crt")])
        assert replica.main(args) == 0, capsys.readouterr().err
        hba = (p.datadir / "pg_hba.conf").read_text().splitlines()
        assert hba[0].startswith("hostssl\treplication\twasp_replication\t127.0.0.1/32\tcert")
        assert not (r.datadir / "wasp_replication.pgpass").exists()
        deadline = time.monotonic() + 20
        with psycopg.connect(p.dsn(), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT s.ssl, s.client_dn, r.state FROM pg_stat_replication r"
                    " JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'r'").fetchone()
                if row and row[2] == "streaming":
                    break
                assert time.monotonic() < deadline, row
                time.sleep(0.2)
        assert row[0] is True and row[1] == "/CN=wasp_replication"
    finally:
        r.destroy()
        p.destroy()
