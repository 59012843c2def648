"""Fixtures shared by the stock-client tests.

A module whose live Berth asks for ``engine`` runs once per runtime
(``[docker]``, ``[podman]``): its agent drives that engine (``engine.settings``
go into the agent's environment) and the test reads the engine through the same
``EngineView`` (tests/compat/runtimes.py). The cluster (COE) and identity modules
run once: a swarm cluster's nodes are Docker containers its driver makes
(``docker_api``), and Keystone touches no runtime. test_remote_sessions.py runs
once too: it checks the API-to-remote-agent hop of the sessions, whose runtime
calls are the interactive module's, which runs on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat.runtimes import RUNTIMES, EngineView, engine_view
from tests.functional.docker_engine import engine_or_skip, ensure_test_image


@pytest.fixture(scope="module")
def docker_api() -> Any:
    """A low-level client of the Docker engine, the test image present."""
    api = engine_or_skip()
    ensure_test_image(api)
    return api


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime the module's agent drives: each module runs once per runtime."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def engine(
    runtime: str, docker_api: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineView]:
    """The engine of ``runtime``, seen through one interface, the test image in it."""
    with engine_view(runtime, docker_api, tmp_path_factory.mktemp(f"engine-{runtime}")) as view:
        yield view
