"""Response bodies of the container API, shaped exactly as Zun renders them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from berth.api.zun.microversions import PREFIX
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts.cache import AGENT_BINARY
from berth.store.tables import ActionEventRow, ContainerActionRow, ContainerRow, HostRow, ServiceRow

__all__ = [
    "ZUN_AGENT_BINARY",
    "HeldResponse",
    "action_view",
    "container_view",
    "endpoint_url",
    "host_view",
    "json_bytes",
    "links",
    "listing_in_turns",
    "service_view",
    "stored_binary",
    "zun_time",
]

# Zun's name for the per-host service; clients and tempest look for it. Berth stores
# its own process name (berth-agent) and accepts either name on input.
ZUN_AGENT_BINARY = "zun-compute"
R = TypeVar("R")

_ADMIN_FIELDS = ("host", "image_pull_policy", "privileged", "runtime")


# Views made per turn of the event loop: a list of 1,000 containers took ~35 ms
# of CPU to render in one go (on a slow core), and every other request of the
# process waited behind it (see ``berth.store.paging.TURN_ROWS``).
VIEWS_PER_TURN = 50


async def listing_in_turns(
    key: str, rows: Sequence[R], render: Callable[[R], Any], tail: Mapping[str, Any]
) -> Response:
    """The JSON answer ``{key: [render(row), ...], **tail}``, rendered ``VIEWS_PER_TURN``
    rows at a time (their views, then their JSON), letting the loop run in between.

    Byte for byte what FastAPI makes of that dict returned (pydantic-core's JSON),
    but FastAPI encodes the whole body in one go: ~10 ms for 1,000 containers, the
    longest the loop was held by a list once the views came in turns.
    """
    parts: list[bytes] = []
    for start in range(0, len(rows), VIEWS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        parts.append(_json([render(r) for r in rows[start : start + VIEWS_PER_TURN]])[1:-1])
    body = [b"{", _json(key), b":[", b",".join(parts), b"]"]
    for name, value in tail.items():
        body += [b",", _json(name), b":", _json(value)]
    body.append(b"}")
    return Response(b"".join(body), media_type="application/json")


_PIECE = 1024 * 1024  # bytes of a held body handed to the server at a time


class HeldResponse(Response):
    """A JSON answer that keeps what it was made under (a copy's count, a log read's
    turn: ``held``) until it has been handed to the client, or the client has gone.

    Such a body is large (a copy up to ~133 MB, a log ~30 MB) and stays in memory for
    as long as its client takes to read it; released when the handler returned, the
    count let a project pile up any number of answers nobody read. The body goes to
    the server a MiB at a time: uvicorn waits for its buffer to drain before taking
    the next piece, and drops a client that reads nothing (``berth.cli.connguard``).
    """

    media_type = "application/json"

    def __init__(self, body: bytes, held: contextlib.AsyncExitStack) -> None:
        super().__init__(body)
        self._held = held

    @classmethod
    async def made(
        cls, make: Callable[[contextlib.AsyncExitStack], Awaitable[bytes]]
    ) -> HeldResponse:
        """The answer ``make`` renders while entering what it holds into its argument;
        released at once if ``make`` fails (or is cancelled), else once handed over."""
        held = contextlib.AsyncExitStack()
        try:
            body = await make(held)
        except BaseException:
            await held.aclose()
            raise
        return cls(body, held)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            head = {"type": "http.response.start", "status": self.status_code}
            await send({**head, "headers": self.raw_headers})
            body = memoryview(self.body)
            for start in range(0, max(len(body), 1), _PIECE):
                end = start + _PIECE
                piece = bytes(body[start:end])
                await send(
                    {"type": "http.response.body", "body": piece, "more_body": end < len(body)}
                )
        finally:
            await self._held.aclose()


def json_bytes(value: Any) -> bytes:
    """``value`` as FastAPI renders a returned dict (pydantic-core's JSON)."""
    return _json(value)


def _json(value: Any) -> bytes:
    # As FastAPI's TypeAdapter renders: NaN and infinities (in rows stored before the
    # API refused them) as null; to_json's own default writes NaN, which is not JSON.
    return to_json(value, inf_nan_mode="null")


def zun_time(value: dt.datetime | None) -> str | None:
    """Containers' ``str(datetime)`` rendering: ``2019-05-18 21:02:12.304734``."""
    return str(value.replace(tzinfo=None)) if value else None


def iso_time(value: dt.datetime | None) -> str | None:
    """Services' and actions' rendering: ``%Y-%m-%dT%H:%M:%S.%f``."""
    return value.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


def endpoint_url(request: Request) -> str:
    """The container API's root as this client reached it: ``<base>/container``.

    Zun builds links on its own host URL; Berth's endpoint sits under a
    prefix, so ``<base>/container`` plays that part (the request's base keeps
    any ``root_path`` a proxy mounts Berth under).
    """
    return str(request.base_url).rstrip("/") + PREFIX


def links(base: str, collection: str, ident: str) -> list[dict[str, str]]:
    """Zun's self (``<base>/v1/...``) and bookmark (``<base>/...``) links; ``base`` from
    ``endpoint_url``."""
    return [
        {"href": f"{base}/v1/{collection}/{ident}", "rel": "self"},
        {"href": f"{base}/{collection}/{ident}", "rel": "bookmark"},
    ]


def _restart_policy(value: dict[str, Any] | None) -> dict[str, str] | None:
    if not value:
        return None
    return {
        "Name": str(value.get("Name", "")),
        "MaximumRetryCount": str(value.get("MaximumRetryCount", "0")),
    }


def _healthcheck(value: dict[str, Any] | None) -> dict[str, Any]:
    if not value:
        return {}
    return {
        "test": value.get("cmd"),
        "interval": value.get("interval"),
        "retries": value.get("retries"),
        "timeout": value.get("timeout"),
    }


def _mount(m: dict[str, Any]) -> dict[str, Any]:
    """A mount as the user gave it: the volume's name (or host path), where, how big."""
    if m.get("type") == "file":
        # An injected file: its content is not echoed back (it may be a secret).
        return {
            "type": "bind",
            "source": None,
            "destination": m.get("destination"),
            "file_size": m.get("size"),
        }
    view: dict[str, Any] = {
        "type": m.get("type", "volume"),
        "source": m.get("source"),
        "destination": m.get("destination"),
    }
    if m.get("volume_uuid"):
        view.update(volume_id=m["volume_uuid"], size=m.get("size"))
    return view


def container_view(
    env: Env, ctx: RequestContext, row: ContainerRow, base: str, *, with_links: bool = True
) -> dict[str, Any]:
    """One container as Zun shows it; admin-only fields stripped by policy."""
    view: dict[str, Any] = {"uuid": row.uuid}
    if with_links:
        view["links"] = links(base, "containers", row.uuid)
    view.update(
        name=row.name,
        user_id=row.user_id,
        project_id=row.project_id,
        image=row.image,
        image_driver=row.image_driver,
        image_pull_policy=row.image_pull_policy,
        command=list(row.command or []),
        entrypoint=row.entrypoint,
        cpu=float(row.cpu),
        cpu_policy=row.cpu_policy,
        memory=str(row.memory) if row.memory is not None else None,
        disk=row.disk or 0,
        workdir=row.workdir,
        environment=row.environment or {},
        labels=row.labels or {},
        restart_policy=_restart_policy(row.restart_policy),
        status=row.status,
        status_reason=row.status_reason,
        status_detail=row.status_detail,
        task_state=row.task_state,
        host=row.host,
        addresses=row.addresses or {},
        ports=row.ports,
        hostname=row.hostname,
        interactive=row.interactive,
        tty=row.tty,
        security_groups=row.security_groups or [],
        auto_remove=row.auto_remove,
        auto_heal=row.auto_heal,
        runtime=row.runtime,
        privileged=row.privileged,
        healthcheck=_healthcheck(row.healthcheck),
        registry_id=row.registry_id,
        mounts=[_mount(m) for m in row.mounts or [] if m.get("destination")],
        created_at=zun_time(row.created_at),
        updated_at=zun_time(row.updated_at),
    )
    for field in _ADMIN_FIELDS:
        if not env.allowed(ctx, f"container:get_one:{field}", row.project_id):
            view.pop(field, None)
    return view


def action_view(act: ContainerActionRow) -> dict[str, Any]:
    return {
        "action": act.action,
        "container_uuid": act.container_uuid,
        "request_id": act.request_id,
        "user_id": act.user_id,
        "project_id": act.project_id,
        "start_time": iso_time(act.start_time),
        "finish_time": iso_time(act.finish_time),
        "message": act.message,
    }


def event_view(ev: ActionEventRow, show_traceback: bool) -> dict[str, Any]:
    return {
        "event": ev.event,
        "start_time": iso_time(ev.start_time),
        "finish_time": iso_time(ev.finish_time),
        "result": ev.result,
        "traceback": ev.traceback if show_traceback else None,
    }


def host_view(row: HostRow, base: str) -> dict[str, Any]:
    return {
        "uuid": row.uuid,
        "links": links(base, "hosts", row.uuid),
        "hostname": row.hostname,
        "mem_total": row.mem_total,
        "mem_used": row.mem_used,
        "cpus": row.cpus,
        "cpu_used": float(row.cpu_used),
        "disk_total": row.disk_total,
        "disk_used": row.disk_used,
        "disk_quota_supported": row.disk_quota_supported,
        "total_containers": row.total_containers,
        "architecture": row.architecture,
        "os_type": row.os_type,
        "os": row.os,
        "kernel_version": row.kernel_version,
        "labels": row.labels or {},
        "runtimes": row.runtimes or [],
        "enable_cpu_pinning": row.enable_cpu_pinning,
    }


def stored_binary(binary: str) -> str:
    """The binary Berth stores for ``binary`` as a Zun client names it."""
    return AGENT_BINARY if binary == ZUN_AGENT_BINARY else binary


def service_view(row: ServiceRow, state: str, default_zone: str) -> dict[str, Any]:
    """A Zun service; the agent shows as ``zun-compute``, as Zun's compute service does."""
    return {
        "id": row.id,
        "host": row.host,
        "binary": ZUN_AGENT_BINARY if row.binary == AGENT_BINARY else row.binary,
        "state": state,
        "disabled": row.disabled,
        "disabled_reason": row.disabled_reason,
        "forced_down": row.forced_down,
        "last_seen_up": iso_time(row.last_seen_up),
        "report_count": row.report_count,
        "availability_zone": row.availability_zone or default_zone,
        "created_at": iso_time(row.created_at),
        "updated_at": iso_time(row.updated_at),
    }
