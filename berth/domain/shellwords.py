"""``shlex.split`` in linear time: a command string as the argv a shell would make of it.

Zun splits a container's ``command`` string (below microversion 1.20) and an
``execute`` command with ``shlex.split``; Berth gives the same words and the same
errors. ``shlex`` itself grows each word one character at a time through an
attribute (``self.token += c``), which CPython cannot do in place: a word of n
characters costs O(n²). Measured: a one-word command of 200 KB took 1.4 s and of
1 MB 32 s, all of it on the event loop, for one request's body. This reads runs of
ordinary characters at once (str.find, a regex) and joins each word once.
The equivalence with ``shlex.split`` is a property test
(tests/unit/test_shellwords.py).
"""

from __future__ import annotations

import re

__all__ = ["split"]

_WHITESPACE = " \t\r\n"  # shlex.shlex.whitespace
_ORDINARY = re.compile(r"[^ \t\r\n\\'\"]+")  # up to whitespace, an escape or a quote
_IN_DOUBLE = re.compile(r'[^"\\]+')  # up to the closing quote or an escape


def split(text: str) -> list[str]:
    """The words of ``text`` as ``shlex.split(text)`` (POSIX, no comments) gives them;
    ``ValueError`` with shlex's words ("No closing quotation", "No escaped character")."""
    words: list[str] = []
    word: list[str] = []
    started = False  # a word is open (even an empty one, after '' or "")
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            if started:
                words.append("".join(word))
                word, started = [], False
            i += 1
            continue
        started = True
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("No escaped character")
            word.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("No closing quotation")
            word.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i = _double_quoted(text, i + 1, word)
        else:
            run = _ORDINARY.match(text, i)
            assert run is not None  # c is none of the characters it stops at
            word.append(run.group())
            i = run.end()
    if started:
        words.append("".join(word))
    return words


def _double_quoted(text: str, i: int, word: list[str]) -> int:
    """Read a double-quoted part from ``i`` (after its quote) into ``word``; the index
    after its closing quote. A backslash there escapes only ``"`` and itself."""
    n = len(text)
    while True:
        if i >= n:
            raise ValueError("No closing quotation")
        c = text[i]
        if c == '"':
            return i + 1
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("No escaped character")
            escaped = text[i + 1]
            word.append(escaped if escaped in '"\\' else "\\" + escaped)
            i += 2
            continue
        run = _IN_DOUBLE.match(text, i)
        assert run is not None
        word.append(run.group())
        i = run.end()
