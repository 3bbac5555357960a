"""Size and cost of the postgres pack on a database with 200 tables and 5,000 statements.

Makes a throw-away cluster, a database with 200 tables (a primary key and a
secondary index each, 1,000-20,000 rows), runs 5,000 distinct statements,
then refreshes the whole pack several times as the wasp_monitor role and
reports:

- the series the pack exports, per query and in all;
- the database time per refresh, two ways: what the exporter measured around
  each query (wasp_query_duration_seconds, round trip included), and the
  execution time PostgreSQL itself accounted to the wasp_monitor role in
  pg_stat_statements;
- the database time per minute at the pack's default intervals.

Usage: python bench/postgres_pack.py [--refreshes 5] [--tables 200] [--statements 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.schema import parse_config
from wasp.exporter.engine import Engine

DB = "bench"


def prepare(c: LocalCluster, tables: int, statements: int) -> None:
    """The monitor role, the tables, the statements."""
    c.psql(resources.files("wasp").joinpath("sql/monitor_role.sql").read_text())
    c.psql(f"CREATE DATABASE {DB}")
    c.psql(
        "CREATE EXTENSION pg_stat_statements;\n"
        f"DO $$ BEGIN FOR i IN 1..{tables} LOOP\n"
        "  EXECUTE format('CREATE TABLE t_%s (id bigint PRIMARY KEY, salon int, at timestamptz, note text)', i);\n"
        "  EXECUTE format('CREATE INDEX t_%s_salon ON t_%s (salon)', i, i);\n"
        "  EXECUTE format('INSERT INTO t_%s SELECT g, g %% 50, now() - g * interval ''1 min'', md5(g::text) "
        "FROM generate_series(1, %s) g', i, 1000 + (i * 97) % 19000);\n"
        "  EXECUTE format('DELETE FROM t_%s WHERE id %% 10 = 0', i);\n"
        "END LOOP; END $$;\n"
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO wasp_monitor;\n"
        "ANALYZE;\n",
        dbname=DB,
    )
    per_table = max(1, statements // tables)
    with psycopg.connect(c.dsn(DB), autocommit=True) as conn, conn.pipeline():
        done = 0
        for t in range(1, tables + 1):
            for n in range(1, per_table + 1):  # an IN list of n constants is a distinct statement
                if done == statements:
                    break
                conn.execute(f"SELECT count(*) FROM t_{t} WHERE salon IN "
                             f"({', '.join(str(k) for k in range(n))})")
                done += 1


async def measure(c: LocalCluster, refreshes: int, tmp: Path) -> None:
    """Refresh the pack `refreshes` times and print series and time."""
    cfg = parse_config({
        "server": {"status_dir": str(tmp / "status")},
        "targets": {"main": {"dsn": c.dsn(DB, user="wasp_monitor"), "packs": ["postgres"]}},
    })
    intervals = {q.name: q.interval for q in cfg.queries}
    su = c.dsn(DB)
    with psycopg.connect(su, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles "
                     "WHERE rolname = 'wasp_monitor'))")
    engine = Engine(cfg)
    client: dict[str, float] = defaultdict(float)
    series: dict[str, float] = {}
    text = ""
    wall = 0.0
    try:
        for _ in range(refreshes):
            t0 = time.perf_counter()
            text = (await engine.run_once()).text.decode()
            wall += time.perf_counter() - t0
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == "wasp_query_duration_seconds":
                        client[s.labels["query"]] += s.value
                    elif s.name == "wasp_query_series":
                        series[s.labels["query"]] = s.value
    finally:
        await engine.stop()
    with psycopg.connect(su, autocommit=True) as conn:
        server_ms = conn.execute(
            "SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements "
            "WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = 'wasp_monitor') "
            "AND query NOT LIKE 'SET %'").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]

    pg_series = sum(1 for line in text.splitlines() if line.startswith("wasp_pg_"))
    print(f"pg_stat_statements entries: {entries}")
    print(f"series exported by the pack: {pg_series}\n")
    print("| query | interval | series | client ms/refresh | DB ms/min at interval |")
    print("|---|---|---|---|---|")
    per_min = 0.0
    for q in sorted(series, key=lambda k: -client[k]):
        ms = client[q] / refreshes * 1000
        rate = ms * 60 / intervals[q]
        per_min += rate
        print(f"| {q} | {intervals[q]:g}s | {series[q]:g} | {ms:.1f} | {rate:.1f} |")
    total_client = sum(client.values()) / refreshes * 1000
    print(f"\nper refresh of the whole pack: client-measured {total_client:.1f} ms "
          f"(sum of query round trips), server execution {server_ms / refreshes:.1f} ms "
          f"(pg_stat_statements, wasp_monitor), wall {wall / refreshes * 1000:.1f} ms")
    print(f"database time per minute at the default intervals: {per_min:.0f} ms")


def main() -> None:
    """Build, measure, clean up."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refreshes", type=int, default=5)
    ap.add_argument("--tables", type=int, default=200)
    ap.add_argument("--statements", type=int, default=5000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wasp-bench-", dir="/tmp"))
    base.chmod(0o755)
    c = LocalCluster(datadir=base / "pg", port=free_port(),
                     settings={"pg_stat_statements.max": "10000"})
    try:
        c.init()
        c.start()
        t0 = time.perf_counter()
        prepare(c, args.tables, args.statements)
        print(f"prepared {args.tables} tables and {args.statements} statements "
              f"in {time.perf_counter() - t0:.1f}s")
        asyncio.run(measure(c, args.refreshes, base))
    finally:
        c.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
