"""Container pages: the list with live status, the create form, the detail page with its live
status, logs, actions and action history. Every read and change goes through
``berth.services.containers.containers`` / ``ops``, so policy and tenancy are the
API's."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.forms import RESTART_POLICIES, blank_form, container_from_form
from berth.dashboard.pages import explain, redirect
from berth.dashboard.render import TERMINAL_CSP, Can, env_of, fragment, page, permissions
from berth.dashboard.session import Flash, Session, check_csrf, read_form
from berth.domain.containers import action_allowed
from berth.domain.paging import Paging
from berth.services import quotas, volumes
from berth.services.containers import containers as svc
from berth.services.containers import ops
from berth.services.networks import networks
from berth.services.networks import security_groups as groups_svc
from berth.store.tables import ContainerRow

__all__ = [
    "ACTIONS",
    "container_action",
    "container_detail",
    "container_live",
    "container_logs",
    "container_rows",
    "containers_page",
    "create_container",
    "new_container",
]

# (form value, label, the state-table action that decides whether to offer it)
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("start", "Start", "start"),
    ("stop", "Stop", "stop"),
    ("reboot", "Restart", "reboot"),
    ("pause", "Pause", "pause"),
    ("unpause", "Unpause", "unpause"),
    ("kill", "Kill", "kill"),
    ("delete", "Delete", "delete_stop"),
)
_LOG_TAIL = "200"


def _all_projects(request: Request, session: Session) -> bool:
    wanted = request.query_params.get("all_projects") == "1"
    return wanted and env_of(request).allowed(session.ctx, "container:get_all_all_projects")


async def _rows(request: Request, session: Session) -> dict[str, Any]:
    all_projects = _all_projects(request, session)
    rows, _ = await svc.list_containers(
        env_of(request),
        session.ctx,
        all_projects=all_projects,
        filters={},
        paging=Paging(sort_key="created_at", sort_dir="desc"),
    )
    return {
        "containers": rows,
        "all_projects": all_projects,
        "can": permissions(request, session),
    }


async def _usage(request: Request, session: Session) -> dict[str, dict[str, float]] | None:
    try:
        return await quotas.project_usage(
            env_of(request), session.ctx, session.ctx.project_id or ""
        )
    except errors.Forbidden:
        return None


async def containers_page(request: Request, session: Session) -> Response:
    """The project's containers; the table body refreshes itself every two seconds."""
    env = env_of(request)
    return await page(
        request,
        "containers.html",
        session,
        usage=await _usage(request, session),
        may_all=env.allowed(session.ctx, "container:get_all_all_projects"),
        **await _rows(request, session),
    )


async def container_rows(request: Request, session: Session) -> Response:
    """The table body alone, for htmx polling."""
    return fragment("container_rows.html", **await _rows(request, session))


async def _form_page_values(request: Request, session: Session) -> dict[str, Any]:
    """What the form offers: the project's networks, security groups and volumes to choose."""
    env, ctx = env_of(request), session.ctx
    try:  # a policy that hides them only hides the choice, not the form
        nets = list(await networks.list_networks(env, ctx))
        groups = [g for g in await groups_svc.list_groups(env, ctx) if not g.container_uuid]
        vols = list((await volumes.list_volumes(env, ctx, False))[0])
    except errors.Forbidden:
        nets, groups, vols = [], [], []
    return {
        "policies": RESTART_POLICIES,
        "runtime_allowed": env.allowed(ctx, "container:create:runtime"),
        "limits": env.settings,
        "networks": nets,
        "groups": groups,
        "volumes": vols,
    }


async def _chosen_groups(request: Request) -> tuple[str, ...]:
    """Every ``security_groups`` value of the posted form (a multi-select repeats the key)."""
    body = (await request.body()).decode("utf-8", "replace")
    return tuple(v for k, v in parse_qsl(body, keep_blank_values=True) if k == "security_groups")


async def new_container(request: Request, session: Session) -> Response:
    """The empty create form (a 403 page for a caller the policy does not let create)."""
    env_of(request).enforce(session.ctx, "container:create")
    values = await _form_page_values(request, session)
    return await page(
        request, "container_new.html", session, form=blank_form(), chosen_groups=(), **values
    )


async def create_container(request: Request, session: Session) -> Response:
    """Create from the form; on an error the form comes back filled in, with the reason."""
    form = await read_form(request)
    check_csrf(request, session, form)
    values = await _form_page_values(request, session)
    env = env_of(request)
    chosen = await _chosen_groups(request)
    try:
        new, run = container_from_form(
            env.settings,
            form,
            runtime_allowed=values["runtime_allowed"],
            security_groups=chosen,
        )
        row = await svc.create(env, session.ctx, new, run)
    except errors.Unauthorized:
        raise
    except errors.BerthError as exc:
        shown = {**blank_form(), **form, "run": form.get("run", "")}
        return await page(
            request,
            "container_new.html",
            session,
            status=400 if isinstance(exc, errors.Invalid | errors.NotFound) else 403,
            chosen_groups=chosen,
            flash=Flash("error", explain(exc, session)),
            form=shown,
            **values,
        )
    level = "error" if row.status == "Error" else "ok"
    text = (
        f"Container {row.name} could not be placed: {row.status_reason}"
        if level == "error"
        else f"Container {row.name} is being created on {row.host or 'a host'}."
    )
    return redirect(f"/containers/{row.uuid}", (level, text))


def _offered(row: ContainerRow, can: Can) -> list[tuple[str, str]]:
    # Each form value is also the action's policy rule (container:start, container:delete...).
    return [
        (value, label)
        for value, label, state in ACTIONS
        if action_allowed(state, row.status) and can(f"container:{value}", row.project_id)
    ]


async def _live_values(request: Request, session: Session, ident: str) -> dict[str, Any]:
    env, can = env_of(request), permissions(request, session)
    row = await svc.get(env, session.ctx, ident)
    actions = await svc.list_actions(env, session.ctx, row.uuid)
    return {
        "c": row,
        "can": can,
        "offered": _offered(row, can),
        "force_delete": action_allowed("delete_force", row.status)
        and not action_allowed("delete_stop", row.status)
        and can("container:delete_force", row.project_id),
        "history": actions[:20],
        "show_host": env.allowed(session.ctx, "container:get_one:host", row.project_id),
        "csrf": session.csrf,
    }


async def container_detail(request: Request, session: Session) -> Response:
    """One container: its spec, live status and actions, logs and action history."""
    ident = request.path_params["ident"]
    values = await _live_values(request, session, ident)
    try:
        names = {g.uuid: g.name for g in await groups_svc.list_groups(env_of(request), session.ctx)}
    except errors.Forbidden:
        names = {}
    response = await page(request, "container_detail.html", session, group_names=names, **values)
    response.headers["Content-Security-Policy"] = TERMINAL_CSP
    return response


async def container_live(request: Request, session: Session) -> Response:
    """The live part of the detail page (status, actions, history), for htmx polling."""
    values = await _live_values(request, session, request.path_params["ident"])
    return fragment("container_live.html", **values)


async def container_logs(request: Request, session: Session) -> Response:
    """The last lines of the container's output."""
    ident = request.path_params["ident"]
    env = env_of(request)
    try:
        text = await ops.logs(  # takes a log-read turn: a line may be the whole log
            env,
            session.ctx,
            ident,
            stdout=True,
            stderr=True,
            timestamps=False,
            tail=_LOG_TAIL,
            since=None,
        )
    except (errors.InvalidStateException, errors.HostUnavailable, errors.Overloaded) as exc:
        return fragment("logs.html", logs=None, message=explain(exc, session), tail=_LOG_TAIL)
    return fragment("logs.html", logs=text, message=None, tail=_LOG_TAIL)


async def container_action(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Start, stop, restart, pause, unpause, kill or delete, then back to the detail page."""
    ident = request.path_params["ident"]
    env, ctx = env_of(request), session.ctx
    action = form.get("action", "")
    if action == "delete":
        await svc.delete(env, ctx, ident, force=False, stop=True, all_projects=False)
        return redirect("/containers", ("ok", f"Deleting container {form.get('name', ident)}."))
    if action == "force_delete":
        await svc.delete(env, ctx, ident, force=True, stop=False, all_projects=False)
        return redirect("/containers", ("ok", f"Deleting container {form.get('name', ident)}."))
    if action == "start":
        await ops.start(env, ctx, ident)
    elif action == "stop":
        await ops.stop(env, ctx, ident, None)
    elif action == "reboot":
        await ops.reboot(env, ctx, ident, None)
    elif action == "pause":
        await ops.pause(env, ctx, ident)
    elif action == "unpause":
        await ops.unpause(env, ctx, ident)
    elif action == "kill":
        await ops.kill(env, ctx, ident, form.get("signal") or None)
    else:
        raise errors.Invalid(f"Unknown action {action!r}: use one of the buttons on the page.")
    label = {v: lbl for v, lbl, _ in ACTIONS}.get(action, action)
    return redirect(f"/containers/{ident}", ("ok", f"{label} requested."))
