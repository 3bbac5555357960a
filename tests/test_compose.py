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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from helpers import require_tool
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
DUMMY_DSNS = {"WASP_PRIMARY_DSN": "host=x", "WASP_REPLICA1_DSN": "host=x",
              "WASP_REPLICA2_DSN": "host=x", "WASP_PGBOUNCER_DSN": "host=x"}


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


def test_secrets_only_from_the_uncommitted_env_file(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = dict(line.split("=", 1) for line in (COMPOSE / ".env.example").read_text()
                   .splitlines() if line and not line.startswith("#"))
    assert used <= set(example), used - set(example)
    assert ".env" in (COMPOSE / ".gitignore").read_text().split()
    for name, svc in compose["services"].items():
        for k, v in (svc.get("environment") or {}).items():
            if re.search("PASSWORD|PASSPHRASE|DSN", k):
                assert "${" in str(v) or "password" not in str(v), f"{name}: {k} holds a secret"
    # no password literal in any committed file (local .env and secrets/ are not committed)
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "compose"], capture_output=True,
                             text=True, check=False).stdout.split()
    for rel in tracked:
        f = REPO / rel
        assert f.name not in (".env",) and not rel.startswith("compose/secrets/"), rel
        if f.is_file() and f.name != ".env.example":
            assert "change-me" not in f.read_text(errors="replace"), f


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("the docker CLI is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin: "
                    + (probe.stderr or probe.stdout).strip().splitlines()[0])
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "--env-file",
                        str(COMPOSE / ".env.example"), "config", "--quiet"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


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
    env = {**os.environ, **DUMMY_DSNS}
    r = subprocess.run([sys.executable, "-m", "wasp", "check-config",
                        str(COMPOSE / "wasp.yml")], capture_output=True, text=True, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr
    cfg = load_config(COMPOSE / "wasp.yml")
    assert {t.name: t.type for t in cfg.targets} == {
        "primary": "postgres", "replica1": "postgres", "replica2": "postgres",
        "pgbouncer": "pgbouncer"}
    # the exporter service sets exactly the variables the configuration names
    exporter_env = set(compose["services"]["exporter"]["environment"])
    assert {t.dsn_env for t in cfg.targets} <= exporter_env
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
    (work / "pgbouncer.ini").write_text(ini)
    chown_to_postgres(work)
    env = {"PATH": f"{Path(PGBOUNCER).parent}:/usr/bin:/bin", "APP_PASSWORD": 'a"pp pw',
           "PGBOUNCER_STATS_PASSWORD": "stats-pw", "PGBOUNCER_INI": str(work / "pgbouncer.ini"),
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


def _test_conf(dest: Path, sockets: Path) -> Path:
    """compose's postgresql.conf and pg_hba.conf, with only file paths moved."""
    shutil.copy(COMPOSE / "postgres" / "pg_hba.conf", dest / "pg_hba.conf")
    conf = (COMPOSE / "postgres" / "postgresql.conf").read_text()
    conf = conf.replace("'/etc/wasp/pg_hba.conf'", f"'{dest / 'pg_hba.conf'}'")
    conf = conf.replace("'/var/run/postgresql'", f"'{sockets}'")
    (dest / "postgresql.conf").write_text(conf)
    chown_to_postgres(dest)
    return dest / "postgresql.conf"


# settings the test cannot keep: a loopback port, memory for a shared test machine,
# and no archiving (there is no pgBackRest stanza here)
TEST_OVERRIDES = ("-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=32MB",
                  "-c", "effective_cache_size=128MB", "-c", "archive_mode=off")


@pytest.fixture(scope="module")
def stack_pg(make_cluster: Any, cluster_base: Path) -> Iterator[tuple[LocalCluster, Path]]:
    """A PostgreSQL 15 started with compose's postgresql.conf and pg_hba.conf, initialised
    by compose's init script."""
    c: LocalCluster = make_cluster("compose-primary", start=False)
    etc = cluster_base / "compose-etc"
    etc.mkdir()
    conf = _test_conf(etc, c.socket_dir)
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
                                            cluster_base: Path) -> None:
    """The primary's init script creates the roles, database and heartbeat; the replica
    entrypoint takes a base backup through its own slot and streams."""
    c, conf = stack_pg
    bindir = find_bindir()
    venv_bin = Path(sys.executable).parent
    pw = {"APP_PASSWORD": "app-pw", "WASP_MONITOR_PASSWORD": "monitor-pw",
          "WASP_REPLICATION_PASSWORD": "repl-pw", "WASP_HEARTBEAT_PASSWORD": "hb-pw"}
    # In the image the script runs as the postgres OS user on the Unix socket (peer). Here
    # the test's Python is not readable by that user, so the script runs as this user over
    # loopback TCP with a superuser password: the same script, another connection.
    run_as_postgres([bindir / "psql", "-XAtq", "-h", str(c.socket_dir), "-p", str(c.port),
                     "-d", "postgres", "-c", "ALTER ROLE postgres PASSWORD 'super-pw'"],
                    timeout=30)
    env = {"PATH": f"{bindir}:{venv_bin}:/usr/bin:/bin", "POSTGRES_USER": "postgres",
           "PGHOST": "127.0.0.1", "PGPORT": str(c.port), "PGPASSWORD": "super-pw",
           "WASP_PYTHON": sys.executable, "HOME": str(cluster_base), **pw}
    r = subprocess.run(["bash", str(COMPOSE / "init" / "10-wasp-primary.sh")], env=env,
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

    tcp = f"host=127.0.0.1 port={c.port} dbname=salon"
    with psycopg.connect(f"{tcp} user=wasp_monitor password=monitor-pw") as conn:
        assert conn.execute("SELECT pg_has_role('pg_monitor', 'MEMBER')").fetchone() == (True,)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SELECT count(*) FROM wasp.heartbeat").fetchone() == (1,)
    with psycopg.connect(f"{tcp} user=app password=app-pw") as conn:
        conn.execute("CREATE TABLE salons (id int)")  # as a migration would
        conn.commit()
    with psycopg.connect(f"{tcp} user=wasp_monitor password=monitor-pw") as conn:
        conn.execute("SELECT count(*) FROM salons")  # default privileges reach it
        assert conn.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    # the heartbeat service's command, with its password from the environment
    hb = subprocess.run([sys.executable, "-m", "wasp", "replica", "heartbeat", "--count", "1",
                         "--dsn", f"{tcp} user=wasp_heartbeat"],
                        env={**os.environ, "PGPASSWORD": "hb-pw"}, capture_output=True,
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
            "WASP_REPLICATION_PASSWORD": "repl-pw"}
    log = cluster_base / "compose-replica1.log"
    proc = _popen_as_postgres(
        [str(COMPOSE / "init" / "replica-entrypoint.sh"), "-c", f"port={rport}",
         "-c", f"unix_socket_directories={rsock}", *TEST_OVERRIDES], renv, log)
    try:
        _wait_port(rport, proc, log, timeout=120)
        deadline = time.monotonic() + 60
        with psycopg.connect(f"host=127.0.0.1 port={c.port} dbname=postgres "
                             "user=wasp_monitor password=monitor-pw", autocommit=True) as conn:
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
        with psycopg.connect(f"host=127.0.0.1 port={rport} dbname=salon "
                             "user=wasp_monitor password=monitor-pw") as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        _stop(proc)

