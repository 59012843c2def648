"""Fixtures shared by the API tests: the real agent loop over an in-memory runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from berth.agent.client import ControlClient
from berth.agent.loop import Agent
from berth.agent.server import create_agent_app
from berth.config import Settings
from berth.runtimes.fake import FakeDriver
from tests.conftest import AGENT_PASSWORD
from tests.helpers import zun_headers as h

IMAGE = "berth-test/busybox:latest"  # the one image the fake runtime holds


@pytest.fixture
async def runtime(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, admin_token: str
) -> AsyncIterator[FakeDriver]:
    """A real Agent loop over a FakeDriver, registered with ``app`` as its host."""
    driver = FakeDriver(images={IMAGE})
    state = app.state.berth
    state.env.agents.local[settings.agent_host] = httpx.ASGITransport(
        app=create_agent_app(driver, AGENT_PASSWORD)
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://berth")
    fast = settings.model_copy(update={"heartbeat_interval": 0.5, "reconcile_interval": 0.5})
    task = asyncio.create_task(Agent(fast, ControlClient(http, AGENT_PASSWORD), driver).run())
    for _ in range(200):  # until the agent has registered its host
        hosts = (await client.get("/container/v1/hosts", headers=h(admin_token))).json()
        if hosts["hosts"]:
            break
        await asyncio.sleep(0.05)
    yield driver
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await http.aclose()
