"""The database layer against real servers: why a connection fails, said at once and without the password."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpers import config, gauge_query, value
from wasp.companions.pgcluster import LocalCluster, free_port
from wasp.config.schema import parse_config
from wasp.exporter.db import ConnectError, TargetDB
from wasp.packs import make_engine

SECRET = "Sup3r-Secret-pw"
CONNECT_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def password_cluster(cluster_base: Path) -> Iterator[LocalCluster]:
    """A cluster that asks for a password (scram-sha-256), superuser password SECRET."""
    pwfile = cluster_base / f"pw-{uuid.uuid4().hex[:6]}"
    pwfile.write_text(SECRET + "\n")
    pwfile.chmod(0o644)
    c = LocalCluster(datadir=cluster_base / f"pw-{uuid.uuid4().hex[:8]}", port=free_port())
    c.init(auth="scram-sha-256", extra_args=[f"--pwfile={pwfile}"])
    c.start()
    yield c
    c.destroy()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a server that hangs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


async def probe(dsn: str) -> tuple[ConnectError, float]:
    db = TargetDB("t", dsn, connect_timeout=CONNECT_TIMEOUT)
    start = time.monotonic()
    try:
        await db.probe()
    except ConnectError as e:
        return e, time.monotonic() - start
    finally:
        await db.close()
    raise AssertionError("the connection succeeded")


def test_wrong_password_says_authentication_failed(password_cluster: LocalCluster) -> None:
    dsn = password_cluster.dsn(password="not-the-" + SECRET)
    err, took = asyncio.run(probe(dsn))
    assert err.cause == "auth"
    assert 'password authentication failed for user "postgres"' in str(err)
    assert SECRET not in str(err) and took < CONNECT_TIMEOUT
    # and the right one works
    info = asyncio.run(TargetDB("t", password_cluster.dsn(password=SECRET)).probe())
    assert info.user == "postgres"


def test_refused_port_fails_at_once() -> None:
    err, took = asyncio.run(probe(f"host=127.0.0.1 port={free_port()} user=u password={SECRET}"))
    assert err.cause == "refused" and "Connection refused" in str(err)
    assert took < 1.0 and SECRET not in str(err)


def test_unknown_host_is_dns() -> None:
    err, took = asyncio.run(probe(f"host=no-such-host.invalid user=u password={SECRET}"))
    assert err.cause == "dns" and "no-such-host.invalid" in str(err)
    assert took < CONNECT_TIMEOUT + 1 and SECRET not in str(err)


def test_server_that_never_answers_times_out(silent_port: int) -> None:
    err, took = asyncio.run(probe(f"host=127.0.0.1 port={silent_port} user=u password={SECRET}"))
    assert err.cause == "timeout"
    assert CONNECT_TIMEOUT - 0.5 < took < CONNECT_TIMEOUT + 2


def test_tls_required_by_the_client_is_tls(pg: LocalCluster) -> None:
    err, _ = asyncio.run(probe(pg.dsn(sslmode="require", password=SECRET)))
    assert err.cause == "tls" and "SSL" in str(err) and SECRET not in str(err)


def test_connection_limit_is_too_many_connections(pg: LocalCluster, dsn: str) -> None:
    role = f"wasp_full_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        err, _ = asyncio.run(probe(pg.dsn(user=role, password=SECRET)))
        assert err.cause == "too_many_connections" and "too many connections" in str(err)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


def test_missing_database_is_missing(pg: LocalCluster) -> None:
    err, _ = asyncio.run(probe(pg.dsn("no_such_db", password=SECRET)))
    assert err.cause == "missing" and 'database "no_such_db" does not exist' in str(err)


def test_engine_counts_the_cause_and_logs_it_without_the_password(
        password_cluster: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password: wasp_target_up 0, the reason counted, one clear line in the log."""
    caplog.set_level("INFO")
    cfg = parse_config(config(password_cluster.dsn(password="wrong-" + SECRET),
                              {"one": gauge_query("select 1 as n", "wasp_test_one")}))

    async def once() -> bytes:
        engine = make_engine(cfg)
        try:
            return (await engine.run_once()).text
        finally:
            await engine.stop()

    text = asyncio.run(once())
    assert value(text, "wasp_target_up", target="main") == 0
    assert value(text, "wasp_target_connection_errors_total", target="main", reason="auth") == 1
    assert value(text, "wasp_target_connection_errors_total", target="main", reason="refused") == 0
    assert value(text, "wasp_query_errors_total", query="one", reason="connection") == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("target main is down")]
    assert len(lines) == 1 and "(auth)" in lines[0]
    assert "password authentication failed" in lines[0]
    assert SECRET not in caplog.text and SECRET not in text.decode()
