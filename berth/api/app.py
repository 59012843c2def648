"""The ASGI application factory: one app serves identity, the container API and internals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from berth.api.errors import install_error_handlers
from berth.api.identity import router as identity_router
from berth.api.internal import router as internal_router
from berth.api.magnum import router as magnum_router
from berth.api.magnum.microversions import MagnumPathMiddleware
from berth.api.middleware import (
    BodyLimitMiddleware,
    BodyLimits,
    NulRefusingMiddleware,
    RequestIdMiddleware,
)
from berth.api.state import AppState
from berth.api.zun import router as zun_router
from berth.api.zun.microversions import ZunPathMiddleware
from berth.clusters.registry import load_drivers
from berth.config import Settings
from berth.dashboard import build_router as build_dashboard_router
from berth.events.notify import Notifier
from berth.images.glance import GlanceAccess, GlanceClient
from berth.services import identity as identity_service
from berth.services import worker
from berth.services.env import build_env
from berth.services.hosts import heartbeats
from berth.services.hosts.agents import AgentCalls
from berth.services.identity import cache as identity_cache
from berth.services.identity.keystone import KeystoneTokens
from berth.store.db import Database
from berth.store.listen import PgListener, pg_notify

__all__ = ["Extension", "create_app"]

log = logging.getLogger(__name__)

# Something to run for the app's lifetime beside the API (the embedded agent in
# all-in-one mode). It receives the app and its state once the API can serve.
Extension = Callable[[FastAPI, AppState], AbstractAsyncContextManager[None]]


def create_app(
    settings: Settings,
    *,
    extensions: list[Extension] | None = None,
    run_workers: bool = True,
    migrate: bool = True,
) -> FastAPI:
    """Build the API app. Nothing touches the database until the app starts."""
    db = Database(settings.effective_database_url)
    notifier = Notifier()
    env = build_env(settings, db, notifier, AgentCalls(api_key=settings.agent_password or ""))
    keystone = KeystoneTokens(settings) if settings.identity_backend == "keystone" else None
    if keystone is not None and settings.glance_url:
        env.glance = GlanceAccess(
            GlanceClient(settings.glance_url, settings.keystone_timeout, settings.glance_timeout),
            keystone.service_token,
            settings.glance_image_max_bytes,
        )
    state = AppState(settings=settings, db=db, notifier=notifier, env=env, keystone=keystone)
    identity_cache.token_cache(db, settings.token_cache_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await state.db.migrate()
        env.agents.api_key = await _agent_key(state)
        # Agents' calls noted in memory, written in batches (services/hosts/liveness.py).
        tasks = [asyncio.create_task(_forever("liveness", _flush_heard, state))]
        if run_workers:
            tasks.append(asyncio.create_task(_forever("worker", worker.run, state)))
        async with contextlib.AsyncExitStack() as stack:
            if not state.db.is_sqlite:
                await stack.enter_async_context(_cross_process_notifications(state))
            for ext in extensions or []:
                await stack.enter_async_context(ext(app, state))
            try:
                yield
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
                with contextlib.suppress(Exception):  # the last calls heard, if it can
                    await heartbeats.flush_heard(env)
        if state.keystone is not None:
            await state.keystone.aclose()
        if env.glance is not None:
            await env.glance.client.aclose()
        await state.db.close()

    app = FastAPI(
        title="Berth",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.berth = state
    app.state.cluster_drivers = load_drivers()
    install_error_handlers(app)
    # Innermost: these two see the canonical paths the path middlewares make.
    app.add_middleware(BodyLimitMiddleware, limits=_body_limits(settings))
    app.add_middleware(NulRefusingMiddleware)
    app.add_middleware(ZunPathMiddleware)
    app.add_middleware(MagnumPathMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # The busiest first: a request is matched against every route before its own,
    # ~1.5 us each, and the identity API (~40 routes, one token per client session)
    # stood before the agents' calls and the container API. The prefixes do not
    # overlap, so the order decides nothing else; /openapi.json keeps its order.
    app.include_router(internal_router.router, prefix="/internal")
    app.include_router(zun_router.router, prefix="/container")
    app.include_router(magnum_router.router, prefix="/container-infra")
    if keystone is None:  # with an external Keystone, /identity is not Berth's to serve
        app.include_router(identity_router.router, prefix="/identity")
    app.include_router(build_dashboard_router())
    _document_in_order(app, ("/identity", "/container", "/container-infra", "/internal"))
    return app


def _document_in_order(app: FastAPI, prefixes: tuple[str, ...]) -> None:
    """List the OpenAPI paths by API in ``prefixes`` order, whatever the routing order."""
    generate = app.openapi

    def rank(path: str) -> int:
        # The longest prefix that fits: /container-infra is not /container's.
        fits = [p for p in prefixes if path == p or path.startswith(p + "/")]
        return prefixes.index(max(fits, key=len)) if fits else len(prefixes)

    def openapi() -> dict[str, Any]:
        schema = generate()
        paths = schema.get("paths") or {}
        schema["paths"] = {p: paths[p] for p in sorted(paths, key=rank)}  # a stable sort
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _agent_key(state: AppState) -> str:
    """The secret the API and its agents share: the agents' password.

    Built-in identity: the ``berth-agent`` user's, made on first start. With an
    external Keystone, Berth's own identity is not bootstrapped and the key is
    ``agent_password`` (or one generated once in ``data_dir/agent-password``).
    """
    if state.keystone is None:
        boot = await identity_service.bootstrap(state.db, state.settings)
        return boot.agent_password
    return await identity_service.agent_secret(state.settings)


def _body_limits(settings: Settings) -> BodyLimits:
    """Every request body is bounded; these routes legitimately send more than the default."""
    archive = settings.archive_max_bytes * 4 // 3 + 65536  # base64 in JSON, as the route checks
    return BodyLimits(
        max_bytes=settings.max_request_body_bytes,
        max_depth=settings.max_json_depth,
        routes=(
            # A ``docker save`` tar, not JSON: streamed to a file, counted, never scanned.
            (
                "POST",
                re.compile(r"/container/v1/images/upload"),
                settings.image_upload_max_bytes,
                False,
            ),
            # A tar in a JSON string: as big as archive_max_bytes allows.
            ("POST", re.compile(r"/container/v1/containers/[^/]+/put_archive"), archive, True),
            # Agents (service credential only) report every container of a host at once.
            ("POST", re.compile(r"/internal/.*"), settings.max_agent_report_bytes, True),
        ),
    )


@asynccontextmanager
async def _cross_process_notifications(state: AppState) -> AsyncIterator[None]:
    """Several API processes over PostgreSQL wake each other's long-polling agents."""
    tokens = identity_cache.token_cache(state.db)

    async def received(payload: str) -> None:
        if payload == identity_cache.IDENTITY_CHANGED:
            tokens.invalidate()
        else:
            await state.notifier.received(payload)

    async def gap() -> None:
        # What the others notified while the connection was down is lost.
        tokens.invalidate()
        state.env.host_cache.forget_all()
        state.notifier.resync()

    listener = PgListener(state.db.url, received, gap)
    await listener.start()
    state.notifier.bridge(lambda host: pg_notify(state.db, host))
    tokens.bridge(lambda message: pg_notify(state.db, message))
    try:
        yield
    finally:
        tokens.bridge(None)
        state.notifier.bridge(None)
        await listener.close()


async def _flush_heard(state: AppState) -> None:
    await heartbeats.keep_flushing(state.env)


async def _forever(name: str, loop: Callable[[AppState], Awaitable[None]], state: AppState) -> None:
    """Run a background loop; a crash is logged and the loop restarted, never silently lost."""
    while True:
        try:
            await loop(state)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background loop %s crashed; restarting in 1 s", name)
            await asyncio.sleep(1)
