"""What the engine schedules: a collector turns one round of work into families.

SQL queries from YAML, the PgBouncer console, pgBackRest and the companions'
status records are all collectors. A collector never touches HTTP; on failure
it raises CollectError with a reason that becomes a label of the error counter.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wasp.model import Family

if TYPE_CHECKING:
    from wasp.exporter.db import TargetDB

__all__ = ["CollectContext", "CollectError", "Collector", "ErrorReason"]

ErrorReason = Literal["timeout", "sql", "connection", "permission", "missing", "other"]


class CollectError(Exception):
    """A collector's round failed; `reason` is a short machine-readable label."""

    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: ErrorReason = reason


@dataclass
class CollectContext:
    """What a collector may use in one round."""

    now: float
    status_dir: Path
    db: TargetDB | None = None
    options: dict[str, object] = field(default_factory=dict)


class Collector(abc.ABC):
    """One unit of scheduled work with its own interval and timeout."""

    #: query name, the `query` label of the self-metrics
    name: str
    #: target name, or None for collectors that do not talk to a database
    target: str | None
    interval: float
    timeout: float
    #: cap on exported series; the rest are dropped and counted
    max_series: int = 10_000
    #: roles where this runs: "any", "primary" or "standby"
    role: str = "any"

    @property
    def key(self) -> str:
        """Unique id within the engine."""
        return f"{self.target or '-'}/{self.name}"

    @abc.abstractmethod
    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Do one round and return fresh families (without the target label)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release what the collector keeps open between rounds; the engine calls it on stop."""
