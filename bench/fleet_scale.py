#!/usr/bin/env python3
"""Exporter cost against the number of targets: RSS, CPU per minute, scrape p99, connections.

    python bench/fleet_scale.py --sizes 1,10,50,100 --minutes 1 [--postgres-exporter]

Starts a PostgreSQL cluster in a temporary folder, makes a template database
with the application schema and a little synthetic data, and clones it into
as many databases as the largest size. For each size it runs one exporter with
the app pack on every target, waits for the first round, then for --minutes
measures the exporter's CPU (utime+stime from /proc), RSS, the latency of
/metrics (sequential scrapes, p50/p99) and the sessions it holds on the
server (pg_stat_activity). With --postgres-exporter it does the same for
Debian's prometheus-postgres-exporter (0.11: no /probe yet, so its older
multi-server mode: every DSN in DATA_SOURCE_NAME, all scraped on each
/metrics request, its built-in collectors only). Both are scraped every
--period seconds, as Prometheus would. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.demo.datagen import create_schema, generate

CLK = os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def get(port: int, path: str) -> tuple[float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    conn.close()
    return dt, r.status, len(body)


def sessions(c: LocalCluster, app: str | None) -> int:
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        q = "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'fleet_%'"
        if app:
            q += f" AND application_name = '{app}'"
        row = conn.execute(q).fetchone()
        return int(row[0]) if row else 0


def prepare(c: LocalCluster, n: int) -> None:
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fleet_tmpl")
    with psycopg.connect(c.dsn("fleet_tmpl"), autocommit=True) as conn:
        create_schema(conn)
        generate(conn, days=0.25, scale=0.01, salons=20)
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        for i in range(n):
            conn.execute(f"CREATE DATABASE fleet_{i:03d} TEMPLATE fleet_tmpl")


def measure(pid: int, port: int, minutes: float, period: float, c: LocalCluster,
            app: str | None) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    lat: list[float] = []
    failed = 0
    peak_sessions = 0
    while time.monotonic() - t0 < minutes * 60:
        s = time.monotonic()
        dt, status, _ = get(port, "/metrics")
        failed += status != 200
        lat.append(dt)
        peak_sessions = max(peak_sessions, sessions(c, app))
        time.sleep(max(0.0, period - (time.monotonic() - s)))
    cpu = (cpu_seconds(pid) - cpu0) / ((time.monotonic() - t0) / 60)
    return {"cpu_s_per_min": cpu, "rss_mib": rss_bytes(pid) / 2**20,
            "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000,
            "sessions": float(peak_sessions), "failed": failed / max(1, len(lat))}


def run_wasp(c: LocalCluster, n: int, minutes: float, period: float, tmp: Path) -> dict[str, float]:
    port = free_port()
    cfg = {"server": {"listen": f"127.0.0.1:{port}", "status_dir": str(tmp / "status"),
                      "log_level": "warning"},
           "targets": {f"db{i:03d}": {"dsn": c.dsn(f"fleet_{i:03d}"), "packs": ["app"]}
                       for i in range(n)}}
    path = tmp / f"wasp-{n}.yml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "wasp", "exporter", "--config", str(path),
                             "--allow-superuser"] if _has_flag("--allow-superuser") else
                            [sys.executable, "-m", "wasp", "exporter", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while True:
            try:
                if get(port, "/readyz")[1] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"{n} targets: never ready")
            time.sleep(0.5)
        ready = time.monotonic() - t0
        out = measure(proc.pid, port, minutes, period, c, "wasp")
        out["ready_s"] = ready
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def _has_flag(flag: str) -> bool:
    r = subprocess.run([sys.executable, "-m", "wasp", "exporter", "--help"], capture_output=True,
                       text=True)
    return flag in r.stdout


def run_pge(c: LocalCluster, n: int, minutes: float, period: float, tmp: Path) -> dict[str, float]:
    binary = shutil.which("prometheus-postgres-exporter")
    if binary is None:
        raise SystemExit("apt-get install prometheus-postgres-exporter for --postgres-exporter")
    port = free_port()
    dsns = ",".join(f"postgresql://{c.superuser}@127.0.0.1:{c.port}/fleet_{i:03d}?sslmode=disable"
                    f"&application_name=pge" for i in range(n))
    env = {**os.environ, "DATA_SOURCE_NAME": dsns}
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while True:
            try:
                get(port, "/")
                break
            except OSError:
                if time.monotonic() - t0 > 60:
                    raise SystemExit("postgres_exporter never listened") from None
                time.sleep(0.3)
        out = measure(proc.pid, port, minutes, period, c, "pge")
        out["ready_s"] = time.monotonic() - t0 - minutes * 60
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,50,100")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--period", type=float, default=5.0, help="seconds between scrapes")
    ap.add_argument("--postgres-exporter", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="wasp-fleet-bench-"))
    tmp.chmod(0o755)
    c = LocalCluster(datadir=tmp / "pg", port=free_port(),
                     settings={"max_connections": "500", "shared_buffers": "256MB"})
    c.init()
    c.start()
    try:
        prepare(c, max(sizes))
        rows = []
        for n in sizes:
            rows.append(("wasp", n, run_wasp(c, n, a.minutes, a.period, tmp)))
            print(rows[-1], file=sys.stderr, flush=True)
            if a.postgres_exporter:
                rows.append(("postgres_exporter", n, run_pge(c, n, a.minutes, a.period, tmp)))
                print(rows[-1], file=sys.stderr, flush=True)
        print("| exporter | targets | ready s | CPU s/min | RSS MiB | /metrics p50 ms | p99 ms "
              "| sessions held | scrapes failed |")
        print("|---|---|---|---|---|---|---|---|---|")
        for who, n, r in rows:
            print(f"| {who} | {n} | {r['ready_s']:.1f} | {r['cpu_s_per_min']:.2f} | {r['rss_mib']:.1f} | "
                  f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['sessions']:.0f} | "
                  f"{r['failed']:.0%} |")
    finally:
        c.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
