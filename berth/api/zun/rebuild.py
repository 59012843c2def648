"""Rebuild (recreate from the image, keeping UUID and name) and resize_container (1.19+)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, props
from berth.api.zun.microversions import APIVersion, version_of
from berth.api.zun.params import action_params
from berth.api.zun.schemas import ContainerPatch, int_in, number_in, parse_model
from berth.api.zun.views import container_view
from berth.services.containers import containers as svc
from berth.services.containers import rebuild as rebuild_svc

__all__ = ["router"]

router = APIRouter()

_RESIZE_SINCE = APIVersion(1, 19)


def _given(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)


@router.post(
    "/v1/containers/{ident}/rebuild",
    openapi_extra=body(props(image="str", image_driver="str"), required=False),
)
async def rebuild(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    """Recreate the runtime container from ``image`` (default: the current one); 202."""
    params = await action_params(request)
    driver = _given(params.get("image_driver"))
    if driver is not None and driver not in state.settings.image_driver_list:
        raise errors.Invalid(
            f"Invalid image_driver {driver}; choose one of "
            f"{', '.join(state.settings.image_driver_list)}."
        )
    await rebuild_svc.rebuild(state.env, caller, ident, _given(params.get("image")), driver)
    return JSONResponse(None, status_code=202)


@router.post(
    "/v1/containers/{ident}/resize_container",
    openapi_extra=body(model_schema(ContainerPatch), required=False),
)
async def resize_container(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    """Change cpu/memory live, as PATCH does; 202 with the container."""
    version = version_of(request)
    if version < _RESIZE_SINCE:
        raise errors.NotAcceptable(
            f"Version {version} was requested but the requested API is not supported for "
            "this version: resize_container needs 1.19."
        )
    patch = parse_model(ContainerPatch, await action_params(request))
    s = state.settings
    values: dict[str, Any] = {}
    if patch.cpu is not None:
        values["cpu"] = number_in(patch.cpu, "cpu", s.minimum_cpus, s.maximum_cpus)
    if patch.memory is not None:
        values["memory"] = int_in(patch.memory, "memory", s.minimum_memory, s.maximum_memory)
    if not values:
        raise errors.Invalid("Nothing to resize: give cpu and/or memory.")
    row = await svc.update(state.env, caller, ident, values, action="resize_container")
    base = f"{request.url.scheme}://{request.url.netloc}"
    return JSONResponse(container_view(state.env, caller, row, base), status_code=202)
