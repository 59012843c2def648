"""The connection guard's rules that need no server (berth/cli/connguard.py); the server's
behaviour is tests/functional/test_connection_bounds.py."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from berth.cli import connguard
from berth.config import Settings


@pytest.fixture(autouse=True)
def _defaults_after() -> Iterator[None]:
    yield
    connguard.configure(Settings())


def test_a_trusted_proxy_is_not_capped_per_address_and_others_are() -> None:
    limits = connguard.configure(
        Settings(max_connections_per_client=5, trusted_proxies=["10.0.0.0/24", "192.0.2.7"])
    )
    assert not limits.capped("10.0.0.9") and not limits.capped("192.0.2.7")
    assert limits.capped("192.0.2.8") and limits.capped("127.0.0.1")
    assert not connguard.configure(Settings(max_connections_per_client=0)).capped("127.0.0.1")


def test_the_process_keeps_files_for_itself() -> None:
    limits = connguard.configure(Settings(max_connections=1_000_000))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY  # raised to the hard limit
    if hard != resource.RLIM_INFINITY:
        assert limits.total == soft - 256


def test_a_trusted_proxy_that_is_no_address_stops_the_start() -> None:
    with pytest.raises(ValidationError, match="'junk' is not an address or a network"):
        Settings(trusted_proxies=["junk"])
