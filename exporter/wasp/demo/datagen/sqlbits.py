"""Small SQL expression builders shared by the history generator and the live mode.

Everything here returns SQL text built from our own constants and numbers only;
no user-supplied string ever reaches these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wasp.demo.datagen.profile import SALON_SKEW, cumulative

__all__ = [
    "JsonExpr",
    "StrExpr",
    "choose",
    "json_text",
    "lit",
    "phone_number_id",
    "pick",
    "salon_weight",
    "text_array",
    "uuid_of",
]


def lit(v: str | float | int) -> str:
    """A SQL literal for one of our constants (strings must not contain %, psycopg's placeholder)."""
    if isinstance(v, str):
        if "%" in v:
            raise ValueError(f"literal {v!r} contains %, which psycopg reads as a placeholder")
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def pick(u: str, options: Sequence[tuple[str | float | int, float]]) -> str:
    """CASE expression choosing among weighted options with the uniform draw `u` in [0, 1)."""
    cum = cumulative([w for _, w in options])
    whens = " ".join(
        f"WHEN {u} < {c!r} THEN {lit(v)}" for (v, _), c in zip(options[:-1], cum[:-1], strict=True)
    )
    return f"(CASE {whens} ELSE {lit(options[-1][0])} END)"


def text_array(values: Sequence[str]) -> str:
    """ARRAY[...] of text literals."""
    return "ARRAY[" + ", ".join(lit(v) for v in values) + "]::text[]"


def choose(u: str, values: Sequence[str]) -> str:
    """One of `values`, uniformly, with the draw `u` in [0, 1)."""
    return f"({text_array(values)})[1 + floor({u} * {len(values)})::int]"


def uuid_of(*parts: str) -> str:
    """A UUID-formatted text id derived from SQL expressions (deterministic, well spread)."""
    return f"md5(concat_ws(':', {', '.join(parts)}))::uuid::text"


def salon_weight(rank: str, salons: int) -> str:
    """Share of all traffic that goes to the salon of this rank (see SALON_SKEW)."""
    e = 1.0 / SALON_SKEW
    # float8 throughout: power() on numeric is two orders of magnitude slower.
    return (
        f"(power(({rank} + 1)::float8 / {salons}, {e!r}::float8)"
        f" - power({rank}::float8 / {salons}, {e!r}::float8))"
    )


def phone_number_id(rank: str) -> str:
    """The WhatsApp phone_number_id of the salon of this rank (15 digits, unique)."""
    return f"(100000000000000 + {rank}::bigint * 7919 + 104729)::text"


class StrExpr(str):
    """A SQL text expression to embed as a JSON string (its values need no JSON escaping)."""


class JsonExpr(str):
    """A SQL text expression that already yields JSON text."""


def json_text(obj: Any) -> str:
    """SQL building `obj` as JSON text by concatenation, with StrExpr/JsonExpr leaves computed per row.

    Several times cheaper than nested jsonb_build_object(); cast the result to jsonb.
    """
    pieces: list[tuple[bool, str]] = []  # (is_sql, text)

    def emit(o: Any) -> None:
        if isinstance(o, StrExpr):
            pieces.extend([(False, '"'), (True, str(o)), (False, '"')])
        elif isinstance(o, JsonExpr):
            pieces.append((True, str(o)))
        elif isinstance(o, dict):
            pieces.append((False, "{"))
            for i, (k, v) in enumerate(o.items()):
                pieces.append((False, ("," if i else "") + json.dumps(k) + ":"))
                emit(v)
            pieces.append((False, "}"))
        elif isinstance(o, list):
            pieces.append((False, "["))
            for i, v in enumerate(o):
                if i:
                    pieces.append((False, ","))
                emit(v)
            pieces.append((False, "]"))
        else:
            pieces.append((False, json.dumps(o)))

    emit(obj)
    out: list[str] = []
    literal = ""
    for is_sql, text in pieces:
        if is_sql:
            if literal:
                out.append(lit(literal))
                literal = ""
            out.append(f"({text})")
        else:
            literal += text
    if literal:
        out.append(lit(literal))
    return "(" + " || ".join(out) + ")"
