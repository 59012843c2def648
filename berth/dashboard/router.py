"""The dashboard's routes, in one table: path, methods, handler and how it is guarded."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from berth.dashboard import admin_pages, auth_pages, container_pages, events_pages
from berth.dashboard.pages import Endpoint, form_route, fragment_route, page_route

__all__ = ["STATIC_FILES", "build_router"]

# Everything under /static/ the dashboard serves: vendored by scripts/fetch-assets, or ours.
STATIC_FILES = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "htmx.LICENSE": "text/plain; charset=utf-8",
    "berth.css": "text/css; charset=utf-8",
    "berth.js": "text/javascript; charset=utf-8",
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
    c, a, e = container_pages, admin_pages, events_pages
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
        (
            "/containers/{ident}/action",
            ["POST"],
            form_route(c.container_action, lambda r: f"/containers/{r.path_params['ident']}"),
        ),
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
