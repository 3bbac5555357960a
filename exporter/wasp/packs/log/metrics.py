"""The log pack's counters: events in, bounded series and a latency histogram out.

Label values that come from the outside (user names, database names, client
addresses) are bounded per metric and label: ``top`` values hold their own
series, ranked by their count; a new value takes a slot while one is free, or
the slot of the value with the lowest count that has been idle for
``evict_after`` seconds (that value's series go away); otherwise it counts
under ``other``. No count ever moves between series, so every series is a
true counter and the sum over a label is exact.

Statement latency: a duration line is weighted by how likely the server was to
log it. At or over ``log_min_duration_statement`` every statement is logged
(weight 1, also counted exactly by ``wasp_log_slow_statements_total``);
between ``log_min_duration_sample`` and that, a share ``log_statement_sample_rate``
is (weight 1 / rate). The server compares whole milliseconds, and so does this.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wasp.config.log import SamplingSettings
from wasp.model import Family, MetricSpec, MetricType, Sample, histogram_samples
from wasp.packs.log.parse import Event, role_commands, timestamp_seconds

__all__ = ["BUCKETS", "METRICS", "Bound", "LogStats", "is_local"]

#: histogram bounds in seconds: OLTP statements, 1 ms to 10 s
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                              2.5, 5.0, 10.0)
OTHER = "other"
#: label values tracked for ranking (admitted or not) before new ones go straight to other
TRACK_MAX = 10_000
_ACCOUNT = ("user", "database", "client_addr")


def _spec(name: str, type_: MetricType, labels: tuple[str, ...], help_: str,
          unit: str | None = None) -> MetricSpec:
    return MetricSpec(name, type_, labels, help_, unit=unit)


#: every metric the pack exports (the catalog and the docs read this)
METRICS: tuple[MetricSpec, ...] = (
    _spec("wasp_log_pack_ready", "gauge", ("reason",),
          "1 when the server writes what the log pack needs (reason ok); 0 with the first "
          "reason it does not: no_log_files, jsonlog_off, logging_collector_off, "
          "lc_messages, sampling_off, log_duration_on, log_connections_off, "
          "log_statement_off, settings_unknown."),
    _spec("wasp_log_pack_check", "gauge", ("check",),
          "1 when one server setting the log pack relies on is as it needs, 0 when not."),
    _spec("wasp_log_lines_total", "counter", (), "jsonlog lines read and understood."),
    _spec("wasp_log_unparsed_lines_total", "counter", ("reason",),
          "Lines skipped: encoding (not UTF-8), json (not a jsonlog record), too_long "
          "(over max_line_bytes)."),
    _spec("wasp_log_read_bytes_total", "counter", (), "Bytes of log read.", unit="bytes"),
    _spec("wasp_log_file_rotations_total", "counter", (),
          "New log files begun after the first round (rotation or a new log_filename)."),
    _spec("wasp_log_file_truncations_total", "counter", (),
          "Log files found shorter than their read position, read again from the start."),
    _spec("wasp_log_files", "gauge", (), "Log files followed."),
    _spec("wasp_log_last_line_timestamp_seconds", "gauge", (),
          "Time stamp of the newest line read, unix seconds.", unit="seconds"),
    _spec("wasp_log_auth_failures_total", "counter", _ACCOUNT,
          "Failed authentications (FATAL 28P01 wrong password, 28000 other than pg_hba): "
          "user, database and client address, each bounded to the top values plus other."),
    _spec("wasp_log_hba_rejections_total", "counter", _ACCOUNT,
          "Connections refused by pg_hba.conf (no entry, or a reject line)."),
    _spec("wasp_log_superuser_logins_total", "counter", ("user", "client_addr", "local"),
          "Logins of superuser roles (log_connections); local is true for the Unix socket "
          "and loopback addresses."),
    _spec("wasp_log_role_changes_total", "counter", ("user", "database", "command"),
          "Role and privilege changes seen with log_statement = ddl: create_role, "
          "alter_role, drop_role, grant, revoke, alter_default_privileges; user is who ran it."),
    _spec("wasp_log_errors_total", "counter", ("severity", "sqlstate_class"),
          "Server messages of severity ERROR, FATAL or PANIC by the first two characters of "
          "their SQLSTATE."),
    _spec("wasp_log_statement_duration_seconds", "histogram", ("database", "user"),
          "Statement durations from the server's sampled log (log_min_duration_sample, "
          "log_statement_sample_rate), each weighted by 1/rate, statements over "
          "log_min_duration_statement by 1: an estimate of every statement over the sample "
          "threshold.", unit="seconds"),
    _spec("wasp_log_slow_statements_total", "counter", ("database", "user"),
          "Statements at or over log_min_duration_statement, counted exactly."),
    _spec("wasp_log_statement_sample_rate", "gauge", (),
          "log_statement_sample_rate the durations are weighted with."),
    _spec("wasp_log_min_duration_sample_seconds", "gauge", (),
          "log_min_duration_sample in effect (absent when off).", unit="seconds"),
    _spec("wasp_log_min_duration_statement_seconds", "gauge", (),
          "log_min_duration_statement in effect (absent when off).", unit="seconds"),
)
_BY_NAME = {m.name: m for m in METRICS}


def is_local(addr: str) -> bool:
    """True for the Unix socket ([local]) and loopback addresses."""
    if addr in ("[local]", ""):
        return True
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class _Slot:
    count: float = 0.0
    last: float = 0.0
    admitted: bool = False


@dataclass(slots=True)
class Bound:
    """The values of one label of one metric: `top` hold series, the rest count as other."""

    top: int
    evict_after: float
    values: dict[str, _Slot] = field(default_factory=dict)

    def admit(self, value: str, now: float) -> tuple[str, str | None]:
        """The label value to count under, and a value whose series must go (or None)."""
        slot = self.values.get(value)
        if slot is None:
            if len(self.values) >= TRACK_MAX:
                return OTHER, None
            slot = self.values[value] = _Slot()
        slot.count += 1
        slot.last = now
        if slot.admitted:
            return value, None
        admitted = [(s.count, v) for v, s in self.values.items() if s.admitted]
        if len(admitted) < self.top:
            slot.admitted = True
            return value, None
        idle = [(c, v) for c, v in admitted if now - self.values[v].last >= self.evict_after]
        if idle:
            _, victim = min(idle)
            if self.values[victim].count <= slot.count:
                del self.values[victim]
                slot.admitted = True
                return value, victim
        return OTHER, None

    def to_json(self) -> dict[str, list[float]]:
        """The values as JSON."""
        return {v: [s.count, s.last, float(s.admitted)] for v, s in self.values.items()}

    def restore(self, data: Any) -> None:
        """Back from to_json."""
        if not isinstance(data, dict):
            raise ValueError("not a saved label bound")
        self.values = {str(v): _Slot(float(c), float(t), bool(a)) for v, (c, t, a) in data.items()}


@dataclass(slots=True)
class _Hist:
    counts: list[float] = field(default_factory=lambda: [0.0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float, weight: float) -> None:
        for i, b in enumerate(BUCKETS):
            if seconds <= b:
                self.counts[i] += weight
                break
        else:
            self.counts[-1] += weight
        self.total += seconds * weight


Key = tuple[str, ...]


class LogStats:
    """Every counter of the pack; fed events, turned into families, saved and restored."""

    def __init__(self, *, top: int = 10, evict_after: float = 3600.0,
                 superusers: Iterable[str] = ("postgres",)) -> None:
        self.top = top
        self.evict_after = evict_after
        self.superusers = set(superusers)
        self.sampling = SamplingSettings()
        self.counters: dict[str, dict[Key, float]] = {
            m.name: {} for m in METRICS if m.type == "counter"}
        self.hist: dict[Key, _Hist] = {}
        self.bounds: dict[str, Bound] = {}
        #: the newest line's time stamp as written (they sort as text within one time zone)
        self.last_line = ""

    # -- feeding ------------------------------------------------------------------
    def _label(self, metric: str, label: str, value: str, now: float) -> str:
        b = self.bounds.get(f"{metric}/{label}")
        if b is None:
            b = self.bounds[f"{metric}/{label}"] = Bound(self.top, self.evict_after)
        out, gone = b.admit(value, now)
        if gone is not None:
            self._forget(metric, label, gone)
        return out

    def _forget(self, metric: str, label: str, value: str) -> None:
        i = _BY_NAME[metric].labels.index(label)
        if metric == "wasp_log_statement_duration_seconds":
            self.hist = {k: h for k, h in self.hist.items() if k[i] != value}
        else:
            c = self.counters[metric]
            for k in [k for k in c if k[i] == value]:
                del c[k]

    def add(self, metric: str, key: Key, by: float = 1.0) -> None:
        """Add to one counter series."""
        c = self.counters[metric]
        c[key] = c.get(key, 0.0) + by

    def _bounded(self, metric: str, now: float, **values: str) -> Key:
        labels = _BY_NAME[metric].labels
        return tuple(self._label(metric, n, values[n], now) if n in values else "" for n in labels)

    def line(self, ev: Event, now: float) -> None:
        """Count one understood line."""
        self.add("wasp_log_lines_total", ())
        if ev.timestamp > self.last_line:
            self.last_line = ev.timestamp
        if ev.kind in ("auth_failure", "hba_reject"):
            metric = ("wasp_log_auth_failures_total" if ev.kind == "auth_failure"
                      else "wasp_log_hba_rejections_total")
            self.add(metric, self._bounded(metric, now, user=ev.user, database=ev.database,
                                            client_addr=ev.client))
        elif ev.kind == "login":
            if ev.user in self.superusers:
                m = "wasp_log_superuser_logins_total"
                u = self._label(m, "user", ev.user, now)
                a = self._label(m, "client_addr", ev.client, now)
                self.add(m, (u, a, "true" if is_local(ev.client) else "false"))
        elif ev.kind == "statement":
            m = "wasp_log_role_changes_total"
            for cmd in role_commands(ev.text):
                u = self._label(m, "user", ev.user, now)
                d = self._label(m, "database", ev.database, now)
                self.add(m, (u, d, cmd))
        elif ev.kind == "duration" and ev.text in ("", "statement", "execute"):
            self._duration(ev, now)
        if ev.kind in ("auth_failure", "hba_reject", "error"):
            self.add("wasp_log_errors_total", (ev.severity, ev.sqlstate[:2] or "unknown"))

    def _duration(self, ev: Event, now: float) -> None:
        s = self.sampling
        whole_ms = int(ev.duration_ms)
        slow = s.min_duration_statement >= 0 and whole_ms >= s.min_duration_statement
        m = "wasp_log_statement_duration_seconds"
        key = (self._label(m, "database", ev.database, now), self._label(m, "user", ev.user, now))
        weight = 1.0
        if not slow and s.min_duration_sample >= 0 and s.sample_rate > 0:
            weight = 1.0 / s.sample_rate
        h = self.hist.get(key)
        if h is None:
            h = self.hist[key] = _Hist()
        h.observe(ev.duration_ms / 1000.0, weight)
        if slow:
            sm = "wasp_log_slow_statements_total"
            self.add(sm, (self._label(sm, "database", ev.database, now),
                           self._label(sm, "user", ev.user, now)))

    def unparsed(self, reason: str, n: int = 1) -> None:
        """Count lines that could not be read."""
        if n:
            self.add("wasp_log_unparsed_lines_total", (reason,), n)

    # -- output -------------------------------------------------------------------
    def families(self, *, ready: tuple[str, bool], checks: dict[str, bool],
                 files: int) -> list[Family]:
        """Families from the counters now."""
        out: dict[str, list[Sample]] = {m.name: [] for m in METRICS}
        reason, ok = ready
        out["wasp_log_pack_ready"].append(((reason,), 1.0 if ok else 0.0))
        out["wasp_log_pack_check"] = [((k,), 1.0 if v else 0.0) for k, v in sorted(checks.items())]
        for name, c in self.counters.items():
            out[name] = sorted(c.items())
        for name in ("wasp_log_lines_total", "wasp_log_read_bytes_total",
                     "wasp_log_file_rotations_total", "wasp_log_file_truncations_total"):
            if not out[name]:
                out[name] = [((), 0.0)]
        out["wasp_log_files"].append(((), float(files)))
        if last := timestamp_seconds(self.last_line):
            out["wasp_log_last_line_timestamp_seconds"].append(((), last))
        hist: list[Sample] = []
        for key in sorted(self.hist):
            h = self.hist[key]
            hist.extend(histogram_samples(key, BUCKETS, h.counts, h.total))
        out["wasp_log_statement_duration_seconds"] = hist
        s = self.sampling
        out["wasp_log_statement_sample_rate"].append(((), s.sample_rate))
        if s.min_duration_sample >= 0:
            out["wasp_log_min_duration_sample_seconds"].append(((), s.min_duration_sample / 1000))
        if s.min_duration_statement >= 0:
            out["wasp_log_min_duration_statement_seconds"].append(
                ((), s.min_duration_statement / 1000))
        return [m.family(out[m.name]) for m in METRICS if out[m.name]]

    # -- saving -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything counted, as JSON."""
        return {
            "counters": {n: [[*k, v] for k, v in sorted(c.items())]
                         for n, c in self.counters.items() if c},
            "hist": [[*k, h.counts, h.total] for k, h in sorted(self.hist.items())],
            "bounds": {n: b.to_json() for n, b in sorted(self.bounds.items())},
            "last_line": self.last_line,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Back from state() (ValueError or KeyError when it is not one)."""
        for name, rows in state.get("counters", {}).items():
            if name not in self.counters:
                continue  # a metric this version no longer has
            self.counters[name] = {tuple(str(x) for x in r[:-1]): float(r[-1]) for r in rows}
        self.hist = {}
        for row in state.get("hist", []):
            *key, counts, total = row
            if len(counts) == len(BUCKETS) + 1:  # bounds changed: start the histogram over
                self.hist[tuple(str(x) for x in key)] = _Hist([float(x) for x in counts],
                                                             float(total))
        for name, data in state.get("bounds", {}).items():
            b = Bound(self.top, self.evict_after)
            b.restore(data)
            self.bounds[str(name)] = b
        self.last_line = str(state.get("last_line", ""))
