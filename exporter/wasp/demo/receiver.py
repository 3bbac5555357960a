"""The demo's notification receiver: local stand-ins for Slack and PagerDuty.

Alertmanager sends Slack's incoming-webhook JSON to ``POST /slack/CHANNEL`` and
PagerDuty's Events API v2 JSON to ``POST /pagerduty/v2/enqueue``. Every
notification is appended, as one JSON object per line, to a file: when it
arrived, which stand-in got it, firing or resolved, and the alert's name,
severity and target (the demo's Alertmanager config puts them in Slack's
attachment fields and PagerDuty's custom details). ``GET /`` shows the latest
on a small page; ``wasp demo notifications`` prints them.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Notification", "Receiver", "format_line", "parse_pagerduty", "parse_slack",
           "read_notifications"]

#: the keys the demo's Alertmanager config sends with every notification
KEYS = ("alertname", "severity", "target", "status")


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification as the receiver recorded it."""

    at: float
    receiver: str
    channel: str
    status: str
    alertname: str
    severity: str
    target: str
    summary: str

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps({"at": round(self.at, 3), "receiver": self.receiver,
                           "channel": self.channel, "status": self.status,
                           "alertname": self.alertname, "severity": self.severity,
                           "target": self.target, "summary": self.summary}, sort_keys=True)


def parse_slack(body: dict[str, Any], channel: str, at: float) -> list[Notification]:
    """Slack incoming-webhook JSON (one attachment per notification) -> notifications."""
    out = []
    for att in body.get("attachments") or [{}]:
        fields = {str(f.get("title")): str(f.get("value", "")) for f in att.get("fields") or []}
        out.append(Notification(
            at=at, receiver="slack", channel=str(body.get("channel") or channel),
            status=fields.get("status", ""), alertname=fields.get("alertname", ""),
            severity=fields.get("severity", ""), target=fields.get("target", ""),
            summary=str(att.get("title") or body.get("text") or "")))
    return out


def parse_pagerduty(body: dict[str, Any], at: float) -> list[Notification]:
    """PagerDuty Events API v2 JSON -> one notification."""
    payload = body.get("payload") or {}
    details = payload.get("custom_details") or {}
    action = body.get("event_action", "")
    return [Notification(
        at=at, receiver="pagerduty", channel=str((body.get("routing_key") and "events-v2") or ""),
        status="resolved" if action == "resolve" else "firing" if action == "trigger" else action,
        alertname=str(details.get("alertname", "")), severity=str(details.get("severity", "")),
        target=str(details.get("target", "")), summary=str(payload.get("summary", "")))]


def parse_webhook(body: dict[str, Any], name: str, at: float) -> list[Notification]:
    """Alertmanager's webhook JSON (the Watchdog's dead-man's switch) -> one per alert."""
    return [Notification(
        at=at, receiver="webhook", channel=name, status=str(a.get("status", "")),
        alertname=str((a.get("labels") or {}).get("alertname", "")),
        severity=str((a.get("labels") or {}).get("severity", "")),
        target=str((a.get("labels") or {}).get("target", "")),
        summary=str((a.get("annotations") or {}).get("summary", "")))
        for a in body.get("alerts") or []]


def read_notifications(path: Path, *, since: float = 0.0) -> list[Notification]:
    """Every notification recorded in `path` at or after `since` (unix seconds)."""
    out = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            d = json.loads(line)
            n = Notification(**d)
        except (ValueError, TypeError):
            continue  # a line being written
        if n.at >= since:
            out.append(n)
    return out


def format_line(n: Notification) -> str:
    """One human line: time, stand-in, status, alert, severity, target, summary."""
    ts = time.strftime("%H:%M:%S", time.gmtime(n.at))
    return (f"{ts}Z  {n.receiver:<9} {n.status.upper():<8} {n.alertname} "
            f"[{n.severity}] target={n.target or '-'}  {n.summary}")


class Receiver:
    """A small HTTP server on a loopback port that records notifications to a JSON-lines file."""

    def __init__(self, path: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = path
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    self._reply(400, b'{"error": "body is not JSON"}')
                    return
                at = time.time()
                if self.path.startswith("/slack/"):
                    got = parse_slack(body, self.path[len("/slack/"):], at)
                elif self.path.rstrip("/") == "/pagerduty/v2/enqueue":
                    got = parse_pagerduty(body, at)
                elif self.path.startswith("/webhook/"):
                    got = parse_webhook(body, self.path[len("/webhook/"):], at)
                else:
                    self._reply(404, b'{"error": "POST /slack/CHANNEL, /pagerduty/v2/enqueue '
                                     b'or /webhook/NAME"}')
                    return
                receiver.append(got)
                # PagerDuty answers 202 with a status; Slack answers 200 "ok"
                if self.path.startswith("/pagerduty"):
                    self._reply(202, b'{"status": "success", "message": "Event processed"}')
                else:
                    self._reply(200, b"ok")

            def do_GET(self) -> None:
                if self.path == "/notifications.json":
                    data = "[" + ",".join(x.to_json() for x in receiver.latest(200)) + "]"
                    self._reply(200, data.encode(), "application/json")
                elif self.path in ("/", "/index.html"):
                    self._reply(200, receiver.page().encode(), "text/html; charset=utf-8")
                else:
                    self._reply(404, b"not found")

            def _reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.host = host
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the receiver."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Receiver:
        """Serve in a daemon thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._thread = threading.Thread(target=self.server.serve_forever, name="wasp-receiver",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()

    def append(self, items: list[Notification]) -> None:
        """Record notifications (one line each, flushed before the reply)."""
        with self._lock, self.path.open("a") as f:
            for n in items:
                f.write(n.to_json() + "\n")

    def latest(self, n: int) -> list[Notification]:
        """The newest `n` notifications, newest first."""
        return list(reversed(read_notifications(self.path)[-n:]))

    def page(self) -> str:
        """A small HTML page with the latest notifications."""
        rows = "".join(
            f"<tr class='{html.escape(n.receiver)} {html.escape(n.status)}'>"
            f"<td>{time.strftime('%H:%M:%S', time.gmtime(n.at))}Z</td>"
            f"<td>{html.escape(n.receiver)}</td><td>{html.escape(n.status)}</td>"
            f"<td>{html.escape(n.alertname)}</td><td>{html.escape(n.severity)}</td>"
            f"<td>{html.escape(n.target)}</td><td>{html.escape(n.summary)}</td></tr>"
            for n in self.latest(100))
        return ("<!doctype html><meta http-equiv='refresh' content='5'><title>wasp demo: "
                "notifications</title><style>body{font-family:sans-serif}td{padding:2px 8px}"
                ".firing td:nth-child(3){color:#b00}.resolved td:nth-child(3){color:#070}</style>"
                "<h1>Notifications (Slack and PagerDuty stand-ins)</h1><table><tr><th>time"
                "</th><th>to</th><th>status</th><th>alert</th><th>severity</th><th>target</th>"
                f"<th>summary</th></tr>{rows}</table>"
                + ("" if rows else "<p>Nothing yet: a healthy demo pages nobody. Try "
                   "<code>wasp demo break replica</code>.</p>"))


def follow(path: Path, *, since: float, deadline: float, poll: float = 0.5
           ) -> Iterator[Notification]:
    """Yield notifications recorded at or after `since` until `deadline` (monotonic seconds)."""
    seen = 0
    while time.monotonic() < deadline:
        got = read_notifications(path, since=since)
        yield from got[seen:]
        seen = len(got)
        time.sleep(poll)
