"""``GET /images/{image}/search``: what a project can run, found without Docker Hub.

Berth has no internet to search Docker Hub with. ``image_driver=glance``
searches the image store (the project's images and the public ones);
``docker`` (the default) searches the catalogs of the project's own
registries, then the image store. Each hit is one dict with the keys the
stock client prints (ID, Name, Tags, Status, Size, Metadata) plus Docker
Hub's (description, is_automated, is_official, star_count).
"""

from __future__ import annotations

import logging
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.images.registry import RegistryClient
from berth.services.env import Env
from berth.services.images import registries
from berth.store import images as repo
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import ImageRow, RegistryRow

__all__ = ["search"]

log = logging.getLogger(__name__)
_REGISTRY_TIMEOUT = 10.0


def _hit(
    name: str, tags: list[str], metadata: dict[str, Any], *, ident: str | None, size: int | None
) -> dict[str, Any]:
    return {
        "id": ident,
        "name": name,
        "tags": tags,
        "status": "active",
        "size": size,
        "metadata": metadata,
        "description": metadata.get("source", ""),
        "is_automated": False,
        "is_official": False,
        "star_count": 0,
    }


def _store_hit(row: ImageRow) -> dict[str, Any]:
    meta = {"source": "image store", "visibility": row.visibility, "project_id": row.project_id}
    return _hit(row.repo, [row.tag], meta, ident=row.uuid, size=row.size)


def _matches(term: str, name: str, exact: bool) -> bool:
    if exact:
        return name == term or name.endswith("/" + term)
    return term in name


async def _registry_hits(
    env: Env, reg: RegistryRow, term: str, exact: bool
) -> list[dict[str, Any]]:
    auth = registries.auth_for(env, reg)
    client = RegistryClient(
        reg.domain.removeprefix("https://").removeprefix("http://").rstrip("/"),
        auth.username if auth else None,
        auth.password if auth else None,
        timeout=_REGISTRY_TIMEOUT,
    )
    hits = []
    async with client:
        for name in await client.catalog():
            if _matches(term, name, exact):
                tags = await client.tags(name)
                meta = {"source": f"registry {reg.name or reg.uuid}", "registry": reg.uuid}
                hits.append(_hit(f"{client.address}/{name}", tags, meta, ident=None, size=None))
    return hits


async def search(
    env: Env, ctx: RequestContext, term: str, image_driver: str | None, exact: bool
) -> list[dict[str, Any]]:
    """Images matching ``term`` that the caller's project may run (a bare list)."""
    env.enforce(ctx, "image:search")
    driver = image_driver if image_driver not in (None, "", "None") else "docker"
    if driver not in env.settings.image_driver_list:
        raise errors.Invalid(
            f"Invalid image_driver {driver}; choose one of "
            f"{', '.join(env.settings.image_driver_list)}."
        )
    hits: list[dict[str, Any]] = []
    async with env.db.read() as session:
        if driver == "docker":
            regs, _ = await _own_registries(env, ctx)
            for reg in regs:
                try:
                    hits += await _registry_hits(env, reg, term, exact)
                except (errors.BerthError, ValueError) as exc:  # one bad registry spoils nothing
                    log.warning("search in registry %s skipped: %s", reg.domain, exc)
        if env.settings.image_store:
            rows = await repo.search_store(session, ctx.project_id, term, exact)
            hits += [_store_hit(r) for r in rows]
    return hits


async def _own_registries(env: Env, ctx: RequestContext) -> tuple[list[RegistryRow], int]:
    async with env.db.read() as session:
        rows = await repo.list_registries(
            session, Scope(ctx.project_id), PageQuery(env.settings.max_limit), filters={}
        )
    return list(rows), len(rows)
