"""Admin pages: hosts with capacity bars, services (enable/disable), project quotas.

Each page calls the service that enforces the same policy rule as the API
(``host:get_all``, ``zun-service:get_all``, ``quota:get``...), so a caller
without it gets the 403 page, whatever link it followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import redirect
from berth.dashboard.render import env_of, page
from berth.dashboard.session import Session
from berth.identity.models import Project
from berth.services import identity, quotas
from berth.services.hosts import admin as hosts_admin
from berth.services.identity.keystone import UserProject
from berth.store.tables import HostRow, ServiceRow

__all__ = ["hosts_page", "quota_update", "quotas_page", "service_update", "services_page"]


@dataclass(frozen=True, slots=True)
class Capacity:
    """One bar: what is claimed out of what may be claimed (physical times allocation ratio)."""

    used: float
    physical: float
    ratio: float

    @property
    def limit(self) -> float:
        return self.physical * self.ratio

    @property
    def percent(self) -> int:
        return round(100 * self.used / self.limit) if self.limit else 0


@dataclass(frozen=True, slots=True)
class HostView:
    row: HostRow
    state: str
    cpu: Capacity
    memory: Capacity
    disk: Capacity


async def hosts_page(request: Request, session: Session) -> Response:
    """Every host with CPU, memory and disk claimed against capacity, and its agent's state."""
    env = env_of(request)
    hosts = await hosts_admin.list_hosts(env, session.ctx)
    services = await hosts_admin.list_services(env, session.ctx)
    state = {svc.host: hosts_admin.service_state(env, svc) for svc in services}
    s = env.settings
    views = [
        HostView(
            row=h,
            state=state.get(h.hostname, "unknown"),
            cpu=Capacity(h.cpu_used, h.cpus, s.cpu_allocation_ratio),
            memory=Capacity(h.mem_used, h.mem_total, s.ram_allocation_ratio),
            disk=Capacity(h.disk_used, h.disk_total, s.disk_allocation_ratio),
        )
        for h in hosts
    ]
    return await page(request, "hosts.html", session, hosts=views)


@dataclass(frozen=True, slots=True)
class ServiceView:
    row: ServiceRow
    state: str


async def services_page(request: Request, session: Session) -> Response:
    """Every service with its up/down state, and enable/disable buttons."""
    env = env_of(request)
    rows = await hosts_admin.list_services(env, session.ctx)
    views = [ServiceView(r, hosts_admin.service_state(env, r)) for r in rows]
    return await page(request, "services.html", session, services=views)


async def service_update(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Enable or disable one service (a disabled host receives no new containers)."""
    host, binary, op = form.get("host", ""), form.get("binary", ""), form.get("op", "")
    env = env_of(request)
    if op == "enable":
        await hosts_admin.set_service(
            env,
            session.ctx,
            "zun-service:enable",
            host,
            binary,
            disabled=False,
            disabled_reason=None,
        )
        return redirect("/admin/services", ("ok", f"{binary} on {host} is enabled."))
    if op == "disable":
        reason = form.get("reason", "").strip()[:255] or "disabled from the dashboard"
        await hosts_admin.set_service(
            env,
            session.ctx,
            "zun-service:disable",
            host,
            binary,
            disabled=True,
            disabled_reason=reason,
        )
        return redirect(
            "/admin/services",
            ("ok", f"{binary} on {host} is disabled: no new containers will be placed there."),
        )
    raise errors.Invalid(f"Unknown operation {op!r}: use the Enable or Disable button.")


@dataclass(frozen=True, slots=True)
class QuotaView:
    project: Project | UserProject
    usage: dict[str, dict[str, float]]


async def quotas_page(request: Request, session: Session) -> Response:
    """Every project's limits and usage, each editable: Berth's own projects, or with
    an external Keystone the projects it lists to the admin's own token."""
    env = env_of(request)
    keystone = request.app.state.berth.keystone
    projects: Sequence[Project | UserProject]
    if keystone is not None:
        projects = await keystone.all_projects(session.token)
    else:
        projects = await identity.list_projects(env.db, session.ctx)
    views = [QuotaView(p, await quotas.project_usage(env, session.ctx, p.id)) for p in projects]
    return await page(request, "quotas.html", session, quotas=views, resources=quotas.RESOURCES)


async def quota_update(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Set one project's limits (-1 means unlimited)."""
    project_id = request.path_params["project_id"]
    values: dict[str, int] = {}
    for resource in quotas.RESOURCES:
        text = form.get(resource, "").strip()
        if not text:
            continue
        try:
            values[resource] = int(text)
        except ValueError:
            raise errors.Invalid(
                f"The {resource} limit must be a whole number (-1 for unlimited), not {text!r}."
            ) from None
        if values[resource] < -1:
            raise errors.Invalid(f"The {resource} limit must be -1 (unlimited) or more.")
    if not values:
        raise errors.Invalid("Nothing to change: fill in at least one limit.")
    await quotas.update_project(env_of(request), session.ctx, project_id, values)
    name = form.get("project_name", project_id)
    return redirect("/admin/quotas", ("ok", f"Quotas of project {name} are updated."))
