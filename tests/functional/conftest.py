"""Fixtures shared by the real-engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.docker_engine import engine_or_skip, ensure_test_image


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    """A low-level client of the engine, the test image present; closed after the module."""
    client = engine_or_skip()
    ensure_test_image(client)
    yield client
    client.close()
