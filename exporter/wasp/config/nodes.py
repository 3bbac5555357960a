"""YAML loading that remembers where every key came from, and a small validator.

`load_yaml` returns plain dicts and lists whose subclasses record line
numbers; `Node` wraps a value with its file, dotted key and line, and every
check raises ConfigError naming all three, for example::

    config.yml:14: queries.bookings.values[0].type: must be gauge or counter
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

__all__ = ["ConfigError", "LineDict", "LineList", "Node", "load_yaml", "parse_duration"]


class ConfigError(Exception):
    """Invalid configuration: file, line, dotted key and what was expected."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class LineDict(dict[str, Any]):
    """A mapping that knows the line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    """A sequence that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, file: str) -> Any:
    """Parse YAML text; syntax errors become ConfigError with the line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        ctx = e.context_mark
        context = f"{e.context} (line {ctx.line + 1})" if e.context and ctx else e.context
        msg = " ".join(str(x) for x in (context, e.problem) if x) or str(e)
        near = (ctx.line + 1) if ctx else line
        key = _key_near(text, near) if near else ""
        raise ConfigError(file, line, key, f"invalid YAML: {msg}") from None
    except yaml.YAMLError as e:
        raise ConfigError(file, None, "", f"invalid YAML: {e}") from None


_KEY_LINE_RE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z0-9_.-]+)\s*:(?:\s|$)")


def _key_near(text: str, line: int) -> str:
    """Best guess of the dotted key being written at `line` (for syntax errors)."""
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[: max(0, line)]:
        m = _KEY_LINE_RE.match(raw)
        if not m or raw.lstrip().startswith("#"):
            continue
        indent = raw.index(m.group(2))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
    return ".".join(k for _, k in stack)


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a YAML file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(str(p), None, "", f"cannot read: {e.strerror or e}") from None
    return load_yaml(text, str(p))


_Choice = TypeVar("_Choice", bound=str)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float | None:
    """'90s', '1m30s', '500ms', '2h' -> seconds; None when not a duration."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


class Node:
    """A configuration value with its location, and typed accessors that validate."""

    __slots__ = ("file", "key", "line", "value")

    def __init__(self, value: Any, file: builtins.str, key: builtins.str = "", line: builtins.int | None = None) -> None:
        self.value = value
        self.file = file
        self.key = key
        self.line = line if line is not None else getattr(value, "line", None)

    def error(self, message: builtins.str) -> NoReturn:
        """Raise ConfigError at this node."""
        raise ConfigError(self.file, self.line, self.key, message)

    def _child_key(self, name: builtins.str) -> builtins.str:
        return f"{self.key}.{name}" if self.key else name

    # -- mappings -------------------------------------------------------------
    def mapping(self, allowed: set[builtins.str] | None = None, required: set[builtins.str] | frozenset[builtins.str] = frozenset()) -> Node:
        """Check this is a mapping with only `allowed` keys and all `required` ones."""
        if self.value is None:
            self.value = LineDict()
            self.value.line = self.line or 0
            self.value.key_lines = {}
        if not isinstance(self.value, dict):
            self.error(f"must be a mapping, got {_kind(self.value)}")
        if allowed is not None:
            for k in self.value:
                if k not in allowed:
                    self.child(k).error(
                        "unknown key; expected one of: " + ", ".join(sorted(allowed))
                    )
        for k in sorted(required):
            if k not in self.value:
                self.error(f"missing required key {k!r}")
        return self

    def child(self, name: builtins.str) -> Node:
        """The value under key `name` (None when absent), located at its key's line."""
        lines = getattr(self.value, "key_lines", {})
        line = lines.get(name, self.line)
        value = self.value.get(name) if isinstance(self.value, dict) else None
        return Node(value, self.file, self._child_key(name), line)

    def has(self, name: builtins.str) -> builtins.bool:
        """True when the mapping has key `name`."""
        return isinstance(self.value, dict) and name in self.value

    def items(self) -> Iterator[tuple[builtins.str, Node]]:
        """(key, child) pairs of a mapping."""
        self.mapping()
        for k in self.value:
            yield k, self.child(k)

    # -- sequences ------------------------------------------------------------
    def sequence(self) -> list[Node]:
        """The items of a list (None counts as empty)."""
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.error(f"must be a list, got {_kind(self.value)}")
        lines = getattr(self.value, "item_lines", [self.line] * len(self.value))
        return [
            Node(v, self.file, f"{self.key}[{i}]", lines[i] if i < len(lines) else self.line)
            for i, v in enumerate(self.value)
        ]

    # -- scalars --------------------------------------------------------------
    def is_missing(self) -> builtins.bool:
        """True when the key is absent or null."""
        return self.value is None

    def str(self, default: builtins.str | None = None, *, pattern: re.Pattern[builtins.str] | None = None,
            what: builtins.str = "") -> builtins.str:
        """A non-empty string (or `default` when absent)."""
        if self.value is None:
            if default is None:
                self.error("is required")
            return default
        if not isinstance(self.value, builtins.str) or not self.value.strip():
            self.error(f"must be a non-empty string, got {_kind(self.value)}")
        if pattern is not None and not pattern.match(self.value):
            self.error(f"{self.value!r} is not {what or 'valid'}")
        return self.value

    def choice(self, choices: tuple[_Choice, ...], default: _Choice | None = None) -> _Choice:
        """One of `choices` (the values of a Literal, so the result has its type)."""
        if self.value is None and default is not None:
            return default
        self.str()
        for c in choices:
            if c == self.value:
                return c
        self.error("must be " + " or ".join(choices) + f", got {self.value!r}")

    def opt_str(self) -> builtins.str | None:
        """A string or None when absent."""
        return None if self.value is None else self.str()

    def int(self, default: builtins.int | None = None, *, minimum: builtins.int | None = None,
            maximum: builtins.int | None = None) -> builtins.int:
        """An integer within bounds."""
        if self.value is None:
            if default is None:
                self.error("is required")
            return default
        if isinstance(self.value, builtins.bool) or not isinstance(self.value, builtins.int):
            self.error(f"must be an integer, got {_kind(self.value)}")
        if minimum is not None and self.value < minimum:
            self.error(f"must be >= {minimum}, got {self.value}")
        if maximum is not None and self.value > maximum:
            self.error(f"must be <= {maximum}, got {self.value}")
        return int(self.value)

    def number(self, default: float | None = None, *, minimum: float | None = None) -> float:
        """An int or float."""
        if self.value is None:
            if default is None:
                self.error("is required")
            return default
        if isinstance(self.value, builtins.bool) or not isinstance(self.value, (builtins.int, float)):
            self.error(f"must be a number, got {_kind(self.value)}")
        if minimum is not None and self.value < minimum:
            self.error(f"must be >= {minimum}, got {self.value}")
        return float(self.value)

    def bool(self, default: builtins.bool | None = None) -> builtins.bool:
        """true or false."""
        if self.value is None:
            if default is None:
                self.error("is required")
            return default
        if not isinstance(self.value, builtins.bool):
            self.error(f"must be true or false, got {_kind(self.value)}")
        return self.value

    def duration(self, default: float | None = None, *, minimum: float = 0.0) -> float:
        """A duration in seconds: a number, or a string such as '30s', '5m', '1h30m'."""
        if self.value is None:
            if default is None:
                self.error("is required")
            return default
        if isinstance(self.value, builtins.bool):
            self.error("must be a duration such as 30s, 5m or 1h")
        if isinstance(self.value, (builtins.int, float)):
            seconds: float | None = float(self.value)
        elif isinstance(self.value, builtins.str):
            seconds = parse_duration(self.value)
        else:
            seconds = None
        if seconds is None:
            self.error(f"must be a duration such as 30s, 5m or 1h, got {self.value!r}")
        if seconds < minimum:
            self.error(f"must be at least {minimum:g}s, got {seconds:g}s")
        return seconds

    def str_list(self, default: tuple[builtins.str, ...] = ()) -> tuple[builtins.str, ...]:
        """A list of strings."""
        if self.value is None:
            return default
        return tuple(item.str() for item in self.sequence())

    def str_map(self) -> dict[builtins.str, builtins.str]:
        """A mapping of strings to scalars rendered as strings."""
        out: dict[builtins.str, builtins.str] = {}
        for k, v in self.items():
            if isinstance(v.value, (dict, list)) or v.value is None:
                v.error("must be a scalar")
            out[k] = str(v.value).lower() if isinstance(v.value, builtins.bool) else str(v.value)
        return out


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__
