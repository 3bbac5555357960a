"""The synthetic application data: schema variants, history loader, live writer, CLI."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pytest

from wasp.demo.datagen import (
    TABLES,
    GenerateError,
    create_schema,
    generate,
    inspect_schema,
    run_live,
)
from wasp.demo.datagen import cli as datagen_cli
from wasp.demo.datagen.profile import (
    AI_MODELS,
    BOOKING_STATUSES,
    CONVERSATION_STATUSES,
    DAILY,
    MESSAGE_DIRECTIONS,
    MESSAGE_STATUSES,
    MESSAGE_TYPES,
    REMINDER_STATUSES,
    TEMPLATE_STATUSES,
    TRIAL_STATUSES,
    WEBHOOK_EVENT_TYPES,
    WEBHOOK_STATUSES,
    buckets,
)

END = datetime(2024, 5, 15, 14, 30)


class Size(TypedDict):
    """The size of a small load (generate's keyword arguments)."""

    days: float
    scale: float
    salons: int


SMALL: Size = {"days": 1.0, "scale": 0.03, "salons": 60}

Connect = Callable[..., psycopg.Connection[Any]]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def connect(dsn: str) -> Iterator[Connect]:
    """Factory for connections to the per-test database, all closed afterwards."""
    made: list[psycopg.Connection[Any]] = []

    def factory(**kw: Any) -> psycopg.Connection[Any]:
        c = psycopg.connect(dsn, autocommit=True, **kw)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def load(conn: psycopg.Connection[Any], variant: str = "v2", **kw: Any) -> dict[str, int]:
    create_schema(conn, variant)  # type: ignore[arg-type]
    opts: dict[str, Any] = {**SMALL, "end": END}
    opts.update(kw)
    return generate(conn, **opts)


def scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params or None).fetchone()
    assert row is not None
    return row[0]


def values(conn: psycopg.Connection[Any], table: str, column: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT DISTINCT {column}::text FROM {table}")}


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_variants_create_and_load_requested_volumes(connect: Connect, variant: str) -> None:
    conn = connect()
    counts = load(conn, variant)
    info = inspect_schema(conn)
    assert info.variant == variant
    start = END - timedelta(days=SMALL["days"])
    for table in ("messages", "ai_conversations", "webhook_logs"):
        expected = sum(b.count for b in buckets(start, END, DAILY[table] * SMALL["scale"]))
        assert counts[table] == expected, table
    assert 3.0 < counts["ai_messages"] / counts["ai_conversations"] < 5.0
    nominal_bookings = DAILY["bookings"] * SMALL["scale"] * SMALL["days"]
    assert 0.6 * nominal_bookings < counts["bookings"] < 1.5 * nominal_bookings
    assert counts["salons"] == SMALL["salons"]
    assert counts["reminders"] > 0.5 * counts["bookings"]
    assert (
        min(counts[t] for t in ("masters", "templates", "conversations", "ai_response_cache")) > 0
    )
    if variant == "v2":
        assert counts["intent_analytics"] > 0
        assert info.types[("bookings", "status")] == '"BookingStatus"'
        assert scalar(conn, "SELECT count(processing_time_ms) FROM webhook_logs") > 0
        assert scalar(conn, "SELECT count(intent) FROM ai_messages") > 0
    else:
        assert "intent_analytics" not in counts
        assert info.types[("bookings", "status")] == "text"
        assert not info.has_column("webhook_logs", "processing_time_ms")
    assert info.types[("webhook_logs", "status")] == "text"
    assert set(counts) <= set(TABLES)


def test_schema_variants_agree_on_shared_columns(connect: Connect) -> None:
    v1, v2 = connect(), connect()
    create_schema(v1, "v1")
    v2.execute("CREATE SCHEMA newer")
    v2.execute("SET search_path = newer")
    create_schema(v2, "v2")
    t1, t2 = inspect_schema(v1).types, inspect_schema(v2).types
    enums = {k for k, t in t2.items() if t.startswith('"')}
    assert enums == {
        ("bookings", "status"),
        ("messages", "direction"),
        ("messages", "message_type"),
        ("messages", "status"),
        ("ai_messages", "direction"),
        ("conversations", "status"),
        ("reminders", "status"),
        ("templates", "status"),
    }
    assert set(t2) - set(t1) == {
        ("webhook_logs", "processing_time_ms"),
        ("ai_messages", "intent"),
        *(("intent_analytics", c) for c in (
            "id", "salon_id", "intent", "count", "date", "created_at", "updated_at")),
    }  # fmt: skip
    for key, typ in t1.items():
        assert t2[key] == typ or key in enums, key
    assert t1[("bookings", "created_at")] == "timestamp without time zone"
    assert t1[("messages", "cost")] == "double precision"
    assert t1[("webhook_logs", "payload")] == "jsonb"
    # Enum labels are exactly the values the text columns hold.
    labels = dict(
        v2.execute(
            "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)"
            " FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid GROUP BY t.typname"
        ).fetchall()
    )
    assert tuple(labels["BookingStatus"]) == BOOKING_STATUSES
    assert tuple(labels["MessageStatus"]) == MESSAGE_STATUSES
    assert tuple(labels["MessageType"]) == MESSAGE_TYPES
    assert tuple(labels["ReminderStatus"]) == REMINDER_STATUSES


def checksums(conn: psycopg.Connection[Any]) -> dict[str, str]:
    out = {}
    for table in TABLES:
        if inspect_schema(conn).has_table(table):
            out[table] = scalar(
                conn,
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t",
            )
    return out


def test_same_seed_same_rows(connect: Connect, pg: Any, dbname: str) -> None:
    first = connect()
    load(first, "v2", seed=7)
    other = f"{dbname}_b"
    admin = psycopg.connect(pg.dsn(), autocommit=True)
    admin.execute(f'CREATE DATABASE "{other}"')
    try:
        with psycopg.connect(pg.dsn(other)) as second:
            # One connection instead of two, outside autocommit, in another session time
            # zone: not a single value may change.
            second.execute("SET TimeZone = 'America/Los_Angeles'")
            second.commit()
            load(second, "v2", seed=7, workers=1)
            assert checksums(first) == checksums(second)
            second.execute(f"TRUNCATE {', '.join(checksums(second))}")
            second.commit()
            load_more = generate(second, **SMALL, end=END, seed=8)
            assert load_more["messages"] > 0
            a, b = checksums(first), checksums(second)
            assert all(a[t] != b[t] for t in ("salons", "messages", "bookings", "ai_messages"))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        admin.close()


def test_invariants_of_a_load_ending_now(connect: Connect) -> None:
    conn = connect()
    create_schema(conn, "v2")
    generate(conn, days=2, scale=0.05, salons=80)
    now = "(now() AT TIME ZONE 'utc')"
    allowed = {
        ("bookings", "status"): BOOKING_STATUSES,
        ("messages", "status"): MESSAGE_STATUSES,
        ("messages", "direction"): MESSAGE_DIRECTIONS,
        ("messages", "message_type"): MESSAGE_TYPES,
        ("ai_messages", "direction"): MESSAGE_DIRECTIONS,
        ("conversations", "status"): CONVERSATION_STATUSES,
        ("reminders", "status"): REMINDER_STATUSES,
        ("templates", "status"): TEMPLATE_STATUSES,
        ("salons", "trial_status"): TRIAL_STATUSES,
        ("webhook_logs", "status"): WEBHOOK_STATUSES,
        ("webhook_logs", "event_type"): WEBHOOK_EVENT_TYPES,
        ("ai_conversations", "ai_model"): tuple(m.name for m in AI_MODELS),
    }
    for (table, column), options in allowed.items():
        assert values(conn, table, column) <= set(options), (table, column)
    assert values(conn, "templates", "status") == set(TEMPLATE_STATUSES)
    assert values(conn, "webhook_logs", "status") >= {"processed", "failed", "error"}

    # Every tenant id points at a salon; only webhooks may lack one.
    for table in (
        "bookings",
        "messages",
        "ai_messages",
        "ai_conversations",
        "reminders",
        "templates",
    ):
        assert (
            scalar(
                conn, f"SELECT count(*) FROM {table} WHERE salon_id NOT IN (SELECT id FROM salons)"
            )
            == 0
        )
    assert scalar(conn, "SELECT count(*) FROM webhook_logs WHERE salon_id IS NULL") > 0
    assert (
        scalar(
            conn, "SELECT count(*) FROM reminders WHERE booking_id NOT IN (SELECT id FROM bookings)"
        )
        == 0
    )

    # Nothing is stamped in the future; bookings start there.
    for table in ("messages", "ai_messages", "webhook_logs", "bookings", "reminders"):
        assert scalar(conn, f"SELECT max(created_at) <= {now} FROM {table}"), table
    assert scalar(conn, f"SELECT count(*) FROM bookings WHERE start_ts > {now}") > 0

    # Double bookings among upcoming ones; overdue and failed reminders.
    doubles = scalar(
        conn,
        f"""SELECT count(*) FROM bookings a JOIN bookings b
              ON a.salon_id = b.salon_id AND a.master_id = b.master_id AND a.id < b.id
             AND a.start_ts < b.end_ts AND b.start_ts < a.end_ts
           WHERE a.status::text <> 'CANCELLED' AND b.status::text <> 'CANCELLED'
             AND a.start_ts BETWEEN {now} AND {now} + interval '24 hours'""",
    )
    assert doubles >= 3
    # none of them was made in the load's last 10 minutes, which the bookings SLO counts once
    # the exporter starts: a healthy demo pages nobody
    late = scalar(
        conn,
        f"""SELECT count(*) FROM bookings a JOIN bookings b
              ON a.salon_id = b.salon_id AND a.master_id = b.master_id AND a.id <> b.id
             AND a.start_ts < b.end_ts AND b.start_ts < a.end_ts AND a.created_at <= b.created_at
           WHERE a.status::text <> 'CANCELLED' AND b.status::text <> 'CANCELLED'
             AND b.created_at > {now} - interval '10 minutes'""",
    )
    assert late == 0
    overdue = f"status::text = 'PENDING' AND sent_at IS NULL AND scheduled_at < {now}"
    assert scalar(conn, f"SELECT count(*) FROM reminders WHERE {overdue}") > 0
    assert values(conn, "reminders", "status") >= {"PENDING", "SENT"}

    # Realistic mixes.
    failed = scalar(
        conn,
        "SELECT avg((status::text = 'FAILED')::int) FROM messages WHERE direction::text = 'OUTBOUND'",
    )
    assert 0.005 < failed < 0.05
    read_or_delivered = scalar(
        conn, "SELECT avg((status::text IN ('READ', 'DELIVERED'))::int) FROM messages"
    )
    assert read_or_delivered > 0.9
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM salons WHERE usage_current_messages >= 0.9 * usage_limit_messages",
        )
        > 0
    )
    assert values(conn, "salons", "is_active") == {"true", "false"}
    top = scalar(
        conn,
        "SELECT max(n)::float / sum(n) FROM (SELECT count(*) n FROM messages GROUP BY salon_id) x",
    )
    assert top > 0.1  # one big tenant, a long tail
    day = scalar(
        conn,
        "SELECT avg((extract(hour FROM created_at) BETWEEN 7 AND 17)::int) FROM webhook_logs",
    )
    assert day > 0.6  # busier in the (UTC) daytime
    cost = dict(
        conn.execute(
            "SELECT ai_model, avg(cost / tokens_used * 1000) FROM ai_messages"
            " WHERE direction::text = 'OUTBOUND' GROUP BY 1"
        ).fetchall()
    )
    assert cost["gpt-4"] > 10 * cost["gpt-4o-mini"]
    p50, p99 = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY response_time_ms)"
        " FROM ai_messages WHERE response_time_ms IS NOT NULL"
    ).fetchone() or (0, 0)
    assert p99 > 4 * p50  # a long tail


def test_refuses_a_loaded_or_missing_schema(connect: Connect) -> None:
    conn = connect()
    with pytest.raises(GenerateError, match="missing application tables"):
        generate(conn, **SMALL)
    load(conn, "v1", days=0.1)
    with pytest.raises(GenerateError, match="not empty"):
        generate(conn, **SMALL)


def run_live_for(dsn: str, seconds: float, **kw: Any) -> tuple[Any, float]:
    stop = threading.Event()
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(run_live(dsn, stop=stop, seed=3, **kw)))
    t.start()
    time.sleep(seconds)
    t0 = time.monotonic()
    stop.set()
    t.join(10)
    assert not t.is_alive()
    return result[0], time.monotonic() - t0


def test_live_inserts_and_changes_rows(connect: Connect, dsn: str) -> None:
    conn = connect()
    create_schema(conn, "v2")
    generate(conn, days=0.5, scale=0.05, salons=40)
    before = scalar(conn, "SELECT count(*) FROM messages")
    started = scalar(conn, "SELECT now() AT TIME ZONE 'utc'")
    stats, stopping = run_live_for(dsn, 4.0, rate=150, tick_s=0.5)
    assert stopping < 3
    assert stats.errors == 0 and stats.ticks >= 4
    assert scalar(conn, "SELECT count(*) FROM messages") - before == stats.inserted["messages"] > 0
    for table in ("webhook_logs", "ai_messages", "ai_conversations", "bookings"):
        assert stats.inserted[table] > 0, table
    assert stats.updated["messages"] > 0
    # Receipts moved messages inserted before the live run.
    assert scalar(conn, "SELECT count(*) FROM messages WHERE status::text <> 'SENT'") > 0
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM bookings WHERE updated_at >= %s AND created_at < %s",
            started,
            started,
        )
        > 0
    )
    assert scalar(conn, "SELECT count(*) FROM conversations WHERE last_message_at >= %s", started) > 0


def test_auckland_default_time_zone_changes_nothing(
    connect: Connect, dbname: str, dsn: str
) -> None:
    admin = connect()
    admin.execute(f"ALTER DATABASE \"{dbname}\" SET timezone = 'Pacific/Auckland'")
    conn = connect()
    assert scalar(conn, "SHOW TimeZone") == "Pacific/Auckland"
    create_schema(conn, "v1")
    # A whole day: bookings are made 04:00-19:00 UTC, so a shorter load run in the evening would
    # hold none that start later.
    generate(conn, days=1, scale=0.02, salons=30)
    # A session-time-zone bug would shift by Auckland's 12-13 hours; quiet night hours leave
    # minutes between the newest rows.
    newest = scalar(conn, "SELECT max(created_at) FROM webhook_logs")
    assert timedelta(0) <= utc_now() - newest < timedelta(minutes=15)
    upcoming = scalar(conn, "SELECT min(start_ts) FROM bookings WHERE start_ts > %s", utc_now())
    assert upcoming is not None
    run_live_for(dsn, 2.0, rate=200, tick_s=0.5)
    for table in ("messages", "webhook_logs", "ai_messages"):
        newest = scalar(conn, f"SELECT max(created_at) FROM {table}")
        assert abs((utc_now() - newest).total_seconds()) < 5, table


def test_cli_loads_then_refuses_a_second_load(dsn: str, connect: Connect, capsys: Any) -> None:
    p = argparse.ArgumentParser()
    datagen_cli.add_arguments(p)
    args = p.parse_args(
        ["--dsn", dsn, "--schema", "v1", "--days", "0.1", "--scale", "0.02", "--salons", "20"]
    )
    assert datagen_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "created schema v1" in err and "messages" in err
    assert scalar(connect(), "SELECT count(*) FROM salons") == 20
    assert datagen_cli.main(args) == 2
    assert "already holds 20 salons" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the documented schema, column for column
# ---------------------------------------------------------------------------
DOC = Path(__file__).parent / "data" / "app-schema-tables.md"
SECTION = ("## Tables and columns used by monitoring", "## Volumes to design for")


def _top_level(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*parts, cur.strip()]


def documented_schema() -> tuple[dict[str, set[str]], set[tuple[str, str]], set[str]]:
    """(table -> columns, the newer-only (table, column) pairs, the other tables named)."""
    tables: dict[str, set[str]] = {}
    newer: set[tuple[str, str]] = set()
    text = DOC.read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("table", "---") or not cells[0].isidentifier():
            continue
        table, columns, notes = cells
        tables[table] = set()
        for item in _top_level(columns):
            name = item.split()[0].split("(")[0]
            tables[table].add(name)
            if "newer schema only" in item or "newer schema only" in notes:
                newer.add((table, name))
    others = text.split("Other tables exist (", 1)[1].split(")", 1)[0]
    return tables, newer, {t.strip() for t in others.split(",") if t.strip() != "..."}


def test_vendored_schema_section_matches_the_original() -> None:
    """tests/data holds the section of ../shared/app-schema.md verbatim (checked when present)."""
    vendored = DOC.read_text()
    assert vendored.count(SECTION[0]) == 1
    original = Path(__file__).resolve().parents[1].parent / "shared" / "app-schema.md"
    for path in (original, Path("/work/shared/app-schema.md")):
        if path.exists():
            text = path.read_text()
            section = text[text.index(SECTION[0]):text.index(SECTION[1])].rstrip()
            assert section in vendored, f"{DOC} is out of date with {path}"


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_schema_is_the_documented_one_column_for_column(connect: Connect, variant: str) -> None:
    tables, newer, others = documented_schema()
    assert len(tables) == 11 and ("intent_analytics", "date") in newer
    conn = connect()
    create_schema(conn, variant)  # type: ignore[arg-type]
    rows = conn.execute(
        "SELECT table_name::text, column_name::text FROM information_schema.columns "
        "WHERE table_schema = current_schema()").fetchall()
    created: dict[str, set[str]] = {}
    for table, column in rows:
        created.setdefault(table, set()).add(column)
    for table, columns in tables.items():
        expected = columns if variant == "v2" else {c for c in columns if (table, c) not in newer}
        if not expected:
            assert table not in created, f"{variant}: {table} is newer-schema only"
            continue
        assert created.get(table) == expected, (
            f"{variant}: {table} has {sorted(created.get(table, set()) - expected)} "
            f"beyond the documented columns and lacks {sorted(expected - created.get(table, set()))}")
    assert set(created) - set(tables) <= others, "tables neither documented nor named as others"
