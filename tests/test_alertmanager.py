"""The generated Alertmanager configuration: committed as generated, out of rules/, inhibitions
that follow causes, and notifications rendered by a real Alertmanager to a local receiver."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import require_tool
from wasp.companions.pgcluster import free_port
from wasp.demo.alerting import DEMO, alertmanager_for_receiver
from wasp.demo.receiver import Receiver, read_notifications
from wasp.mixin import alertmanager
from wasp.mixin.rules import build
from wasp.mixin.rules.files import _annotations
from wasp.mixin.rules.templates import render_template
from wasp.mixin.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "alertmanager"
#: where the last run put the captured notifications (read by people, not by the tests)
CAPTURED = Path("/tmp/wasp-notifications.json")


def test_committed_files_are_the_generated_ones(tmp_path: Path) -> None:
    files = alertmanager.render_files()
    assert {str(p.relative_to(OUT)) for p in OUT.rglob("*") if p.is_file()} == set(files)
    for rel, text in files.items():
        assert (OUT / rel).read_text() == text, f"alertmanager/{rel} is stale"
    run = [sys.executable, "-m", "wasp", "alertmanager", "--out", str(tmp_path)]
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=120).returncode == 1
    assert subprocess.run(run, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=120).returncode == 0


def _start(tmp: Path, config: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    am = shutil.which("prometheus-alertmanager") or require_tool("alertmanager")
    (tmp / "templates").mkdir(parents=True, exist_ok=True)
    (tmp / "templates" / "wasp.tmpl").write_text(alertmanager.TEMPLATE)
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([am, f"--config.file={tmp / 'alertmanager.yml'}",
                             f"--storage.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/api/v2/alerts"


def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(url, data=json.dumps(alerts).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus sends it: labels, and the annotations its rule renders."""
    rule, group = next((a, g.name) for g in build() for a in g.alerts
                       if a.name == name and a.severity == severity)
    full = {"job": "wasp", "instance": "wasp-1:9645", **labels}
    ann = {k: render_template(v, full, 0.93) for k, v in _annotations(Settings(), rule, group).items()}
    return {"labels": {"alertname": name, "severity": severity, **full}, "annotations": ann}


def test_inhibitions_follow_causes(tmp_path: Path) -> None:
    proc, url = _start(tmp_path, yaml.safe_load((OUT / "alertmanager.yml").read_text()))
    sent = [
        _alert("WaspWebhooksSilent", "page", target="main"),
        _alert("WaspWhatsAppInboundSilent", "page", target="main", window="24h",
               event_type="message_received"),
        _alert("WaspBackupRepositoryUnreadable", "page", stanza="main", repo="1"),
        _alert("WaspBackupTooOld", "warning", stanza="main", repo="1", type="full"),
        _alert("WaspWALArchiveBehind", "page", stanza="main", target="main"),
        _alert("WaspRestoreDrillFailed", "warning", stanza="main"),
        _alert("WaspBackupTooOld", "warning", stanza="other", repo="1", type="full"),
        _alert("WaspTargetDown", "page", target="primary"),
        _alert("WaspPrimaryDown", "page", target="primary"),
        _alert("WaspStandbyReplayDelayHigh", "warning", target="replica1"),
        _alert("WaspWALReceiverNotStreaming", "warning", target="replica2"),
        _alert("WaspStandbyReplayDelayHigh", "warning", target="r9", job="other-cluster"),
    ]
    try:
        _post(url, sent)
        state: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=2) as resp:
                got = json.load(resp)
            state = {(a["labels"]["alertname"], a["labels"].get("target")
                      or a["labels"].get("stanza", "")): a["status"]["state"] for a in got}
            if len(got) == len(sent) and list(state.values()).count("suppressed") == 7:
                break
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert state == {
        ("WaspWebhooksSilent", "main"): "active",
        ("WaspWhatsAppInboundSilent", "main"): "suppressed",      # webhooks silent: the cause
        ("WaspBackupRepositoryUnreadable", "main"): "active",
        ("WaspBackupTooOld", "main"): "suppressed",               # its repository is unreadable
        ("WaspWALArchiveBehind", "main"): "suppressed",
        ("WaspRestoreDrillFailed", "main"): "suppressed",
        ("WaspBackupTooOld", "other"): "active",                  # another stanza
        ("WaspTargetDown", "primary"): "active",
        ("WaspPrimaryDown", "primary"): "suppressed",             # one page for one outage
        ("WaspStandbyReplayDelayHigh", "replica1"): "suppressed",  # its primary is down
        ("WaspWALReceiverNotStreaming", "replica2"): "suppressed",
        ("WaspStandbyReplayDelayHigh", "r9"): "active",            # another cluster
    }


class _Receiver:
    """A local HTTP server standing in for Slack and PagerDuty: keeps every body it receives."""

    def __init__(self) -> None:
        bodies = self.bodies = []  # type: list[tuple[str, dict[str, Any]]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"] or 0))
                bodies.append((self.path, json.loads(data)))
                self.send_response(202 if "pagerduty" in self.path else 200)
                self.end_headers()
                self.wfile.write(b'{"status":"success"}' if "pagerduty" in self.path else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()


def test_grouped_notifications_render_through_a_real_alertmanager(
        tmp_path: Path, receiver: _Receiver) -> None:
    config = yaml.safe_load((OUT / "alertmanager.yml").read_text())
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text("test-routing-key")
    for rc in config["receivers"]:
        for sl in rc.get("slack_configs", []):
            (secrets / rc["name"]).write_text(f"{receiver.url}/slack/{rc['name']}")
            sl["api_url_file"] = str(secrets / rc["name"])
        for pd in rc.get("pagerduty_configs", []):
            pd["routing_key_file"] = str(secrets / "key")
            pd["url"] = f"{receiver.url}/pagerduty"
        for wh in rc.get("webhook_configs", []):
            wh["url"] = f"{receiver.url}/watchdog"
            wh["http_config"]["authorization"]["credentials_file"] = str(secrets / "key")
    config["route"]["group_wait"] = "1s"
    for r in config["route"]["routes"]:
        r.pop("group_wait", None)
    proc, url = _start(tmp_path, config)
    try:
        _post(url, [
            _alert("WaspQueryFailing", "warning", target="main", query="bookings_created_1h"),
            _alert("WaspQueryFailing", "warning", target="main", query="webhooks_1h"),
            _alert("WaspPgBouncerPoolExhausted", "page", target="main", database="app"),
            _alert("WaspPgBouncerPoolExhausted", "page", target="main", database="reports"),
            _alert("Watchdog", "none"),
        ])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({p for p, _ in receiver.bodies}) < 3:
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = {p: b for p, b in receiver.bodies}
    CAPTURED.write_text(json.dumps(got, indent=2, sort_keys=True))
    slack = got["/slack/slack-warnings"]["attachments"][0]
    assert slack["title"] == "[FIRING:2] WaspQueryFailing on main: 2 alerts"
    assert slack["title_link"] == "http://localhost:3000/d/wasp-exporter"
    for query in ("bookings_created_1h", "webhooks_1h"):
        assert f"Query {query} keeps failing on main" in slack["text"]
    assert slack["text"].count("|runbook>") == 2
    assert "https://wasp.example.com/docs/runbook.md#waspqueryfailing" in slack["text"]
    pd = got["/pagerduty"]
    assert pd["routing_key"] == "test-routing-key" and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical"
    assert pd["payload"]["summary"] == "[FIRING:2] WaspPgBouncerPoolExhausted on main: 2 alerts"
    assert pd["client_url"] == "http://localhost:3000/d/wasp-pgbouncer"
    assert {link["text"]: link["href"] for link in pd["links"]} == {
        "runbook": "https://wasp.example.com/docs/runbook.md#wasppgbouncerpoolexhausted",
        "dashboard": "http://localhost:3000/d/wasp-pgbouncer"}
    assert pd["payload"]["custom_details"]["alerts"].count("runbook: https://") == 2
    assert got["/watchdog"]["groupLabels"]["alertname"] == "Watchdog"


def test_the_demo_points_every_receiver_at_its_local_receiver() -> None:
    conf = alertmanager_for_receiver("http://127.0.0.1:1", DEMO)
    names = {r["name"] for r in yaml.safe_load((OUT / "alertmanager.yml").read_text())["receivers"]}
    assert {r["name"] for r in conf["receivers"]} == names
    urls = [c.get("url") or c.get("api_url") for r in conf["receivers"]
            for k, cs in r.items() if k != "name" for c in cs]
    assert urls and all(u.startswith("http://127.0.0.1:1/") for u in urls)
    assert conf["templates"] == ["templates/*.tmpl"]
    assert "_file" not in yaml.safe_dump(conf) and "credentials" not in yaml.safe_dump(conf)


def test_the_demo_receiver_records_the_watchdog_webhook(tmp_path: Path) -> None:
    r = Receiver(tmp_path / "n.jsonl").start()
    try:
        body = {"status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": "Watchdog", "severity": "none"},
            "annotations": {"summary": "the alert path works"}}]}
        req = urllib.request.Request(f"{r.url}/webhook/watchdog", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        r.stop()
    [n] = read_notifications(tmp_path / "n.jsonl")
    assert (n.receiver, n.channel, n.alertname, n.status) == ("webhook", "watchdog", "Watchdog",
                                                              "firing")
