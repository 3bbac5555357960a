#!/usr/bin/env python3
"""Scrape latency with TLS + basic auth beside plain HTTP, in the same run.

    python bench/secure_scrape.py --series 1000 --scrapes 500

Starts a throw-away PostgreSQL cluster and two exporters with the same
queries (--series series): one plain HTTP, one with a web configuration
(TLS 1.3, a P-256 certificate from a throw-away CA, basic auth with a cost-12
bcrypt hash). Then, alternating between the two so both see the same machine
load, --scrapes sequential scrapes of /metrics each, twice: a new connection
per scrape (a TLS handshake every time: the worst case) and one kept-alive
connection (what Prometheus does). Also the first authenticated scrape (bcrypt
runs once, then the check is cached) and the per-connection cost of the
rotation check (os.stat of the watched files). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import bcrypt

from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.exporter.webconfig import WebConfigWatcher, load_web_config

PASSWORD = "bench-scrape-password"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=bench CA", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=wasp", cwd=d)
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext", cwd=d)


class Client:
    """Scrapes one exporter, with a fresh or a kept-alive connection."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None, auth: str | None) -> None:
        self.port, self.ctx = port, ctx
        self.headers = {"Accept-Encoding": "gzip"}
        if auth:
            self.headers["Authorization"] = auth
        self.kept: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        if self.ctx is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                               context=self.ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def scrape(self, *, keep: bool) -> float:
        t0 = time.perf_counter()
        if keep:
            if self.kept is None:
                self.kept = self.connect()
            conn = self.kept
        else:
            conn = self.connect()
        conn.request("GET", "/metrics", headers=self.headers)
        resp = conn.getresponse()
        resp.read()
        dt = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"scrape answered {resp.status}")
        if not keep:
            conn.close()
        return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=500)
    ap.add_argument("--wasp", default=str(Path(sys.executable).parent / "wasp"),
                    help="the wasp command (may hold arguments: 'python -m wasp')")
    a = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="wasp-secure-scrape-"))
    base.chmod(0o755)
    make_pki(base / "pki")
    web = base / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    web.write_text(f"tls_server_config:\n  cert_file: pki/server.crt\n  key_file: pki/server.key\n"
                   f"basic_auth_users:\n  prometheus: {hashed}\n")
    c = LocalCluster(datadir=base / "pg", port=free_port())
    c.init()
    c.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {}
        for kind in ("plain", "tls"):
            port = ports[kind] = free_port()
            cfg = base / f"{kind}.yml"
            cfg.write_text(f"""server: {{listen: "127.0.0.1:{port}", status_dir: {base}/status}}
targets: {{main: {{dsn_env: WASP_DSN, packs: []}}}}
queries:
  q:
    interval: 60s
    sql: select 's' || g as salon, g * 1.5 as v from generate_series(1, {a.series}) g
    labels: [salon]
    max_series: {a.series}
    values: [{{column: v, metric: wasp_bench_value, type: gauge, help: bench series}}]
""")
            argv = [*shlex.split(a.wasp), "exporter", "-c", str(cfg), "--log-level", "warning",
                    "--allow-superuser"]
            if kind == "tls":
                argv += ["--web.config.file", str(web)]
            procs.append(subprocess.Popen(argv, env=dict(os.environ, WASP_DSN=c.dsn())))
        ctx = ssl.create_default_context(cafile=str(base / "pki" / "ca.crt"))
        auth = "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        clients = {"plain": Client(ports["plain"], None, None),
                   "tls": Client(ports["tls"], ctx, auth)}
        deadline = time.time() + 60
        first = None
        for kind, cl in clients.items():
            while True:
                try:
                    dt = cl.scrape(keep=False)
                    if kind == "tls":
                        first = dt
                    break
                except (OSError, http.client.HTTPException, SystemExit):
                    if time.time() > deadline:
                        raise SystemExit(f"{kind} exporter not up") from None
                    time.sleep(0.3)
        time.sleep(2)  # the first round rendered
        results: dict[tuple[str, bool], list[float]] = {}
        for keep in (False, True):
            for _ in range(a.scrapes):
                for kind, cl in clients.items():
                    results.setdefault((kind, keep), []).append(cl.scrape(keep=keep))
        watcher = WebConfigWatcher(load_web_config(web))
        n = 20000
        check = timeit.timeit(watcher.current, number=n) / n
        body = http.client.HTTPConnection("127.0.0.1", ports["plain"], timeout=10)
        body.request("GET", "/metrics")
        size = len(body.getresponse().read())
        print(f"{a.series} series (+ self-metrics), {size} bytes plain text, gzip on the wire; "
              f"{a.scrapes} sequential scrapes per row, alternating plain and TLS\n")
        print("| connection | endpoint | p50 ms | p99 ms | mean ms |")
        print("|---|---|---|---|---|")
        for keep in (False, True):
            for kind in ("plain", "tls"):
                xs = results[(kind, keep)]
                label = "TLS 1.3 + basic auth" if kind == "tls" else "plain HTTP"
                print(f"| {'kept alive' if keep else 'new per scrape'} | {label} | "
                      f"{statistics.median(xs) * 1e3:.2f} | {pct(xs, 99) * 1e3:.2f} | "
                      f"{statistics.mean(xs) * 1e3:.2f} |")
        print(f"\nfirst authenticated scrape (TLS handshake + bcrypt cost 12, then cached): "
              f"{(first or 0) * 1e3:.1f} ms")
        print(f"rotation check per connection and request (stat of 3 files): "
              f"{check * 1e6:.1f} µs")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        c.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
