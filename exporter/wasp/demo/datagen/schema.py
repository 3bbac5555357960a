"""Create the application schema, and find out which variant a database holds."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import psycopg
from psycopg import sql

__all__ = ["TABLES", "SchemaInfo", "create_schema", "inspect_schema", "schema_sql"]

Variant = Literal["v1", "v2"]

# Every table the generator fills, in load order.
TABLES = (
    "salons",
    "masters",
    "templates",
    "bookings",
    "reminders",
    "messages",
    "conversations",
    "ai_conversations",
    "ai_messages",
    "webhook_logs",
    "ai_response_cache",
    "intent_analytics",
)


def schema_sql(variant: Variant = "v2") -> str:
    """The DDL of one schema variant (for an empty database)."""
    if variant not in ("v1", "v2"):
        raise ValueError(f"unknown schema variant {variant!r} (expected 'v1' or 'v2')")
    return (resources.files("wasp.demo.datagen") / f"schema_{variant}.sql").read_text()


def create_schema(conn: psycopg.Connection[Any], variant: Variant = "v2") -> None:
    """Create the application's tables (variant v1: text statuses; v2: enums) in an empty database."""
    text = schema_sql(variant)
    with conn.transaction():
        conn.execute(text.encode())


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """What the connected database holds: tables and the SQL type of every column."""

    types: dict[tuple[str, str], str]

    def has_table(self, table: str) -> bool:
        """True when `table` exists in the search path."""
        return any(t == table for t, _ in self.types)

    def has_column(self, table: str, column: str) -> bool:
        """True when `table.column` exists."""
        return (table, column) in self.types

    def cast(self, table: str, column: str) -> sql.Composable:
        """`::type` turning a text expression into what the column stores (enum or text)."""
        return sql.SQL("::" + self.types[(table, column)])

    @property
    def variant(self) -> Variant:
        """v2 when the statuses are enums, else v1."""
        return "v1" if self.types.get(("bookings", "status"), "text") == "text" else "v2"


def inspect_schema(conn: psycopg.Connection[Any]) -> SchemaInfo:
    """Read the column types of the application tables visible in the search path."""
    rows = conn.execute(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, NULL)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relkind IN ('r', 'p')
          AND c.relname = ANY(%s)
          AND pg_table_is_visible(c.oid)
          AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (list(TABLES),),
    ).fetchall()
    return SchemaInfo({(str(t), str(c)): str(ty) for t, c, ty in rows})
