"""Process entry points: ``berth-api`` (all-in-one), ``berth-agent``, ``berth-worker``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from fastapi import FastAPI

from berth.agent.client import ControlClient
from berth.agent.loop import Agent
from berth.agent.server import create_agent_app
from berth.cli.connguard import GuardedHttp, configure
from berth.config import Settings, load_settings
from berth.networks.base import NETWORK_DRIVERS
from berth.plugins import PluginNotFound
from berth.runtimes.base import RUNTIME_DRIVERS, RuntimeDriver
from berth.volumes.base import VOLUME_DRIVERS

if TYPE_CHECKING:
    from berth.api.app import Extension
    from berth.api.state import AppState

__all__ = [
    "agent_in_memory",
    "agent_main",
    "agent_password",
    "agent_runtime",
    "api_main",
    "control_client",
    "embedded_agent",
    "tune_gc",
    "uvicorn_options",
    "while_running",
    "worker_main",
]

log = logging.getLogger("berth")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def agent_runtime(settings: Settings) -> RuntimeDriver:
    """The agent's drivers, chosen by name among the installed entry points and wired here:
    the runtime driver is handed the network and volume drivers it uses.

    A name that is not installed stops the process with a message naming the choices.
    """
    try:
        networks = NETWORK_DRIVERS.load(settings.network_driver)(settings)
        volumes = VOLUME_DRIVERS.load(settings.volume_driver)(settings)
        factory = RUNTIME_DRIVERS.load(settings.runtime_driver)
    except PluginNotFound as exc:
        raise SystemExit(f"berth: {exc.message}") from exc
    return factory(settings, networks=networks, volumes=volumes)


def embedded_agent(settings: Settings) -> Extension:
    """The all-in-one agent: reaches the API in memory and is reached in memory."""
    from berth.api.internal.local import LocalControl

    # Built now, not at start-up of the app: a driver that is not installed stops the
    # process before it serves anything.
    runtime = agent_runtime(settings)

    @asynccontextmanager
    async def run(app: FastAPI, state: AppState) -> AsyncIterator[None]:
        agent_in_memory(settings, state, runtime)
        # In memory both ways: no HTTP client, middleware or JSON between the two.
        agent = Agent(settings, LocalControl(state, state.env.agents.api_key), runtime)
        async with while_running(agent.run()):
            yield

    return run


def agent_in_memory(settings: Settings, state: AppState, runtime: RuntimeDriver) -> None:
    """Let the API reach this host's agent (logs, exec, attach, top, archives) in memory."""
    app = create_agent_app(runtime, state.env.agents.api_key)
    state.env.agents.local[settings.agent_host] = httpx.ASGITransport(app=app)


@asynccontextmanager
async def while_running(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` as a task for as long as the body runs; cancel and await it on leaving."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def api_main() -> None:
    """Run berth-api; with BERTH_ALL_IN_ONE (default) it also runs one agent for this host.

    With ``api_workers`` > 1, several processes serve the port (``serve_workers``).
    """
    _logging()
    settings = load_settings()
    # The control plane is imported by the commands that run it, not by the module:
    # a standalone agent would import it (~1 s of start-up, and its memory) for nothing.
    from berth.api.app import create_app

    if settings.api_workers > 1:
        # Imported here: that module builds on this one's helpers.
        from berth.cli.serve_workers import serve_workers

        serve_workers(settings)
        return
    extensions = [embedded_agent(settings)] if settings.all_in_one else []
    app = create_app(settings, extensions=extensions)
    tune_gc()
    # uvicorn closes an idle connection after 5 s by default, the very interval at
    # which the openstack CLI's --wait polls: a poll sent as the server closed its
    # connection failed with "Connection reset by peer".
    configure(settings)
    uvicorn.run(app, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every berth-api process serves with: address, keep-alive, the connection guard."""
    return {
        "host": settings.bind_host,
        "port": settings.port,
        "log_level": "info",
        "access_log": False,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "http": GuardedHttp,
        # The largest message a session's websocket takes (uvicorn's default: 16 MiB).
        # uvicorn's websocket protocol stops reading after each message until the app
        # has taken it, so this bounds what a session holds in the API process.
        "ws_max_size": settings.stream_max_message_bytes,
    }


def tune_gc() -> None:
    """Keep the garbage collector's pauses off the request path.

    A full collection walks every tracked object, most of which (modules,
    classes, SQLAlchemy and pydantic metadata) live as long as the process:
    ~10-15 ms here, landing in the middle of a create now and then. Freezing
    what exists after start-up takes it out of every later collection, and a
    larger first-generation threshold makes collections rarer (cycles still go).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def agent_password(settings: Settings) -> str:
    """The agents' service password: BERTH_AGENT_PASSWORD, else ``<data_dir>/agent-password``."""
    if settings.agent_password:
        return settings.agent_password
    path = Path(settings.data_dir) / "agent-password"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit(
        "berth-agent needs its service password: set BERTH_AGENT_PASSWORD "
        f"or put it in {path} (berth-api writes it there on first start)."
    )


async def _agent(settings: Settings) -> None:
    password = agent_password(settings)
    if not settings.control_url:
        raise SystemExit("berth-agent needs BERTH_CONTROL_URL (the berth-api base URL).")
    runtime = agent_runtime(settings)
    configure(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_agent_app(runtime, password),
            host=settings.agent_bind_host,
            port=settings.agent_port,
            log_level="warning",
            http=GuardedHttp,
        )
    )
    async with httpx.AsyncClient(base_url=settings.control_url, timeout=90.0) as http:
        agent = Agent(settings, control_client(settings, http, password), runtime)
        await asyncio.gather(server.serve(), agent.run())


def control_client(settings: Settings, http: httpx.AsyncClient, password: str) -> ControlClient:
    """The standalone agent's client: it logs in to Berth's identity or, with an external
    Keystone, to that Keystone as ``keystone_agent_username`` (password: the agent's)."""
    if settings.identity_backend != "keystone":
        return ControlClient(http, password=password)
    return ControlClient(
        http,
        password=password,
        username=settings.keystone_agent_username,
        project=settings.keystone_service_project,
        domain=settings.keystone_service_user_domain,
        project_domain=settings.keystone_service_project_domain,
        auth_url=f"{settings.keystone_v3_url}/auth/tokens",
    )


def agent_main() -> None:
    """Run a standalone agent for this host (talks to BERTH_CONTROL_URL over HTTP)."""
    _logging()
    asyncio.run(_agent(load_settings()))


def worker_main() -> None:
    """Run the control plane's background loops without serving the API."""
    _logging()
    settings = load_settings()
    from berth.api.app import create_app

    app = create_app(settings)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.Event().wait()

    asyncio.run(run())
