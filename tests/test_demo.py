"""`wasp demo` end to end: cluster, data, live writes, exporter, Prometheus scraping it; Ctrl-C stops all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import require_tool, samples, value
from wasp.companions.pgcluster import free_port, port_in_use


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return bytes(r.read())


def test_demo_runs_and_stops_what_it_started(cluster_base: Path) -> None:
    home = cluster_base / "demo"
    port, pg_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wasp", "demo", "--minimal", "--data-dir", str(home), "--days", "0.3",
         "--scale", "0.05", "--salons", "200", "--listen", f"127.0.0.1:{port}",
         "--pg-port", str(pg_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if b"ready" in get(base + "/readyz"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo exporter never became ready"
            time.sleep(0.5)
        text = get(base + "/metrics")
        assert value(text, "wasp_target_up", target="main") == 1
        assert sum(v for _, v in samples(text, "wasp_app_salons")) == 200
        # set-up installs Prometheus, so the demo must start it and say where
        require_tool("prometheus")
        cfg = (home / "prometheus" / "prometheus.yml").read_text()
        assert f"127.0.0.1:{port}" in cfg
        prom_url = _prometheus_url(proc)
        assert prom_url, "the demo banner has no Prometheus URL"
        if prom_url:
            deadline = time.monotonic() + 60
            r: dict[str, object] = {}
            while True:
                try:
                    r = json.loads(get(prom_url + "api/v1/query?query=up%7Bjob%3D%22wasp%22%7D"))
                except OSError:
                    r = {"data": {"result": []}}
                res = r["data"]["result"]  # type: ignore[index]
                if res and res[0]["value"][1] == "1":
                    break
                assert time.monotonic() < deadline, f"Prometheus never scraped the exporter: {r}"
                time.sleep(1)
            # the generated alert and recording rules are loaded
            groups = json.loads(get(prom_url + "api/v1/rules"))["data"]["groups"]
            assert len(groups) >= 2, groups
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "stopped PostgreSQL" in out
    assert not port_in_use(pg_port) and not port_in_use(port)
    if prom_url:
        assert "stopped prometheus" in out
        assert not port_in_use(int(prom_url.rsplit(":", 1)[1].strip("/")))


def _prometheus_url(proc: subprocess.Popen[str]) -> str | None:
    """Read the demo's banner lines until the Prometheus URL shows up."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip().startswith("Prometheus"):
            return line.split()[-1]
        if "Press Ctrl-C" in line:
            return None
    pytest.fail("the demo banner never came")


def _banner(proc: subprocess.Popen[str], timeout: float = 400) -> list[str]:
    """The lines of the full demo's output up to the end of its banner."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Press Ctrl-C" in line:
            return lines
    pytest.fail("the demo banner never came:\n" + "\n".join(lines[-40:]))


@pytest.mark.slow
def test_full_demo_banner_actions_ctrl_c_and_reuse(cluster_base: Path) -> None:
    """`wasp demo`: every part in the banner, the actions work, Ctrl-C frees every port, a rerun reuses."""
    home = cluster_base / "full-demo"
    argv = [sys.executable, "-m", "wasp", "demo", "--data-dir", str(home), "--days", "0.2",
            "--scale", "0.05", "--salons", "50", "--listen", f"127.0.0.1:{free_port()}"]
    for run in ("new", "reused"):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = _banner(proc)
            state = json.loads((home / "state.json").read_text())
            banner = "\n".join(lines[-20:])
            assert f"wasp demo is running ({run}" in banner, banner
            for part in ("primary", "replica1", "replica2", "PgBouncer", "notifications",
                         "Alertmanager", "exporter", "Prometheus"):
                assert f"  {part} " in banner, (part, banner)
            assert "skipped" not in banner, banner
            cli = [sys.executable, "-m", "wasp", "demo", "--data-dir", str(home)]
            out = subprocess.run([*cli, "notifications"], capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            out = subprocess.run([*cli, "break", "webhooks", "--no-wait"], capture_output=True,
                                 text=True, timeout=60)
            assert out.returncode == 0 and "WaspWebhooksSilent [page]" in out.stdout, out
            assert (home / "drills" / "webhooks").exists()
            out = subprocess.run([*cli, "heal", "webhooks", "--no-wait"], capture_output=True,
                                 text=True, timeout=60)
            assert out.returncode == 0 and not (home / "drills" / "webhooks").exists(), out
            bad = subprocess.run([*cli, "break", "nosuch"], capture_output=True, text=True,
                                 timeout=60)
            assert bad.returncode == 2 and "replica" in bad.stderr
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, rest[-3000:]
        for name, port in state["ports"].items():
            assert not port_in_use(port), f"{name} still listens on {port} after Ctrl-C"
        assert not (home / "state.json").exists()
