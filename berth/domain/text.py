"""What a string may hold: one line (no control characters) or prose (tabs and newlines).

One definition for every parser (the Zun, Magnum and Keystone request bodies, capsule
templates): a name, path, image reference or key ends up in a log line, a catalog, an
engine call or the dashboard, so it is one line; an argument, a value or a description
may span lines. NUL is refused everywhere: C strings (the engine, the kernel) end there.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTROL", "CONTROL_BUT_LINES", "one_line", "prose"]

# Every C0 control character and DEL.
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# The same less tab (\x09), newline (\x0a) and carriage return (\x0d).
CONTROL_BUT_LINES: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
