"""Container actions: change the desired state (start, stop, ...) or ask the agent (logs, ...).

Level changes (start/stop/pause/unpause) set ``desired_state``; one-shot
operations (reboot, kill) append a pending op carrying the request id, so the
agent applies each exactly once even across restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from berth import errors
from berth.domain.containers import Status, TaskState, action_allowed, exec_argv
from berth.domain.context import RequestContext
from berth.events.actions import emit, start_action
from berth.services.env import Env
from berth.services.hosts.calls import call_agent, container_for
from berth.services.slots import Slots
from berth.store import containers as repo
from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import ContainerRow

__all__ = [
    "execute",
    "held_logs",
    "kill",
    "logs",
    "pause",
    "reboot",
    "start",
    "stats",
    "stop",
    "top",
    "unpause",
]

# Seconds a log read or a command waits for a turn when its project (or the process)
# has as many running as the settings allow.
TURN_WAIT = 30.0
_log_reads = Slots()
_execs = Slots()


def _log_read_slot(env: Env, ctx: RequestContext) -> contextlib.AbstractAsyncContextManager[None]:
    """Count one log read of the caller's project while the block runs, waiting for a
    turn; ``Overloaded`` after ``TURN_WAIT`` seconds. A read holds the whole log
    several times over."""
    per_project, total = env.settings.max_log_reads_per_project, env.settings.max_log_reads
    return _turn(_log_reads, ctx, (per_project, total), "container log reads", "max_log_reads",
                 "or read less at once (tail=N, since=...)")  # fmt: skip


def _exec_slot(env: Env, ctx: RequestContext) -> contextlib.AbstractAsyncContextManager[None]:
    """Count one command (``execute`` with run=true), ``top`` or ``stats`` of the caller's
    project while it runs, waiting for a turn: each holds one of its host's engine
    threads (a command for up to ``execute_timeout``, a stats sample about a second),
    which a project's many at once would take from every other."""
    per_project, total = env.settings.max_execs_per_project, env.settings.max_execs
    return _turn(_execs, ctx, (per_project, total), "commands, top and stats calls",
                 "max_execs", "or run fewer at once")  # fmt: skip


def _turn(
    slots: Slots, ctx: RequestContext, bounds: tuple[int, int], what: str, setting: str, hint: str
) -> contextlib.AbstractAsyncContextManager[None]:
    project = ctx.project_id or ""
    return slots.wait_hold(
        project,
        bounds,
        (
            f"Project {project} has had {bounds[0]} {what} running for {TURN_WAIT:g} s "
            f"({setting}_per_project): retry in a moment, {hint}.",
            f"This API process has had {bounds[1]} {what} running for {TURN_WAIT:g} s "
            f"({setting}): retry in a moment.",
        ),
        TURN_WAIT,
    )


_DESIRED = {
    "start": ("running", TaskState.STARTING),
    "stop": ("stopped", TaskState.STOPPING),
    "pause": ("paused", TaskState.PAUSING),
    "unpause": ("running", TaskState.UNPAUSING),
}


async def _act(
    env: Env, ctx: RequestContext, ident: str, action: str, timeout: int | None = None
) -> ContainerRow:
    """Load the container for update, check policy and the state table, record the action."""
    scope = Scope(ctx.project_id, all_projects=ctx.is_admin)
    async with env.db.transaction() as session:
        row = await repo.get(session, scope, ident, for_update=True)
        env.enforce(ctx, f"container:{action}", row.project_id)
        if not action_allowed(action, row.status):
            raise errors.InvalidStateException(
                f"Cannot {action} container {row.uuid} in {row.status} state."
            )
        if row.host is None:
            raise errors.InvalidStateException(
                f"Cannot {action} container {row.uuid}: it has no host. Delete it and create "
                "it again."
            )
        await start_action(session, ctx, row, action, keep=env.settings.max_actions_per_container)
        _apply(row, action, ctx.request_id)
        if timeout is not None:
            row.stop_timeout = timeout
        row.held = False
        row.updated_at = utcnow()
        emit(session, row, f"container.{action}", ctx.request_id)
    await env.notifier.touch(row.host)
    return row


def _apply(row: ContainerRow, action: str, request_id: str) -> None:
    if action in _DESIRED:
        desired, task = _DESIRED[action]
        row.desired_state = desired
        row.desired_since = utcnow()
        row.task_state = task
        return
    if action == "reboot":
        row.pending_ops = [*row.pending_ops, {"id": request_id, "op": "reboot", "args": {}}]
        row.desired_state = "running"
        row.desired_since = utcnow()
        row.status = Status.RESTARTING
        row.task_state = TaskState.REBOOTING


async def start(env: Env, ctx: RequestContext, ident: str) -> None:
    await _act(env, ctx, ident, "start")


async def stop(env: Env, ctx: RequestContext, ident: str, timeout: int | None) -> None:
    await _act(env, ctx, ident, "stop", timeout)


async def reboot(env: Env, ctx: RequestContext, ident: str, timeout: int | None) -> None:
    await _act(env, ctx, ident, "reboot", timeout)


async def pause(env: Env, ctx: RequestContext, ident: str) -> None:
    await _act(env, ctx, ident, "pause")


async def unpause(env: Env, ctx: RequestContext, ident: str) -> None:
    await _act(env, ctx, ident, "unpause")


_TERMINATING = {
    "",
    "SIGKILL",
    "SIGTERM",
    "SIGINT",
    "SIGQUIT",
    "KILL",
    "TERM",
    "INT",
    "QUIT",
    "9",
    "15",
    "2",
    "3",
}


def normalize_signal(signal: str | None) -> str:
    """Docker's signal name for Zun's accepted forms (None, SIGxxx, xxx, lower case, numbers)."""
    if signal is None or signal in ("None", ""):
        return "SIGKILL"
    sig = signal.strip().upper()
    if sig.isdigit():
        if not 1 <= int(sig) <= 64:
            raise errors.Invalid(f"Invalid signal number {signal}.")
        return sig
    if not sig.startswith("SIG"):
        sig = "SIG" + sig
    if (
        not sig[3:]
        .replace("RTMIN", "")
        .replace("RTMAX", "")
        .replace("+", "")
        .replace("-", "")
        .isalnum()
    ):
        raise errors.Invalid(f"Invalid signal {signal}.")
    return sig


async def kill(env: Env, ctx: RequestContext, ident: str, signal: str | None) -> None:
    """Send a signal; a terminating one also makes the desired state ``stopped``."""
    sig = normalize_signal(signal)
    scope = Scope(ctx.project_id, all_projects=ctx.is_admin)
    async with env.db.transaction() as session:
        row = await repo.get(session, scope, ident, for_update=True)
        env.enforce(ctx, "container:kill", row.project_id)
        if not action_allowed("kill", row.status):
            raise errors.InvalidStateException(
                f"Cannot kill container {row.uuid} in {row.status} state."
            )
        waiting = sum(1 for op in row.pending_ops or [] if op.get("op") == "kill")
        bound = env.settings.max_waiting_signals
        if waiting >= bound:
            raise errors.InvalidStateException(
                f"Container {row.uuid} has {waiting} signals waiting for its host to deliver "
                f"them (max_waiting_signals {bound}): retry once they are delivered."
            )
        await start_action(session, ctx, row, "kill", keep=env.settings.max_actions_per_container)
        row.pending_ops = [
            *row.pending_ops,
            {"id": ctx.request_id, "op": "kill", "args": {"signal": sig}},
        ]
        if sig in _TERMINATING or sig.removeprefix("SIG") in _TERMINATING:
            row.desired_state = "stopped"
            row.desired_since = utcnow()
            row.task_state = TaskState.KILLING
        emit(session, row, "container.kill", ctx.request_id, signal=sig)
    await env.notifier.touch(row.host)


async def logs(env: Env, ctx: RequestContext, ident: str, **options: Any) -> str:
    """The container's log (not followed), read in a log-read turn (``held_logs``'s options)."""
    async with held_logs(env, ctx, ident, **options) as text:
        return text


@contextlib.asynccontextmanager
async def held_logs(
    env: Env,
    ctx: RequestContext,
    ident: str,
    *,
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tail: str,
    since: str | None,
) -> AsyncIterator[str]:
    """The container's log (not followed), its turn held while the block runs (until
    the answer holding it has been handed over)."""
    row = await container_for(env, ctx, ident, "logs")
    params: dict[str, Any] = {
        "stdout": stdout,
        "stderr": stderr,
        "timestamps": timestamps,
        "tail": tail,
    }
    if since:
        params["since"] = since
    async with _log_read_slot(env, ctx):  # once the caller may read it: else its 403/404
        result = await call_agent(env, row, "GET", "logs", params=params)
        yield str(result["logs"])


async def execute(env: Env, ctx: RequestContext, ident: str, command: str) -> dict[str, Any]:
    """Run ``command`` (a shell-like string) in the container and return output and exit code."""
    row = await container_for(env, ctx, ident, "execute")
    argv = exec_argv(command)
    result = await _engine_call(
        env,
        ctx,
        row,
        "POST",
        "execute",
        json={
            "command": argv,
            "timeout": env.settings.execute_timeout,
            "max_output": env.settings.execute_max_output_bytes,
        },
    )
    return {
        "output": result["output"],
        "exit_code": result["exit_code"],
        "exec_id": None,
        "proxy_url": None,
    }


async def _engine_call(
    env: Env, ctx: RequestContext, row: ContainerRow, method: str, path: str, **kw: Any
) -> dict[str, Any]:
    """``call_agent`` in one of the caller's project's turns (``exec_slot``), taken once
    the caller may act on ``row`` (so a refusal is its 403/404, never a wait)."""
    async with _exec_slot(env, ctx):
        result: dict[str, Any] = await call_agent(env, row, method, path, **kw)
        return result


async def top(env: Env, ctx: RequestContext, ident: str, ps_args: str | None) -> dict[str, Any]:
    row = await container_for(env, ctx, ident, "top")
    params = {"ps_args": ps_args} if ps_args and ps_args != "None" else None
    return await _engine_call(env, ctx, row, "GET", "top", params=params)


async def stats(env: Env, ctx: RequestContext, ident: str) -> dict[str, Any]:
    row = await container_for(env, ctx, ident, "stats")
    result = await _engine_call(env, ctx, row, "GET", "stats")
    result["CONTAINER"] = row.name  # the agent only knows the runtime name
    return result
