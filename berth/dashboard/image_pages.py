"""Images (pulled onto hosts, or in the image store) and the project's private registries.

Every read and change goes through ``berth.services.images.images`` / ``registries``, so the
policy is the API's: listing and pulling host images is for admins by default
(``image:get_all``, ``image:pull``), registries belong to the project
(``registry:*``; their passwords are write-only, never shown).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import redirect
from berth.dashboard.render import env_of, page
from berth.dashboard.session import Session
from berth.domain.paging import Paging
from berth.services.hosts import admin as hosts_admin
from berth.services.images import images as image_svc
from berth.services.images import registries as registry_svc
from berth.services.images.registries import RegistryFields

__all__ = [
    "image_delete",
    "image_pull",
    "images_page",
    "registries_page",
    "registry_create",
    "registry_delete",
]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$")
_DOMAIN = re.compile(r"^[a-zA-Z0-9.-]+(:[0-9]{1,5})?(/[a-zA-Z0-9._/-]*)?$")


def may_list_images(request: Request, session: Session) -> bool:
    """Whether the Images page is for this caller (``image:get_all``, admin by default)."""
    return env_of(request).allowed(session.ctx, "image:get_all")


async def images_page(request: Request, session: Session) -> Response:
    """The images on hosts and in the store, a pull form, and delete buttons."""
    env = env_of(request)
    rows, _ = await image_svc.list_images(
        env, session.ctx, paging=Paging(sort_key="created_at", sort_dir="desc")
    )
    hosts = []
    if env.allowed(session.ctx, "host:get_all"):
        hosts = [h.hostname for h in await hosts_admin.list_hosts(env, session.ctx)]
    return await page(
        request,
        "images.html",
        session,
        images=rows,
        hosts=hosts,
        may_pull=env.allowed(session.ctx, "image:pull"),
    )


async def image_pull(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Pull ``repo[:tag]`` onto a host now; the flash says how it went."""
    repo = form.get("repo", "").strip()
    host = form.get("host", "").strip()
    tag = form.get("tag", "").strip() or None
    if len(repo) < 2 or len(repo) > 255 or any(c.isspace() for c in repo):
        raise errors.Invalid("Give the image to pull, like berth-test/busybox or nginx:1.27.")
    if not host:
        raise errors.Invalid("Choose the host to pull the image onto.")
    if tag is not None and (len(tag) > 128 or any(c.isspace() for c in tag)):
        raise errors.Invalid("The tag must be at most 128 characters, without spaces.")
    row = await image_svc.pull(env_of(request), session.ctx, repo, host, tag)
    if row.status == "error":
        return redirect(
            "/images",
            ("error", f"Pulling {row.repo}:{row.tag} onto {host} failed: {row.status_reason}"),
        )
    return redirect("/images", ("ok", f"Pulled {row.repo}:{row.tag} onto {host}."))


async def image_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Remove the image from its host (or the store) and forget it."""
    ident = request.path_params["ident"]
    await image_svc.delete(env_of(request), session.ctx, ident)
    return redirect("/images", ("ok", f"Image {form.get('name') or ident} is deleted."))


async def registries_page(request: Request, session: Session) -> Response:
    """The project's registries (passwords never shown) and the form to add one."""
    rows, _ = await registry_svc.list_registries(
        env_of(request),
        session.ctx,
        all_projects=False,
        filters={},
        paging=Paging(sort_key="created_at", sort_dir="desc"),
    )
    return await page(request, "registries.html", session, registries=rows)


def _registry_fields(form: dict[str, str]) -> RegistryFields:
    name = form.get("name", "").strip() or None
    domain = form.get("domain", "").strip()
    username = form.get("username", "").strip() or None
    password = form.get("password", "") or None
    if name is not None and not _NAME.match(name):
        raise errors.Invalid(
            "The name must be 2-255 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    if not domain or len(domain) > 255 or not _DOMAIN.match(domain):
        raise errors.Invalid("Give the registry's domain, like registry.example.com:5000.")
    if (username is None) != (password is None):
        raise errors.Invalid("Give both a user name and a password, or neither.")
    if (username and len(username) > 255) or (password and len(password) > 255):
        raise errors.Invalid("The user name and the password must be at most 255 characters.")
    return RegistryFields(name=name, domain=domain, username=username, password=password)


async def registry_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Store a registry for the project (its password sealed)."""
    row = await registry_svc.create(env_of(request), session.ctx, _registry_fields(form))
    return redirect(
        "/registries",
        (
            "ok",
            f"Registry {row.name or row.domain} is added to project {session.ctx.project_name}.",
        ),
    )


async def registry_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Forget the registry."""
    ident = request.path_params["ident"]
    await registry_svc.delete(env_of(request), session.ctx, ident)
    return redirect("/registries", ("ok", f"Registry {form.get('name') or ident} is deleted."))
