"""What a string may hold: one line (no control characters) or prose (tabs and newlines).

One definition for every parser (the Zun, Magnum and Keystone request bodies, capsule
templates): a name, path, image reference or key ends up in a log line, a catalog, an
engine call or the dashboard, so it is one line; an argument, a value or a description
may span lines. NUL is refused everywhere: C strings (the engine, the kernel) end there.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTROL", "CONTROL_BUT_LINES", "SURROGATE", "mend_surrogates", "one_line", "prose"]

# Every C0 control character and DEL.
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# The same less tab (\x09), newline (\x0a) and carriage return (\x0d).
CONTROL_BUT_LINES: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A UTF-16 surrogate on its own (JSON's "\\ud800" without its other half): no UTF-8
# encoder takes one, so neither a database driver nor a response can carry it.
SURROGATE: Final = re.compile("[\ud800-\udfff]")


def one_line(value: str) -> str:
    """``value`` unchanged when it holds no control character, else ValueError."""
    if CONTROL.search(value):
        raise ValueError("control characters (NUL, newlines, tabs, ...) are not allowed")
    return value


def prose(value: str) -> str:
    """``value`` unchanged when its only control characters are tabs and line ends."""
    if CONTROL_BUT_LINES.search(value):
        raise ValueError("NUL and control characters other than tab and newline are not allowed")
    return value


def mend_surrogates(value: object) -> object:
    """``value`` (decoded JSON) with every lone surrogate in its strings and keys
    replaced by U+FFFD, the replacement character; anything else is returned as is."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [mend_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {mend_surrogates(k): mend_surrogates(v) for k, v in value.items()}
    return value
