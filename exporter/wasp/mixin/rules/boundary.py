"""Four promtool cases per alert level, placed by the settings: quiet just below the threshold,
firing past it, quiet one evaluation before `for` elapses, firing once it has.

`make(firing, samples)` returns the input series at the quiet or the firing
level, `samples` one-minute samples long; `lead` is how many minutes the
firing series need before the expression turns true (a range function needs
two samples, a counter a step). The evaluation times come from the alert's
`for` in the settings, so a changed `for` moves the cases with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from wasp.mixin.rules.model import Case, Fired, Series
from wasp.mixin.settings import Settings

__all__ = ["four", "minutes"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                 "y": 31536000}


def minutes(duration: str) -> int:
    """A Prometheus duration in minutes, rounded up ("1h30m" -> 90, "30s" -> 1, "0s" -> 0)."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a duration")
    return math.ceil(sum(int(n) * _UNIT_SECONDS[u] for n, u in parts) / 60)


def four(cfg: Settings, name: str, severity: str,
         make: Callable[[bool, int], tuple[Series, ...]], labels: Mapping[str, str],
         value: float | Callable[[int], float], *, lead: int = 0, what: str = "",
         guard: tuple[str, Callable[[bool, int], tuple[Series, ...]],
                      float | Callable[[int], float]] | None = None,
         ) -> list[Case]:
    """The four boundary cases of one alert level (`value` may depend on the minute evaluated).

    `guard` is (what, make, value) for a second threshold (a minimum volume): two more
    cases, quiet just under it and firing at it with `value`.
    """
    hold = minutes(cfg.for_of(name, severity))
    samples, late = lead + hold + 10, lead + hold + 5
    about = f" ({what})" if what else ""

    def fired(at: int) -> tuple[Fired, ...]:
        v = value(at) if callable(value) else value
        return (Fired(labels, v, severity),)

    cases = [
        Case(f"{severity}: just below the threshold{about}", make(False, samples), f"{late}m"),
        Case(f"{severity}: past the threshold{about}", make(True, samples), f"{late}m",
             fired(late)),
    ]
    if hold:  # with no `for` (or one under a minute) there is no evaluation before it elapses
        cases.append(Case(f"{severity}: one evaluation before `for` elapses", make(True, samples),
                          f"{lead + hold - 1}m"))
    cases.append(Case(f"{severity}: when `for` has elapsed", make(True, samples),
                      f"{lead + hold}m", fired(lead + hold)))
    if guard:
        what_guard, make_guard, guard_value = guard
        cases += [Case(f"{severity}: just under {what_guard}", make_guard(False, samples),
                       f"{late}m"),
                  Case(f"{severity}: at {what_guard}", make_guard(True, samples), f"{late}m",
                       (Fired(labels, guard_value(late) if callable(guard_value) else guard_value,
                              severity),))]
    return cases
