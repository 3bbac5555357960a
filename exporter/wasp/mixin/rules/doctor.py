"""Alerts on the doctor pack: a critical readiness check failing, the score dropping."""

from __future__ import annotations

from wasp.mixin.promql import num
from wasp.mixin.rules.boundary import Bound, Fires, Point, Probe, gauge, switch, when
from wasp.mixin.rules.model import Builder, Case, Fired, series, t
from wasp.mixin.settings import Settings


def build(b: Builder) -> None:
    """WaspDoctorCriticalCheckFailing and WaspDoctorScoreDropped."""
    cfg = b.cfg
    g = b.group("wasp-doctor")
    q = b.q()
    b.alert(g, "WaspDoctorCriticalCheckFailing", "warning", q, f"""
{q("wasp_doctor_check_status", severity="critical")} == 2
""",
        "Critical readiness check {{ $labels.check }} fails on {{ $labels.target }}",
        "wasp doctor's critical check {{ $labels.check }} ({{ $labels.group }}) fails on "
        "{{ $labels.target }}. Run `wasp doctor --target {{ $labels.target }}` for the evidence "
        "and the fix (docs/doctor.md).",
        [Case("archiving off", (
            series("wasp_doctor_check_status", "2x30",
                   **t(check="backup.archiving", group="backups", severity="critical")),
            series("wasp_doctor_check_status", "2x30",
                   **t(check="schema.bloat", group="schema", severity="warning")),
        ), "20m", (Fired(t(check="backup.archiving", group="backups", severity="critical"), 2,
                         "warning"),)),
         Case("skipped, passing and warning checks", (
             series("wasp_doctor_check_status", "-1x30",
                    **t(check="security.hba_trust", group="security", severity="critical")),
             series("wasp_doctor_check_status", "0x30",
                    **t(check="security.ssl", group="security", severity="critical")),
             series("wasp_doctor_check_status", "1x30",
                    **t(check="connections.headroom", group="connections", severity="critical")),
         ), "20m")])

    q = b.q()
    score = q("wasp_doctor_score")
    b.alert(g, "WaspDoctorScoreDropped", "warning", q, f"""
{score} < {num(cfg.doctor_score_min)}
or
max_over_time({score}[{cfg.doctor_score_window}]) - {score} >= {num(cfg.doctor_score_drop)}
""",
        "The readiness score of {{ $labels.target }} dropped",
        f"wasp doctor's score on {{{{ $labels.target }}}} is below {num(cfg.doctor_score_min)} "
        f"or fell by {num(cfg.doctor_score_drop)} or more within {cfg.doctor_score_window}: a "
        "check that passed fails now. `wasp doctor --target {{ $labels.target }}` says which.",
        [Case("score falls from 9.5 to 8", (
            series("wasp_doctor_score", "9.5x20 8x30", **t()),), "40m", (Fired(t(), 1.5, "warning"),)),
         Case("score low from the start", (
             series("wasp_doctor_score", "5x30", **t()),), "20m", (Fired(t(), 5, "warning"),)),
         Case("score steady at 8.5", (
             series("wasp_doctor_score", "8.5x60", **t()),), "50m")])


def probes(cfg: Settings) -> dict[str, Probe]:
    """How the boundary cases drive each alert of the group."""
    crit = t(check="backup.archiving", group="backups", severity="critical")

    def score_fires(p: Point, at: int) -> Fires:
        if p["score"] < cfg.doctor_score_min:
            return when(True, "warning", t(), p["score"])
        dropped = (p["score"] + p["drop"]) - p["score"]
        return when(dropped >= cfg.doctor_score_drop, "warning", t(), dropped)
    return {
        "WaspDoctorCriticalCheckFailing": Probe(
            {"status": 2}, (Bound("status", "==", literal=2, quiet=1),),
            lambda p, n, every: (gauge("wasp_doctor_check_status", p["status"], n, **crit),),
            lambda p, at: when(p["status"] == 2, "warning", crit, 2)),
        # `drop`: the score stood that much higher at minute 0 (within doctor_score_window)
        "WaspDoctorScoreDropped": Probe(
            {"score": cfg.doctor_score_min / 2, "drop": 0},
            (Bound("score", "<", "doctor_score_min"),
             Bound("drop", ">=", "doctor_score_drop", at={"score": cfg.doctor_score_min + 1})),
            lambda p, n, every: (switch("wasp_doctor_score", p["score"] + p["drop"], p["score"],
                                        1, n, **t()),),
            score_fires, settle=1),
    }
