"""Every panel query of every board, evaluated by a real Prometheus scraping the demo topology.

The syntax check in test_dashboards.py runs against an empty Prometheus; here the
queries meet real series (the shared `stack` fixture: a primary, two replicas,
pgBackRest, PgBouncer, the exporter with every pack of the topology and the
generated recording rules), so a wrong label, a wrong recording-rule name or a
join that never matches shows up as a panel without data.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_dashboards import _exprs, substitute

pytestmark = pytest.mark.slow

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


def _query(url: str, expr: str) -> dict[str, Any]:
    q = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
            body: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
    return body


def test_every_panel_query_has_data_on_the_demo_topology(stack: Any) -> None:
    prom = str(stack.urls["Prometheus"]).rstrip("/")
    # rates need two scrapes inside their window, recording rules a round of evaluation
    deadline = time.monotonic() + 180
    while True:
        body = _query(prom, "count(wasp_query_runs_total) and on() "
                            "count(count_over_time(wasp_target_up[5m]) >= 3) > 0")
        if body.get("status") == "success" and body["data"]["result"]:
            break
        assert time.monotonic() < deadline, body
        time.sleep(2)
    time.sleep(30)
    failed, empty = [], []
    for dash, title, expr in _exprs():
        body = _query(prom, substitute(expr))
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
    no_data = [r for r in records if not _query(prom, r)["data"]["result"]]
    assert not no_data, f"SLO recording rules without data: {no_data}"
