"""The dashboard's routes, in one table: path, methods, handler and how it is guarded."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from berth.dashboard import (
    admin_pages,
    auth_pages,
    capsule_pages,
    cluster_pages,
    container_pages,
    events_pages,
    image_pages,
    security_group_pages,
    storage_pages,
    stream_pages,
)
from berth.dashboard.pages import Endpoint, form_route, fragment_route, page_route

__all__ = ["STATIC_FILES", "build_router"]

# Everything under /static/ the dashboard serves: vendored by scripts/fetch-assets, or ours.
STATIC_FILES = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "htmx.LICENSE": "text/plain; charset=utf-8",
    "berth.css": "text/css; charset=utf-8",
    "berth.js": "text/javascript; charset=utf-8",
    "container.js": "text/javascript; charset=utf-8",
    "xterm.js": "text/javascript; charset=utf-8",
    "xterm-addon-fit.js": "text/javascript; charset=utf-8",
    "xterm.css": "text/css; charset=utf-8",
    "xterm.LICENSE": "text/plain; charset=utf-8",
}


async def static(request: Request) -> Response:
    """A packaged static file (cached for an hour); 404 for anything not listed."""
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return Response("Not found", status_code=404, media_type="text/plain")
    body = resources.files("berth.dashboard").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def build_router() -> APIRouter:
    """Every dashboard route (mounted at ``/`` beside the APIs, hidden from the OpenAPI)."""
    c, a, e, s, i = container_pages, admin_pages, events_pages, stream_pages, image_pages
    k, v, p = cluster_pages, storage_pages, capsule_pages
    g = security_group_pages
    routes: list[tuple[str, list[str], Endpoint]] = [
        ("/", ["GET"], auth_pages.home),
        ("/login", ["GET"], auth_pages.login_form),
        ("/login", ["POST"], auth_pages.login_submit),
        ("/logout", ["POST"], auth_pages.logout),
        ("/project", ["POST"], auth_pages.switch_project),
        ("/static/{name}", ["GET"], static),
        ("/containers", ["GET"], page_route(c.containers_page)),
        ("/containers/rows", ["GET"], fragment_route(c.container_rows, "/containers")),
        ("/containers/new", ["GET"], page_route(c.new_container)),
        ("/containers/new", ["POST"], page_route(c.create_container)),
        ("/containers/{ident}", ["GET"], page_route(c.container_detail)),
        ("/containers/{ident}/live", ["GET"], fragment_route(c.container_live, "/containers")),
        ("/containers/{ident}/logs", ["GET"], fragment_route(c.container_logs, "/containers")),
        ("/containers/{ident}/logs/follow", ["GET"], s.follow_logs),
        ("/containers/{ident}/terminal", ["POST"], s.json_route(s.open_terminal)),
        ("/containers/{ident}/terminal/resize", ["POST"], s.json_route(s.resize_terminal)),
        (
            "/containers/{ident}/action",
            ["POST"],
            form_route(c.container_action, lambda r: f"/containers/{r.path_params['ident']}"),
        ),
        ("/images", ["GET"], page_route(i.images_page)),
        ("/images/pull", ["POST"], form_route(i.image_pull, lambda r: "/images")),
        ("/images/{ident}/delete", ["POST"], form_route(i.image_delete, lambda r: "/images")),
        ("/registries", ["GET"], page_route(i.registries_page)),
        ("/registries/new", ["POST"], form_route(i.registry_create, lambda r: "/registries")),
        (
            "/registries/{ident}/delete",
            ["POST"],
            form_route(i.registry_delete, lambda r: "/registries"),
        ),
        ("/clusters", ["GET"], page_route(k.clusters_page)),
        ("/clusters/rows", ["GET"], fragment_route(k.cluster_rows, "/clusters")),
        ("/clusters/new", ["GET"], page_route(k.new_cluster)),
        ("/clusters/new", ["POST"], form_route(k.cluster_create, lambda r: "/clusters/new")),
        ("/clusters/{ident}", ["GET"], page_route(k.cluster_detail)),
        ("/clusters/{ident}/live", ["GET"], fragment_route(k.cluster_live, "/clusters")),
        (
            "/clusters/{ident}/delete",
            ["POST"],
            form_route(k.cluster_delete, lambda r: f"/clusters/{r.path_params['ident']}"),
        ),
        (
            "/clusters/{ident}/config",
            ["POST"],
            form_route(k.cluster_config, lambda r: f"/clusters/{r.path_params['ident']}"),
        ),
        ("/clustertemplates", ["GET"], page_route(k.templates_page)),
        (
            "/clustertemplates/new",
            ["POST"],
            form_route(k.template_create, lambda r: "/clustertemplates"),
        ),
        (
            "/clustertemplates/{ident}/delete",
            ["POST"],
            form_route(k.template_delete, lambda r: "/clustertemplates"),
        ),
        ("/capsules", ["GET"], page_route(p.capsules_page)),
        ("/capsules/rows", ["GET"], fragment_route(p.capsule_rows, "/capsules")),
        ("/capsules/new", ["POST"], form_route(p.capsule_create, lambda r: "/capsules")),
        ("/capsules/{ident}/delete", ["POST"], form_route(p.capsule_delete, lambda r: "/capsules")),
        ("/networks", ["GET"], page_route(v.networks_page)),
        ("/networks/new", ["POST"], form_route(v.network_create, lambda r: "/networks")),
        ("/networks/{ident}/delete", ["POST"], form_route(v.network_delete, lambda r: "/networks")),
        ("/security_groups", ["GET"], page_route(g.security_groups_page)),
        (
            "/security_groups/new",
            ["POST"],
            form_route(g.group_create, lambda r: "/security_groups"),
        ),
        (
            "/security_groups/{ident}/delete",
            ["POST"],
            form_route(g.group_delete, lambda r: "/security_groups"),
        ),
        (
            "/security_groups/{ident}/rules",
            ["POST"],
            form_route(g.rule_add, lambda r: "/security_groups"),
        ),
        (
            "/security_groups/{ident}/rules/{rule_id}/delete",
            ["POST"],
            form_route(g.rule_delete, lambda r: "/security_groups"),
        ),
        ("/volumes", ["GET"], page_route(v.volumes_page)),
        ("/volumes/new", ["POST"], form_route(v.volume_create, lambda r: "/volumes")),
        ("/volumes/{ident}/delete", ["POST"], form_route(v.volume_delete, lambda r: "/volumes")),
        ("/events", ["GET"], page_route(e.events_page)),
        ("/events/rows", ["GET"], fragment_route(e.events_rows, "/events")),
        ("/admin/hosts", ["GET"], page_route(a.hosts_page)),
        ("/admin/services", ["GET"], page_route(a.services_page)),
        ("/admin/services", ["POST"], form_route(a.service_update, lambda r: "/admin/services")),
        ("/admin/quotas", ["GET"], page_route(a.quotas_page)),
        (
            "/admin/quotas/{project_id}",
            ["POST"],
            form_route(a.quota_update, lambda r: "/admin/quotas"),
        ),
    ]
    router = APIRouter()
    for path, methods, endpoint in routes:
        router.add_route(path, endpoint, methods=methods, include_in_schema=False)
    return router
