"""`wasp doctor`: the production-readiness report, computed live from the system.

Read-only checks in six groups (backups, availability, connections, security,
schema and performance, settings) judge facts gathered from the cluster, its
PgBouncer, pgBackRest and the companions' records. Each check gives a status,
the evidence and the fix; the weighted results give a score out of 10.

    gather (SQL probes, console, pgbackrest info) -> Facts
    checks_ops, checks_db (pure)                  -> [Check]
    model.score                                   -> 0..10
    report (text, markdown, JSON + schema)        <- cli

The same checks run in the exporter as the ``doctor`` pack (wasp.packs.doctor).
"""

from __future__ import annotations

from wasp.doctor.checks_db import DB_CHECKS
from wasp.doctor.checks_ops import OPS_CHECKS
from wasp.doctor.gather import Facts, Setup, gather
from wasp.doctor.model import GROUPS, Check, score

__all__ = ["ALL_CHECKS", "Check", "Facts", "Setup", "gather", "run_checks", "score"]

ALL_CHECKS = OPS_CHECKS + DB_CHECKS


def run_checks(facts: Facts, setup: Setup) -> list[Check]:
    """Every check on one set of facts, in report order (group, then definition)."""
    if not facts.settings:
        down = facts.errors.get("settings", "no answer")
        return [Check("server.reachable", "availability", "the server answers", "critical",
                      "fail", f"{setup.target}: {down}", "check that PostgreSQL runs", 0)]
    out = [check(facts, setup) for check in ALL_CHECKS]
    return sorted(out, key=lambda c: GROUPS.index(c.group))
