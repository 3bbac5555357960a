"""The compose stack, checked without a Docker engine: every file it references exists,
and every configuration is checked by the tool that reads it (promtool, amtool, wasp
check-config, PgBouncer, PostgreSQL 15 with the init and replica scripts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from helpers import make_ca, require_tool
from wasp.companions.backup.ops import archive_command
from wasp.companions.pgcluster import (
    LocalCluster,
    chown_to_postgres,
    find_bindir,
    free_port,
    port_in_use,
    run_as_postgres,
)
from wasp.config.schema import load_config
from wasp.mixin import dashboards

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for v in svc.get("volumes", []):
        src, dst = v.split(":")[:2]
        out.append((src, dst))
    return out


def _service_mount(compose: dict[str, Any], service: str, target: str) -> Path:
    """The host path mounted at `target` in `service`."""
    for src, dst in _mounts(compose["services"][service]):
        if dst == target:
            assert src.startswith("."), f"{service}:{target} is not a bind mount"
            return (COMPOSE / src).resolve()
    raise AssertionError(f"{service} mounts nothing at {target}")


# -- the compose file ---------------------------------------------------------------------


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("primary", "replica1", "replica2", "pgbouncer", "exporter", "heartbeat",
                 "backup", "prometheus", "alertmanager", "grafana"):
        assert name in services, name
        svc = services[name]
        assert svc.get("restart") == "unless-stopped", name
    for name in ("primary", "replica1", "replica2", "pgbouncer", "exporter", "prometheus",
                 "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_referenced_files_exist(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for src, _ in _mounts(svc):
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name}: {src} does not exist"
        build = svc.get("build")
        if build:
            context = (COMPOSE / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file()
        entry = svc.get("entrypoint")
        if entry:
            script = entry[0].removeprefix("/usr/local/share/wasp/")
            assert os.access(COMPOSE / "init" / script, os.X_OK), f"{name}: {entry}"


def test_dockerfile_copies_existing_paths() -> None:
    context = REPO
    for line in (COMPOSE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for s in sources:
                assert (context / s).exists(), s
    ignore = (COMPOSE / "Dockerfile.dockerignore").read_text()
    for needed in ("pyproject.toml", "README.md", "exporter/", "compose/init/"):
        assert f"!{needed}" in ignore


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = {src for svc in compose["services"].values() for src, _ in _mounts(svc)
            if not src.startswith((".", "/"))}
    assert used == declared


def test_published_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    n = 0
    for name, svc in compose["services"].items():
        for p in svc.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), f"{name}: {p}"
            n += 1
    assert n >= 5


def _service_secrets(compose: dict[str, Any], service: str) -> dict[str, str]:
    """/run/secrets/<target> -> secret name, for one service."""
    out = {}
    for sec in compose["services"][service].get("secrets", []):
        name, target = (sec, sec) if isinstance(sec, str) else (sec["source"], sec.get("target", sec["source"]))
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    return out


def test_secrets_are_files_never_values(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    # interpolation only moves ports; no secret passes through the environment
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used and all(v.endswith("_PORT") for v in used), used
    example = dict(line.split("=", 1) for line in (COMPOSE / ".env.example").read_text()
                   .splitlines() if line and not line.startswith("#"))
    assert used == set(example)
    for name, svc in compose["services"].items():
        for k, v in (svc.get("environment") or {}).items():
            if re.search("PASSWORD|PASSPHRASE|DSN|SECRET|KEY", k):
                assert k.endswith("_FILE") and str(v).startswith("/run/secrets/"), f"{name}: {k}"
    for sname, sec in compose["secrets"].items():
        assert sec["file"].startswith("./secrets/"), sname
    declared = set(compose["secrets"])
    mounted = {s for svc in compose["services"] for s in _service_secrets(compose, svc).values()}
    assert mounted == declared, declared ^ mounted
    # every /run/secrets path a service's files or command name is mounted in that service
    readers = {"exporter": [COMPOSE / "wasp.yml"], "prometheus": [COMPOSE / "prometheus.yml"],
               "pgbouncer": [COMPOSE / "pgbouncer" / "pgbouncer.ini"]}
    for svc, files in readers.items():
        named = {m for f in files for m in re.findall(r"/run/secrets/[A-Za-z0-9_]+", f.read_text())}
        assert named and named <= set(_service_secrets(compose, svc)), (svc, named)
    for name, svc in compose["services"].items():
        named = set(re.findall(r"/run/secrets/[A-Za-z0-9_]+", json.dumps(svc)))
        assert named <= set(_service_secrets(compose, name)), (name, named)
    # the backup service: the repository passphrase, and the password and CA of its target
    cfg = load_config(COMPOSE / "wasp.yml")
    section = cfg.section("backup")
    target = cfg.target(section.target)
    needs = {section.passphrase.file, target.password_file,
             *re.findall(r"/run/secrets/[A-Za-z0-9_]+", target.dsn_inline or "")}
    assert needs <= set(_service_secrets(compose, "backup")), needs
    # nothing secret is committed: no secrets/ file, no .env, no password literal
    assert {".env", "secrets/"} <= set((COMPOSE / ".gitignore").read_text().split())
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "compose"], capture_output=True,
                             text=True, check=False).stdout.split()
    for rel in tracked:
        f = REPO / rel
        assert f.name != ".env" and not rel.startswith("compose/secrets/"), rel
        if f.is_file():
            body = f.read_text(errors="replace")
            assert "change-me" not in body and not re.search(r"password=[^$\s'\"]", body), f
            assert "$2b$" not in body and "PRIVATE KEY" not in body, f


def test_tls_and_scram_only(compose: dict[str, Any]) -> None:
    hba = [line.split() for line in (COMPOSE / "postgres" / "pg_hba.conf").read_text()
           .splitlines() if line.strip() and not line.startswith("#")]
    for rule in hba:
        kind, method = rule[0], rule[-1]
        if kind == "local":
            assert method == "peer"
        elif method != "reject":
            assert kind == "hostssl" and method == "scram-sha-256", rule
    assert hba[-1] == ["host", "all", "all", "all", "reject"]
    conf = (COMPOSE / "postgres" / "postgresql.conf").read_text()
    assert re.search(r"(?m)^ssl = on$", conf) and "password_encryption = scram-sha-256" in conf
    cfg = load_config(COMPOSE / "wasp.yml")
    for t in cfg.targets:
        assert t.password_file and t.password_file.startswith("/run/secrets/")
        assert t.dsn_inline and "password" not in t.dsn_inline
        if t.type == "postgres":
            assert "sslmode=verify-full" in t.dsn_inline and "sslrootcert=/run/secrets/" in t.dsn_inline
    assert cfg.server.web_config == "/run/secrets/wasp_web_config"
    assert cfg.server.unauthenticated_paths == ("/healthz",)
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "wasp")
    assert job["scheme"] == "https" and job["tls_config"]["ca_file"].startswith("/run/secrets/")
    assert job["basic_auth"]["password_file"].startswith("/run/secrets/")
    ini = (COMPOSE / "pgbouncer" / "pgbouncer.ini").read_text()
    assert "server_tls_sslmode = verify-full" in ini
    # the application's role is created without superuser rights
    init = (COMPOSE / "init" / "10-wasp-primary.sh").read_text()
    assert "CREATE ROLE app LOGIN NOSUPERUSER" in init


def test_docker_compose_config() -> None:
    """docker-compose (1.29, Debian's package) parses and validates the file with its own
    schema. It predates the top-level `name` key, the one line left out here."""
    exe = require_tool("docker-compose", " (apt-get install docker-compose; scripts/setup.sh)")
    text = "".join(line for line in COMPOSE_FILE.read_text().splitlines(keepends=True)
                   if not line.startswith("name: "))
    r = subprocess.run([exe, "-p", "wasp", "-f", "-", "config"], input=text, cwd=COMPOSE,
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    assert set(resolved["services"]) == set(yaml.safe_load(text)["services"])
    for name, sec in resolved["secrets"].items():
        assert Path(sec["file"]).parent == COMPOSE / "secrets", name
    # and a broken file is refused, so the check is real
    bad = text.replace("    restart: unless-stopped\n", "    restart: [unless-stopped]\n", 1)
    r = subprocess.run([exe, "-p", "wasp", "-f", "-", "config", "-q"], input=bad, cwd=COMPOSE,
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode != 0 and "restart" in r.stderr


def test_make_secrets(tmp_path: Path) -> None:
    secrets = _make_secrets(tmp_path / "secrets")
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    assert oct((secrets / "ca.key").stat().st_mode & 0o777) == "0o600"
    before = {f.name: f.read_bytes() for f in secrets.iterdir()}
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, sec in compose["secrets"].items():
        if name not in ("pagerduty_routing_key", "slack_warnings_webhook_url",
                        "slack_info_webhook_url", "watchdog_key"):
            assert (secrets / Path(sec["file"]).name).stat().st_size > 0, name
    # the web configuration is valid and its hash matches the scrape password
    web = _run_secrets(secrets, tmp_path / "run")
    from wasp.exporter.webconfig import load_web_config

    text = (web / "wasp_web_config").read_text().replace("/run/secrets/", f"{web}/")
    (web / "wasp_web_config").write_text(text)
    cfg = load_web_config(web / "wasp_web_config")
    assert cfg.tls is not None
    import bcrypt

    assert bcrypt.checkpw((web / "prometheus_scrape_password").read_bytes(),
                          cfg.users_map["prometheus"])
    # running it again keeps every file
    _make_secrets(secrets)
    assert {f.name: f.read_bytes() for f in secrets.iterdir()} == before


def _make_secrets(dest: Path) -> Path:
    r = subprocess.run(["bash", str(COMPOSE / "make-secrets.sh"), str(dest)],
                       env={**os.environ, "WASP_PYTHON": sys.executable}, capture_output=True,
                       text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    for f in dest.iterdir():
        if f.name.endswith("_password") or f.name == "wasp_backup_passphrase":
            assert f.read_text() not in r.stdout + r.stderr
    return dest


def _run_secrets(secrets: Path, run: Path) -> Path:
    """A folder laid out as /run/secrets in the containers (compose's secret names)."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    run.mkdir(parents=True, exist_ok=True)
    for name, sec in compose["secrets"].items():
        src = secrets / Path(sec["file"]).name
        if src.exists():
            shutil.copy(src, run / name)
    return run


# -- Prometheus, Alertmanager, Grafana ----------------------------------------------------


def _rule_globs() -> list[str]:
    conf = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    return list(conf.get("rule_files", []))


def test_prometheus_config_with_the_rules_mapped(tmp_path: Path, compose: dict[str, Any]) -> None:
    promtool = require_tool("promtool")
    # the container layout: the config's folder with ../rules mounted as rules/
    assert _service_mount(compose, "prometheus", "/etc/prometheus/prometheus.yml") == \
        COMPOSE / "prometheus.yml"
    assert _service_mount(compose, "prometheus", "/etc/prometheus/rules") == REPO / "rules"
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    rules = REPO / "rules"
    if rules.is_dir():
        (tmp_path / "rules").symlink_to(rules)
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # every rule file in rules/ is loaded, and nothing that is not one
    matched = {p.resolve() for g in _rule_globs() for p in tmp_path.glob(g)}
    rule_files = set()
    if rules.is_dir():
        for p in rules.glob("*.y*ml"):
            doc = yaml.safe_load(p.read_text()) or {}
            if isinstance(doc, dict) and "groups" in doc and "rule_files" not in doc:
                rule_files.add(p.resolve())
    assert matched == rule_files


def test_node_exporter_service_and_scrape_job(compose: dict[str, Any]) -> None:
    """node_exporter runs on the compose network, scraped as job `node`; its flags run as written."""
    svc = compose["services"]["node-exporter"]
    assert svc["restart"] == "unless-stopped" and svc["healthcheck"]["test"]
    assert not svc.get("ports")  # Prometheus reaches it on the compose network
    assert ("/", "/host") in _mounts(svc)
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["node"]["static_configs"][0]["targets"] == ["node-exporter:9100"]
    # the service's flags on the Debian binary set-up installs, with this host's / as the rootfs
    exe = require_tool("prometheus-node-exporter")
    args = [a.replace("$$", "$").replace("--path.rootfs=/host", "--path.rootfs=/")
            for a in svc["command"]]
    port = free_port()
    proc = subprocess.Popen([exe, *args, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "node_exporter never answered"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    mounts = set(re.findall(r'^node_filesystem_avail_bytes\{[^}]*mountpoint="([^"]*)"', text, re.M))
    assert mounts, "no filesystem series"
    assert not [m for m in mounts if re.match(r"^/(dev|proc|run|sys)($|/)", m)], mounts


def test_alertmanager_config(compose: dict[str, Any]) -> None:
    amtool = require_tool("amtool")
    conf = _service_mount(compose, "alertmanager", "/etc/alertmanager/wasp") / "alertmanager.yml"
    assert "--config.file=/etc/alertmanager/wasp/alertmanager.yml" in \
        compose["services"]["alertmanager"]["command"]
    r = subprocess.run([amtool, "check-config", str(conf)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_alertmanager_secrets(compose: dict[str, Any]) -> None:
    """Every credential file the Alertmanager configuration names is a docker secret mounted
    at that path, read from a git-ignored file under compose/secrets/."""
    conf_path = _service_mount(compose, "alertmanager", "/etc/alertmanager/wasp") / "alertmanager.yml"
    named = set(re.findall(r"_file: (\S+)", conf_path.read_text()))
    mounted = {s["target"]: s["source"] for s in compose["services"]["alertmanager"]
               .get("secrets", [])}
    assert named == set(mounted)
    for source in mounted.values():
        file = compose["secrets"][source]["file"]
        assert file.startswith("./secrets/"), file
    assert "secrets/" in (COMPOSE / ".gitignore").read_text().split()
    readme = (COMPOSE / "README.md").read_text()
    for source in mounted.values():
        assert f"secrets/{source}" in readme


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    prov = _service_mount(compose, "grafana", "/etc/grafana/provisioning")
    ds = yaml.safe_load((prov / "datasources" / "wasp.yml").read_text())["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"] and ds[0]["isDefault"]
    assert ds[0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((prov / "dashboards" / "wasp.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    host_dir = _service_mount(compose, "grafana", path)
    assert host_dir == REPO / "dashboards"
    generated = dashboards.build_all()
    assert sorted(p.name for p in host_dir.glob("*.json")) == sorted(generated)
    for name in generated:
        model = json.loads((host_dir / name).read_text())
        assert model["uid"] and model["panels"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (host_dir / Path(home).relative_to(path)).is_file()


# -- the exporter's configuration ---------------------------------------------------------


def test_wasp_check_config(compose: dict[str, Any]) -> None:
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "wasp", "check-config",
                        str(COMPOSE / "wasp.yml")], capture_output=True, text=True, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr
    cfg = load_config(COMPOSE / "wasp.yml")
    assert {t.name: t.type for t in cfg.targets} == {
        "primary": "postgres", "replica1": "postgres", "replica2": "postgres",
        "pgbouncer": "pgbouncer"}
    # the exporter service sets exactly the variables the configuration names
    # the exporter service mounts every password file the configuration names
    assert {t.password_file for t in cfg.targets} <= set(_service_secrets(compose, "exporter"))
    assert _service_mount(compose, "exporter", "/etc/wasp/wasp.yml") == COMPOSE / "wasp.yml"
    assert _service_mount(compose, "backup", "/etc/wasp/wasp.yml") == COMPOSE / "wasp.yml"
    # the app pack only on the primary: replicas would count every booking again
    assert [t.name for t in cfg.targets if "app" in t.packs] == ["primary"]


def test_backup_section_matches_the_stack(compose: dict[str, Any]) -> None:
    cfg = load_config(COMPOSE / "wasp.yml")
    s = cfg.section("backup")
    assert s is not None
    # the archive_command in postgresql.conf is what `wasp backup init` would set: no restart
    conf = (COMPOSE / "postgres" / "postgresql.conf").read_text()
    m = re.search(r"^archive_command = '(.*)'$", conf, re.M)
    assert m and m.group(1) == archive_command(s)
    assert re.search(r"^archive_mode = on$", conf, re.M)
    backup = compose["services"]["backup"]
    mounts = dict((dst, src) for src, dst in _mounts(backup))
    primary = dict((dst, src) for src, dst in _mounts(compose["services"]["primary"]))
    for path in (s.pg_path, s.config_dir, s.spool_path, s.repo.path, "/var/run/postgresql"):
        assert mounts[path] == primary[path], path
    assert mounts[cfg.server.status_dir] == "wasp-status"
    exporter = dict((dst, src) for src, dst in _mounts(compose["services"]["exporter"]))
    assert exporter[cfg.server.status_dir] == "wasp-status"
    assert "schedule" in " ".join(backup["command"])
    assert (s.schedule.full, s.schedule.incr, s.schedule.drill) == \
        ("0 1 * * *", "0 * * * *", "30 3 * * 0")


# -- PgBouncer ----------------------------------------------------------------------------


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def test_pgbouncer_ini_and_entrypoint(cluster_base: Path) -> None:
    """The committed pgbouncer.ini with only address, port and file paths moved to a
    scratch folder, started by the committed entrypoint; the console user can SHOW."""
    work = cluster_base / f"pgbouncer-compose-{os.getpid()}"
    work.mkdir()
    port = free_port()
    ini = (COMPOSE / "pgbouncer" / "pgbouncer.ini").read_text()
    ini = re.sub(r"(?m)^listen_addr = .*$", "listen_addr = 127.0.0.1", ini)
    ini = re.sub(r"(?m)^listen_port = .*$", f"listen_port = {port}", ini)
    ini = re.sub(r"(?m)^auth_file = .*$", f"auth_file = {work}/userlist.txt", ini)
    run = work / "run-secrets"
    run.mkdir()
    (run / "app_password").write_text('a"pp pw')
    (run / "pgbouncer_stats_password").write_text("stats-pw")
    make_ca(run, "wasp_ca")
    (run / "wasp_ca_crt").write_bytes((run / "wasp_ca.crt").read_bytes())
    ini = ini.replace("/run/secrets/", f"{run}/")
    (work / "pgbouncer.ini").write_text(ini)
    chown_to_postgres(work)
    env = {"PATH": f"{Path(PGBOUNCER).parent}:/usr/bin:/bin", "WASP_SECRETS_DIR": str(run),
           "PGBOUNCER_INI": str(work / "pgbouncer.ini"),
           "PGBOUNCER_AUTH_FILE": str(work / "userlist.txt")}
    proc = _popen_as_postgres([str(COMPOSE / "init" / "pgbouncer-entrypoint.sh")], env,
                              work / "out.log")
    try:
        _wait_port(port, proc, work / "out.log")
        assert oct((work / "userlist.txt").stat().st_mode & 0o777) == "0o600"
        dsn = f"host=127.0.0.1 port={port} dbname=pgbouncer user=wasp_stats password=stats-pw"
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("SHOW VERSION")
            dbs = {r[0] for r in conn.execute("SHOW DATABASES").fetchall()}
            assert "salon" in dbs
            with pytest.raises(psycopg.Error):
                conn.execute("PAUSE salon")  # a stats user, not an admin
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn.replace("stats-pw", "wrong"), autocommit=True).close()
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


# -- PostgreSQL: the configuration, the init script and a replica -------------------------


def _popen_as_postgres(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    import pwd

    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def drop() -> None:
        os.setsid()
        if user is not None:
            os.setgid(user.pw_gid)
            os.initgroups(user.pw_name, user.pw_gid)
            os.setuid(user.pw_uid)

    if user is not None:
        env = {**env, "HOME": user.pw_dir, "USER": "postgres", "LOGNAME": "postgres"}
        chown_to_postgres(log)
    return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=drop, cwd="/")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"exited {proc.poll()} / not listening:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # PostgreSQL: fast shutdown; PgBouncer: safe shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _test_conf(dest: Path, sockets: Path, tls: Path) -> Path:
    """compose's postgresql.conf and pg_hba.conf, with only file paths moved."""
    shutil.copy(COMPOSE / "postgres" / "pg_hba.conf", dest / "pg_hba.conf")
    conf = (COMPOSE / "postgres" / "postgresql.conf").read_text()
    conf = conf.replace("'/etc/wasp/pg_hba.conf'", f"'{dest / 'pg_hba.conf'}'")
    conf = conf.replace("'/var/run/postgresql'", f"'{sockets}'")
    conf = conf.replace("'/var/lib/postgresql/tls/", f"'{tls}/")
    (dest / "postgresql.conf").write_text(conf)
    chown_to_postgres(dest)
    return dest / "postgresql.conf"


# settings the test cannot keep: a loopback port, memory for a shared test machine,
# and no archiving (there is no pgBackRest stanza here)
TEST_OVERRIDES = ("-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=32MB",
                  "-c", "effective_cache_size=128MB", "-c", "archive_mode=off")


@pytest.fixture(scope="module")
def stack_secrets(cluster_base: Path) -> Path:
    """compose/make-secrets.sh's files, laid out as /run/secrets (readable by postgres)."""
    secrets = _make_secrets(cluster_base / "compose-secrets")
    return _run_secrets(secrets, cluster_base / "compose-run-secrets")


@pytest.fixture(scope="module")
def stack_pg(make_cluster: Any, cluster_base: Path, stack_secrets: Path
             ) -> Iterator[tuple[LocalCluster, Path]]:
    """A PostgreSQL 15 started with compose's postgresql.conf and pg_hba.conf (TLS with the
    certificate compose/init/tls-entrypoint.sh installs), initialised by compose's init
    script."""
    c: LocalCluster = make_cluster("compose-primary", start=False)
    etc = cluster_base / "compose-etc"
    etc.mkdir()
    tls = cluster_base / "compose-tls"
    r = subprocess.run([str(COMPOSE / "init" / "tls-entrypoint.sh"), "true"], check=False,
                       env={**os.environ, "WASP_SECRETS_DIR": str(stack_secrets),
                            "PG_TLS_DIR": str(tls)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert oct((tls / "server.key").stat().st_mode & 0o777) == "0o600"
    conf = _test_conf(etc, c.socket_dir, tls)
    opts = " ".join([f"-c config_file={conf}", f"-c port={c.port}",
                     *(f"-c {x}" for x in TEST_OVERRIDES[1::2])])
    log = cluster_base / "compose-primary.log"
    log.touch()
    chown_to_postgres(log)
    c.pg_ctl("-l", str(log), "-w", "-t", "60", "-o", opts, "start", timeout=90)
    yield c, conf
    c.pg_ctl("-m", "immediate", "stop", check=False)


def test_postgresql_conf_and_hba_load(stack_pg: tuple[LocalCluster, Path]) -> None:
    c, _ = stack_pg
    out = run_as_postgres([find_bindir() / "psql", "-XAtq", "-h", str(c.socket_dir), "-p",
                           str(c.port), "-d", "postgres", "-c",
                           "SELECT current_setting('wal_level'), current_setting('hba_file'), "
                           "current_setting('shared_preload_libraries'), "
                           "(SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL)"],
                          timeout=30).stdout.strip()
    wal_level, hba, preload, errors = out.split("|")
    assert wal_level == "replica" and hba.endswith("compose-etc/pg_hba.conf")
    assert preload == "pg_stat_statements" and errors == "0"


def test_init_script_and_replica_entrypoint(stack_pg: tuple[LocalCluster, Path],
                                            stack_secrets: Path, cluster_base: Path) -> None:
    """The primary's init script creates the roles, database and heartbeat; the replica
    entrypoint takes a base backup through its own slot and streams."""
    c, conf = stack_pg
    bindir = find_bindir()
    venv_bin = Path(sys.executable).parent
    run = stack_secrets
    pw = {name: (run / name).read_text() for name in (
        "app_password", "wasp_monitor_password", "wasp_heartbeat_password")}
    # In the image the script runs as the postgres OS user on the Unix socket (peer). Here
    # the test's Python is not readable by that user, so the script runs as this user over
    # loopback TCP (TLS) with a superuser password: the same script, another connection.
    run_as_postgres([bindir / "psql", "-XAtq", "-h", str(c.socket_dir), "-p", str(c.port),
                     "-d", "postgres", "-c", "ALTER ROLE postgres PASSWORD 'super-pw'"],
                    timeout=30)
    env = {"PATH": f"{bindir}:{venv_bin}:/usr/bin:/bin", "POSTGRES_USER": "postgres",
           "PGHOST": "127.0.0.1", "PGPORT": str(c.port), "PGPASSWORD": "super-pw",
           "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(run / "wasp_ca_crt"),
           "WASP_PYTHON": sys.executable, "HOME": str(cluster_base),
           "WASP_SECRETS_DIR": str(run), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(["bash", str(COMPOSE / "init" / "10-wasp-primary.sh")], env=env,
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

    for secret in pw.values():
        assert secret not in r.stdout + r.stderr
    tls = f"sslmode=verify-full sslrootcert={run / 'wasp_ca_crt'}"
    tcp = f"host=127.0.0.1 port={c.port} dbname=salon {tls}"
    monitor = f"{tcp} user=wasp_monitor password={pw['wasp_monitor_password']}"
    with psycopg.connect(monitor) as conn:
        assert conn.execute("SELECT pg_has_role('pg_monitor', 'MEMBER')").fetchone() == (True,)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SELECT count(*) FROM wasp.heartbeat").fetchone() == (1,)
    with psycopg.connect(f"{tcp} user=app password={pw['app_password']}") as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False,)
        conn.execute("CREATE TABLE salons (id int)")  # as a migration would
        conn.commit()
    # plain text is refused by pg_hba.conf, whatever the password
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(monitor.replace(tls, "sslmode=disable")).close()
    with psycopg.connect(monitor) as conn:
        conn.execute("SELECT count(*) FROM salons")  # default privileges reach it
        assert conn.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    # the heartbeat service's command, with its password from the environment
    hb = subprocess.run([sys.executable, "-m", "wasp", "replica", "heartbeat", "--count", "1",
                         "--dsn", f"{tcp} user=wasp_heartbeat"],
                        env={**os.environ, "PGPASSWORD": pw["wasp_heartbeat_password"]},
                        capture_output=True,
                        text=True, timeout=60, check=False)
    assert hb.returncode == 0, hb.stderr

    # a replica, exactly as the compose service builds it
    parent = cluster_base / "compose-replica-parent"
    parent.mkdir()
    chown_to_postgres(parent)
    rdir = parent / "data"
    rport = free_port()
    rsock = cluster_base / "compose-replica-sock"
    rsock.mkdir()
    chown_to_postgres(rsock)
    renv = {"PATH": env["PATH"], "REPLICA_NAME": "replica1", "PRIMARY_HOST": "127.0.0.1",
            "PRIMARY_PORT": str(c.port), "PGDATA": str(rdir), "PG_CONFIG_FILE": str(conf),
            "WASP_SECRETS_DIR": str(run)}
    log = cluster_base / "compose-replica1.log"
    proc = _popen_as_postgres(
        [str(COMPOSE / "init" / "replica-entrypoint.sh"), "-c", f"port={rport}",
         "-c", f"unix_socket_directories={rsock}", *TEST_OVERRIDES], renv, log)
    try:
        _wait_port(rport, proc, log, timeout=120)
        deadline = time.monotonic() + 60
        with psycopg.connect(monitor.replace("dbname=salon", "dbname=postgres"),
                             autocommit=True) as conn:
            while True:
                row = conn.execute("SELECT application_name, state FROM pg_stat_replication"
                                   ).fetchone()
                if row == ("replica1", "streaming") or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert row == ("replica1", "streaming"), log.read_text()[-3000:]
            slot = conn.execute("SELECT active FROM pg_replication_slots "
                                "WHERE slot_name = 'replica1'").fetchone()
            assert slot == (True,)
        auto = (rdir / "postgresql.auto.conf").read_text()
        assert "password" not in auto and "passfile=" in auto
        assert oct((rdir / "wasp_replication.pgpass").stat().st_mode & 0o777) == "0o600"
        with psycopg.connect(monitor.replace(f"port={c.port}", f"port={rport}")) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        _stop(proc)

