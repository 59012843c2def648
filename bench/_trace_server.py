"""berth-api (all-in-one) with timing hooks, for bench/profile_create.py only.

Wraps, without changing Berth's code, the steps a create -> Running goes
through (HTTP requests, token checks, transactions, the notifier, the agent's
long poll, pass, worker, Docker driver calls and engine threads, reports) and
appends one JSON line per finished step to the file named by
``BERTH_BENCH_TRACE``: ``{"ev": name, "t0": start, "t1": end, ...}`` in epoch
seconds (``time.time()``, the clock the benchmark client uses too).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

_TRACE = os.environ.get("BERTH_BENCH_TRACE")
_OUT = open(_TRACE, "a", buffering=1) if _TRACE else None  # noqa: SIM115 - process-long


def emit(ev: str, t0: float, t1: float, **extra: Any) -> None:
    assert _OUT is not None
    _OUT.write(json.dumps({"ev": ev, "t0": t0, "t1": t1, **extra}) + "\n")


def wrap_async(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        try:
            return await original(*args, **kwargs)
        finally:
            emit(label, t0, time.time())

    setattr(owner, name, timed)


def install_tracing() -> None:
    from berth.agent import firewall, loop
    from berth.agent.client import ControlClient
    from berth.api.internal.local import LocalControl
    from berth.events import notify
    from berth.runtimes import docker as docker_driver
    from berth.runtimes import podman as podman_driver
    from berth.services import identity
    from berth.services.containers import containers
    from berth.services.hosts import hosts
    from berth.store.db import Database

    for name in ("list_managed", "inspect", "ensure_image", "create", "start", "remove"):
        wrap_async(docker_driver.DockerDriver, name, f"driver.{name}")
        wrap_async(podman_driver.PodmanDriver, name, f"driver.{name}")
    for control in (ControlClient, LocalControl):  # a standalone agent's, the embedded one's
        wrap_async(control, "desired", "agent.desired")
        wrap_async(control, "report", "agent.report")
    wrap_async(loop.Agent, "_pass", "agent.pass")
    wrap_async(loop.Agent, "_converge", "agent.converge")
    wrap_async(loop.Agent, "_send", "agent.send")  # the firewall settle, then queued
    wrap_async(firewall.FirewallSync, "settle", "agent.firewall_settle")
    # The whole state, or (the incremental protocol) what changed since a revision.
    wrap_async(hosts, "desired_for", "api.desired_for")
    wrap_async(hosts, "desired_changes", "api.desired_for")
    wrap_async(hosts, "record_observations", "api.record_observations")
    wrap_async(containers, "create", "api.containers.create")
    wrap_async(identity, "validate_token", "api.validate_token")
    wrap_async(notify.Notifier, "touch", "notifier.touch")
    wrap_async(notify.Notifier, "wait", "notifier.wait")

    async def raw(self: Any, call: Callable[[Any], Any]) -> Any:
        # The engine call split into: queueing for a pool thread, the HTTP call to
        # dockerd in the thread, and getting back onto the (possibly busy) event loop.
        marks: dict[str, float] = {}

        def in_thread() -> Any:
            marks["ts"] = time.time()
            try:
                return call(self._client())
            finally:
                marks["te"] = time.time()

        t0 = time.time()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, in_thread)
        finally:
            emit("engine.call", t0, time.time(), **marks)

    docker_driver._Engine.raw = raw  # type: ignore[method-assign]

    original_call = podman_driver._Libpod.call

    async def libpod_call(self: Any, method: str, path: str, **kw: Any) -> Any:
        # libpod's REST API is called on the event loop (httpx, no thread): the
        # request is the whole call.
        t0 = time.time()
        try:
            return await original_call(self, method, path, **kw)
        finally:
            t1 = time.time()
            emit("engine.call", t0, t1, ts=t0, te=t1, method=method, path=path)

    podman_driver._Libpod.call = libpod_call  # type: ignore[method-assign]

    original_txn = Database.transaction

    @contextlib.asynccontextmanager
    async def transaction(self: Any) -> AsyncIterator[Any]:
        t0 = time.time()
        async with original_txn(self) as session:
            tb = time.time()
            yield session
            tc = time.time()  # body done; the commit follows as the block exits
        emit("db.transaction", t0, time.time(), tb=tb, tc=tc)

    Database.transaction = transaction  # type: ignore[method-assign]

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("bench_t0", []).append(time.time())

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        t0 = conn.info["bench_t0"].pop()
        emit("sql", t0, time.time(), sql=" ".join(statement.split())[:80])


class Timing:
    """Outermost ASGI middleware: one line per HTTP request, public or internal."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.time()
        try:
            await self.app(scope, receive, send)
        finally:
            emit("http", t0, time.time(), method=scope["method"], path=scope["path"])


def install_experiments(names: list[str]) -> None:
    """Monkeypatch a what-if into this server (none defined now).

    The first three (token-cache, direct-create, optimistic-image) measured the
    proposals in docs/benchmarks.md before they became Berth's own behaviour;
    add a new one here and to EXPERIMENTS in bench/create_to_running.py, and pass
    ``--experiment NAME`` to compare a patched server in the same rounds.
    """
    from create_to_running import EXPERIMENTS

    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiments: {', '.join(sorted(unknown))}")


def main() -> None:
    experiments = [n for n in os.environ.get("BERTH_BENCH_EXPERIMENTS", "").split(",") if n]
    if experiments:
        install_experiments(experiments)
    if _OUT is not None:
        install_tracing()
    from berth.cli import serve

    create_app = serve.create_app

    def traced_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        if _OUT is not None:
            app.add_middleware(Timing)
        return app

    serve.create_app = traced_app  # type: ignore[assignment]
    serve.api_main()


if __name__ == "__main__":
    main()
