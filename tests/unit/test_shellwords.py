"""berth.domain.shellwords.split gives shlex.split's words and errors, in linear time."""

from __future__ import annotations

import shlex
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from berth.domain import shellwords

# The characters shlex treats specially, some it does not, and non-ASCII ones.
_ALPHABET = st.sampled_from(list(" \t\r\n\\'\"ab#;|&$\v\f\x00é\u00a0日"))


def _outcome(split: object, text: str) -> object:
    try:
        return split(text)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=3000, deadline=None)
@given(st.text(_ALPHABET, max_size=40))
@example("")
@example("''")
@example('a "" b')
@example('"a\\')
@example("a\\")
@example('"\\"\\\\\\a"')
@example("it's")
@example('a"b c"d')
def test_the_same_words_and_errors_as_shlex(text: str) -> None:
    assert _outcome(shellwords.split, text) == _outcome(shlex.split, text)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "'" + "a" * 1_000_000 + "'",
        '"' + "a\\b" * 300_000 + '"',
        "a " * 500_000,
    ],
    ids=["word", "single-quoted", "double-quoted", "many-words"],
)
def test_a_long_command_is_split_in_linear_time(text: str) -> None:
    """shlex takes O(n²) for one word: 1 MB of it held the event loop for 32 s."""
    began = time.process_time()
    words = shellwords.split(text)
    assert words and time.process_time() - began < 1.0  # shlex: 32 s for the first
