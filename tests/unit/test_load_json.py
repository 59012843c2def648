"""store.base.load_json: what json.loads gives, value or error, for any text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.store.base import load_json

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


def _outcome(load: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", load(text)
    except json.JSONDecodeError as exc:
        return "error", str(exc)


@given(_JSON, st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\n", "x"]))
def test_a_document_reads_as_json_loads_reads_it(value: Any, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    assert _outcome(load_json, text) == _outcome(json.loads, text)


@pytest.mark.parametrize(
    "text",
    ["", "{", "[1,]", "NaN", "1e400", "nul", "{} {}", "  ", "12345678901234567890123"],
)
def test_odd_texts_read_or_fail_as_json_loads(text: str) -> None:
    assert _outcome(load_json, text) == _outcome(json.loads, text)


def test_a_lone_surrogate_reads_as_the_replacement_character() -> None:
    # Stored by versions before 7 December; no response could carry it (a 500 per list).
    assert load_json('"\\ud800"') == "\ufffd"
    assert load_json('{"k\\uDC00": ["a\\ud800b", 1]} ') == {"k\ufffd": ["a\ufffdb", 1]}
    assert load_json('"\\ud83d\\ude00"') == "\U0001f600"  # a pair is one character
