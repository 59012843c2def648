"""The control plane's API for agents: register, heartbeat, desired state, files, observations."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, wrapped
from berth.api.zun.params import json_body
from berth.domain.hostsync import DesiredHost, HostReport, InjectedFile, Observation
from berth.events.notify import CLIENT_GONE, CLIENT_GONE_SCOPE_KEY
from berth.services.containers import files as injected_files
from berth.services.hosts import heartbeats, hosts
from berth.services.images import glance
from berth.services.images import refs as image_refs

__all__ = ["MAX_WAIT", "desired_query", "router", "since_query"]

router = APIRouter()
T = TypeVar("T")

_REPORT = TypeAdapter(HostReport)
_OBSERVATIONS = TypeAdapter(list[Observation])
_DESIRED = TypeAdapter(DesiredHost)
_FILES = TypeAdapter(list[InjectedFile])


def _parse(adapter: TypeAdapter[T], data: Any) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise errors.Invalid(f"Invalid agent message: {exc.errors()[0]['msg']}") from None


@router.post("/v1/hosts", openapi_extra=body(model_schema(HostReport)))
async def register(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    report = _parse(_REPORT, await json_body(request, required=True))
    host = await hosts.register(state.env, caller, report)
    return {"uuid": host.uuid, "hostname": host.hostname}


@router.post("/v1/hosts/{hostname}/heartbeat")
async def heartbeat(hostname: str, caller: Caller, state: State) -> dict[str, Any]:
    await heartbeats.heartbeat(state.env, caller, hostname)
    return {"ok": True}


# Seconds an agent's long poll may wait for a change (the services cap it there too).
MAX_WAIT = 60.0


def desired_query(query: Mapping[str, str]) -> tuple[int | None, float]:
    """``generation`` (None unless an integer) and ``wait`` (0-60 s) of a desired-state poll.

    A ``wait`` that is not a number in range is a 400 (it used to be a 500).
    """
    text = query.get("generation", "")
    generation = int(text) if re.fullmatch(r"-?[0-9]{1,18}", text) else None
    raw = query.get("wait", "") or "0"
    try:
        wait = float(raw) if re.fullmatch(r"[0-9.eE+-]{1,32}", raw) else math.nan
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= MAX_WAIT:  # also nan and inf
        raise errors.Invalid(
            f"Invalid input for field 'wait': {raw[:40]!r} must be a number of seconds "
            f"from 0 to {MAX_WAIT:g}."
        )
    return generation, wait


_SINCE = re.compile(r"([0-9a-zA-Z_-]{1,32}):([0-9]{1,18})")


def since_query(query: Mapping[str, str]) -> tuple[bool, tuple[str, int] | None]:
    """Whether the agent speaks the incremental protocol, and the ``since`` it holds.

    ``since=<epoch>:<revision>``; empty: it holds nothing yet. No ``since`` at
    all: an agent of the full-state protocol (``generation``), answered as before.
    """
    if "since" not in query:
        return False, None
    text = query["since"]
    if not text:
        return True, None
    found = _SINCE.fullmatch(text)
    if found is None:
        raise errors.Invalid(
            f"Invalid input for field 'since': {text[:60]!r} must be <epoch>:<revision>."
        )
    return True, (found.group(1), int(found.group(2)))


@router.get("/v1/hosts/{hostname}/desired")
async def desired(hostname: str, request: Request, caller: Caller, state: State) -> Any:
    generation, wait = desired_query(request.query_params)
    incremental, since = since_query(request.query_params)
    CLIENT_GONE.set(request.scope.get(CLIENT_GONE_SCOPE_KEY))  # this request's task only
    if incremental:
        result = await hosts.desired_changes(state.env, caller, hostname, since, generation, wait)
    else:
        result = await hosts.desired_for(state.env, caller, hostname, generation, wait)
    result = await image_refs.for_agent(state.env, result)
    return _DESIRED.dump_python(result, mode="json")


@router.get("/v1/hosts/{hostname}/containers/{uuid}/glance-data")
async def glance_data(hostname: str, uuid: str, caller: Caller, state: State) -> Any:
    """The container's Glance image data, streamed from Glance (the API holds the token)."""
    chunks = glance.stream_for_agent(state.env, caller, hostname, uuid)
    first = await anext(chunks, b"")  # errors before the first byte are proper answers
    return StreamingResponse(_chained(first, chunks), media_type="application/octet-stream")


async def _chained(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


@router.get("/v1/hosts/{hostname}/containers/{uuid}/files")
async def files(hostname: str, uuid: str, caller: Caller, state: State) -> Any:
    found = await injected_files.for_agent(state.env, caller, hostname, uuid)
    return {"files": _FILES.dump_python(found, mode="json")}


@router.post(
    "/v1/hosts/{hostname}/observations",
    openapi_extra=body(wrapped("observations", model_schema(list[Observation]))),
)
async def observations(
    hostname: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    body = await json_body(request, required=True)
    items = _parse(_OBSERVATIONS, body.get("observations", []))
    await hosts.record_observations(state.env, caller, hostname, items)
    return {"ok": True}
