"""The `doctor` pack: the checks of `wasp doctor` as gauges, on a slow interval.

One collector per postgres target that lists ``doctor`` in its packs. Each
round gathers the facts through the target's own read-only pool (plus the
PgBouncer console and pgBackRest where configured), runs every check and
exports a gauge per check and the score. Options: ``packs.doctor.options``
(interval, timeout, app_role, memory, min_replicas, pgbouncer_target).
"""

from __future__ import annotations

from wasp.config.schema import Config
from wasp.doctor import Check, Setup, gather, run_checks, score
from wasp.doctor.model import STATUS_VALUE
from wasp.doctor.options import parse_options, setup_for
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.model import Family, MetricSpec, Sample

__all__ = ["METRICS", "DoctorCollector", "build_collectors", "families_from_checks"]

_CHECK = ("check", "group", "severity")

#: every metric of the pack (the catalog reads this)
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("wasp_doctor_check_status", "gauge", _CHECK,
               "Result of one wasp doctor check: 0 pass, 1 warn, 2 fail, -1 skipped (the facts "
               "were not readable).", target=True),
    MetricSpec("wasp_doctor_check_value", "gauge", _CHECK,
               "The number a wasp doctor check judged (its evidence), in the check's own unit.",
               target=True),
    MetricSpec("wasp_doctor_score", "gauge", (),
               "wasp doctor's production-readiness score, 0 to 10 (checks weighted by "
               "severity; warn counts half).", target=True),
    MetricSpec("wasp_doctor_checks", "gauge", ("status",),
               "wasp doctor checks by status (pass, warn, fail, skip).", target=True),
)
_BY_NAME = {m.name: m for m in METRICS}


def build_collectors(cfg: Config) -> list[Collector]:
    """One collector per postgres target that runs the doctor pack."""
    opts = parse_options(cfg)
    out: list[Collector] = []
    for t in cfg.targets:
        if t.type == "postgres" and "doctor" in t.packs:
            out.append(DoctorCollector(setup_for(cfg, t.name, opts), interval=opts.interval))
    return out


class DoctorCollector(Collector):
    """Runs every doctor check against one target through the engine's pool."""

    def __init__(self, setup: Setup, *, interval: float = 300.0) -> None:
        self.name = "doctor"
        self.target = setup.target
        self.interval = interval
        # every probe has setup.timeout; pgbackrest info may take three times that
        self.timeout = min(interval, setup.timeout * 8)
        self.setup = setup

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Gather, check, build families."""
        if ctx.db is None:
            raise CollectError("connection", "no database pool for the doctor")
        facts = await gather(ctx.db, self.setup, now=ctx.now)
        if not facts.settings:
            raise CollectError("connection", facts.errors.get("settings", "no answer"))
        return families_from_checks(run_checks(facts, self.setup))


def families_from_checks(checks: list[Check]) -> list[Family]:
    """The pack's families from one round of checks."""
    status: list[Sample] = [((c.id, c.group, c.severity), STATUS_VALUE[c.status]) for c in checks]
    values: list[Sample] = [((c.id, c.group, c.severity), float(c.value)) for c in checks
              if c.value is not None]
    counts: list[Sample] = [((s,), float(sum(1 for c in checks if c.status == s)))
              for s in ("pass", "warn", "fail", "skip")]
    return [
        _BY_NAME["wasp_doctor_check_status"].family(status),
        _BY_NAME["wasp_doctor_check_value"].family(values),
        _BY_NAME["wasp_doctor_score"].family([((), score(checks))]),
        _BY_NAME["wasp_doctor_checks"].family(counts),
    ]
