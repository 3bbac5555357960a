"""`wasp datagen`: create the application schema, load history, optionally keep writing live."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

import psycopg

from wasp.demo.datagen.generate import GenerateError, generate
from wasp.demo.datagen.live import run_live
from wasp.demo.datagen.schema import create_schema, inspect_schema

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the datagen options to `p`."""
    p.description = (
        "Fill a database with a synthetic copy of the booking application's data: create the "
        "schema if the tables are missing, load history, and with --live keep inserting and "
        "updating rows at the real rates until interrupted."
    )
    p.add_argument(
        "--dsn",
        default="",
        help="libpq connection string or URL of the target database (default: PG* environment)",
    )
    p.add_argument(
        "--schema",
        choices=("v1", "v2"),
        default="v2",
        help="schema variant to create when the tables are missing: v1 text statuses, "
        "v2 enums + intent_analytics (default: v2)",
    )
    p.add_argument(
        "--days", type=float, default=3.0, help="days of history to load (default: 3; 0 for none)"
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="volume factor; 1.0 is 100k messages, 10k bookings, 50k AI conversations and "
        "150k webhooks a day (default: 1.0)",
    )
    p.add_argument("--salons", type=int, default=1000, help="number of tenants (default: 1000)")
    p.add_argument(
        "--seed", type=int, default=42, help="random seed; same seed, same data (default: 42)"
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="after loading, keep writing and updating rows like the running service until "
        "interrupted (Ctrl-C / SIGTERM)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="live mode speed as a multiple of the real daily rates (default: 1.0)",
    )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    """Run datagen with parsed options; returns the process exit code."""
    try:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            info = inspect_schema(conn)
            if not info.has_table("salons"):
                create_schema(conn, args.schema)
                _say(f"created schema {args.schema}")
                info = inspect_schema(conn)
            else:
                _say(f"found schema {info.variant}")
            row = conn.execute("SELECT count(*) FROM salons").fetchone()
            salons = int(row[0]) if row else 0
            if salons == 0:
                counts = generate(
                    conn,
                    days=args.days,
                    scale=args.scale,
                    salons=args.salons,
                    seed=args.seed,
                    progress=_say,
                )
                for table, n in counts.items():
                    _say(f"  {table:<18} {n:>12,}")
            elif not args.live:
                _say(f"the database already holds {salons} salons; load into an empty database")
                return 2
            else:
                _say(f"{salons} salons present: skipping history")
    except (psycopg.Error, GenerateError) as e:
        _say(f"datagen: {e}")
        return 1
    if not args.live:
        return 0
    stop = threading.Event()

    def on_signal(_signo: int, _frame: FrameType | None) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    _say(f"live at {args.rate}x the daily rates; Ctrl-C to stop")
    try:
        stats = run_live(args.dsn, rate=args.rate, stop=stop, seed=args.seed, log=_say)
    except psycopg.Error as e:
        _say(f"datagen: {e}")
        return 1
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    _say(
        f"live: {stats.ticks} ticks in {stats.seconds:.0f}s, inserted {sum(stats.inserted.values())}"
        f" rows, updated {sum(stats.updated.values())}, errors {stats.errors}"
    )
    return 0
