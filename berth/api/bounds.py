"""Bounds every API shares: the largest integer a field takes, and only text in strings.

A tenant's number or string ends in a database column, an engine call or a
log line: a NUL truncates or breaks each of them, a lone surrogate cannot be
encoded for any of them, an integer past 32 bits
overflows the columns (and Docker's own fields). So request bodies of all
three APIs are checked here once, and each field adds its own, tighter bound.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from berth import errors
from berth.domain.text import CONTROL, SURROGATE

__all__ = [
    "INT32_MAX",
    "MAX_EPOCH_SECONDS",
    "check_int_field",
    "check_no_control",
    "check_text",
    "first_bad_text",
    "parse_json",
]

# The largest value an INTEGER column (and most engine fields) holds.
INT32_MAX = 2**31 - 1
# 9999-12-31T23:59:59Z: the last second a timestamp field may name.
MAX_EPOCH_SECONDS = 253_402_300_799


def parse_json(raw: bytes | str) -> Any:
    """``json.loads(raw)``, but ``NaN``, ``Infinity`` and numbers too large for a float
    are a ValueError: JSON has none of them (RFC 8259), Python's parser takes them.

    Stored in a free-form field (a container's hints) one was a 500 on PostgreSQL,
    whose json type refuses it; elsewhere it became null or "nan" on the way out.
    """
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def first_bad_text(data: Any) -> tuple[str, str] | None:
    """The dotted path of the first key or string value no column, engine or response
    can carry, and why (``"nul"`` or ``"surrogate"``); else None.

    JSON's ``\\u0000`` is a NUL; a ``\\ud800``-``\\udfff`` escape that is not half of
    a pair decodes to a lone surrogate, which no UTF-8 encoder takes: PostgreSQL's
    driver refused the row (a 500), SQLite stored it and every later rendering of
    the row failed (a 500 for each list that held it). Iterative (the body's depth
    is bounded, but recursion is not needed).
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if (why := _bad(value)) is not None:
                return path or "body", why
        elif isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (why := _bad(key)) is not None:
                    return sub, why
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _bad(text: str) -> str | None:
    if "\x00" in text:
        return "nul"
    return "surrogate" if SURROGATE.search(text) else None


def check_text(data: Any) -> None:
    """Raise Invalid naming the first field whose key or value holds a NUL character or
    a lone UTF-16 surrogate (``first_bad_text``)."""
    found = first_bad_text(data)
    if found is None:
        return
    path, why = found
    # Neither may reach the message: it is JSON-encoded and logged.
    shown = SURROGATE.sub("\ufffd", path.replace("\x00", "\\u0000"))
    if why == "nul":
        raise errors.Invalid(
            f"Invalid input for field '{shown}': "
            "NUL characters (\\u0000) are not allowed; remove them."
        )
    raise errors.Invalid(
        f"Invalid input for field '{shown}': it holds a lone UTF-16 surrogate "
        "(a \\ud800-\\udfff escape that is not half of a pair), which is not a character; "
        "send valid Unicode."
    )


def check_int_field(body: Any, name: str, low: int, high: int) -> None:
    """Raise Invalid when ``body[name]`` is an integer (or digit string) outside [low, high].

    Other types are left to the field's own coercion, which names them.
    """
    if not isinstance(body, dict) or isinstance(body.get(name), bool):
        return
    text = str(body.get(name)).strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        return
    if len(text) > 30 or not low <= int(text) <= high:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}. Value: {text[:40]}. "
            f"It must be an integer from {low} to {high}."
        )


def check_no_control(value: str | None, name: str) -> str | None:
    """``value`` unchanged, or Invalid when it holds a control character (NUL, newline, ...)."""
    if value is not None and CONTROL.search(value):
        raise errors.Invalid(
            f"Invalid input for field '{name}': control characters (NUL, newlines, tabs, ...) "
            "are not allowed."
        )
    return value
