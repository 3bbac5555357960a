"""Families -> Prometheus text exposition (format 0.0.4), rendered once per change.

Rendering is separated per (collector, family) so an unchanged collector's
text is reused; families of the same name from several collectors are merged
under one HELP/TYPE header. Nothing here knows about PostgreSQL.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wasp.model import Family

__all__ = ["CONTENT_TYPE", "Rendered", "format_value", "render", "render_samples"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def render_samples(f: Family) -> str:
    """The sample lines of one family (no header)."""
    name = f.name
    if f.type == "histogram":
        return _histogram_samples(f)
    if not f.labelnames:
        return "".join(f"{name} {format_value(v)}\n" for _, v in f.samples)
    names = f.labelnames
    lines = []
    for lv, v in f.samples:
        labels = ",".join(f'{n}="{_escape_label(x)}"' for n, x in zip(names, lv, strict=True))
        lines.append(f"{name}{{{labels}}} {format_value(v)}\n")
    return "".join(lines)


def _histogram_samples(f: Family) -> str:
    # the last label value of a histogram sample names its series (see wasp.model)
    names = f.labelnames
    lines = []
    for lv, v in f.samples:
        *values, which = lv
        pairs = [f'{n}="{_escape_label(x)}"' for n, x in zip(names, values, strict=True)]
        if which in ("sum", "count"):
            series = f"{f.name}_{which}"
        else:
            series = f"{f.name}_bucket"
            pairs.append(f'le="{which}"')
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        lines.append(f"{series}{labels} {format_value(v)}\n")
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One exposition: plain and gzip bytes, with the series count."""

    text: bytes
    gz: bytes
    series: int


def render(chunks: Iterable[tuple[Family, str]], *, compress: bool = True) -> Rendered:
    """Assemble pre-rendered sample text of families into one exposition.

    Families sharing a name are merged; the first one's HELP and TYPE win
    (the configuration guarantees they agree).
    """
    grouped: dict[str, tuple[Family, list[str]]] = {}
    series = 0
    for fam, text in chunks:
        series += len(fam.samples)
        entry = grouped.get(fam.name)
        if entry is None:
            grouped[fam.name] = (fam, [text])
        else:
            entry[1].append(text)
    parts: list[str] = []
    for name in sorted(grouped):
        fam, texts = grouped[name]
        parts.append(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
        parts.extend(texts)
    body = "".join(parts).encode()
    gz = gzip.compress(body, compresslevel=5, mtime=0) if compress else b""
    return Rendered(body, gz, series)


def families_text(families: Mapping[str, Family]) -> str:
    """Render a handful of families directly (tests, small outputs)."""
    return render(((f, render_samples(f)) for f in families.values()), compress=False).text.decode()
