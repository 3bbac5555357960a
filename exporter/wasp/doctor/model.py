"""What a check returns, and how results become a score.

A check is a pure function of the facts gathered from the system: it returns
one ``Check`` with a status (pass, warn, fail, or skip when the facts are not
readable), the evidence (the number it saw, in words, and the number itself)
and the fix (SQL or a setting, and the runbook section that explains it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["GROUPS", "RUNBOOK", "SEVERITY_WEIGHT", "STATUS_VALUE", "Check", "Severity",
           "Status", "score"]

Status = Literal["pass", "warn", "fail", "skip"]
Severity = Literal["critical", "warning", "info"]

#: check groups, in report order
GROUPS = ("backups", "availability", "connections", "security", "schema", "settings")
#: how much a check weighs in the score
SEVERITY_WEIGHT: dict[Severity, float] = {"critical": 3.0, "warning": 2.0, "info": 1.0}
#: the gauge value of each status (wasp_doctor_check_status)
STATUS_VALUE: dict[Status, float] = {"pass": 0.0, "warn": 1.0, "fail": 2.0, "skip": -1.0}
#: the runbook page the fixes link to (sections are anchors of it)
RUNBOOK = "docs/doctor.md"


@dataclass(frozen=True, slots=True)
class Check:
    """The result of one check."""

    id: str
    group: str
    title: str
    severity: Severity
    status: Status
    evidence: str
    fix: str = ""
    value: float | None = None

    @property
    def runbook(self) -> str:
        """The runbook section of this check."""
        return f"{RUNBOOK}#{self.id.replace('.', '-').replace('_', '-')}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the runbook link included)."""
        return {**asdict(self), "runbook": self.runbook}


def score(checks: Iterable[Check]) -> float:
    """0 to 10: pass counts fully, warn half, fail nothing, weighted by severity; skips ignored."""
    got = total = 0.0
    for c in checks:
        if c.status == "skip":
            continue
        w = SEVERITY_WEIGHT[c.severity]
        total += w
        got += w * {"pass": 1.0, "warn": 0.5, "fail": 0.0}[c.status]
    return round(10.0 * got / total, 1) if total else 0.0
