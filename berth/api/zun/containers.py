"""Container routes: thin handlers that parse, call one use case, and render a view."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, props
from berth.api.zun.interactive import follow_logs
from berth.api.zun.microversions import APIVersion, version_of
from berth.api.zun.params import (
    action_params,
    json_body,
    list_query,
    parse_bool,
    parse_int,
)
from berth.api.zun.schemas import (
    FIELD_MIN_VERSION,
    MAX_SECONDS,
    ContainerCreate,
    ContainerPatch,
    check_counts,
    check_limits,
    command_list,
    int_in,
    kill_signal,
    logs_since,
    logs_tail,
    number_in,
    parse_model,
)
from berth.api.zun.views import (
    HeldResponse,
    action_view,
    container_view,
    endpoint_url,
    event_view,
    listing_in_turns,
)
from berth.services.containers import containers as svc
from berth.services.containers import ops, streams
from berth.services.containers.containers import NewContainer

__all__ = ["router"]

router = APIRouter()

_FILTERS = (
    "name",
    "image",
    "project_id",
    "user_id",
    "memory",
    "host",
    "task_state",
    "status",
    "auto_remove",
)


def _new_container(state: State, body: dict[str, Any], version: APIVersion) -> NewContainer:
    for name, since in FIELD_MIN_VERSION.items():
        if name in body and version < since:
            raise errors.InvalidParamInVersion(
                f"Invalid param {name} because current request version is {version}. "
                f"{name} is only supported from version {since}"
            )
    req = parse_model(ContainerCreate, body)
    check_counts(req)
    cpu, memory, disk = check_limits(state.settings, req)
    driver = req.image_driver if req.image_driver not in (None, "None") else None
    if driver is not None and driver not in state.settings.image_driver_list:
        raise errors.Invalid(
            f"Invalid image_driver {driver}; choose one of "
            f"{', '.join(state.settings.image_driver_list)}."
        )
    # Zun refuses security_groups with exposed_ports (its exposed-port group replaced
    # the others); Berth keeps both: the exposed ports get a group of their own.
    tty = req.tty
    if tty is None and APIVersion(1, 20) <= version < APIVersion(1, 36):
        tty = req.interactive
    given = frozenset(k for k, v in body.items() if v is not None or k == "privileged")
    return NewContainer(
        image=req.image,
        name=req.name,
        command=command_list(req.command, version),
        entrypoint=req.entrypoint,
        cpu=cpu,
        cpu_policy=req.cpu_policy or "shared",
        memory=memory,
        disk=disk,
        workdir=req.workdir,
        labels=req.labels or {},
        environment=req.environment or {},
        restart_policy=_restart_policy(req),
        interactive=bool(req.interactive),
        tty=bool(tty),
        image_driver=driver,
        image_pull_policy=req.image_pull_policy,
        security_groups=req.security_groups or [],
        hints=req.hints or {},
        nets=req.nets or [],
        mounts=req.mounts or [],
        runtime=req.runtime,
        hostname=req.hostname,
        auto_remove=bool(req.auto_remove),
        auto_heal=bool(req.auto_heal),
        availability_zone=req.availability_zone,
        privileged=bool(req.privileged),
        healthcheck=req.healthcheck.model_dump() if req.healthcheck else None,
        exposed_ports=req.exposed_ports,
        registry=req.registry,
        host=req.host,
        given=given,
    )


def _restart_policy(req: ContainerCreate) -> dict[str, str] | None:
    rp = req.restart_policy
    if rp is None:
        return None
    count = int(rp.MaximumRetryCount)
    if rp.Name in ("always", "unless-stopped") and count != 0:
        raise errors.Invalid(
            f"maximum retry count not valid with restart policy name {rp.Name}: use 0."
        )
    if rp.Name == "no":
        count = 0
    return {"Name": rp.Name, "MaximumRetryCount": str(count)}


@router.post("/v1/containers", status_code=202, openapi_extra=body(model_schema(ContainerCreate)))
async def create_container(request: Request, caller: Caller, state: State) -> JSONResponse:
    run = parse_bool(request.query_params.get("run"), "run", extended=True)
    body = await json_body(request, required=True)
    new = _new_container(state, body, version_of(request))
    row = await svc.create(state.env, caller, new, run)
    base = endpoint_url(request)
    return JSONResponse(
        container_view(state.env, caller, row, base),
        status_code=202,
        headers={"Location": f"{base}/v1/containers/{row.uuid}"},
    )


@router.get("/v1/containers", response_model=dict[str, Any])
async def list_containers(request: Request, caller: Caller, state: State) -> Response:
    q = list_query(request, _FILTERS)
    filters: dict[str, Any] = dict(q.filters)
    if "memory" in filters:
        filters["memory"] = parse_int(filters["memory"], "memory")
    if "auto_remove" in filters:
        filters["auto_remove"] = parse_bool(filters["auto_remove"], "auto_remove")
    rows, page = await svc.list_containers(
        state.env, caller, all_projects=q.all_projects, filters=filters, paging=q.paging
    )
    base = endpoint_url(request)
    nxt = q.next_link(base, "containers", [r.uuid for r in rows], page)
    return await listing_in_turns(
        "containers", rows, lambda r: container_view(state.env, caller, r, base), {"next": nxt}
    )


@router.get("/v1/containers/{ident}")
async def show_container(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    all_projects = parse_bool(
        request.query_params.get("all_projects"), "all_projects", extended=True
    )
    row = await svc.get(state.env, caller, ident, all_projects)
    return container_view(state.env, caller, row, endpoint_url(request))


@router.patch(
    "/v1/containers/{ident}", openapi_extra=body(model_schema(ContainerPatch), required=False)
)
async def update_container(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    body = await json_body(request, required=False)
    if "name" in body and version_of(request) < APIVersion(1, 14):
        raise errors.InvalidParamInVersion(
            f"Invalid param name because current request version is {version_of(request)}. "
            "Use the rename action below 1.14."
        )
    patch = parse_model(ContainerPatch, body)
    s = state.settings
    values: dict[str, Any] = {}
    if patch.cpu is not None:
        values["cpu"] = number_in(patch.cpu, "cpu", s.minimum_cpus, s.maximum_cpus)
    if patch.memory is not None:
        values["memory"] = int_in(patch.memory, "memory", s.minimum_memory, s.maximum_memory)
    if patch.name is not None:
        values["name"] = patch.name
    if patch.auto_heal is not None:
        values["auto_heal"] = patch.auto_heal
    if not values:
        raise errors.Invalid("Nothing to update: give cpu, memory, name or auto_heal.")
    row = await svc.update(state.env, caller, ident, values)
    return container_view(state.env, caller, row, endpoint_url(request))


@router.delete("/v1/containers/{ident}", status_code=204)
async def delete_container(ident: str, request: Request, caller: Caller, state: State) -> Response:
    q = request.query_params
    version = version_of(request)
    force = parse_bool(q.get("force"), "force", extended=True)
    stop = parse_bool(q.get("stop"), "stop", extended=True)
    if force and version < APIVersion(1, 7):
        raise errors.InvalidParamInVersion(
            f"Invalid param force because current request version is {version}."
        )
    if stop and version < APIVersion(1, 12):
        raise errors.InvalidParamInVersion(
            f"Invalid param stop because current request version is {version}."
        )
    await svc.delete(
        state.env,
        caller,
        ident,
        force=force,
        stop=stop,
        all_projects=parse_bool(q.get("all_projects"), "all_projects", extended=True),
    )
    return Response(status_code=204)


def _accepted() -> JSONResponse:
    return JSONResponse(None, status_code=202)


@router.post("/v1/containers/{ident}/start")
async def start(ident: str, caller: Caller, state: State) -> JSONResponse:
    await ops.start(state.env, caller, ident)
    return _accepted()


@router.post(
    "/v1/containers/{ident}/stop", openapi_extra=body(props(timeout="int"), required=False)
)
async def stop(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    p = await action_params(request)
    timeout = parse_int(p.get("timeout"), "timeout", minimum=0, maximum=MAX_SECONDS)
    await ops.stop(state.env, caller, ident, timeout)
    return _accepted()


@router.post(
    "/v1/containers/{ident}/reboot", openapi_extra=body(props(timeout="int"), required=False)
)
async def reboot(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    p = await action_params(request)
    timeout = parse_int(p.get("timeout"), "timeout", minimum=0, maximum=MAX_SECONDS)
    await ops.reboot(state.env, caller, ident, timeout)
    return _accepted()


@router.post("/v1/containers/{ident}/pause")
async def pause(ident: str, caller: Caller, state: State) -> JSONResponse:
    await ops.pause(state.env, caller, ident)
    return _accepted()


@router.post("/v1/containers/{ident}/unpause")
async def unpause(ident: str, caller: Caller, state: State) -> JSONResponse:
    await ops.unpause(state.env, caller, ident)
    return _accepted()


@router.post("/v1/containers/{ident}/kill", openapi_extra=body(props(signal="str"), required=False))
async def kill(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    p = await action_params(request)
    await ops.kill(state.env, caller, ident, kill_signal(p.get("signal")))
    return _accepted()


@router.post("/v1/containers/{ident}/rename", openapi_extra=body(props(name="str"), required=False))
async def rename(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    if version_of(request) >= APIVersion(1, 14):
        raise errors.NotAcceptable(
            f"Version {version_of(request)} was requested but the requested API is not "
            "supported for this version: rename with PATCH from 1.14."
        )
    p = await action_params(request)
    patch = parse_model(ContainerPatch, {"name": p.get("name")})
    if patch.name is None:
        raise errors.Invalid("Invalid input for field 'name': a new name is required.")
    current = await svc.get(state.env, caller, ident, rule="container:rename")
    if current.name == patch.name:
        raise errors.Conflict(
            f"The new name for the container is the same as the old name {patch.name}."
        )
    row = await svc.update(state.env, caller, ident, {"name": patch.name})
    return container_view(state.env, caller, row, endpoint_url(request))


@router.get("/v1/containers/{ident}/logs")
async def logs(ident: str, request: Request, caller: Caller, state: State) -> Response:
    q = request.query_params
    stdout = parse_bool(q.get("stdout"), "stdout", extended=True, default=True)
    stderr = parse_bool(q.get("stderr"), "stderr", extended=True, default=True)
    if not stdout and not stderr:
        stdout = stderr = True
    tail = logs_tail(q.get("tail"))
    # Checked here: a bad value used to reach the engine and come back as a 503.
    since = q.get("since") if logs_since(q.get("since")) is not None else None
    if parse_bool(q.get("follow"), "follow", extended=True):  # a Berth extension
        params = {"stdout": stdout, "stderr": stderr, "tail": tail}
        params["timestamps"] = parse_bool(q.get("timestamps"), "timestamps", extended=True)
        if since not in (None, "None", ""):
            params["since"] = since
        return await follow_logs(state, caller, ident, params)
    timestamps = parse_bool(q.get("timestamps"), "timestamps", extended=True)
    since = None if since in (None, "None", "") else since

    async def answer(held: contextlib.AsyncExitStack) -> bytes:
        # The read's turn is held until the answer is handed over.
        text = await held.enter_async_context(
            ops.held_logs(
                state.env,
                caller,
                ident,
                stdout=stdout,
                stderr=stderr,
                timestamps=timestamps,
                tail=tail,
                since=since,
            )
        )
        # As JSONResponse renders it (Starlette's json.dumps), off the turn's text.
        return json.dumps(
            text, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")

    return await HeldResponse.made(answer)


@router.post(
    "/v1/containers/{ident}/execute",
    openapi_extra=body(props(command="str", run="bool", interactive="bool")),
)
async def execute(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    p = await action_params(request)
    command = p.get("command")
    if not isinstance(command, str) or not command.strip():
        raise errors.Invalid("Invalid input for field 'command': a command is required.")
    run = parse_bool(p.get("run"), "run", default=True)
    interactive = parse_bool(p.get("interactive"), "interactive")
    if not run:  # a session to open on the returned proxy_url (see api.zun.wsproxy)
        return await streams.open_exec(state.env, caller, ident, command, tty=interactive)
    return await ops.execute(state.env, caller, ident, command)


@router.get("/v1/containers/{ident}/top")
async def top(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    return await ops.top(state.env, caller, ident, request.query_params.get("ps_args"))


@router.get("/v1/containers/{ident}/stats")
async def stats(ident: str, caller: Caller, state: State) -> dict[str, Any]:
    return await ops.stats(state.env, caller, ident)


@router.get("/v1/containers/{ident}/container_actions")
async def list_actions(ident: str, caller: Caller, state: State) -> dict[str, Any]:
    actions = await svc.list_actions(state.env, caller, ident)
    return {"containerActions": [action_view(a) for a in actions]}


@router.get("/v1/containers/{ident}/container_actions/{request_id}")
async def show_action(ident: str, request_id: str, caller: Caller, state: State) -> dict[str, Any]:
    action, events, tracebacks = await svc.get_action(state.env, caller, ident, request_id)
    return {**action_view(action), "events": [event_view(e, tracebacks) for e in events]}
