"""Fixtures shared by the stock-client tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.docker_engine import engine_or_skip, ensure_test_image


@pytest.fixture(scope="module")
def engine() -> Any:
    """A low-level client of the engine, the test image present."""
    api = engine_or_skip()
    ensure_test_image(api)
    return api
