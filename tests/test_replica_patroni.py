"""The replica pack against a real Patroni cluster (etcd as its DCS), when both are installed.

Debian's `patroni` and `etcd-server` packages bring them; without them the test
is skipped with the reason. Two members: a leader and a streaming replica.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasp.companions.pgcluster import chown_to_postgres, find_bindir, free_port
from wasp.config.replica import PatroniSettings
from wasp.exporter.collector import CollectContext
from wasp.model import Family
from wasp.packs.replica import PatroniCollector

PATRONI = shutil.which("patroni")
ETCD = shutil.which("etcd")



def _as_postgres() -> Any:
    if os.geteuid() != 0:
        return None
    u = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(u.pw_gid)
        os.initgroups(u.pw_name, u.pw_gid)
        os.setuid(u.pw_uid)

    return drop


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as r:
        return yaml.safe_load(r.read())


def _wait(what: str, check: Any, timeout: float, procs: list[subprocess.Popen[bytes]]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.args!r} exited {p.returncode} while waiting for {what}")
        try:
            v = check()
            if v:
                return v
        except (OSError, LookupError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _member_config(base: Path, name: str, etcd_port: int, api_port: int, pg_port: int
                   ) -> Path:
    d = base / name
    cfg = {
        "scope": "wasp",
        "name": name,
        "log": {"level": "WARNING"},
        "restapi": {"listen": f"127.0.0.1:{api_port}", "connect_address": f"127.0.0.1:{api_port}"},
        "etcd3": {"hosts": [f"127.0.0.1:{etcd_port}"]},
        "bootstrap": {
            "dcs": {"ttl": 10, "loop_wait": 1, "retry_timeout": 5,
                    "postgresql": {"parameters": {"wal_level": "replica", "hot_standby": "on",
                                                  "fsync": "off", "max_wal_senders": 5}}},
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}",
            "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": str(d / "data"),
            "bin_dir": str(find_bindir()),
            "pgpass": str(d / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "patroni-su"},
                "replication": {"username": "replicator", "password": "patroni-rep"},
            },
            "parameters": {"unix_socket_directories": str(d), "shared_buffers": "32MB"},
            "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 md5",
                       "host replication replicator 127.0.0.1/32 md5"],
        },
    }
    d.mkdir(mode=0o700)
    path = d / "patroni.yml"
    path.write_text(yaml.safe_dump(cfg))
    chown_to_postgres(d)
    return path


@pytest.fixture(scope="module")
def patroni_cluster(cluster_base: Path) -> Iterator[dict[str, Any]]:
    base = cluster_base / "patroni"
    base.mkdir()
    base.chmod(0o755)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    etcd_port, peer_port = free_port(), free_port()
    etcd_dir = base / "etcd"
    etcd_dir.mkdir()
    log = open(base / "etcd.log", "wb")  # noqa: SIM115 - closed below
    logs.append(log)
    assert ETCD is not None and PATRONI is not None
    procs.append(subprocess.Popen(
        [ETCD, "--name", "e1", "--data-dir", str(etcd_dir),
         "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"e1=http://127.0.0.1:{peer_port}"],
        stdout=log, stderr=subprocess.STDOUT))
    members = {}
    try:
        _wait("etcd", lambda: _get(f"http://127.0.0.1:{etcd_port}/health").get("health") == "true",
              30, procs)
        for name in ("pg1", "pg2"):
            api, pg = free_port(), free_port()
            conf = _member_config(base, name, etcd_port, api, pg)
            log = open(base / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env["HOME"] = str(conf.parent)
            procs.append(subprocess.Popen([PATRONI, str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                          preexec_fn=_as_postgres(), env=env, cwd=conf.parent))
            members[name] = {"api": f"http://127.0.0.1:{api}", "pg_port": pg}
            if name == "pg1":
                _wait("pg1 to lead", lambda: _get(f"{members['pg1']['api']}/cluster")["members"][0]
                      .get("role") in ("leader", "master"), 90, procs)

        def both_running() -> bool:
            ms = _get(f"{members['pg1']['api']}/cluster")["members"]
            return len(ms) == 2 and all(m.get("state") in ("running", "streaming") for m in ms)

        _wait("pg2 to replicate", both_running, 90, procs)
        yield {"members": members, "base": base}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _by_name(fams: list[Family]) -> dict[str, Family]:
    return {f.name: f for f in fams}


async def test_patroni_cluster_members_roles_lag_timeline(patroni_cluster: dict[str, Any],
                                                         tmp_path: Path) -> None:
    m = patroni_cluster["members"]
    dead = f"http://127.0.0.1:{free_port()}"
    # the first URL is down: the collector moves on to the next one
    c = PatroniCollector(PatroniSettings(urls=(dead, m["pg2"]["api"]), timeout=2.0,
                                         interval=5.0, name="wasp"))
    # a member just demoted by the switchover test (random order) reports its lag as
    # "unknown" until it streams again, and the collector leaves it out: wait for both
    deadline = time.monotonic() + 60
    while True:
        fams = _by_name(await c.collect(CollectContext(now=time.time(), status_dir=tmp_path)))
        if len(fams["wasp_patroni_member_lag_bytes"].samples) == 2:
            break
        assert time.monotonic() < deadline, fams["wasp_patroni_member_lag_bytes"]
        await asyncio.sleep(0.5)
    assert fams["wasp_patroni_members"].samples == ((("wasp",), 2.0),)
    assert fams["wasp_patroni_paused"].samples == ((("wasp",), 0.0),)
    # which member leads depends on whether the switchover test ran first (random order):
    # Patroni's own /cluster says, and the collector must agree with it
    with urllib.request.urlopen(f"{m['pg1']['api']}/cluster", timeout=10) as r:
        cluster = json.load(r)
    lead = next(x["name"] for x in cluster["members"] if x["role"] in ("leader", "master"))
    other = "pg2" if lead == "pg1" else "pg1"
    tl = float(next(x["timeline"] for x in cluster["members"] if x["name"] == lead))
    leader = dict(fams["wasp_patroni_member_leader"].samples)
    assert leader == {("wasp", lead): 1.0, ("wasp", other): 0.0}
    assert dict(fams["wasp_patroni_member_running"].samples) == {("wasp", "pg1"): 1.0,
                                                                  ("wasp", "pg2"): 1.0}
    assert dict(fams["wasp_patroni_member_timeline_id"].samples) == {("wasp", "pg1"): tl,
                                                                      ("wasp", "pg2"): tl}
    lag = dict(fams["wasp_patroni_member_lag_bytes"].samples)
    assert lag[("wasp", lead)] == 0 and 0 <= lag[("wasp", other)] < 2**20
    info = {s[0][1]: s[0] for s in fams["wasp_patroni_member_info"].samples}
    assert info[lead][2] in ("leader", "master")
    assert info[other][2] in ("replica", "sync_standby")
    assert info["pg2"][5] == str(m["pg2"]["pg_port"])


async def test_patroni_switchover_shows_new_leader_and_timeline(
        patroni_cluster: dict[str, Any], tmp_path: Path) -> None:
    m = patroni_cluster["members"]
    body = json.dumps({"leader": "pg1", "candidate": "pg2"}).encode()
    req = urllib.request.Request(f"{m['pg1']['api']}/switchover", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200

    c = PatroniCollector(PatroniSettings(urls=(m["pg1"]["api"], m["pg2"]["api"]), timeout=2.0,
                                         interval=5.0, name="wasp"))

    async def settled() -> dict[str, Family] | None:
        fams = _by_name(await c.collect(CollectContext(now=time.time(), status_dir=tmp_path)))
        ok = (dict(fams["wasp_patroni_member_leader"].samples).get(("wasp", "pg2")) == 1.0
              and set(dict(fams["wasp_patroni_member_running"].samples).values()) == {1.0}
              and set(dict(fams["wasp_patroni_member_timeline_id"].samples).values()) == {2.0}
              and len(fams["wasp_patroni_member_lag_bytes"].samples) == 2)
        return fams if ok else None

    deadline = time.monotonic() + 60
    while (fams := await settled()) is None:
        assert time.monotonic() < deadline, "the switchover did not settle"
        await asyncio.sleep(0.5)
    assert dict(fams["wasp_patroni_member_leader"].samples)[("wasp", "pg1")] == 0.0
