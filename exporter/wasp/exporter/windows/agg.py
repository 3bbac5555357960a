"""Aggregates of a window query decomposed into partials that merge (count, sum, avg, min, max)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Agg", "empty", "final", "merge", "parse_aggregate"]


@dataclass(frozen=True, slots=True)
class Agg:
    """One aggregate of a window query, decomposed into mergeable partials."""

    column: str
    fn: str  # count_star, count, sum, avg, min, max
    arg: str | None
    default: float | None = None

    @property
    def width(self) -> int:
        """How many partial slots the aggregate takes."""
        return 2 if self.fn in ("sum", "avg", "min", "max") else 1

    def sql(self) -> list[str]:
        """SELECT expressions producing the partials."""
        a = self.arg
        if self.fn == "count_star":
            return ["count(*)"]
        if self.fn == "count":
            return [f"count({a})"]
        if self.fn in ("sum", "avg"):
            return [f"sum({a})", f"count({a})"]
        return [f"{self.fn}({a})", f"count({a})"]


def _balanced(s: str) -> bool:
    depth = 0
    quote = False
    for ch in s:
        if ch == "'":
            quote = not quote
        elif not quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return False
    return depth == 0 and not quote


def _split_top(s: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, False
    for ch in s:
        if ch == "'":
            quote = not quote
        if not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


_CAST_RE = re.compile(r"^(.*)::\s*[A-Za-z_][A-Za-z0-9_ ]*(\(\d+(,\s*\d+)?\))?$", re.S)
_CALL_RE = re.compile(r"^([A-Za-z_]+)\s*\((.*)\)$", re.S)


def parse_aggregate(column: str, expr: str) -> Agg | None:
    """Decompose 'sum(x)::bigint', 'coalesce(avg(x), 0)::float8', 'count(*)'; None if unsupported."""
    e = expr.strip()
    default: float | None = None
    for _ in range(6):
        m = _CAST_RE.match(e)
        if m and _balanced(m.group(1)):
            e = m.group(1).strip()
            continue
        if e.startswith("(") and e.endswith(")") and _balanced(e[1:-1]):
            e = e[1:-1].strip()
            continue
        m = _CALL_RE.match(e)
        if m and m.group(1).lower() == "coalesce" and _balanced(m.group(2)):
            args = _split_top(m.group(2))
            if len(args) != 2:
                return None
            try:
                default = float(args[1].split("::")[0])
            except ValueError:
                return None
            e = args[0]
            continue
        break
    m = _CALL_RE.match(e)
    if not m or not _balanced(m.group(2)):
        return None
    fn, arg = m.group(1).lower(), m.group(2).strip()
    if fn not in ("count", "sum", "avg", "min", "max") or not arg:
        return None
    if re.match(r"(?i)^distinct\b", arg) or len(_split_top(arg)) != 1:
        return None
    if fn == "count" and arg == "*":
        return Agg(column, "count_star", None, default)
    return Agg(column, fn, arg, default)


def merge(aggs: list[Agg], into: list[Any], part: list[Any]) -> None:
    i = 0
    for a in aggs:
        if a.fn in ("count_star", "count"):
            into[i] += part[i]
        elif a.fn in ("sum", "avg"):
            into[i] += part[i]
            into[i + 1] += part[i + 1]
        else:
            if part[i + 1]:
                if into[i + 1] == 0 or (part[i] < into[i] if a.fn == "min" else part[i] > into[i]):
                    into[i] = part[i]
                into[i + 1] += part[i + 1]
        i += a.width


def empty(aggs: list[Agg]) -> list[Any]:
    return [0.0] * sum(a.width for a in aggs)


def final(aggs: list[Agg], part: list[Any]) -> list[float | None]:
    out: list[float | None] = []
    i = 0
    for a in aggs:
        v: float | None
        if a.fn in ("count_star", "count"):
            v = float(part[i])
        elif a.fn == "sum":
            v = float(part[i]) if part[i + 1] else None
        elif a.fn == "avg":
            v = float(part[i]) / part[i + 1] if part[i + 1] else None
        else:
            v = float(part[i]) if part[i + 1] else None
        if v is None and a.default is not None:
            v = a.default
        out.append(v)
        i += a.width
    return out
