#!/usr/bin/env python3
"""Summary tables of the exporter benchmark (run_bench.py results.json) for docs/benchmark.md.

    python3 bench/summarize.py bench/results/run3/results.json [--by-query] [--per-query]

Per data size and index set: every contestant's steady-phase cost per minute
(DB ms, DB calls, exporter CPU ms), scrape latency p50/p99 (sequential and
concurrent phases), peak RSS, and wasp's DB time as a fraction of each peer's;
then the issue's bars, each with its measured value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["wasp", "query-exporter-interval", "query-exporter", "postgres-exporter",
         "postgres-exporter-cache"]
IDX_ORDER = ["seed", "wasp", "none", "seed_only"]


def _key(r: dict) -> tuple:
    c = r["contestant"]
    i = r["index_set"]
    return (str(r["scale_days"]), IDX_ORDER.index(i) if i in IDX_ORDER else 9, i,
            ORDER.index(c) if c in ORDER else 9, c)


def table(runs: list[dict]) -> list[str]:
    out = ["| data | idx | contestant | DB ms/min | DB calls/min | seq p50 / p99 ms | "
           "4 clients p50 / p99 ms | CPU ms/min | peak RSS MiB | wasp DB ms ÷ this |",
           "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    by = {(str(r["scale_days"]), r["index_set"], r["contestant"]): r for r in runs}
    for r in sorted(runs, key=_key):
        s = r.get("steady")
        if not s:
            err = "; ".join(r.get("errors") or ["no steady phase"])[:80]
            out.append(f"| {r['scale_days']} | {r['index_set']} | {r['contestant']} | {err} |"
                       + " |" * 6)
            continue
        seq, conc = r["sequential"]["latency"], r["concurrent"]["latency"]
        w = by.get((str(r["scale_days"]), r["index_set"], "wasp"))
        ratio = ""
        if w and w.get("steady") and r["contestant"] != "wasp" and s["db_ms_per_min"]:
            ratio = f"{w['steady']['db_ms_per_min'] / s['db_ms_per_min']:.1%}"
        out.append(
            f"| {r['scale_days']} | {r['index_set']} | {r['contestant']} | {s['db_ms_per_min']:g} | "
            f"{s['db_calls_per_min']:g} | {seq['p50_ms']:g} / {seq['p99_ms']:g} | "
            f"{conc['p50_ms']:g} / {conc['p99_ms']:g} | {s['cpu_ms_per_min']:g} | "
            f"{r.get('rss_hwm_kib', 0) / 1024:.0f} | {ratio} |")
    return out


def bars(runs: list[dict], small: str, large: str) -> list[str]:
    by = {(str(r["scale_days"]), r["index_set"], r["contestant"]): r for r in runs}

    def get(scale: str, c: str, idx: str) -> dict | None:
        r = by.get((scale, idx, c))
        return r if r and r.get("steady") else None

    out = ["| bar | index set | measured | verdict |", "|---|---|--:|---|"]

    def row(text: str, idx: str, value: float | None, limit: float, fmt: str) -> None:
        if value is None:
            out.append(f"| {text} | {idx} | n/a | not measured |")
        else:
            out.append(f"| {text} | {idx} | {format(value, fmt)} | "
                       f"{'met' if value <= limit else 'MISSED'} |")

    sets = [i for i in IDX_ORDER if any(k[1] == i for k in by)]
    sets += sorted({k[1] for k in by} - set(sets))
    for idx in sets:
        for scale, limit in ((small, 0.25), (large, 0.10)):
            w, q = get(scale, "wasp", idx), get(scale, "query-exporter-interval", idx)
            v = (w["steady"]["db_ms_per_min"] / q["steady"]["db_ms_per_min"]) if w and q else None
            row(f"{scale}: wasp DB ms/min ÷ query-exporter interval ≤ {limit:.0%}", idx, v, limit,
                ".1%")
        w1, w10 = get(small, "wasp", idx), get(large, "wasp", idx)
        v = (w10["steady"]["db_ms_per_min"] / w1["steady"]["db_ms_per_min"]) if w1 and w10 else None
        row(f"wasp DB ms/min at {large} ÷ at {small} ≤ 3", idx, v, 3.0, ".2f")
        for scale in (small, large):
            w = get(scale, "wasp", idx)
            row(f"{scale}: wasp scrape p99, 4 clients ≤ 5 ms", idx,
                w["concurrent"]["latency"]["p99_ms"] if w else None, 5.0, "g")
        w = by.get((large, idx, "wasp"))
        row(f"{large}: wasp peak RSS ≤ 80 MiB", idx,
            w["rss_hwm_kib"] / 1024 if w and w.get("rss_hwm_kib") else None, 80.0, ".0f")
    return out


def main(argv: list[str]) -> int:
    files = [a for a in argv[1:] if not a.startswith("--")]
    doc = json.loads(Path(files[0] if files else "bench/results/run3/results.json").read_text())
    runs = doc["runs"]
    scales = sorted({str(r["scale_days"]) for r in runs}, key=lambda s: (len(s), s))
    small = "30" if "30" in scales else scales[0]
    large = next((s for s in scales if "x" in s), scales[-1])
    print("\n".join(table(runs)))
    print()
    print("\n".join(bars(runs, small, large)))
    if "--by-query" in argv:
        for scale in scales:
            print()
            print("\n".join(by_query(runs, scale)))
    if "--per-query" in argv:
        print()
        print("\n".join(per_query(runs)))
    return 0


WORKLOAD = ["salon_bookings_created_24h", "salon_bookings_upcoming_24h", "salon_messages_15m",
            "salon_messages_failed_outbound_1h", "salon_ai_usage_24h",
            "salon_ai_conversations_active", "salon_webhooks_1h"]
# wasp's window statements do not carry the query's name: known by what they read
WASP_SHAPES = [("event_type", "salon_webhooks_1h"), ("direction::text", "salon_messages_15m"),
               ("count(*) FROM mes", "salon_messages_failed_outbound_1h"),
               ("model AS", "salon_ai_usage_24h"), ("last_activity", "salon_ai_conversations_active"),
               ("start_ts", "salon_bookings_upcoming_24h"),
               ("date_part($3, created_at) AS wasp_t", "salon_bookings_created_24h")]


def query_of(sql: str) -> str:
    """The neutral query a statement belongs to ("other" for statistics views, probes, SET)."""
    for name in WORKLOAD:
        if name in sql:
            return name
    for shape, name in WASP_SHAPES:
        if shape in sql:
            return name
    return "other"


def by_query(runs: list[dict], scale: str) -> list[str]:
    """DB ms/min per neutral query at one data size: wasp and query-exporter interval, per index set."""
    cols = [(r["index_set"], r["contestant"]) for r in sorted(runs, key=_key)
            if str(r["scale_days"]) == scale and (r.get("steady") or {}).get("db_per_query")
            and r["contestant"] in ("wasp", "query-exporter-interval")]
    data: dict[tuple[str, str], dict[str, float]] = {}
    for r in runs:
        if str(r["scale_days"]) != scale or (r["index_set"], r["contestant"]) not in cols:
            continue
        s = r["steady"]
        acc = data.setdefault((r["index_set"], r["contestant"]), {})
        for q in s["db_per_query"]:
            name = query_of(q["query"])
            acc[name] = acc.get(name, 0.0) + q["ms"] / (s["wall_s"] / 60)
    short = {"wasp": "wasp", "query-exporter-interval": "qe-interval"}
    out = [f"| query ({scale}) | " + " | ".join(f"{short[c]} ({i})" for i, c in cols) + " |",
           "|---|" + "--:|" * len(cols)]
    for name in [*WORKLOAD, "other"]:
        out.append(f"| `{name}` | " if name != "other" else "| statistics views, probe, SET | ")
        out[-1] += " | ".join(f"{data[k].get(name, 0.0):.1f}" for k in cols) + " |"
    out.append("| **total (top statements)** | " + " | ".join(
        f"**{sum(data[k].values()):.1f}**" for k in cols) + " |")
    return out


def per_query(runs: list[dict]) -> list[str]:
    """Steady-phase DB ms per minute of each statement, per run (pg_stat_statements)."""
    out = []
    for r in sorted(runs, key=_key):
        s = r.get("steady") or {}
        minutes = (s.get("wall_s") or 0) / 60
        if not minutes or not s.get("db_per_query"):
            continue
        out.append(f"{r['scale_days']} / {r['index_set']} / {r['contestant']}:")
        for q in s["db_per_query"]:
            out.append(f"  {q['ms'] / minutes:8.2f} ms/min {q['calls'] / minutes:6.1f} calls/min"
                       f"  {q['query'][:90]}")
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
