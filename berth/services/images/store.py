"""The image store (Berth's stand-in for Glance): uploads, and what the store's images resolve to.

The store is an OCI registry (``docker-registry``) at ``settings.image_store``
with htpasswd auth whose credentials only Berth knows. A project's private
images live under ``<store>/<project id>/``, public ones under
``<store>/public/``; the ``images`` table is the catalogue (owner,
visibility, digest), the registry holds the bytes. Hosts pull from the store
with credentials handed to them for that pull only.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import RegistryAuth
from berth.images import dockersave
from berth.images.refs import (
    PUBLIC_NAMESPACE,
    registry_of,
    split_reference,
    store_reference,
    valid_repository,
)
from berth.images.registry import RegistryClient
from berth.services import quotas
from berth.services.env import Env
from berth.services.slots import Slots
from berth.store import images as repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.scope import Scope
from berth.store.tables import ImageRow

__all__ = [
    "address",
    "auth",
    "authorize_upload",
    "client",
    "namespace",
    "reference",
    "resolve",
    "room_for_an_image",
    "room_for_bytes",
    "store_name",
    "upload",
    "upload_slot",
]

_uploads = Slots()  # uploads running in this process
# What a project at an image bound can do: deleting images is an admin's by default
# (Zun's image:delete), so the hint says so.
_DELETE_HINT = "an administrator can delete the ones it no longer needs (appcontainer image delete)"


async def room_for_an_image(
    env: Env,
    project_id: str,
    *,
    session: Session | None = None,
    replacing: tuple[str, str, bool] | None = None,
) -> None:
    """``OverQuota`` when the project keeps ``max_images_per_project`` images: in the
    transaction that adds one (``session``, exact), or as a quick look before costly work
    (none when it would replace the store's ``replacing`` = (repo, tag, public), which
    adds no image)."""
    if session is not None:
        await quotas.cap_records(
            env, session, project_id, ImageRow, "max_images_per_project", "images",
            hint=_DELETE_HINT,
        )  # fmt: skip
        return
    async with env.db.read() as fresh:
        if replacing is not None:
            repo_name, tag, public = replacing
            if await repo.store_image(fresh, project_id, repo_name, tag, public=public):
                return
        await quotas.cap_records(
            env, fresh, project_id, ImageRow, "max_images_per_project", "images",
            locked=False, hint=_DELETE_HINT,
        )  # fmt: skip


async def room_for_bytes(env: Env, project_id: str, adding: int = 0) -> None:
    """``OverQuota`` when the project's images would hold more than
    ``max_image_bytes_per_project`` with ``adding`` more bytes (at it already, for 0)."""
    cap = env.settings.max_image_bytes_per_project
    if not cap:
        return
    async with env.db.read() as session:
        stored = await repo.stored_bytes(session, project_id)
    if stored + adding > cap or (not adding and stored >= cap):
        raise errors.OverQuota(
            f"Project {project_id} keeps {stored} bytes of images"
            + (f" and this one is {adding} more" if adding else "")
            + f"; at most {cap} are allowed (max_image_bytes_per_project): {_DELETE_HINT}."
        )


def upload_slot(env: Env, ctx: RequestContext) -> contextlib.AbstractContextManager[None]:
    """Count one upload of the caller's project while the block runs (around receiving
    and pushing the archive); ``OverQuota`` before the block when the project or the
    process is full."""
    bounds = env.settings.max_uploads_per_project, env.settings.max_uploads
    return _uploads.count(ctx.project_id or "", bounds, "image uploads", "max_uploads")


def address(env: Env) -> str:
    """The store's ``host:port``; Invalid when this deployment runs none."""
    store = env.settings.image_store
    if not store:
        raise errors.Invalid(
            "This Berth has no image store (image_driver=glance): the operator sets "
            "BERTH_IMAGE_STORE (scripts/up runs one)."
        )
    return store.removeprefix("http://").removeprefix("https://").rstrip("/")


def auth(env: Env) -> RegistryAuth | None:
    """The store's credentials, for one pull or push by an agent."""
    s = env.settings
    if not s.image_store_username:
        return None
    return RegistryAuth(address(env), s.image_store_username, s.image_store_password or "")


def client(env: Env) -> RegistryClient:
    """A registry client of the store, logged in as Berth."""
    s = env.settings
    return RegistryClient(address(env), s.image_store_username, s.image_store_password)


def namespace(row: ImageRow) -> str:
    """The store path prefix of a store image: its project, or ``public``."""
    return PUBLIC_NAMESPACE if row.visibility == "public" else row.project_id


def reference(env: Env, row: ImageRow) -> str:
    """Where hosts pull the store image ``row`` from."""
    return store_reference(address(env), namespace(row), row.repo, row.tag)


async def resolve(env: Env, session: Session, project_id: str, image: str) -> str:
    """The store reference of ``image`` (``name[:tag]`` or an image UUID) for ``project_id``.

    The project's own image wins over a public one of the same name; another
    project's private image is not found.
    """
    address(env)  # no store, nothing to find: say so
    name, tag = split_reference(image)
    found = await repo.find_store_image(session, project_id, name, tag)
    if found is None:
        row: ImageRow | None
        try:
            row = await repo.get_image(session, Scope(project_id), image)
        except errors.NotFound:
            row = await repo.public_image(session, image)
        found = row if row is not None and row.host is None and row.status == "active" else None
    if found is None:
        raise errors.ImageNotFound(
            f"Image {image} is not in the image store for this project: upload it with "
            "'berth image upload', or commit a container."
        )
    return reference(env, found)


def authorize_upload(env: Env, ctx: RequestContext, public: bool) -> None:
    """Raise unless the caller may upload (publicly, if ``public``) into a configured store.

    Checked before the archive is received, so a refused upload costs nothing.
    """
    env.enforce(ctx, "image:upload")
    if public:
        env.enforce(ctx, "image:upload:public")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to upload images.")
    address(env)


async def upload(
    env: Env, ctx: RequestContext, archive: Path, *, name: str | None, public: bool
) -> list[ImageRow]:
    """Push the images of a ``docker save`` archive into the store, for the caller's project.

    ``name`` (``repo[:tag]``) renames the archive's only image; otherwise its
    own tags are used. ``public`` images are usable by every project.
    """
    authorize_upload(env, ctx, public)
    saved = await asyncio.to_thread(dockersave.read_saved, archive)  # up to 100,000 headers
    targets = _targets(saved, name)
    rows: list[ImageRow] = []
    async with client(env) as store:
        for image, (repo_name, tag) in targets:
            ns = PUBLIC_NAMESPACE if public else ctx.project_id
            await room_for_an_image(env, ctx.project_id or "", replacing=(repo_name, tag, public))
            pushed = await dockersave.push_saved(store, archive, image, f"{ns}/{repo_name}", tag)
            rows.append(await _record(env, ctx, repo_name, tag, public, pushed))
    return rows


def _targets(
    saved: list[dockersave.SavedImage], name: str | None
) -> list[tuple[dockersave.SavedImage, tuple[str, str]]]:
    if name is not None:
        if len(saved) != 1:
            raise errors.Invalid(
                f"the archive holds {len(saved)} images: --name can only rename a single one"
            )
        return [(saved[0], store_name(name))]
    targets = [(image, store_name(tag)) for image in saved for tag in image.repo_tags]
    if not targets:
        raise errors.Invalid("the archive's image has no name: give one with --name NAME:TAG")
    return targets


def store_name(image: str) -> tuple[str, str]:
    """``(repo, tag)`` the store keeps ``image`` under (no registry, no ``library/``)."""
    name, tag = split_reference(image)
    host = registry_of(name)
    if host is not None:
        name = name.removeprefix(host + "/")
    name = name.removeprefix("library/") if host in (None, "docker.io") else name
    if not valid_repository(name):
        raise errors.Invalid(
            f"{name!r} is not a valid image name: lower-case letters, digits and . _ - "
            "separated by /"
        )
    if not tag or len(tag) > 128 or "@" in image:
        raise errors.Invalid(f"{image!r} needs a tag such as :latest (digests cannot be stored)")
    return name, tag


async def _record(
    env: Env,
    ctx: RequestContext,
    name: str,
    tag: str,
    public: bool,
    pushed: dockersave.PushedImage,
) -> ImageRow:
    visibility = "public" if public else "private"
    async with env.db.transaction() as session:
        row = await repo.store_image(session, ctx.project_id, name, tag, public=public)
        if row is None:
            await room_for_an_image(env, ctx.project_id or "", session=session)
            row = ImageRow(
                uuid=new_uuid(),
                project_id=ctx.project_id or "",
                user_id=ctx.user_id,
                repo=name,
                tag=tag,
                host=None,
                visibility=visibility,
                created_at=utcnow(),
            )
            session.add(row)
        row.image_id, row.size = pushed.digest, pushed.size
        row.status, row.status_reason, row.updated_at = "active", None, utcnow()
    return row
