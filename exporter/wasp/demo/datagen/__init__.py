"""Synthetic data for the application database: its schema, a history loader and a live writer.

`create_schema` lays down one of the two schema variants, `generate` loads days of
history set-based and deterministically, and `run_live` keeps writing and updating
rows at the application's real rates, the way the running service does.
"""

from wasp.demo.datagen.generate import GenerateError, generate
from wasp.demo.datagen.live import LiveStats, run_live
from wasp.demo.datagen.schema import TABLES, SchemaInfo, create_schema, inspect_schema, schema_sql

__all__ = [
    "TABLES",
    "GenerateError",
    "LiveStats",
    "SchemaInfo",
    "create_schema",
    "generate",
    "inspect_schema",
    "run_live",
    "schema_sql",
]
