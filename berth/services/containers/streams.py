"""Interactive sessions and log following: exec and attach over websockets, TTY resizes.

A session starts with a REST call (``execute`` with ``run=False``, or
``attach``) that checks policy and state and returns a websocket URL on this
API with a short-lived, single-use token bound to the container and its owner
(only the token's digest is stored). The API's websocket route redeems the
token (``redeem``) and joins the caller to the agent of the container's host
(``connect``), wherever that host is; no engine port is ever exposed.

Each open session or followed log holds an engine session and a reader thread
on its host until it ends, so they are counted (``stream_slot``): at most
``max_streams_per_project`` per project and ``max_streams`` in all per API
process; one more is refused (403, as a quota is) before anything is opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from berth import errors
from berth.config import Settings
from berth.domain.containers import Status, exec_argv
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts import hosts
from berth.services.hosts.agent_streams import AgentSession, AgentStream, open_session, open_stream
from berth.services.hosts.calls import agent_address, call_agent, container_for
from berth.services.slots import Slots
from berth.store import containers as containers_repo
from berth.store import stream_tokens
from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, StreamTokenRow

__all__ = [
    "WEBSOCKET_PATH",
    "SessionTarget",
    "attach_url",
    "connect",
    "execute_resize",
    "follow_logs",
    "open_exec",
    "redeem",
    "resize",
    "stream_slot",
    "websocket_base",
]

WEBSOCKET_PATH = "/container/v1/ws"
# What the agent may be silent for beyond the API's own idle limit before it
# gives up on a session on its own (the API normally ends it first).
_AGENT_IDLE_MARGIN = 30.0
_streams = Slots()  # sessions and followed logs open in this process


@contextlib.contextmanager
def stream_slot(settings: Settings, project_id: str) -> Iterator[None]:
    """Count one open session or followed log of ``project_id`` while the block runs;
    ``OverQuota`` (before anything is opened) when the project or the process is full."""
    per_project, total = settings.max_streams_per_project, settings.max_streams
    with _streams.hold(
        project_id,
        (per_project, total),
        (
            f"Project {project_id} has {per_project} interactive sessions and followed logs "
            "open at once (max_streams_per_project): end one (exit its shell, detach with "
            "~., or stop following) and try again.",
            f"This API process serves {total} sessions and followed logs at once "
            "(max_streams): try again when one has ended.",
        ),
    ):
        yield


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """A redeemed token: which session to open, and where."""

    kind: str  # "attach" or "exec"
    container_uuid: str
    project_id: str
    host: str
    exec_id: str | None = None


def websocket_base(settings: Settings) -> str:
    """``ws[s]://<public host:port>[/prefix]/container/v1/ws``, from the public URL."""
    public = settings.effective_public_url
    if public.startswith("https://"):
        public = "wss://" + public.removeprefix("https://")
    elif public.startswith("http://"):
        public = "ws://" + public.removeprefix("http://")
    return public + WEBSOCKET_PATH


async def _room_for_one_more(env: Env, project_id: str) -> None:
    """``OverQuota`` when the project holds ``max_unopened_sessions_per_project`` URLs
    neither opened nor expired (each interactive exec is an exec on its host's engine)."""
    bound = env.settings.max_unopened_sessions_per_project
    if not bound:
        return
    async with env.db.read() as session:
        waiting = await stream_tokens.unopened(session, project_id, utcnow())
    if waiting >= bound:
        raise errors.OverQuota(
            f"Project {project_id} holds {waiting} exec/attach URLs not yet opened "
            f"(max_unopened_sessions_per_project): open them, or wait up to "
            f"{env.settings.stream_token_ttl:g} s for them to expire, and try again."
        )


async def _issue(env: Env, ctx: RequestContext, row: ContainerRow, exec_id: str | None) -> str:
    """A fresh token for a session on ``row``; its URL."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with env.db.transaction() as session:
        await stream_tokens.purge_expired(session, now - dt.timedelta(hours=1))
        await stream_tokens.issue(
            session,
            StreamTokenRow(
                digest=stream_tokens.digest_of(token),
                kind="exec" if exec_id else "attach",
                container_uuid=row.uuid,
                project_id=row.project_id,
                user_id=ctx.user_id,
                exec_id=exec_id,
                created_at=now,
                expires_at=now + dt.timedelta(seconds=env.settings.stream_token_ttl),
            ),
        )
    query = {"token": token, "uuid": row.uuid}
    if exec_id:
        query["exec_id"] = exec_id
    return f"{websocket_base(env.settings)}?{urlencode(query)}"


async def open_exec(
    env: Env, ctx: RequestContext, ident: str, command: str, *, tty: bool
) -> dict[str, Any]:
    """Prepare ``command`` as an exec session; Zun's execute body with ``proxy_url``."""
    row = await container_for(env, ctx, ident, "execute")
    argv = exec_argv(command)
    await _room_for_one_more(env, row.project_id)  # before the host makes the exec
    created = await call_agent(env, row, "POST", "exec", json={"command": argv, "tty": tty})
    exec_id = str(created["exec_id"])
    return {
        "output": None,
        "exit_code": None,
        "exec_id": exec_id,
        "proxy_url": await _issue(env, ctx, row, exec_id),
    }


async def attach_url(env: Env, ctx: RequestContext, ident: str) -> str:
    """The websocket URL attaching to the container's main process (interactive only)."""
    row = await container_for(env, ctx, ident, "attach")
    if not row.interactive:
        raise errors.NoInteractiveFlag(
            f"Container {row.uuid} was not created with interactive (-i): nothing to attach to."
        )
    await _room_for_one_more(env, row.project_id)
    return await _issue(env, ctx, row, None)


async def resize(env: Env, ctx: RequestContext, ident: str, width: int, height: int) -> None:
    """Resize the container's TTY (an attach session's terminal)."""
    row = await container_for(env, ctx, ident, "resize")
    await call_agent(env, row, "POST", "resize", json={"height": height, "width": width})


async def execute_resize(
    env: Env, ctx: RequestContext, ident: str, exec_id: str, width: int, height: int
) -> None:
    """Resize an exec session's TTY; errors.Invalid if it is not this container's exec."""
    row = await container_for(env, ctx, ident, "execute_resize")
    await call_agent(
        env, row, "POST", f"exec/{exec_id}/resize", json={"height": height, "width": width}
    )


async def redeem(env: Env, token: str, uuid: str, exec_id: str | None) -> SessionTarget:
    """Spend ``token`` on the session it was issued for; Unauthorized if it cannot be.

    A token works once, before it expires, for the container (and exec) it was
    issued for, while that container still belongs to the project it was
    issued to and runs. Every refusal looks the same to the caller.
    """
    refused = errors.Unauthorized("The session token is invalid, expired or already used.")
    if not token:
        raise refused
    row: ContainerRow | None = None
    # The token is spent whatever follows: one presented for another container
    # or exec is burnt, not left for a second try.
    async with env.db.transaction() as session:
        found = await stream_tokens.redeem(session, token, utcnow())
        if found and found.container_uuid == uuid and found.exec_id == (exec_id or None):
            with contextlib.suppress(errors.ContainerNotFound):  # scoped to the token's project
                row = await containers_repo.get(session, Scope(found.project_id), uuid)
    if found is None or row is None:
        raise refused
    if row.status != Status.RUNNING or row.host is None:
        raise errors.InvalidStateException(f"Container {row.uuid} is not running.")
    return SessionTarget(found.kind, row.uuid, row.project_id, row.host, found.exec_id)


async def connect(env: Env, target: SessionTarget) -> AgentSession:
    """Open the session on the agent of the container's host (errors if it cannot start)."""
    url = await hosts.agent_url(env, target.host)
    if target.kind == "exec":
        path = f"/v1/containers/{target.container_uuid}/exec/{target.exec_id}"
    else:
        path = f"/v1/containers/{target.container_uuid}/attach"
    idle = env.settings.stream_idle_timeout + _AGENT_IDLE_MARGIN
    return await open_session(env.agents, target.host, url, path, idle=idle)


async def follow_logs(
    env: Env, ctx: RequestContext, ident: str, params: dict[str, Any]
) -> AgentStream:
    """Start following the container's output (``GET …/logs/follow`` on its agent)."""
    row = await container_for(env, ctx, ident, "logs")
    hostname, url = await agent_address(env, row)
    slot = contextlib.ExitStack()
    slot.enter_context(stream_slot(env.settings, ctx.project_id or row.project_id))
    try:
        stream = await open_stream(
            env.agents, hostname, url, f"/v1/containers/{row.uuid}/logs/follow", params
        )
    except BaseException:
        slot.close()
        raise
    stream.when_ended(slot.close)
    return stream
