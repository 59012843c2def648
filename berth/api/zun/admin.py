"""Hosts, services, availability zones, quotas and quota classes."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from berth import errors
from berth.api.bounds import INT32_MAX
from berth.api.deps import Caller, State
from berth.api.openapi import body, kinds_schema, props
from berth.api.zun.microversions import APIVersion, require
from berth.api.zun.params import action_params, parse_bool
from berth.api.zun.views import endpoint_url, host_view, service_view, stored_binary
from berth.services import quotas
from berth.services.hosts import admin as hosts_admin
from berth.services.hosts import watch as host_watch

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/hosts")
async def list_hosts(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    require(request, APIVersion(1, 4), "hosts")
    rows = await hosts_admin.list_hosts(state.env, caller)
    return {"hosts": [host_view(r, endpoint_url(request)) for r in rows], "next": None}


@router.get("/v1/hosts/{ident}")
async def show_host(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    require(request, APIVersion(1, 4), "hosts")
    return host_view(await hosts_admin.get_host(state.env, caller, ident), endpoint_url(request))


@router.post("/v1/hosts/{ident}/evacuate", status_code=202)
async def evacuate_host(ident: str, caller: Caller, state: State) -> dict[str, Any]:
    """Berth extension: move a dead host's auto_heal containers to other hosts."""
    report = await host_watch.evacuate(state.env, caller, ident)
    return {"moved": report.moved, "failed": report.failed, "left": report.left}


@router.get("/v1/services")
async def list_services(caller: Caller, state: State) -> dict[str, Any]:
    rows = await hosts_admin.list_services(state.env, caller)
    zone = state.settings.default_availability_zone
    return {
        "services": [service_view(r, hosts_admin.service_state(state.env, r), zone) for r in rows]
    }


def _host_binary(p: dict[str, Any]) -> tuple[str, str]:
    host, binary = p.get("host"), p.get("binary")
    if not host or not binary:
        raise errors.Invalid("Both host and binary are required.")
    return str(host), str(binary)


@router.delete("/v1/services")
async def delete_service(request: Request, caller: Caller, state: State) -> JSONResponse:
    host, binary = _host_binary(dict(request.query_params))
    await hosts_admin.delete_service(state.env, caller, host, stored_binary(binary))
    return JSONResponse(None)


@router.put(
    "/v1/services/enable", openapi_extra=body(props(host="str", binary="str"), required=False)
)
async def enable(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    host, binary = _host_binary(await action_params(request))
    svc = await hosts_admin.set_service(
        state.env,
        caller,
        "zun-service:enable",
        host,
        stored_binary(binary),
        disabled=False,
        disabled_reason=None,
    )
    return {
        "service": {
            "host": svc.host,
            "binary": binary,
            "disabled": False,
            "disabled_reason": None,
        }
    }


@router.put(
    "/v1/services/disable",
    openapi_extra=body(props(host="str", binary="str", disabled_reason="str"), required=False),
)
async def disable(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    p = await action_params(request)
    host, binary = _host_binary(p)
    reason = p.get("disabled_reason")
    if reason is not None and not 1 <= len(str(reason)) <= 255:
        raise errors.Invalid("Invalid input for field 'disabled_reason': 1-255 characters.")
    svc = await hosts_admin.set_service(
        state.env,
        caller,
        "zun-service:disable",
        host,
        stored_binary(binary),
        disabled=True,
        disabled_reason=reason,
    )
    return {
        "service": {
            "host": svc.host,
            "binary": binary,
            "disabled": True,
            "disabled_reason": svc.disabled_reason,
        }
    }


@router.put(
    "/v1/services/force_down",
    openapi_extra=body(props(host="str", binary="str", forced_down="bool"), required=False),
)
async def force_down(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    p = await action_params(request)
    host, binary = _host_binary(p)
    down = parse_bool(p.get("forced_down"), "forced_down")
    svc = await hosts_admin.set_service(
        state.env, caller, "zun-service:force_down", host, stored_binary(binary), forced_down=down
    )
    return {"service": {"host": svc.host, "binary": binary, "forced_down": down}}


@router.get("/v1/availability_zones")
async def availability_zones(caller: Caller, state: State) -> dict[str, Any]:
    zones = await hosts_admin.availability_zones(state.env, caller)
    return {"availability_zones": [{"availability_zone": z} for z in zones], "next": None}


def _limits(p: dict[str, Any]) -> dict[str, int]:
    values: dict[str, int] = {}
    for key, value in p.items():
        if key not in quotas.RESOURCES:
            raise errors.Invalid(f"Additional properties are not allowed ('{key}' was unexpected).")
        text = str(value)
        if (
            isinstance(value, bool)
            # ASCII digits, at most 12 of them: int() of the rest is an error or slow
            or not re.fullmatch(r"-?[0-9]{1,12}", text)
            or not -1 <= int(text) <= INT32_MAX
        ):
            raise errors.Invalid(
                f"Invalid input for field '{key}': {value!r} must be an "
                f"integer from -1 (unlimited) to {INT32_MAX}."
            )
        values[key] = int(text)
    return values


@router.get("/v1/quotas/{project_id}")
async def get_quota(
    project_id: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    if request.query_params.get("usages"):
        return await quotas.project_usage(state.env, caller, project_id)
    return await quotas.project_limits(state.env, caller, project_id)


@router.put(
    "/v1/quotas/{project_id}",
    openapi_extra=body(kinds_schema(dict.fromkeys(quotas.RESOURCES, "int")), required=False),
)
async def put_quota(
    project_id: str, request: Request, caller: Caller, state: State
) -> dict[str, int]:
    return await quotas.update_project(
        state.env, caller, project_id, _limits(await action_params(request))
    )


@router.delete("/v1/quotas/{project_id}")
async def delete_quota(project_id: str, caller: Caller, state: State) -> JSONResponse:
    await quotas.delete_project(state.env, caller, project_id)
    return JSONResponse(None)


@router.get("/v1/quotas/{project_id}/defaults")
async def quota_defaults(project_id: str, caller: Caller, state: State) -> dict[str, int]:
    return await quotas.default_limits(state.env, caller, project_id)


@router.get("/v1/quota_classes/{name}")
async def get_quota_class(name: str, caller: Caller, state: State) -> dict[str, int]:
    return await quotas.class_limits(state.env, caller, name)


@router.put(
    "/v1/quota_classes/{name}",
    openapi_extra=body(kinds_schema(dict.fromkeys(quotas.RESOURCES, "int")), required=False),
)
async def put_quota_class(
    name: str, request: Request, caller: Caller, state: State
) -> dict[str, int]:
    return await quotas.update_class(state.env, caller, name, _limits(await action_params(request)))
