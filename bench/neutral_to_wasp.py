#!/usr/bin/env python3
"""Convert the exporter benchmark's neutral queries.yaml (format v1) into a wasp config.

    python3 bench/neutral_to_wasp.py --queries <harness>/queries.yaml --out wasp.yaml \
        [--dsn-env WASP_DSN] [--listen 127.0.0.1:9645] [--check /path/to/wasp]

One target `bench` (DSN from the environment variable --dsn-env, no built-in
packs); every neutral query becomes a wasp query of the same name:

- metric names are the harness's `<query name>_<value column>`, made to pass
  wasp's naming rules deterministically:
    * a counter gets `_total` appended (`bench_pg_database_xact_commit` ->
      `bench_pg_database_xact_commit_total`), as Prometheus clients do;
    * a value in milliseconds (column ending `_ms` / `_milliseconds`) is
      exported in seconds: the column becomes `<stem>_seconds`, the SQL
      divides by 1000 (`salon_webhooks_1h_avg_processing_ms` ->
      `salon_webhooks_1h_avg_processing_seconds`), in float8: numeric
      division would cost more per row than the aggregate itself;
  any other name wasp rejects is an error here (nothing is renamed silently);
- interval = `min_interval_s`, else 15 s; timeout = min(interval, --timeout
  [15 s]): one value for every query, so that the pooled sessions keep one
  statement_timeout instead of re-setting it between queries;
- max_series = 100,000 (the peers have no cap; wasp's default of 1,000 would
  cut salon_bookings_created_24h, ~3,500 series);
- a `window:` block becomes wasp's `window:` (length_s -> length "Ns",
  changes_after_insert_s -> changes_after_insert "Ns", null stays null,
  where / group_by / aggregates / updated_column as they are), so wasp
  evaluates it incrementally;
- a query the neutral file declares no window for gets one from --windows
  (default: bench/windows.yaml beside this script) when that file names it,
  in the same structured form plus wasp's `direction: future` for windows
  ahead (bookings starting in the next 24 h). The SQL stays the harness's.

With --check WASP the result is validated with `WASP check-config`.
Only PyYAML is needed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

QUERY_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MS_RE = re.compile(r"^(.*)_(ms|milliseconds)$")
# the one sum/avg/min/max call inside an aggregate expression (for unit scaling)
AGG_CALL_RE = re.compile(r"\b(sum|avg|min|max)\s*\(", re.I)
DEFAULT_INTERVAL = 15
#: the peers export every row; wasp's default cap (1,000) would cut (a) at ~3,500
MAX_SERIES = 100_000


class ConvertError(Exception):
    """The neutral file cannot be expressed as a wasp config."""


def load_neutral(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ConvertError(f"{path}: not a neutral query file of version 1")
    queries = doc.get("queries") or []
    for q in queries:
        for key in ("name", "sql", "values"):
            if key not in q:
                raise ConvertError(f"query {q.get('name')!r}: missing {key!r}")
    return queries


def _seconds(v: Any) -> str:
    n = float(v)
    return f"{int(n)}s" if n == int(n) else f"{n:g}s"


def _scale_aggregate(expr: str, divisor: str) -> str:
    """'coalesce(avg(x), 0)::float8' -> 'coalesce(avg((x)::float8 / 1000), 0)::float8'."""
    calls = list(AGG_CALL_RE.finditer(expr))
    if len(calls) != 1:
        raise ConvertError(f"cannot rescale aggregate {expr!r}: needs exactly one sum/avg/min/max")
    start = calls[0].end()
    depth, end = 1, None
    for i in range(start, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end is None:
        raise ConvertError(f"unbalanced aggregate {expr!r}")
    default = re.search(r"coalesce\s*\(.*,\s*([-+0-9.eE]+)\s*\)", expr, re.I)
    if default and float(default.group(1)) != 0:
        raise ConvertError(f"cannot rescale aggregate {expr!r}: non-zero coalesce default")
    return f"{expr[:start]}({expr[start:end].strip()})::float8 / {divisor}{expr[end:]}"


def metric_for(qname: str, column: str, type_: str) -> tuple[str, str, str | None]:
    """(wasp column, metric name, divisor or None) for one neutral value column."""
    m = MS_RE.match(column)
    if m:
        if type_ == "counter":
            raise ConvertError(f"{qname}.{column}: a counter in milliseconds is not supported")
        col = f"{m.group(1)}_seconds"
        return col, f"{qname}_{col}", "1000"
    name = f"{qname}_{column}"
    if type_ == "counter" and not name.endswith("_total"):
        name += "_total"
    elif type_ != "counter" and name.endswith("_total"):
        raise ConvertError(f"{qname}.{column}: gauge {name!r} ends with _total")
    return column, name, None


def convert_query(q: dict[str, Any], timeout: float = 15.0, extra_window: dict[str, Any] | None = None,
                  ) -> tuple[str, dict[str, Any], list[tuple[str, str]]]:
    """One neutral query -> (name, wasp query, [(neutral metric, wasp metric)] renamed)."""
    name = q["name"]
    if not QUERY_NAME_RE.match(name):
        raise ConvertError(f"query name {name!r} is not [a-z][a-z0-9_]*")
    labels = list(q.get("labels") or [])
    values, renamed, scaled = [], [], {}
    for v in q["values"]:
        type_ = v.get("type", "gauge")
        col, metric, divisor = metric_for(name, v["column"], type_)
        neutral = f"{name}_{v['column']}"
        if metric != neutral:
            renamed.append((neutral, metric))
        if divisor:
            scaled[v["column"]] = (col, divisor)
        help_ = v.get("help") or v["column"]
        if divisor:
            help_ = re.sub(r"\b(in )?(ms|milliseconds)\b", "in seconds", help_)
        values.append({"column": col, "metric": metric, "type": type_, "help": help_})
    sql = q["sql"].strip().rstrip(";")
    if scaled:
        cols = [*labels]
        for v in q["values"]:
            c = v["column"]
            cols.append(f"{c}::float8 / {scaled[c][1]} AS {scaled[c][0]}" if c in scaled else c)
        sql = f"SELECT {', '.join(cols)}\nFROM (\n{sql}\n) AS q"
    interval = int(q.get("min_interval_s") or DEFAULT_INTERVAL)
    out: dict[str, Any] = {
        "help": q.get("help") or name,
        "interval": f"{interval}s",
        "timeout": _seconds(min(interval, timeout)),
        "max_series": MAX_SERIES,
        "sql": sql + "\n",
        "labels": labels,
        "values": values,
    }
    w = q.get("window") or extra_window
    if w:
        group_by = dict(w.get("group_by") or {})
        if set(group_by) != set(labels):
            raise ConvertError(f"{name}: window.group_by {sorted(group_by)} != labels {sorted(labels)}")
        aggregates = {}
        for col, expr in (w.get("aggregates") or {}).items():
            if col in scaled:
                col, expr = scaled[col][0], _scale_aggregate(str(expr), scaled[col][1])
            aggregates[col] = str(expr)
        cai = w.get("changes_after_insert_s")
        win: dict[str, Any] = {
            "table": w["table"],
            "time_column": w["time_column"],
            "length": _seconds(w["length_s"]),
        }
        if w.get("where"):
            win["where"] = str(w["where"])
        if group_by:
            win["group_by"] = {k: str(e) for k, e in group_by.items()}
        win["aggregates"] = aggregates
        win["changes_after_insert"] = None if cai is None else _seconds(cai)
        if w.get("updated_column"):
            win["updated_column"] = w["updated_column"]
        if w.get("direction"):
            win["direction"] = str(w["direction"])
        out["window"] = win
    return name, out, renamed


def convert(queries: list[dict[str, Any]], dsn_env: str, listen: str,
            status_dir: str, timeout: float = 15.0,
            windows: dict[str, dict[str, Any]] | None = None,
            ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    windows = dict(windows or {})
    wq: dict[str, Any] = {}
    renamed: list[tuple[str, str]] = []
    for q in queries:
        extra = windows.pop(str(q.get("name")), None)
        if extra is not None and q.get("window"):
            raise ConvertError(f"{q.get('name')}: --windows declares a window for a query "
                               "that declares its own")
        name, body, ren = convert_query(q, timeout, extra)
        if name in wq:
            raise ConvertError(f"duplicate query name {name!r}")
        wq[name] = body
        renamed += ren
    if windows:
        raise ConvertError(f"--windows names queries the neutral file does not have: "
                           f"{', '.join(sorted(windows))}")
    cfg = {
        "server": {"listen": listen, "status_dir": status_dir, "log_level": "warning"},
        "targets": {"bench": {"dsn_env": dsn_env, "packs": [], "pool_max": 2}},
        "queries": wq,
    }
    return cfg, renamed


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", required=True, help="neutral queries.yaml (format v1)")
    ap.add_argument("--out", required=True, help="wasp config to write")
    ap.add_argument("--dsn-env", default="WASP_DSN", help="environment variable holding the DSN")
    ap.add_argument("--listen", default="127.0.0.1:9645", help="server.listen (--listen of "
                    "`wasp exporter` overrides it)")
    ap.add_argument("--timeout", type=float, default=15.0,
                    help="statement timeout in seconds (capped at each query's interval)")
    ap.add_argument("--status-dir", help="server.status_dir (default: <out>.status beside the config)")
    ap.add_argument("--windows", default=str(Path(__file__).resolve().parent / "windows.yaml"),
                    help="window declarations for queries the neutral file declares none for "
                         "(default: %(default)s; '' for none)")
    ap.add_argument("--check", metavar="WASP", help="validate the result with `WASP check-config`")
    a = ap.parse_args(argv)
    out = Path(a.out)
    try:
        windows = yaml.safe_load(Path(a.windows).read_text()) if a.windows else None
        if windows is not None and not isinstance(windows, dict):
            raise ConvertError(f"{a.windows}: expected a mapping of query name -> window")
        cfg, renamed = convert(load_neutral(Path(a.queries)), a.dsn_env, a.listen,
                               a.status_dir or str(out.resolve().parent / (out.name + ".status")),
                               a.timeout, windows)
    except ConvertError as e:
        print(f"neutral_to_wasp: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    head = "# generated by bench/neutral_to_wasp.py from " + str(a.queries) + "\n"
    if renamed:
        head += "# renamed for Prometheus naming rules: " + ", ".join(
            f"{n} -> {w}" for n, w in renamed) + "\n"
    out.write_text(head + yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, width=1000,
                                    allow_unicode=True))
    if a.check:
        return subprocess.run([a.check, "check-config", str(out)]).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
