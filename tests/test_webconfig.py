"""TLS, basic auth and headers from the exporter-toolkit web configuration, on a real exporter.

A throw-away CA made with openssl; the exporter runs as `wasp exporter` in a
subprocess against the session cluster; clients are the standard library's
http.client and ssl, and a real Prometheus.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from helpers import make_ca, make_cert, require_tool
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.exporter.webauth import WebGuard
from wasp.exporter.webconfig import WebConfigWatcher, load_web_config

PASSWORD = "s3cret-scrape-password"
FAST = 4  # bcrypt cost in tests: the mechanism, not the cost, is under test


def _hash(pw: str, cost: int = FAST) -> str:
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(cost)).decode()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    make_ca(d)
    make_cert(d, "server", "wasp", sans=("IP:127.0.0.1", "DNS:localhost"))
    make_cert(d, "server2", "wasp rotated", sans=("IP:127.0.0.1", "DNS:localhost"))
    make_cert(d, "client", "prometheus")
    return d


class Exporter:
    """A running `wasp exporter` and how to reach it."""

    def __init__(self, proc: subprocess.Popen[str], port: int, pki: Path, web: Path) -> None:
        self.proc, self.port, self.pki, self.web = proc, port, pki, web

    def context(self, *, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if client_cert:
            ctx.load_cert_chain(self.pki / "client.crt", self.pki / "client.key")
        return ctx

    def get(self, path: str, *, auth: tuple[str, str] | None = None,
            client_cert: bool = False) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self.context(client_cert=client_cert))
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp

    def peer_fingerprint(self) -> str:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw, \
                self.context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


@pytest.fixture
def exporter(pg: LocalCluster, tmp_path: Path, pki: Path) -> Iterator[Callable[..., Exporter]]:
    started: list[subprocess.Popen[str]] = []

    def start(web: dict[str, Any], *, server: dict[str, Any] | None = None) -> Exporter:
        port = free_port()
        web_file = tmp_path / "web.yml"
        web_file.write_text(yaml.safe_dump(web))
        cfg = tmp_path / "wasp.yml"
        cfg.write_text(yaml.safe_dump({
            "server": {"listen": f"127.0.0.1:{port}", "status_dir": str(tmp_path / "status"),
                       **(server or {})},
            "targets": {"main": {"dsn_env": "WASP_TEST_DSN", "packs": []}},
            "queries": {"one": {"sql": "select 1 as n", "interval": "60s",
                                "values": [{"column": "n", "metric": "wasp_test_one",
                                            "type": "gauge", "help": "one"}]}}}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "wasp", "exporter", "-c", str(cfg), "--allow-superuser",
             "--web.config.file", str(web_file)],
            env=dict(os.environ, WASP_TEST_DSN=pg.dsn()), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        started.append(proc)
        ex = Exporter(proc, port, pki, web_file)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                ex.get("/healthz", auth=("prometheus", PASSWORD), client_cert=True)
                return ex
            except (OSError, http.client.HTTPException):
                assert time.monotonic() < deadline, "the exporter did not come up"
                time.sleep(0.2)

    yield start
    for p in started:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def _tls(pki: Path, cert: str = "server", **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(pki / f"{cert}.crt"), "key_file": str(pki / f"{cert}.key"), **extra}


def test_basic_auth_over_tls(exporter: Callable[..., Exporter], pki: Path) -> None:
    ex = exporter({"tls_server_config": _tls(pki),
                   "basic_auth_users": {"prometheus": _hash(PASSWORD)},
                   "http_server_config": {"headers": {
                       "Strict-Transport-Security": "max-age=31536000",
                       "X-Content-Type-Options": "nosniff"}}},
                  server={"unauthenticated_paths": ["/healthz"]})
    r = ex.get("/metrics")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert ex.get("/metrics", auth=("prometheus", "wrong")).status == 401
    assert ex.get("/metrics", auth=("nobody", PASSWORD)).status == 401
    r = ex.get("/metrics", auth=("prometheus", PASSWORD))
    assert r.status == 200
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # /healthz is open to liveness probes because the configuration says so; /readyz is not
    assert ex.get("/healthz").status == 200
    assert ex.get("/readyz").status == 401
    assert ex.get("/").status == 401
    # a refusal carries the headers too
    assert ex.get("/metrics").headers["X-Content-Type-Options"] == "nosniff"


def test_plain_http_to_the_tls_port_fails(exporter: Callable[..., Exporter], pki: Path) -> None:
    ex = exporter({"tls_server_config": _tls(pki)})
    assert ex.get("/metrics").status == 200
    conn = http.client.HTTPConnection("127.0.0.1", ex.port, timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/metrics")
        conn.getresponse().read()
    conn.close()
    # a client that does not trust our CA refuses the server
    conn = http.client.HTTPSConnection("127.0.0.1", ex.port, timeout=10,
                                       context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/metrics")
    conn.close()


def test_mutual_tls_refuses_a_client_without_a_certificate(exporter: Callable[..., Exporter],
                                                           pki: Path) -> None:
    shutil.copy(pki / "ca.crt", pki / "clients-ca.crt")
    ex = exporter({"tls_server_config": _tls(
        pki, client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=str(pki / "clients-ca.crt"))})
    assert ex.get("/metrics", client_cert=True).status == 200
    # TLS 1.3: the server's refusal arrives as an alert on the first read
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        ex.get("/metrics")
    # a certificate from another CA is refused as well
    other = pki / "other"
    make_ca(other, "ca")
    make_cert(other, "client", "intruder")

    def with_other_cert() -> int:
        ctx = ex.context()
        ctx.load_cert_chain(other / "client.crt", other / "client.key")
        conn = http.client.HTTPSConnection("127.0.0.1", ex.port, timeout=10, context=ctx)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().status
        finally:
            conn.close()

    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        with_other_cert()
    # the clients' CA rotated on disk: the next connection verifies against the new one
    shutil.copy(other / "ca.crt", pki / "clients-ca.crt.new")
    os.replace(pki / "clients-ca.crt.new", pki / "clients-ca.crt")
    assert with_other_cert() == 200
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        ex.get("/metrics", client_cert=True)


def test_a_rotated_certificate_and_password_apply_without_a_restart(
        exporter: Callable[..., Exporter], pki: Path) -> None:
    for ext in ("crt", "key"):
        shutil.copy(pki / f"server.{ext}", pki / f"live.{ext}")
    ex = exporter({"tls_server_config": _tls(pki, cert="live"),
                   "basic_auth_users": {"prometheus": _hash(PASSWORD)}})
    first = ex.peer_fingerprint()
    # replace the certificate and key on disk, as a renewal job would (new files, renamed)
    for ext in ("crt", "key"):
        shutil.copy(pki / f"server2.{ext}", pki / f"live.{ext}.new")
        os.replace(pki / f"live.{ext}.new", pki / f"live.{ext}")
    second = ex.peer_fingerprint()
    assert second != first
    assert second == hashlib.sha256(ssl.PEM_cert_to_DER_cert(
        (pki / "server2.crt").read_text())).hexdigest()
    assert ex.get("/metrics", auth=("prometheus", PASSWORD)).status == 200
    # a new password: the old one is refused on the next request, the new one accepted
    web = yaml.safe_load(ex.web.read_text())
    web["basic_auth_users"]["prometheus"] = _hash("the-new-password")
    ex.web.write_text(yaml.safe_dump(web))
    assert ex.get("/metrics", auth=("prometheus", PASSWORD)).status == 401
    assert ex.get("/metrics", auth=("prometheus", "the-new-password")).status == 200
    # a broken rewrite keeps the last good configuration (and says so in the log)
    ex.web.write_text("basic_auth_users: [not, a, mapping]\n")
    assert ex.get("/metrics", auth=("prometheus", "the-new-password")).status == 200
    ex.proc.terminate()
    _, err = ex.proc.communicate(timeout=15)
    assert "web configuration reloaded" in err and "not reloaded" in err
    assert "the-new-password" not in err and PASSWORD not in err


def test_wrong_password_and_unknown_user_take_the_same_time(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": _hash(PASSWORD, 10)}}))
    guard = WebGuard(WebConfigWatcher(load_web_config(web)))
    cfg = guard.watcher.current()

    def header(user: str, pw: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    async def timed(user: str, pw: str) -> float:
        t0 = time.perf_counter()
        assert not await guard.authorized(cfg, header(user, pw))
        return time.perf_counter() - t0

    async def run() -> tuple[float, float]:
        await timed("nobody", "x")  # the dummy hash is made once, on first use
        wrong, unknown = [], []
        for _ in range(5):
            wrong.append(await timed("prometheus", "wrong"))
            unknown.append(await timed("nobody", "wrong"))
        return statistics.median(wrong), statistics.median(unknown)

    wrong, unknown = asyncio.run(run())
    # the same bcrypt work either way (a shortcut for unknown users would be ~1000x faster)
    assert 1 / 3 < unknown / wrong < 3, (wrong, unknown)
    assert wrong > 0.005


@pytest.mark.parametrize(("web", "key", "what"), [
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}},
     "tls_server_config.cert_file", "does not exist"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server2.key"}},
     "tls_server_config.cert_file", "matching private key"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAndVerifyClientCert"}},
     "tls_server_config.client_auth_type", "needs client_ca_file"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "min_version": "TLS14"}},
     "tls_server_config.min_version", "must be TLS10 or"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "cipher_suites": ["TLS_NULL"]}},
     "tls_server_config.cipher_suites[0]", "unknown cipher suite"),
    ({"basic_auth_users": {"prometheus": PASSWORD}},
     "basic_auth_users.prometheus", "must be a bcrypt hash"),
    ({"basic_auth_users": {"prometheus": "$2b$10$tooshort"}},
     "basic_auth_users.prometheus", "not a valid bcrypt hash"),
    ({"http_server_config": {"headers": {"Set-Cookie": "a=b"}}},
     "http_server_config.headers.Set-Cookie", "may not be set"),
    ({"tls_config": {}}, "tls_config", "unknown key"),
])
def test_bad_web_config_exits_2_naming_file_and_key(pki: Path, tmp_path: Path, web: dict[str, Any],
                                                    key: str, what: str) -> None:
    web_file = pki / "web.yml"  # relative paths are taken from the file's folder
    web_file.write_text(yaml.safe_dump(web))
    cfg = tmp_path / "wasp.yml"
    cfg.write_text(yaml.safe_dump({"server": {"web_config": str(web_file)},
                                   "targets": {"main": {"dsn": "host=/nonexistent", "packs": []}}}))
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{web_file}:" in r.stderr and f" {key}: " in r.stderr and what in r.stderr, r.stderr
    assert PASSWORD not in r.stderr + r.stdout


def test_prometheus_scrapes_the_tls_and_basic_auth_endpoint(
        exporter: Callable[..., Exporter], pki: Path, tmp_path: Path) -> None:
    ex = exporter({"tls_server_config": _tls(pki),
                   "basic_auth_users": {"prometheus": _hash(PASSWORD)}})
    prom = require_tool("prometheus")
    pdir = tmp_path / "prom"
    pdir.mkdir()
    (pdir / "password").write_text(PASSWORD)
    (pdir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{
            "job_name": "wasp", "scheme": "https",
            "basic_auth": {"username": "prometheus", "password_file": str(pdir / "password")},
            "tls_config": {"ca_file": str(pki / "ca.crt"), "server_name": "localhost"},
            "static_configs": [{"targets": [f"127.0.0.1:{ex.port}"]}]}]}))
    port = free_port()
    proc = subprocess.Popen([prom, f"--config.file={pdir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={pdir / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        up = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/v1/query?query=up{{job=%22wasp%22}}",
                        timeout=5) as resp:
                    result = json.load(resp)["data"]["result"]
                if result:
                    up = float(result[0]["value"][1])
                    if up == 1:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        assert up == 1, f"up = {up}"
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/v1/query?query=wasp_exporter_build_info",
                timeout=5) as resp:
            assert json.load(resp)["data"]["result"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
