"""CPU of the log pack per 10,000 jsonlog lines: one round over a generated file.

    PYTHONPATH=exporter python bench/log_pack_cpu.py [--lines 200000]

The mix follows a sampled OLTP server: mostly duration lines, some
connections, failed logins, DDL statements, errors and other messages.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from wasp.config.log import LogSettings, SamplingSettings
from wasp.packs.log.collector import LogCollector


def line(rng: random.Random, i: int) -> str:
    base = {"timestamp": "2026-12-04 16:42:11.143 UTC", "user": f"app{rng.randrange(5)}",
            "dbname": "app", "pid": 1000 + i % 50, "remote_host": f"10.0.0.{rng.randrange(40)}",
            "remote_port": 40000 + i % 1000, "session_id": "6b12ed63.6153", "line_num": i,
            "ps": "SELECT", "session_start": "2026-12-04 16:42:11 UTC", "vxid": "3/1",
            "txid": 0, "error_severity": "LOG", "application_name": "api",
            "backend_type": "client backend", "query_id": 2920803561901199087}
    r = rng.random()
    if r < 0.80:
        ms = rng.lognormvariate(0.5, 1.2)
        base["message"] = (f"duration: {ms:.3f} ms  statement: SELECT id, status FROM bookings "
                           f"WHERE salon_id = {rng.randrange(1000)} AND starts_at > now()")
    elif r < 0.90:
        base["message"] = "connection authorized: user=app database=app application_name=api"
    elif r < 0.95:
        base.update(error_severity="FATAL", state_code="28P01",
                    message='password authentication failed for user "app"')
    elif r < 0.97:
        base["message"] = "statement: GRANT SELECT ON bookings TO report"
    elif r < 0.99:
        base.update(error_severity="ERROR", state_code="23505",
                    message="duplicate key value violates unique constraint \"x\"")
    else:
        base["message"] = "checkpoint complete: wrote 12 buffers (0.1%)"
    return json.dumps(base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "log"
        d.mkdir()
        (d / "pg.json").write_text("".join(line(rng, i) + "\n" for i in range(args.lines)))
        size = (d / "pg.json").stat().st_size
        col = LogCollector(LogSettings(directory=str(d), start_at="beginning",
                                       max_bytes_per_round=1 << 40,
                                       sampling=SamplingSettings(100, 0, 0.1)))
        t0, w0 = time.process_time(), time.perf_counter()
        col.round(Path(tmp) / "status", time.time())
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    per = cpu / args.lines * 10_000
    print(f"{args.lines} lines, {size / args.lines:.0f} bytes each: {cpu:.2f} s CPU "
          f"({wall:.2f} s wall); {per * 1000:.1f} ms CPU per 10,000 lines")


if __name__ == "__main__":
    main()
