#!/usr/bin/env python3
"""Scrape latency and memory of the exporter with N series, on a throw-away cluster.

    python bench/scrape_latency.py --series 5000 --scrapes 500 --clients 4

Starts a PostgreSQL cluster in a temporary folder, an exporter whose queries
export --series series (split over 10 queries, each with 3 labels), waits for
the first round, then measures /metrics latency sequentially and with
--clients concurrent clients (plain and gzip), and the exporter's RSS
(VmRSS and VmHWM from /proc). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from wasp.companions.pgcluster import LocalCluster, free_port


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def scrape(port: int, gz: bool) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = time.perf_counter()
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip" if gz else "identity"})
    body = conn.getresponse().read()
    dt = time.perf_counter() - t0
    conn.close()
    return dt, len(body)


def proc_mem(pid: int) -> tuple[int, int]:
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--scrapes", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--wasp", default=str(Path(sys.executable).parent / "wasp"))
    a = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="wasp-scrape-"))
    base.chmod(0o755)
    c = LocalCluster(datadir=base / "pg", port=free_port())
    c.init()
    c.start()
    proc = None
    try:
        per = a.series // 10
        queries = []
        for i in range(10):
            queries.append(f"""
  q{i}:
    interval: 15s
    sql: select 's' || (g % 1000) as salon, 'st' || (g % 5) as status, 'k{i}_' || g as k, g * 1.5 as v
         from generate_series(1, {per}) g
    labels: [salon, status, k]
    max_series: {per}
    values: [{{column: v, metric: wasp_bench_value_{i}, type: gauge, help: bench series}}]""")
        port = free_port()
        cfg = base / "wasp.yml"
        cfg.write_text(f"""server: {{listen: "127.0.0.1:{port}", status_dir: {base}/status}}
targets: {{main: {{dsn_env: WASP_DSN, packs: []}}}}
queries:{''.join(queries)}
""")
        env = dict(os.environ, WASP_DSN=c.dsn())
        proc = subprocess.Popen([a.wasp, "exporter", "-c", str(cfg), "--log-level", "warning",
                                 "--allow-superuser"],
                                env=env)
        deadline = time.time() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("exporter not ready")
            time.sleep(0.2)
        time.sleep(1)
        _, size = scrape(port, False)
        _, gzsize = scrape(port, True)
        rows = []
        for gz in (False, True):
            seq = [scrape(port, gz)[0] for _ in range(a.scrapes)]
            conc: list[float] = []
            lock = threading.Lock()

            def worker(gz: bool, out: list[float], lock: threading.Lock) -> None:
                mine = [scrape(port, gz)[0] for _ in range(a.scrapes // a.clients)]
                with lock:
                    out.extend(mine)

            ts = [threading.Thread(target=worker, args=(gz, conc, lock)) for _ in range(a.clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            rows.append((("gzip" if gz else "plain"), seq, conc))
        rss, hwm = proc_mem(proc.pid)
        print(f"series: {a.series} (+ self-metrics), body {size} bytes plain, {gzsize} bytes gzip")
        print(f"exporter RSS {rss / 2**20:.1f} MiB, peak {hwm / 2**20:.1f} MiB\n")
        print("| encoding | sequential p50 ms | p99 ms | "
              f"{a.clients} clients p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        for enc, seq, conc in rows:
            print(f"| {enc} | {statistics.median(seq) * 1e3:.2f} | {pct(seq, 99) * 1e3:.2f} | "
                  f"{statistics.median(conc) * 1e3:.2f} | {pct(conc, 99) * 1e3:.2f} | "
                  f"{max(conc) * 1e3:.2f} |")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        c.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
