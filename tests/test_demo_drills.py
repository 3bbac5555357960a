"""Fault drills against the demo's whole topology, with the tests' timings (seconds, not minutes).

One stack for this module (the `stack` fixture): a primary, two
streaming replicas, pgBackRest, PgBouncer, the exporter, Prometheus with the
generated rules (their `for` shortened through the generator's data, never by
editing the YAML) and Alertmanager with the generated routing, sending to the
local Slack and PagerDuty stand-ins. Each drill breaks one real part, waits for
the right notification at the right stand-in, checks that nothing else paged,
heals and waits for the resolved notification. Every time from fault to
notification is recorded in <stack>/drill-times.json.

On the same stack, every panel query of every board is evaluated by its real
Prometheus: the syntax check in test_dashboards.py runs against an empty one;
here a wrong label, a wrong recording-rule name or a join that never matches
shows up as a panel without data.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from test_dashboards import _exprs, _query, substitute
from wasp.demo.alerting import PRODUCTION, TEST
from wasp.demo.drills import DRILLS, Expect
from wasp.demo.receiver import Notification, read_notifications
from wasp.demo.topology import Topology

# 4-5 minutes on 2 cores, the stack included
pytestmark = pytest.mark.slow

#: what the demo raises on purpose (README): warnings, never a page
ON_PURPOSE = {"WaspRemindersOverdue", "WaspDoubleBookings", "WaspDoctorCriticalCheckFailing"}
#: the tests' tiny data set (60 salons) has few gpt-4 answers, whose p95 may cross 10s, and
#: ~50 outbound messages an hour, of which 3 failed (the data's ~2%) cross the 5% warning
SMALL_DATA = {"WaspAILatencyHigh", "WaspWhatsAppOutboundFailureRatioHigh"}
#: the longest gap between two Watchdog heartbeats at the dead-man's switch (seconds)
WATCHDOG_GAP = 150.0


@pytest.fixture(scope="module")
def stack(cluster_base: Path) -> Iterator[Topology]:
    """The demo's whole topology with the tests' timings, shared by this module's tests and
    stopped when they are done (so its load never weighs on the other modules' tests)."""
    topo = Topology(home=cluster_base / "stack", timing=TEST, salons=60, days=0.3, scale=0.05,
                    scheduler=False, exporter_listen="127.0.0.1:0")
    try:
        t0 = time.time()
        topo.up()
        # long enough for every `for` (4s) to pass a few times over: what fires now is the baseline
        time.sleep(25)
        topo.baseline = read_notifications(topo.notifications, since=t0)
        with urllib.request.urlopen(topo.urls["Prometheus"] + "api/v1/alerts", timeout=5) as r:
            topo.baseline_alerts = {a["labels"]["alertname"] for a in json.load(r)["data"]["alerts"]
                                    if a["state"] == "firing"}
        yield topo
    finally:
        if topo.times.exists():  # shown with -s; the closing note of the drills quotes these
            print("\ndrill times:", topo.times.read_text())
        topo.stop()


def _query_slow(url: str, expr: str) -> dict[str, Any]:
    """An instant query with room for a loaded machine."""
    return _query(url, expr, timeout=10)


def firing(topo: Topology, states: tuple[str, ...] = ("firing",)) -> list[dict[str, Any]]:
    """Alerts Prometheus has in one of `states` now (firing, pending)."""
    url = topo.urls["Prometheus"] + "api/v1/alerts"
    with urllib.request.urlopen(url, timeout=5) as r:
        alerts: list[dict[str, Any]] = json.load(r)["data"]["alerts"]
    return [a for a in alerts if a["state"] in states]


def webhooks_flowing(topo: Topology) -> bool:
    """True when the newest webhook the exporter saw is younger than half the silence
    threshold: the live writer writes again (it reconnects up to ~30s after a primary drill)."""
    half = topo.timing.rules_config().webhook_silent_seconds / 2
    body = _query_slow(topo.urls["Prometheus"].rstrip("/"),
                  "min(time() - wasp_app_webhook_newest_timestamp_seconds)")
    result = body.get("data", {}).get("result", [])
    return bool(result) and float(result[0]["value"][1]) < half


def archive_caught_up(topo: Topology) -> bool:
    """True when every finished WAL segment is archived (a drill's backlog is gone)."""
    with psycopg.connect(topo.admin_dsn(), autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT last_archived_wal, pg_walfile_name(pg_current_wal_lsn()) "
                           "FROM pg_stat_archiver").fetchone()
    assert row is not None
    last, current = row
    return last is not None and int(last[8:24], 16) + 1 >= int(current[8:24], 16)  # may be .backup


def settle(topo: Topology, e: Expect, timeout: float = 360) -> None:
    """Wait until nothing pages or is about to, the drill's alert is quiet, webhooks flow and
    the WAL archive has caught up."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psycopg.OperationalError):
            if not archive_caught_up(topo):
                assert time.monotonic() < deadline, "the WAL archive never caught up"
                time.sleep(1)
                continue
        # a page pending now would fire in the next drill's window and be blamed on it
        left = [f'{a["labels"]["alertname"]} ({a["state"]})' for a in firing(topo, ("firing", "pending"))
                if a["labels"]["severity"] == "page"
                or (a["labels"]["alertname"] == e.alertname and a["state"] == "firing")]
        if not left and webhooks_flowing(topo):
            return
        left = left or ["(no webhook for half the silence threshold)"]
        assert time.monotonic() < deadline, f"still firing before the drill: {left}"
        time.sleep(1)


def wait_for(topo: Topology, e: Expect, status: str, since: float, timeout: float
             ) -> Notification:
    """The first notification matching `e` with `status` recorded after `since`."""
    deadline = time.monotonic() + timeout
    while True:
        for n in read_notifications(topo.notifications, since=since):
            if e.matches(n) and n.status == status:
                return n
        if time.monotonic() > deadline:
            got = [(n.receiver, n.status, n.alertname, n.severity, n.target)
                   for n in read_notifications(topo.notifications, since=since)]
            raise AssertionError(f"no {status} {e} within {timeout:.0f}s; got {got}; "
                                 f"firing: {[a['labels'] for a in firing(topo)]}")
        time.sleep(0.25)


def drill(topo: Topology, name: str, during: Callable[[], None] | None = None
          ) -> tuple[list[Notification], float, float]:
    """Break, wait for the expected notification, run `during` while it is broken, heal, wait
    for the resolved one; returns (notifications from the fault to the resolved one, fault
    time, heal time)."""
    d = DRILLS[name]
    settle(topo, d.expect)
    t0 = time.time()
    d.breaks(topo)
    try:
        fired = wait_for(topo, d.expect, "firing", t0, 3 * d.by_when(topo.timing) + 60)
        if during is not None:
            during()
    finally:
        healed = time.time()
        d.heals(topo)
    resolved = wait_for(topo, d.expect, "resolved", healed, 180)
    got = read_notifications(topo.notifications, since=t0)
    times = json.loads(topo.times.read_text()) if topo.times.exists() else {}
    times[name] = {"alert": d.expect.alertname, "fault_to_notification_s": round(fired.at - t0, 1),
                   "heal_to_resolved_s": round(resolved.at - healed, 1),
                   "computed_test_s": round(d.by_when(topo.timing), 1),
                   "computed_production_s": round(d.by_when(PRODUCTION), 1)}
    topo.times.write_text(json.dumps(times, indent=1, sort_keys=True))
    return got, t0, healed


def pages(got: list[Notification]) -> set[tuple[str, str]]:
    """(alertname, target) of every page in `got` (a page that resolves after the fault
    fired before it: settle() saw nothing paging, but its resolved notification may lag)."""
    return {(n.alertname, n.target) for n in got if n.receiver == "pagerduty"
            and n.status == "firing"}


def test_a_healthy_stack_pages_nobody(stack: Topology) -> None:
    got = stack.baseline
    assert not [n for n in got if n.receiver == "pagerduty"], got
    assert {n.alertname for n in got} <= ON_PURPOSE | SMALL_DATA, got
    assert all(n.severity == "warning" for n in got)
    # and nothing else fired then (the drills may have run already: they leave warnings such
    # as WaspPostgresRestarted): every part of the topology is up and scraped
    up = stack.baseline_alerts
    assert "Watchdog" in up  # always firing: the dead-man's switch's heartbeat
    assert not up - ON_PURPOSE - SMALL_DATA - {"Watchdog"}, up


def test_replica_stopped_warns_at_slack_and_resolves(stack: Topology) -> None:
    got, _, _ = drill(stack, "replica")
    assert not pages(got), got
    slack = {n.alertname for n in got if n.receiver == "slack"}
    assert "WaspStandbyTargetDown" in slack


def test_archiving_broken_pages_at_pagerduty(stack: Topology) -> None:
    got, _, _ = drill(stack, "archive")
    assert {a for a, _ in pages(got)} == {"WaspWALArchiveBehind"}, got


def test_primary_down_pages_once_and_inhibits_what_it_implies(stack: Topology) -> None:
    # the outage outlasts WaspPrimaryDown's `for` (4s, the page's 1s): it fires too, muted by
    # the page; healed at once, the primary would come back just as its `for` ran out, and
    # it might fire on the last stale sample after WaspTargetDown resolved (production's
    # equal `for` has no such edge)
    got, _, healed = drill(stack, "primary", during=lambda: time.sleep(6))
    assert pages(got) == {("WaspTargetDown", "primary")}, got
    firing_ = [n for n in got if n.status == "firing"]
    assert len([n for n in firing_ if n.receiver == "pagerduty"]) == 1, firing_
    # while the primary is down; after the heal the standbys take a few seconds to stream
    # again, longer than the tests' 4s `for` (production's 5m absorbs it)
    implied = {"WaspStandbysMissing", "WaspWALReceiverNotStreaming", "WaspStandbyHeartbeatStale",
               "WaspHeartbeatWriterStopped", "WaspPgBouncerClientsWaiting"}
    assert not {n.alertname for n in got if n.at < healed} & implied, got


def watchdog_alive(topo: Topology) -> None:
    """The Watchdog is active (not inhibited) in Alertmanager and its heartbeat reaches the
    dead-man's switch: the switch stays quiet, because Prometheus and Alertmanager work."""
    url = topo.urls["Alertmanager"] + 'api/v2/alerts?filter=alertname%3D"Watchdog"'
    with urllib.request.urlopen(url, timeout=5) as r:
        alerts: list[dict[str, Any]] = json.load(r)
    assert [a["status"]["state"] for a in alerts] == ["active"], alerts
    # group_interval and repeat_interval of its route are a minute each: at most ~2 min apart
    # (a stack that just started may not have sent the first one yet: wait for it)
    deadline = time.monotonic() + WATCHDOG_GAP
    while True:
        beats = [n.at for n in read_notifications(topo.notifications) if n.alertname == "Watchdog"
                 and n.receiver == "webhook" and n.status == "firing"]
        if beats and time.time() - beats[-1] < WATCHDOG_GAP:
            return
        assert time.monotonic() < deadline, f"no Watchdog heartbeat for {WATCHDOG_GAP:.0f}s: {beats}"
        time.sleep(1)


def test_exporter_stopped_the_dead_man_path_notices(stack: Topology) -> None:
    # WaspExporterDown pages; the Watchdog (vector(1), no exporter involved) keeps its
    # heartbeat going to the dead-man's switch, which would page only if Prometheus or
    # Alertmanager stopped: the exporter's fault neither silences nor doubles the page
    got, _, _ = drill(stack, "exporter", during=lambda: watchdog_alive(stack))
    assert pages(got) == {("WaspExporterDown", "")}, got
    assert not [n for n in got if n.alertname == "Watchdog" and n.receiver != "webhook"], got


@pytest.mark.parametrize("name", ["webhooks", "backup", "pool"])
def test_other_drills_reach_the_right_stand_in(stack: Topology, name: str) -> None:
    got, _, _ = drill(stack, name)
    e = DRILLS[name].expect
    if e.receiver == "pagerduty":
        assert {a for a, _ in pages(got)} == {e.alertname}, got
    else:
        assert not pages(got), got


RULES = Path(__file__).resolve().parents[1] / "rules"
#: panels that may be empty on the test topology, and why (everything else must have data)
_LOG = "the demo's servers do not write jsonlog, so the log pack does not run there"
MAY_BE_EMPTY: dict[str, str] = {
    "replication-backups.json / Last failover": "no failover happens on the test topology",
    "exporter.json / Skipped runs": "only runs that were skipped (`> 0`): none on a healthy stack",
    "kpi.json / Failing readiness checks (wasp doctor)": "only failing checks (`== 2`)",
    **{f"log.json / {title}": _LOG for title in (
        "Log pack ready", "Log lines read / skipped per second", "Newest log line age",
        "Failed logins per role (5m)", "Failed logins by client address (5m)",
        "Superuser logins (1h)", "Role and privilege changes (1h)",
        "Errors per second by SQLSTATE class", "Statement duration p50 / p95 / p99",
        "Statements per second (estimated) / slow (exact)")},
}


def test_every_panel_query_has_data_on_the_demo_topology(stack: Any) -> None:
    prom = str(stack.urls["Prometheus"]).rstrip("/")
    # rates need two scrapes inside their window, recording rules a round of evaluation
    deadline = time.monotonic() + 180
    while True:
        body = _query_slow(prom, "count(wasp_query_runs_total) and on() "
                            "count(count_over_time(wasp_target_up[5m]) >= 3) > 0")
        if body.get("status") == "success" and body["data"]["result"]:
            break
        assert time.monotonic() < deadline, body
        time.sleep(2)
    time.sleep(30)
    failed, empty = [], []
    for dash, title, expr in _exprs():
        body = _query_slow(prom, substitute(expr))
        if body.get("status") != "success":
            failed.append(f"{dash} / {title}: {body.get('error')}")
        elif not body["data"]["result"] and f"{dash} / {title}" not in MAY_BE_EMPTY:
            empty.append(f"{dash} / {title}: {substitute(expr)}")
    assert not failed, "\n".join(failed)
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # the SLI recording rules (the SLOs' error ratios and budgets) answer on the topology too
    slo = yaml.safe_load((RULES / "wasp-slo.yml").read_text())
    records = [r["record"] for g in slo["groups"] for r in g["rules"] if "record" in r]
    assert records
    no_data = [r for r in records if not _query_slow(prom, r)["data"]["result"]]
    assert not no_data, f"SLO recording rules without data: {no_data}"
