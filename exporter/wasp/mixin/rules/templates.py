"""The Go-template subset the annotations use, rendered as Prometheus renders it.

The promtool cases state the annotations an alert must carry; this renders
them from the templates, so a case states values, not text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

__all__ = ["render_template"]


def _g(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return f"{v:.4g}"


def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g(v) + prefix


def _humanize1024(v: float) -> str:
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g(v) + prefix


def _humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g(v)
    if v == 0:
        return _g(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        s, m, h, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {h}h {m}m {s}s"
        if h:
            return f"{sign}{h}h {m}m {s}s"
        if m:
            return f"{sign}{m}m {s}s"
        return f"{sign}{_g(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g(v)}{prefix}s"


def _humanize_percentage(v: float) -> str:
    return f"{v * 100:.4g}%"


_FUNCS: dict[str, Callable[[float], str]] = {
    "humanize": _humanize,
    "humanize1024": _humanize1024,
    "humanizeDuration": _humanize_duration,
    "humanizePercentage": _humanize_percentage,
}
_TEMPLATE_RE = re.compile(r"\{\{ (\$labels\.(\w+)|\$value(?: \| (\w+))?) \}\}")


def render_template(text: str, labels: Mapping[str, str], value: float) -> str:
    """Expand the template subset the annotations use: $labels.x, $value and humanize functions."""
    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        if m.group(3):
            return _FUNCS[m.group(3)](value)
        return _g(value) if not float(value).is_integer() else str(int(value))
    return _TEMPLATE_RE.sub(sub, text)

