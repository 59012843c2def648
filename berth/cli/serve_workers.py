"""``berth-api`` as several worker processes behind one port (``api_workers`` > 1).

One Python process serves one core at most (the GIL, one event loop): on a
machine with more cores the API scales out by running more processes over the
same PostgreSQL database.

How the processes share the port: uvicorn's own supervisor (``workers=N`` with
an app factory). The parent binds the listening socket once and hands it to
every worker; the workers ``accept`` from the one queue, so a worker that is
busy takes fewer new connections (a process per core with ``SO_REUSEPORT``
would hash each connection onto a fixed worker, busy or not). The parent also
keeps the port while a worker is replaced: a worker that dies is restarted,
``SIGHUP`` replaces them one by one (each new one serving before its old one
stops), ``SIGTERM``/``SIGINT`` stop them gracefully, each finishing its
requests and running its shutdown.

What is per process and how it is shared:

- the schema migration and the identity bootstrap run once, in the parent,
  before any worker starts (concurrent first starts would race);
- tokens: each worker's cache is emptied by an identity change in any worker
  (``LISTEN/NOTIFY``, bounded by ``token_cache_seconds``); the login throttle's
  counters, stream tokens, claims and quotas are rows of the database;
- agents' long polls: a create in one worker wakes an agent polling another
  through ``LISTEN/NOTIFY`` (``berth.store.listen``);
- what must run once per group (the background loops and, all-in-one, the
  embedded agent's reconcile loop) runs in the worker holding a PostgreSQL
  advisory lock (``berth.store.lease``); the others try again every
  ``_RETRY_SECONDS``, so a dead holder is replaced within seconds. Every worker
  keeps the embedded agent's HTTP API in memory (logs, exec, attach, top,
  archives: calls on the local engine that hold no agent state), so a request
  needs no hop to the holder.

SQLite is one writer in one file: ``api_workers`` > 1 with SQLite stops the
start with a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from berth.agent.loop import Agent
from berth.api.app import Extension, create_app
from berth.api.internal.local import LocalControl
from berth.api.state import AppState
from berth.cli.connguard import configure
from berth.cli.serve import (
    _logging,
    agent_in_memory,
    agent_runtime,
    tune_gc,
    uvicorn_options,
    while_running,
)
from berth.config import Settings, load_settings
from berth.runtimes.base import RuntimeDriver
from berth.services import worker
from berth.store.lease import AdvisoryLease

__all__ = ["lease_name", "once_per_group", "serve_workers", "worker_app"]

log = logging.getLogger("berth")

_RETRY_SECONDS = 2.0  # how often a worker without the lease tries to take it
_CHECK_SECONDS = 2.0  # how often the holder checks that its session (and lock) lives
_START_SECONDS = 30


def serve_workers(settings: Settings) -> None:
    """Run ``settings.api_workers`` API processes on one port until SIGTERM or SIGINT."""
    if settings.effective_database_url.startswith("sqlite"):
        raise SystemExit(
            f"berth: api_workers = {settings.api_workers} needs PostgreSQL: SQLite takes one "
            "writer at a time, so berth-api runs one process on it. Set database_url to a "
            "postgresql+asyncpg:// URL, or api_workers to 1."
        )
    asyncio.run(_prepare(settings))
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=settings.api_workers,
        **uvicorn_options(settings),
        # How long a new worker may take to serve (SIGHUP keeps the old one past
        # that) and a worker may leave a health check unanswered before it is
        # replaced. uvicorn's 5 s is less than a start takes on a busy machine
        # (importing Berth alone is ~2 s of CPU).
        timeout_worker_healthcheck=_START_SECONDS,
    )


async def _prepare(settings: Settings) -> None:
    """Migrate the schema and bootstrap identity once, before any worker starts."""
    app = create_app(settings, run_workers=False)
    async with app.router.lifespan_context(app):
        pass


def worker_app() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process)."""
    _logging()
    settings = load_settings()
    configure(settings)
    app = create_app(
        settings, extensions=[once_per_group(settings)], run_workers=False, migrate=False
    )
    tune_gc()
    return app


def lease_name(settings: Settings) -> str:
    """The lease of one group of workers: one per agent host all-in-one (its agent)."""
    return f"api-primary:{settings.agent_host}" if settings.all_in_one else "api-primary"


def once_per_group(settings: Settings) -> Extension:
    """The background loops (and the embedded agent) in whichever worker holds the lease."""
    runtime = agent_runtime(settings) if settings.all_in_one else None

    @asynccontextmanager
    async def run(app: FastAPI, state: AppState) -> AsyncIterator[None]:
        if runtime is not None:
            agent_in_memory(settings, state, runtime)
        async with while_running(_lead(settings, state, runtime)):
            yield

    return run


async def _lead(settings: Settings, state: AppState, runtime: RuntimeDriver | None) -> None:
    lease = AdvisoryLease(state.db.url, lease_name(settings))
    try:
        while True:
            if not await lease.acquire():
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            log.info("worker %d holds %s: it runs the background loops", os.getpid(), lease.name)
            jobs = [asyncio.create_task(_kept_running("worker loops", lambda: worker.run(state)))]
            if runtime is not None:
                agent = Agent(settings, LocalControl(state, state.env.agents.api_key), runtime)
                jobs.append(asyncio.create_task(_kept_running("embedded agent", agent.run)))
            try:
                await _until_lost(lease)
            finally:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
            log.warning("worker %d lost %s: another one takes over", os.getpid(), lease.name)
    finally:
        await lease.release()


async def _until_lost(lease: AdvisoryLease) -> None:
    while True:
        await asyncio.sleep(_CHECK_SECONDS)
        if not await lease.held():
            return


async def _kept_running(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run`` forever: a crash is logged and it starts again a second later."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in 1 s", name)
        await asyncio.sleep(1)
