"""`wasp replica status`: the replication picture of every known node, as a table or JSON.

It runs the replication pack's own queries (the exporter's source of truth)
on each node, where their role says they mean something, and adds the last
actions recorded by setup, promote and rejoin.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from wasp.companions.status import read_records
from wasp.config.schema import load_pack

__all__ = ["gather", "render_json", "render_table"]


def _node_picture(name: str, dsn: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "reachable": False}
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3,
                               application_name="wasp-replica",
                               options="-c default_transaction_read_only=on -c TimeZone=UTC")
    except psycopg.OperationalError as e:
        out["error"] = str(e).strip().splitlines()[0]
        return out
    with conn:
        row = conn.execute("SELECT pg_is_in_recovery(), coalesce(host(inet_server_addr()), "
                           "'local') || ':' || current_setting('port')").fetchone()
        assert row is not None
        out.update(reachable=True, role="standby" if row[0] else "primary", address=row[1])
        for q in load_pack("replication"):
            if q.role != "any" and q.role != out["role"]:
                continue
            try:
                cur = conn.execute(q.sql)
            except psycopg.errors.UndefinedTable:
                continue
            except psycopg.Error as e:
                out.setdefault("query_errors", {})[q.name] = str(e).strip().splitlines()[0]
                continue
            cols = [d.name for d in cur.description or []]
            out[q.name] = [dict(zip(cols, map(_plain, r), strict=True)) for r in cur.fetchall()]
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.timestamp()
    if hasattr(v, "__float__") and not isinstance(v, (int, float, bool)):
        return float(v)
    return v


def gather(nodes: Mapping[str, str], *, status_dir: Path | None) -> dict[str, Any]:
    """Query every node (name -> DSN) and read the action records."""
    pictures = [_node_picture(n, d) for n, d in nodes.items()]
    actions = []
    if status_dir is not None:
        for key, rec in sorted(read_records(status_dir, "replica").items()):
            actions.append({"record": key, **{k: rec.get(k) for k in (
                "action", "replica", "ok", "finished_at", "duration_seconds", "error",
                "method", "accepted_lag_bytes", "timeline", "forced")}})
    return {"nodes": pictures, "actions": actions}


def render_json(picture: Mapping[str, Any]) -> str:
    """Machine-readable status."""
    return json.dumps(picture, indent=2, sort_keys=True, default=str)


def _one(node: Mapping[str, Any], query: str) -> dict[str, Any]:
    rows = node.get(query) or [{}]
    return dict(rows[0])


def _bytes(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(v) < 1024 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return "-"


def _secs(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f}s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render_table(picture: Mapping[str, Any]) -> str:
    """Human-readable status: nodes, what each primary sees, slots, last actions."""
    out: list[str] = []
    rows = []
    for n in picture["nodes"]:
        if not n.get("reachable"):
            rows.append([n["name"], "-", "down", "-", "-", "-", "-", "-", "-"])
            continue
        tl = _one(n, "replication_timeline").get("timeline_id")
        hb = _one(n, "heartbeat").get("age")
        if n["role"] == "standby":
            rx = _one(n, "standby_wal_receiver")
            up = _one(n, "standby_upstream")
            upstream = (f"{up['upstream_host']}:{up['upstream_port']}" if up else "-")
            rows.append([n["name"], n["address"], "standby", f"{tl:.0f}" if tl else "-",
                         upstream, up.get("status", "none"), _bytes(rx.get("replay_gap_bytes")),
                         _secs(rx.get("replay_delay")), _secs(hb)])
        else:
            rows.append([n["name"], n["address"], "primary", f"{tl:.0f}" if tl else "-", "-",
                         "-", "-", "-", _secs(hb)])
    out.append(_table(["NODE", "ADDRESS", "ROLE", "TL", "UPSTREAM", "RECEIVER", "REPLAY_GAP",
                       "DELAY", "HEARTBEAT_AGE"], rows))
    for n in picture["nodes"]:
        if n.get("role") != "primary":
            continue
        srows = []
        for s in n.get("replication_standby", []):
            state = next((k[6:] for k, v in s.items() if k.startswith("state_") and v), "?")
            sync = next((k[5:] for k, v in s.items() if k.startswith("sync_") and v), "?")
            srows.append([s["application_name"], s["client_addr"], s["slot_name"] or "-", state,
                          sync, _bytes(s.get("sent_lag_bytes")), _bytes(s.get("replay_lag_bytes")),
                          _secs(s.get("replay_lag_seconds"))])
        out.append(f"\nstandbys of {n['name']} ({len(srows)} connected)")
        out.append(_table(["STANDBY", "CLIENT", "SLOT", "STATE", "SYNC", "SENT_LAG",
                           "REPLAY_LAG", "REPLAY_LAG_S"], srows))
    slot_rows = []
    for n in picture["nodes"]:
        for s in n.get("replication_slot", []) or []:
            status = next((k[4:] for k, v in s.items() if k.startswith("wal_") and
                           k != "wal_status" and v), "-")
            slot_rows.append([n["name"], s["slot_name"], s["slot_type"],
                              "yes" if s["active"] else "no", status,
                              _bytes(s.get("retained_bytes")), _bytes(s.get("safe_wal_size"))])
    if slot_rows:
        out.append("\nslots")
        out.append(_table(["NODE", "SLOT", "TYPE", "ACTIVE", "WAL_STATUS", "RETAINED",
                           "SAFE_WAL"], slot_rows))
    if picture.get("actions"):
        arows = []
        for a in picture["actions"]:
            when = "-"
            if a.get("finished_at"):
                when = dt.datetime.fromtimestamp(float(a["finished_at"]), dt.UTC).strftime(
                    "%Y-%m-%d %H:%M:%SZ")
            detail = a.get("error") or ""
            if a.get("action") == "promote" and a.get("ok"):
                lag = a.get("accepted_lag_bytes")
                detail = f"timeline {a.get('timeline')}, accepted lag " + (
                    _bytes(lag) if lag is not None else "unknown")
            elif a.get("method"):
                detail = f"{a['method']}; {detail}".rstrip("; ")
            arows.append([a.get("action") or "?", a.get("replica") or "?",
                          "ok" if a.get("ok") else "FAILED", when,
                          _secs(a.get("duration_seconds")), detail.splitlines()[0] if detail else ""])
        out.append("\nlast actions")
        out.append(_table(["ACTION", "REPLICA", "RESULT", "FINISHED", "TOOK", "DETAIL"], arows))
    return "\n".join(out) + "\n"
