"""SLOs as code: SLI error ratios over every window, error budgets, multi-window burn-rate alerts.

Each SLO counts good and bad events (counters: the availability probe, the
app pack's settled-event counters). Recording rules give the error ratio over
each window the alerts need and over the SLO window, and the error budget
left. Alerts follow the SRE workbook: page when both windows of a pair burn
faster than its rate (1h/5m at 14.4, 6h/30m at 6), ticket (warning) for the
slower pairs (1d/2h at 3, 3d/6h at 1). The short window lets an alert stop
soon after the burn stops. Objectives and pairs come from the settings.

The boundary cases of each burn-rate alert (`_probe`) drive the recorded error
ratios directly, one window at a time (their own cases prove the recordings):
each pair alone, one window just under its burn rate's threshold and just
over it while the pair's other window burns, every other window at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wasp.mixin.promql import labels_of, num
from wasp.mixin.rules.boundary import Bound, Fires, Point, Probe
from wasp.mixin.rules.model import Builder, Case, Fired, RecordingCase, Series, T, series, t
from wasp.mixin.settings import Settings, parse_burn_windows

__all__ = ["SLO", "SLOS", "budget_record", "build", "error_record", "windows"]


@dataclass(frozen=True, slots=True)
class SLO:
    """One promise: its counter, which events are bad, and its objective's settings field."""

    key: str
    alert: str
    title: str
    metric: str
    label: str
    bad: str
    good: str
    objective_field: str

    def objective(self, s: Settings) -> float:
        """The objective, from the settings."""
        value: float = getattr(s, self.objective_field)
        return value


SLOS: tuple[SLO, ...] = (
    SLO("database_availability", "WaspSLODatabaseAvailabilityBurn",
        "database availability (probes through PgBouncer)", "wasp_sli_db_probes_total",
        "result", "bad", "good", "slo_database_availability"),
    SLO("messages_delivered", "WaspSLOMessagesDeliveredBurn",
        "outbound WhatsApp messages delivered", "wasp_app_sli_outbound_messages_total",
        "status", "!~DELIVERED|READ", "DELIVERED", "slo_messages_delivered"),
    SLO("webhooks_processed", "WaspSLOWebhooksProcessedBurn", "webhooks processed",
        "wasp_app_sli_webhook_events_total", "outcome", "failed", "processed",
        "slo_webhooks_processed"),
    SLO("bookings_clean", "WaspSLOBookingsCleanBurn", "bookings created without a double booking",
        "wasp_app_sli_bookings_total", "outcome", "double_booked", "ok", "slo_bookings_clean"),
)


def error_record(slo: SLO, window: str) -> str:
    """The recording rule of an SLO's error ratio over `window`."""
    return f"target:wasp_slo_{slo.key}_errors:ratio_rate{window}"


def budget_record(slo: SLO) -> str:
    """The recording rule of an SLO's error budget left over the SLO window (1 = untouched)."""
    return f"target:wasp_slo_{slo.key}_error_budget:remaining_ratio"


def windows(s: Settings) -> list[str]:
    """Every window a ratio is recorded for: the burn-rate pairs' and the SLO window."""
    out: list[str] = []
    for long_, short, _ in _pairs(s, "page") + _pairs(s, "warning"):
        for w in (short, long_):
            if w not in out:
                out.append(w)
    if s.slo_window not in out:
        out.append(s.slo_window)
    return out


def _pairs(s: Settings, severity: str) -> tuple[tuple[str, str, float], ...]:
    pairs = parse_burn_windows(s.slo_page_windows if severity == "page" else s.slo_ticket_windows)
    assert pairs is not None  # validated when the settings were loaded
    return pairs


def _threshold(burn: float, objective: float) -> str:
    return num(round(burn * (1.0 - objective), 12))


def build(b: Builder) -> None:
    """The SLI recording rules, the error budgets and the burn-rate alerts."""
    s = b.cfg
    rec_group = b.group("wasp-slo-recording")
    for slo in SLOS:
        for w in windows(s):
            q = b.q()
            bad = q(slo.metric, **{slo.label: slo.bad})
            every = q(slo.metric)
            b.record(rec_group, error_record(slo, w), ("target",), q, f"""
(sum without ({slo.label}) (rate({bad}[{w}])) or sum without ({slo.label}) (rate({every}[{w}])) * 0)
  / sum without ({slo.label}) (rate({every}[{w}]))
""", _ratio_cases(slo))
        q = b.q()
        budget = round(1.0 - slo.objective(s), 12)
        b.record(rec_group, budget_record(slo), ("target",), q, f"""
1 - {q(error_record(slo, s.slo_window))} / {num(budget)}
""", (RecordingCase(_mix(slo), "10m", ((T, 1 - 0.5 / budget),)),))
    g = b.group("wasp-slo")
    for slo in SLOS:
        obj = slo.objective(s)
        for severity in ("page", "warning"):
            q = b.q()
            pairs = _pairs(s, severity)
            expr = "\nor\n".join(
                f"({q(error_record(slo, long_))} > {_threshold(burn, obj)}\n"
                f" and {q(error_record(slo, short))} > {_threshold(burn, obj)})"
                for long_, short, burn in pairs)
            spoken = ", ".join(f"{lo}/{sh} at {num(burn)}x" for lo, sh, burn in pairs)
            b.alert(g, slo.alert, severity, q, expr,
                    f"{{{{ $labels.target }}}}: {slo.title} burns its error budget "
                    f"{'fast' if severity == 'page' else 'steadily'}",
                    f"The {slo.title} SLO ({num(obj * 100)}% good over {s.slo_window}) on "
                    f"{{{{ $labels.target }}}} burns its error budget faster than it may in both "
                    f"windows of a pair ({spoken}): at this rate the budget runs out "
                    f"{'within days' if severity == 'page' else 'before the SLO window ends'}. "
                    f"See {error_record(slo, '5m')} and {budget_record(slo)}.",
                    _cases(slo, obj, s) if severity == "page" else ())
    b.attach(g, {slo.alert: _probe(slo, s, b.recorded) for slo in SLOS})


def _probe(slo: SLO, s: Settings, recorded: Mapping[str, tuple[str, ...]]) -> Probe:
    """Boundary cases of a burn-rate alert: quantities are the error ratios of its windows."""
    pairs = {sev: _pairs(s, sev) for sev in ("page", "warning")}
    used = list(dict.fromkeys(w for ps in pairs.values() for lo, sh, _ in ps for w in (lo, sh)))
    budget = 1.0 - slo.objective(s)
    burning = 1.5 * max(burn for ps in pairs.values() for _, _, burn in ps) * budget
    labels = dict(T)

    def ratio(window: str, value: float, n: int) -> Series:
        name = error_record(slo, window)
        if set(labels) != set(labels_of(name, recorded)):
            raise ValueError(f"{name} has labels {labels_of(name, recorded)}")
        return Series(name, labels, f"{num(value)}x{n}")

    def fires(p: Point, at: int) -> Fires:
        out: Fires = []
        for sev, ps in pairs.items():
            # `or` keeps the first pair that burns: the value is its long window's ratio
            hit = next((p[lo] for lo, sh, burn in ps
                        if p[lo] > float(_threshold(burn, slo.objective(s)))
                        and p[sh] > float(_threshold(burn, slo.objective(s)))), None)
            if hit is not None:
                out.append((sev, labels, hit))
        return out

    def budget_at(burn: float) -> Callable[[float], float]:
        return lambda objective: float(_threshold(burn, objective))

    bounds = [Bound(window, ">", slo.objective_field,
                    at={**dict.fromkeys(used, 0.0), other: burning}, of=budget_at(burn))
              for ps in pairs.values() for lo, sh, burn in ps
              for window, other in ((lo, sh), (sh, lo))]
    return Probe(dict.fromkeys(used, burning), tuple(bounds),
                 lambda p, n, every: tuple(ratio(w, p[w], n) for w in used), fires)


def _mix(slo: SLO) -> tuple[Series, ...]:
    # half the events bad, at equal rates: k / (k + k) is exactly 0.5 in floating point
    return (series(slo.metric, "0+7x20", **t(**_bad_labels(slo))),
            series(slo.metric, "0+7x20", **t(**{slo.label: slo.good})))


def _ratio_cases(slo: SLO) -> tuple[RecordingCase, ...]:
    """Half the events bad give 0.5; no bad series at all gives 0, not nothing."""
    return (RecordingCase(_mix(slo), "10m", ((T, 0.5),)),
            RecordingCase((series(slo.metric, "0+50x20", **t(**{slo.label: slo.good})),), "10m",
                          ((T, 0.0),)))


def _counter(slo: SLO, per_minute: int, labels: Mapping[str, str], minutes: int,
             then: int | None = None, after: int = 0) -> Series:
    values = f"0+{per_minute}x{minutes}"
    if then is not None:
        values += f" {per_minute * minutes}+{then}x{after}"
    return series(slo.metric, values, **t(**labels))


def _bad_labels(slo: SLO) -> dict[str, str]:
    # a concrete label value that the bad matcher selects
    return {slo.label: "FAILED" if slo.bad.startswith("!~") else slo.bad}


def _cases(slo: SLO, objective: float, s: Settings) -> list[Case]:
    """Per burn-rate pair: a burn just above its rate fires; half the slowest rate is quiet."""
    total = 100_000
    budget = 1.0 - objective

    def burn_case(title: str, times_budget: float, fires: tuple[str, ...], minutes: int = 40,
                  recover_after: int | None = None) -> Case:
        bad = round(total * budget * times_budget)
        good = total - bad
        if recover_after is None:
            ser = (_counter(slo, bad, _bad_labels(slo), minutes),
                   _counter(slo, good, {slo.label: slo.good}, minutes))
        else:
            ser = (_counter(slo, bad, _bad_labels(slo), recover_after, 0, minutes - recover_after),
                   _counter(slo, good, {slo.label: slo.good}, recover_after, total,
                            minutes - recover_after))
        return Case(title, ser, f"{minutes}m", tuple(Fired(t(), 0, sev) for sev in fires))

    page, ticket = _pairs(s, "page"), _pairs(s, "warning")
    out = []
    # each pair alone: a burn between its rate and the next faster pair's rate
    rates = sorted([(p[2], "page", p) for p in page] + [(p[2], "warning", p) for p in ticket],
                   reverse=True)
    for i, (rate, sev, (lo, sh, _)) in enumerate(rates):
        faster = rates[i - 1][0] if i else rate * 2
        x = (rate + faster) / 2
        fires = tuple(sorted({sev} | ({"warning"} if sev == "page" else set()),
                             key=("page", "warning").index))
        out.append(burn_case(f"{lo}/{sh} pair: a burn of {num(x)}x fires", x, fires))
    out.append(burn_case(f"a burn of {num(rates[-1][0] / 2)}x stays quiet", rates[-1][0] / 2, ()))
    # the short windows end the page soon after the burn stops; the ticket stays
    out.append(burn_case(f"a burn of {num(rates[0][0] * 1.5)}x that stopped 40 minutes ago "
                         "pages no more", rates[0][0] * 1.5, ("warning",), minutes=100,
                         recover_after=60))
    return out

