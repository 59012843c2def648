"""The control plane's API for agents: register, heartbeat, desired state, files, observations."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError

from berth import errors
from berth.api.deps import Caller, State
from berth.api.zun.params import json_body
from berth.domain.hostsync import DesiredHost, HostReport, InjectedFile, Observation
from berth.services import hosts, image_refs, injected_files

__all__ = ["router"]

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


@router.post("/v1/hosts")
async def register(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    report = _parse(_REPORT, await json_body(request, required=True))
    host = await hosts.register(state.env, caller, report)
    return {"uuid": host.uuid, "hostname": host.hostname}


@router.post("/v1/hosts/{hostname}/heartbeat")
async def heartbeat(hostname: str, caller: Caller, state: State) -> dict[str, Any]:
    await hosts.heartbeat(state.env, caller, hostname)
    return {"ok": True}


@router.get("/v1/hosts/{hostname}/desired")
async def desired(hostname: str, request: Request, caller: Caller, state: State) -> Any:
    q = request.query_params
    generation = int(q["generation"]) if q.get("generation", "").lstrip("-").isdigit() else None
    wait = float(q.get("wait", "0") or 0)
    result = await hosts.desired_for(state.env, caller, hostname, generation, wait)
    result = await image_refs.for_agent(state.env, result)
    return _DESIRED.dump_python(result, mode="json")


@router.get("/v1/hosts/{hostname}/containers/{uuid}/files")
async def files(hostname: str, uuid: str, caller: Caller, state: State) -> Any:
    found = await injected_files.for_agent(state.env, caller, hostname, uuid)
    return {"files": _FILES.dump_python(found, mode="json")}


@router.post("/v1/hosts/{hostname}/observations")
async def observations(
    hostname: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    body = await json_body(request, required=True)
    items = _parse(_OBSERVATIONS, body.get("observations", []))
    await hosts.record_observations(state.env, caller, hostname, items)
    return {"ok": True}
