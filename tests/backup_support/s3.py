"""A local S3-compatible endpoint for tests: moto's server on plain HTTP behind nginx with TLS.

pgBackRest 2.45 talks to S3 over HTTPS only, and fails against moto's own TLS
mode; nginx with a self-signed certificate terminating TLS in front of moto's
plain HTTP server works (with repo1-storage-verify-tls=n and path-style URIs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wasp.companions.pgcluster import free_port

__all__ = ["LocalS3", "local_s3", "s3_available"]

ACCESS_KEY = "wasp-test-key"
SECRET_KEY = "wasp-test-secret"


def _moto_server() -> str | None:
    candidate = Path(sys.executable).with_name("moto_server")
    if candidate.exists():
        return str(candidate)
    return shutil.which("moto_server")


def s3_available() -> str | None:
    """Why the local S3 cannot run here, or None when it can."""
    if _moto_server() is None:
        return "moto_server not installed (pip install 'moto[server]')"
    for tool in ("nginx", "openssl"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed"
    return None


@dataclass
class LocalS3:
    """Where the endpoint listens and the credentials it accepts."""

    host: str
    port: int
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-2000:]}")


NGINX_CONF = """
worker_processes 1;
user nobody nogroup;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {prefix}/cert.pem;
    ssl_certificate_key {prefix}/key.pem;
    location / {{
      proxy_pass http://127.0.0.1:{moto_port};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


@contextlib.contextmanager
def local_s3(workdir: Path, bucket: str = "wasp-backups") -> Iterator[LocalS3]:
    """moto on HTTP + nginx on HTTPS (self-signed), with `bucket` created; stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    moto_port, tls_port = free_port(), free_port()
    moto_log = workdir / "moto.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    moto_server = _moto_server()
    assert moto_server is not None
    with open(moto_log, "wb") as out:
        moto = subprocess.Popen([moto_server, "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        _wait_port(moto_port, moto, "moto_server", moto_log)
        req = urllib.request.Request(f"http://127.0.0.1:{moto_port}/{bucket}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(workdir / "key.pem"),
                        "-out", str(workdir / "cert.pem")], check=True, capture_output=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
            (workdir / "tmp" / sub).chmod(0o777)
        (workdir / "nginx.conf").write_text(NGINX_CONF.format(prefix=workdir, port=tls_port,
                                                              moto_port=moto_port))
        nginx_log = workdir / "error.log"
        nginx_log.touch()
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = subprocess.Popen([nginx_bin, "-c", str(workdir / "nginx.conf"), "-p", str(workdir),
                                  "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(tls_port, nginx, "nginx", nginx_log)
        yield LocalS3("127.0.0.1", tls_port, bucket)
    finally:
        for proc in (nginx, moto):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
