"""Boundary cases generated from the settings: every threshold and every `for`, pinned.

Each alert carries a `Probe`: a function from a few quantities (an age, a
ratio, a count) to input series that drive its expression to exactly those
values, an independent Python model of which severities fire (with labels and
value), and the `Bound`s the expression compares against (a settings field, or
a literal that no setting moves). From it, for the current settings:

- per bound: the quantity just on the quiet side of the threshold (quiet) and
  just past it (fires), every other quantity where the alert fires;
- per severity: evaluated one evaluation interval before `for` elapses
  (pending, so quiet) and when it elapses (fires);

each with the exact labels and rendered annotations. A rule whose threshold is
halved or doubled, or whose `for` is 0 or doubled, fails one of them (the
mutation check in tests/test_rules_mutation.py proves it for every alert).

Most quantities hold still while a case runs. Some cannot: a filesystem that
fills gets closer to full every minute, and a trend (`predict_linear`) needs
the series to move. Such a probe gives `evolve` (the point some minutes
later); its threshold cases then place the point where the longest `for`
starts, so a quantity just on the quiet side there turns the alert active only
after it (pending at the evaluation), and one just past it has held since.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wasp.mixin.promql import num
from wasp.mixin.rules.model import Case, Fired, Series, series
from wasp.mixin.settings import Settings

__all__ = ["Bound", "Fires", "Point", "Probe", "boundary_cases", "counter", "gauge", "jump", "minutes", "switch",
           "timestamp", "when"]

#: quantity name -> value
Point = Mapping[str, float]
#: what the model says fires: (severity, labels, value)
Fires = list[tuple[str, Mapping[str, str], float]]


def minutes(duration: str) -> int:
    """Whole minutes of a Prometheus duration (5m, 1h, 1h30m, 1w, 0s)."""
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440, "w": 10080}
    total = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", duration))
    if total != int(total):
        raise ValueError(f"{duration} is not a whole number of minutes")
    return int(total)


@dataclass(frozen=True, slots=True)
class Bound:
    """A comparison of the expression: `quantity op threshold` (a settings field or a literal)."""

    quantity: str
    op: str
    field: str | None = None
    literal: float = 0
    #: the quantities around this bound (default: the probe's firing point)
    at: Point = dataclasses.field(default_factory=dict)
    #: distance from the threshold of the two cases (default 1% of it); 1 for counts
    step: float | None = None
    #: the quiet value of a literal bound
    quiet: float | None = None
    #: the threshold as a function of the field (a burn rate's error ratio from an objective)
    of: Callable[[float], float] | None = None

    def threshold(self, cfg: Settings) -> float:
        """The value the expression compares against under these settings."""
        if self.field is None:
            return self.literal
        value = float(getattr(cfg, self.field))
        return self.of(value) if self.of else value

    def sides(self, cfg: Settings) -> tuple[float, float]:
        """(quiet value, firing value) of the quantity around the threshold."""
        thr = self.threshold(cfg)
        if self.field is None:
            assert self.quiet is not None, f"literal bound on {self.quantity} needs a quiet value"
            return self.quiet, float("nan")
        step = self.step if self.step is not None else abs(thr) * 0.01
        if self.op == ">":
            return (thr if self.step else thr - step), thr + step
        if self.op == ">=":
            return thr - step, thr
        if self.op == "<":
            return (thr if self.step else thr + step), thr - step
        if self.op == "<=":
            return thr + step, thr
        raise ValueError(f"unknown comparison {self.op!r}")


@dataclass(frozen=True, slots=True)
class Probe:
    """How to drive an alert: series from quantities, a model of what fires, the bounds."""

    #: a point where every severity of the alert fires
    fire: Point
    bounds: tuple[Bound, ...]
    #: input series holding the quantities for `steps` intervals of `every` minutes
    series: Callable[[Point, int, int], tuple[Series, ...]]
    #: the model: what fires at a point, evaluated at minute `at`
    fires: Callable[[Point, int], Fires]
    #: first minute the expression holds (counters need two samples)
    onset: int = 0
    #: minute from which every quantity has its value (windows filled)
    settle: int = 0
    #: evaluation interval in minutes of the `for` cases (a divisor of every `for`)
    interval: int = 1
    #: evaluation interval of the threshold cases (comparisons with a week ago need a coarse one)
    value_interval: int | None = None
    #: why halving or doubling a threshold of this alert cannot change what it does
    equivalent: str = ""
    #: minutes from the start of promtool's clock to where a point's case begins, for alerts
    #: that read the clock (hour(), day_of_week()); the series must start their change there
    delay: Callable[[Point], int] | None = None
    #: for quantities that move with time: the point `minutes` later (negative: earlier);
    #: `series` then takes the point at minute 0
    evolve: Callable[[Point, float], Point] | None = None
    #: settings fields the expression reads besides its bounds' (a trend's horizon): the
    #: mutation check halves and doubles them too
    params: tuple[str, ...] = ()


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e15 else repr(v)


def boundary_cases(name: str, probe: Probe, cfg: Settings, severities: tuple[str, ...]
                   ) -> list[Case]:
    """The boundary cases of alert `name` under `cfg` (tests are generated from the defaults)."""
    fors = {sev: minutes(cfg.for_of(name, sev)) for sev in severities}
    cases: list[Case] = []

    if probe.evolve and probe.delay:
        raise ValueError(f"{name}: a probe that evolves cannot read the clock")

    def state(point: Point, anchor: int, minute: int) -> Point:
        """The quantities at `minute` of a point placed at minute `anchor`."""
        return probe.evolve(point, minute - anchor) if probe.evolve else point

    def held(sev: str, point: Point, anchor: int, at: int, every: int) -> bool:
        """Whether `sev` fired at every evaluation since its `for` started (evolving probes)."""
        if probe.evolve is None:
            return True
        start = at - fors[sev]
        start -= start % every
        return all(any(s == sev for s, _, _ in probe.fires(state(point, anchor, m), m))
                   for m in range(max(start, probe.onset), at + 1, every))

    def case(title: str, point: Point, at: int, every: int, anchor: int) -> None:
        fired = tuple(Fired(labels, value, sev)
                      for sev, labels, value in probe.fires(state(point, anchor, at), at)
                      if at - probe.onset >= fors[sev] and held(sev, point, anchor, at, every))
        shifted = at + (probe.delay(point) if probe.delay else 0)
        steps = shifted // every + 2
        cases.append(Case(f"boundary: {title}", probe.series(state(point, anchor, 0), steps, every),
                          f"{shifted}m", fired, f"{every}m"))

    every = probe.value_interval or probe.interval
    at = max(probe.onset, probe.settle) + max(fors.values())
    at += -at % every
    for b in probe.bounds:
        base = {**probe.fire, **b.at}
        quiet, firing = b.sides(cfg)
        if b.field is None:
            what = _fmt(b.literal)
        elif b.of is None:
            what = f"{b.field} {_fmt(b.threshold(cfg))}"
        else:
            what = f"{_fmt(b.threshold(cfg))} (from {b.field} {_fmt(float(getattr(cfg, b.field)))})"
        where = " when `for` starts" if probe.evolve else ""
        anchor = at - max(fors.values())
        case(f"{b.quantity} {_fmt(quiet)}{where} against {what}", {**base, b.quantity: quiet},
             at, every, anchor)
        if b.field is not None:
            case(f"{b.quantity} {_fmt(firing)}{where} against {what}",
                 {**base, b.quantity: firing}, at, every, anchor)
    step = probe.interval
    for sev, f in sorted(fors.items()):
        if f % step or probe.onset % step:
            raise ValueError(f"{name}: for {f}m or onset {probe.onset}m is not a multiple of the "
                             f"probe's interval {step}m")
        for at, when in ((probe.onset + f - step, "one interval before"), (probe.onset + f, "at")):
            if at >= probe.onset:
                case(f"{sev} {when} for {f}m", probe.fire, at, step, probe.onset)
    return cases


# -- series and models the probes are written with ------------------------------------


def gauge(metric: str, value: float, steps: int, **labels: str) -> Series:
    """A gauge holding `value` for `steps` intervals."""
    return series(metric, f"{num(value)}x{steps}", **labels)


def counter(metric: str, per_step: float, steps: int, **labels: str) -> Series:
    """A counter from 0 growing by `per_step` every interval."""
    return series(metric, f"0+{num(per_step)}x{steps}", **labels)


def jump(metric: str, at_step: int, value: float, steps: int, **labels: str) -> Series:
    """A counter at 0 that reaches `value` at interval `at_step` and stays there."""
    return series(metric, f"0x{at_step - 1} {num(value)}x{max(steps - at_step, 0)}", **labels)


def switch(metric: str, before: float, after: float, at_step: int, steps: int,
           **labels: str) -> Series:
    """A gauge at `before` until interval `at_step`, then at `after`."""
    return series(metric, f"{num(before)}x{at_step - 1} {num(after)}x{max(steps - at_step, 0)}",
                  **labels)


def timestamp(metric: str, age: float, steps: int, every: int = 1, **labels: str) -> Series:
    """A `..._timestamp_seconds` gauge always `age` seconds in the past (samples `every` minutes)."""
    return series(metric, f"{num(-age)}+{60 * every}x{steps}", **labels)


def when(condition: bool, severity: str, labels: Mapping[str, str], value: float) -> Fires:
    """The model of one severity: it fires with these labels and value when `condition` holds."""
    return [(severity, labels, value)] if condition else []
