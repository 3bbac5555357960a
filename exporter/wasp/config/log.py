"""The log: section of the main configuration (the `log` pack and `wasp logtail`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wasp.config.nodes import Node

__all__ = ["START_AT", "LogSettings", "SamplingSettings", "StartAt", "parse_section"]

StartAt = Literal["end", "beginning"]
START_AT: tuple[StartAt, ...] = ("end", "beginning")


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """The server's statement-logging settings, for when no target can be asked."""

    #: log_min_duration_statement in ms (-1: off)
    min_duration_statement: float = -1.0
    #: log_min_duration_sample in ms (-1: off)
    min_duration_sample: float = -1.0
    #: log_statement_sample_rate (0..1)
    sample_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The validated log: section."""

    #: the server's log_directory, as an absolute path on this host
    directory: str
    #: glob of the jsonlog files inside `directory`
    pattern: str = "*.json"
    #: postgres target whose settings, current log file and superusers are read
    target: str | None = None
    interval: float = 10.0
    timeout: float = 30.0
    #: series kept per label (user, database, client_addr); the rest count under "other"
    top: int = 10
    #: where to start in files that exist at the very first start: end or beginning
    start_at: StartAt = "end"
    max_line_bytes: int = 1 << 20
    max_bytes_per_round: int = 64 << 20
    #: roles counted as superusers besides those the target reports
    superusers: tuple[str, ...] = ("postgres",)
    #: the sampling settings used when no target is given
    sampling: SamplingSettings | None = None
    #: seconds a label value may stay idle before another value may take its series
    evict_after: float = 3600.0


SECTION_KEYS = {"directory", "pattern", "target", "interval", "timeout", "top", "start_at",
                "max_line_bytes", "max_bytes_per_round", "superusers", "sampling",
                "evict_after"}
SAMPLING_KEYS = {"log_min_duration_statement", "log_min_duration_sample",
                 "log_statement_sample_rate"}


def parse_section(node: Node) -> LogSettings:
    """Validate the log: section (every error names file:line and the dotted key)."""
    node.mapping(SECTION_KEYS, required={"directory"})
    directory = node.child("directory").str()
    if not directory.startswith("/"):
        node.child("directory").error(f"must be an absolute path (the server's log_directory), "
                                      f"got {directory!r}")
    pattern = node.child("pattern").str("*.json")
    if "/" in pattern:
        node.child("pattern").error("a file name pattern (glob) inside directory, without '/'")
    interval = node.child("interval").duration(10.0, minimum=0.1)
    timeout = node.child("timeout").duration(30.0, minimum=0.1)
    sampling = None
    if node.has("sampling"):
        s = node.child("sampling").mapping(SAMPLING_KEYS)
        rate = s.child("log_statement_sample_rate").number(1.0, minimum=0.0)
        if rate > 1.0:
            s.child("log_statement_sample_rate").error(f"must be between 0 and 1, got {rate:g}")
        sampling = SamplingSettings(
            min_duration_statement=s.child("log_min_duration_statement").number(-1.0, minimum=-1.0),
            min_duration_sample=s.child("log_min_duration_sample").number(-1.0, minimum=-1.0),
            sample_rate=rate)
    return LogSettings(
        directory=directory.rstrip("/") or "/",
        pattern=pattern,
        target=node.child("target").opt_str(),
        interval=interval,
        timeout=timeout,
        top=node.child("top").int(10, minimum=1, maximum=1000),
        start_at=node.child("start_at").choice(START_AT, "end"),
        max_line_bytes=node.child("max_line_bytes").int(1 << 20, minimum=1024),
        max_bytes_per_round=node.child("max_bytes_per_round").int(64 << 20, minimum=65536),
        superusers=node.child("superusers").str_list(("postgres",)),
        sampling=sampling,
        evict_after=node.child("evict_after").duration(3600.0, minimum=1.0),
    )
