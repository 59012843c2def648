"""The project's networks and volumes: list, create, delete.

Through ``berth.services.networks.networks`` / ``volumes`` with the session's context, so policy
(``network:*``, ``volume:*``) and tenancy are the API's. A network or volume in use is a
flash saying which containers to detach or delete first.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import redirect
from berth.dashboard.render import env_of, page
from berth.dashboard.session import Session
from berth.services import volumes
from berth.services.networks import networks

__all__ = [
    "network_create",
    "network_delete",
    "networks_page",
    "volume_create",
    "volume_delete",
    "volumes_page",
]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$")


async def networks_page(request: Request, session: Session) -> Response:
    """The project's networks (the default one is created on first use)."""
    rows = await networks.list_networks(env_of(request), session.ctx)
    return await page(request, "networks.html", session, networks=rows)


async def network_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    name = form.get("name", "").strip()
    if not _NAME.match(name):
        raise errors.Invalid(
            "The network name must be 2-255 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    row = await networks.create(env_of(request), session.ctx, name)
    return redirect("/networks", ("ok", f"Network {row.name} is created."))


async def network_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident = request.path_params["ident"]
    await networks.delete(env_of(request), session.ctx, ident)
    return redirect("/networks", ("ok", f"Network {form.get('name') or ident} is deleted."))


async def volumes_page(request: Request, session: Session) -> Response:
    """The project's volumes, where their data lives, and the form to create one."""
    rows, _ = await volumes.list_volumes(env_of(request), session.ctx, False)
    return await page(request, "volumes.html", session, volumes=rows)


async def volume_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    size_text = form.get("size", "").strip() or "1"
    try:
        size = int(size_text)
    except ValueError:
        raise errors.Invalid(
            f"The size must be a whole number of GiB, not {size_text!r}."
        ) from None
    row = await volumes.create(env_of(request), session.ctx, form.get("name", "").strip(), size)
    return redirect("/volumes", ("ok", f"Volume {row.name} ({row.size} GiB) is created."))


async def volume_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident = request.path_params["ident"]
    await volumes.delete(env_of(request), session.ctx, ident)
    return redirect("/volumes", ("ok", f"Volume {form.get('name') or ident} is deleted."))
