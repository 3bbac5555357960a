"""The doctor's report: plain text for a terminal, markdown, and JSON with a schema."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from wasp.doctor.model import GROUPS, Check, score

__all__ = ["SCHEMA_VERSION", "json_schema", "render_json", "render_markdown", "render_text",
           "report_dict"]

SCHEMA_VERSION = 1
_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def json_schema() -> dict[str, Any]:
    """The JSON schema of `wasp doctor --json` (exporter/wasp/doctor/report.schema.json)."""
    text = resources.files("wasp.doctor").joinpath("report.schema.json").read_text()
    out: dict[str, Any] = json.loads(text)
    return out


def _counts(checks: Sequence[Check]) -> dict[str, int]:
    return {s: sum(1 for c in checks if c.status == s) for s in ("pass", "warn", "fail", "skip")}


def report_dict(target: str, checks: Sequence[Check], *, now: float) -> dict[str, Any]:
    """The report as one JSON-ready document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "target": target,
        "generated_at": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "score": score(checks),
        "counts": _counts(checks),
        "checks": [c.as_dict() for c in checks],
    }


def render_json(target: str, checks: Sequence[Check], *, now: float) -> str:
    """The report as JSON (stable key order)."""
    return json.dumps(report_dict(target, checks, now=now), indent=2, sort_keys=True) + "\n"


def _summary(target: str, checks: Sequence[Check]) -> str:
    n = _counts(checks)
    return (f"score {score(checks):.1f}/10 for {target}: {n['pass']} pass, {n['warn']} warn, "
            f"{n['fail']} fail, {n['skip']} skipped")


def render_text(target: str, checks: Sequence[Check], *, now: float) -> str:
    """One line per check and the fix under each failing one."""
    lines = [f"wasp doctor: {_summary(target, checks)}"]
    for group in GROUPS:
        mine = [c for c in checks if c.group == group]
        if not mine:
            continue
        lines.append(f"\n{group}")
        for c in mine:
            lines.append(f"  {_MARK[c.status]}  {c.id} [{c.severity}]: {c.evidence}")
            if c.status in ("warn", "fail") and c.fix:
                lines.append(f"        fix: {c.fix}  ({c.runbook})")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(target: str, checks: Sequence[Check], *, now: float) -> str:
    """A markdown report: the score, then a table per group."""
    when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# wasp doctor: {target}", "", f"**{_summary(target, checks)}** ({when})", ""]
    for group in GROUPS:
        mine = [c for c in checks if c.group == group]
        if not mine:
            continue
        out += [f"## {group}", "", "| status | check | severity | evidence | fix |",
                "|---|---|---|---|---|"]
        for c in mine:
            fix = f"{_cell(c.fix)} ([runbook]({c.runbook}))" if c.fix else ""
            out.append(f"| {_MARK[c.status]} | `{c.id}` {_cell(c.title)} | {c.severity} | "
                       f"{_cell(c.evidence)} | {fix} |")
        out.append("")
    return "\n".join(out)
