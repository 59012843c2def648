"""A process whose database connections are all busy answers 503 with Retry-After, not 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from berth import errors
from berth.api.errors import status_of
from berth.dashboard.pages import status_of as dashboard_status_of
from berth.store.db import Database


async def test_no_free_connection_in_time_is_overloaded(tmp_path: Path) -> None:
    # What the pool raises when no connection came free within its timeout,
    # from the first statement of a session (the checkout happens there).
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'berth.db'}")
    try:
        with pytest.raises(errors.Overloaded, match="too busy"):
            async with db.read():
                raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached")
        with pytest.raises(errors.Overloaded):
            async with db.transaction():
                raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached")
        with pytest.raises(ValueError):  # anything else passes through as it was
            async with db.read():
                raise ValueError("not the pool")
    finally:
        await db.close()


def test_overloaded_is_a_503() -> None:
    assert status_of(errors.Overloaded("busy")) == 503


@pytest.mark.parametrize(
    "exc",
    [errors.Overloaded("busy"), errors.DatabaseUnavailable("down"), errors.IdentityUnavailable("")],
)
def test_the_services_own_conditions_are_503s_in_the_api_and_the_dashboard(
    exc: errors.BerthError,
) -> None:
    # The dashboard answered them 400, as if the form were wrong.
    assert status_of(exc) == 503
    assert dashboard_status_of(exc) == 503
