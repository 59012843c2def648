"""Cluster templates (Magnum): create, list, show, patch, delete — policy, tenancy, store.

Visibility follows Magnum: a project sees its own templates and the public,
non-hidden ones of others; admins (``clustertemplate:*_all_projects``) see all.
Public or hidden templates need ``clustertemplate:publish``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from berth import errors
from berth.clusters.registry import DriverRegistry
from berth.domain import cluster_templates as spec
from berth.domain.cluster_settings import TemplateSettings
from berth.domain.context import RequestContext
from berth.domain.jsonpatch import apply_patch, check_patch
from berth.images.refs import registry_of, split_reference, valid_repository
from berth.services import quotas
from berth.services.env import Env
from berth.services.images import glance
from berth.services.names import generate_name
from berth.store import cluster_templates as repo
from berth.store import clusters as cluster_repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.lookup import UUID_SHAPE
from berth.store.scope import Scope
from berth.store.tables import ClusterTemplateRow

__all__ = [
    "attributes",
    "create",
    "delete",
    "get",
    "in_use_by",
    "list_templates",
    "settings_of",
    "update",
]

# cluster_distro may be sent on create (Magnum: a plain string field that it then
# overwrites from the image); only PATCH treats it as read-only.
_SETTABLE = frozenset(spec.FIELDS)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_WHILE_REFERENCED = frozenset({"name", "public", "hidden", "tags"})


def settings_of(row: ClusterTemplateRow) -> TemplateSettings:
    """The typed attributes of a template besides its columns (name, public, hidden)."""
    return TemplateSettings.from_json(row.attrs)


def attributes(row: ClusterTemplateRow) -> dict[str, Any]:
    """Every Magnum attribute of a template with its default when not stored."""
    columns = {"name": row.name, "public": row.public, "hidden": row.hidden}
    stored = {**settings_of(row).to_json(), **columns}
    return {name: stored.get(name, f.default) for name, f in spec.FIELDS.items()}


def _scope(env: Env, ctx: RequestContext, rule: str) -> Scope:
    return Scope(ctx.project_id, all_projects=env.allowed(ctx, f"{rule}_all_projects"))


def _check_flavors(env: Env, values: dict[str, Any]) -> None:
    """Flavors name the operator's presets (Magnum: FlavorNotFound, a 400)."""
    presets = env.settings.cluster_flavors
    for key in ("flavor_id", "master_flavor_id"):
        name = values.get(key)
        if name is not None and name not in presets:
            raise errors.Invalid(
                f"Unable to find flavor {name}. Known: {', '.join(sorted(presets))}."
            )


def _check_publish(env: Env, ctx: RequestContext, values: dict[str, Any]) -> None:
    wants = values.get("public") or values.get("hidden")
    if wants and not env.allowed(ctx, "clustertemplate:publish"):
        raise errors.Forbidden("Not authorized to set public or hidden flag for cluster template.")


def _check_distro(drivers: DriverRegistry | None, values: dict[str, Any]) -> None:
    """A given cluster_distro must be one a loaded driver serves for the COE (Magnum's 400)."""
    if drivers is None or values.get("cluster_distro") is None:
        return
    drivers.select(
        server_type=values.get("server_type") or spec.FIELDS["server_type"].default,
        os=values["cluster_distro"],
        coe=values["coe"],
        name=values.get("driver"),
    )


def _valid_reference(image: str) -> bool:
    name, tag = split_reference(image)
    host = registry_of(name)
    path = name.removeprefix(host + "/") if host else name
    return valid_repository(path) and bool(_DIGEST.match(tag) if "@" in image else _TAG.match(tag))


async def _check_image(env: Env, ctx: RequestContext, image: str) -> None:
    """ImageNotFound (Magnum's 400) for an image_id that names no image anywhere.

    Node images are Docker references a host pulls when the cluster is built, so a
    well-formed ``repo[:tag]`` passes (only the pull can tell whether a registry
    has it). What cannot exist is refused now: a malformed reference, and a
    Glance-style UUID that is no image Berth knows (the image store's and pulled
    images are the only images with UUIDs).
    """
    if await glance.check_template_image(env, ctx, image):
        return  # the cloud's Glance has it, with its os_distro (as Magnum checks)
    if UUID_SHAPE.match(image):
        async with env.db.read() as session:
            row = await repo.node_image(session, ctx.project_id, image)
        if row is None:
            raise errors.ImageNotFound(
                f"Image {image} could not be found. Berth looked for an image with that "
                "UUID in the image store and among the images pulled onto hosts: give the "
                "node image as a Docker reference (repo:tag), or upload the image first."
            )
        raise errors.Invalid(
            f"Image {image} is {row.repo}:{row.tag}: cluster nodes run a Docker reference, "
            f"so give image_id {row.repo}:{row.tag} instead of the image's UUID."
        )
    if not _valid_reference(image):
        raise errors.ImageNotFound(
            f"Image {image} could not be found: it is not a valid image reference. "
            "Give the node image as repo[:tag] in lower case, like berth/swarm-node:1."
        )


async def create(
    env: Env,
    ctx: RequestContext,
    body: dict[str, Any],
    *,
    drivers: DriverRegistry | None = None,
) -> ClusterTemplateRow:
    """Store a template for the caller's project after validating every attribute.

    ``drivers`` (the API's) checks a given ``cluster_distro`` against the loaded drivers.
    """
    env.enforce(ctx, "clustertemplate:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create cluster templates.")
    values = spec.coerce_fields(body, allowed=_SETTABLE)
    for required in ("coe", "image_id"):
        if values.get(required) is None:
            raise errors.Invalid(f"Mandatory field missing: {required}")
    if not values.get("network_driver"):
        values["network_driver"] = spec.default_network_driver(values["coe"])
    spec.check_drivers(values["coe"], values["network_driver"], values.get("volume_driver"))
    _check_distro(drivers, values)
    await _check_image(env, ctx, values["image_id"])
    _check_publish(env, ctx, values)
    _check_flavors(env, values)
    now = utcnow()
    row = ClusterTemplateRow(
        uuid=new_uuid(),
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        name=values.pop("name", None) or generate_name("template"),
        public=bool(values.pop("public", False)),
        hidden=bool(values.pop("hidden", False)),
        attrs=TemplateSettings()
        .with_(**{k: v for k, v in values.items() if v is not None})
        .to_json(),
        created_at=now,
    )
    async with env.db.transaction() as session:
        await quotas.cap_records(
            env,
            session,
            ctx.project_id,
            ClusterTemplateRow,
            "max_cluster_templates_per_project",
            "cluster templates",
        )
        session.add(row)
    return row


async def list_templates(env: Env, ctx: RequestContext, rule: str) -> Sequence[ClusterTemplateRow]:
    """The templates the caller may list (``rule`` is ``get_all`` or ``detail``)."""
    env.enforce(ctx, f"clustertemplate:{rule}")
    async with env.db.read() as session:
        return await repo.visible(session, _scope(env, ctx, f"clustertemplate:{rule}"))


async def _find(env: Env, ctx: RequestContext, ident: str, rule: str) -> ClusterTemplateRow:
    async with env.db.read() as session:
        return await repo.get(session, _scope(env, ctx, rule), ident)


async def get(env: Env, ctx: RequestContext, ident: str) -> ClusterTemplateRow:
    """One visible template by UUID or name."""
    env.enforce(ctx, "clustertemplate:get")
    row = await _find(env, ctx, ident, "clustertemplate:get_one")
    if not row.public:
        env.enforce(ctx, "clustertemplate:get", row.project_id)
    return row


async def update(env: Env, ctx: RequestContext, ident: str, patch: Any) -> ClusterTemplateRow:
    """Apply a JSON-Patch to a template the caller owns (or any, for admins)."""
    check_patch(patch, read_only=spec.READ_ONLY)  # a malformed body is a 400 before any 404
    row = await _find(env, ctx, ident, "clustertemplate:update")
    env.enforce(ctx, "clustertemplate:update", row.project_id)
    before = attributes(row)
    after = apply_patch(
        before,
        patch,
        dict_fields=("labels",),
        read_only=spec.READ_ONLY,
        non_removable=spec.NON_REMOVABLE,
    )
    changed = {k: spec.coerce_field(k, v) for k, v in after.items() if v != before[k]}
    if not changed:
        return row
    frozen = bool(set(changed) - _WHILE_REFERENCED)  # only while no cluster uses it
    if frozen and await _in_use(env, row.uuid):
        raise _referenced(ident)
    await _check_changes(env, ctx, changed, after)
    async with env.db.transaction() as session:
        fresh = await repo.by_id(session, row.id, for_update=True)
        if fresh is None:
            raise errors.ClusterTemplateNotFound(f"ClusterTemplate {ident} could not be found.")
        # Again under the lock: a cluster created since the look above holds it for share.
        if frozen and await cluster_repo.uses_template(session, fresh.uuid):
            raise _referenced(ident)
        settings = settings_of(fresh)
        for key, value in changed.items():
            if key in ("name", "public", "hidden"):
                setattr(fresh, key, bool(value) if key != "name" else value)
            elif value is None or value == {}:
                settings = settings.without(key)  # back to its default
            else:
                settings = settings.with_(**{key: value})
        fresh.attrs = settings.to_json()
        fresh.updated_at = utcnow()
    return fresh


async def _check_changes(
    env: Env, ctx: RequestContext, changed: dict[str, Any], after: dict[str, Any]
) -> None:
    """The changed attributes' own checks (publishing, flavors, drivers, image, name)."""
    if "public" in changed or "hidden" in changed:
        _check_publish(env, ctx, {"public": True})
    _check_flavors(env, changed)
    if {"coe", "network_driver", "volume_driver"} & set(changed):
        network = after["network_driver"] or spec.default_network_driver(after["coe"])
        spec.check_drivers(after["coe"], network, after["volume_driver"] or None)
    if "image_id" in changed:
        await _check_image(env, ctx, changed["image_id"])
    if "name" in changed and not changed["name"]:
        raise errors.Invalid("Invalid input for field/attribute name: it must not be empty.")


def _referenced(ident: str) -> errors.ClusterTemplateReferenced:
    return errors.ClusterTemplateReferenced(
        f"ClusterTemplate {ident} is referenced by one or multiple clusters: "
        "only name, public, hidden and tags may change."
    )


async def _in_use(env: Env, template_uuid: str) -> bool:
    async with env.db.read() as session:
        return await cluster_repo.uses_template(session, template_uuid)


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Remove a template the caller owns (or any, for admins) that no cluster uses.

    The row is locked while its clusters are counted: a cluster create or upgrade
    that names it (``in_use_by``) either went first and is counted, or finds it gone.
    """
    row = await _find(env, ctx, ident, "clustertemplate:delete")
    env.enforce(ctx, "clustertemplate:delete", row.project_id)
    async with env.db.transaction() as session:
        fresh = await repo.by_id(session, row.id, for_update=True)
        if fresh is None:
            return
        if await cluster_repo.uses_template(session, fresh.uuid):
            raise errors.ClusterTemplateReferenced(
                f"ClusterTemplate {ident} is referenced by one or multiple clusters."
            )
        await session.delete(fresh)


async def in_use_by(session: Session, template: ClusterTemplateRow) -> None:
    """Inside the transaction of a cluster that names ``template``: it is still there,
    and kept from deletion until that transaction ends."""
    if await repo.by_id(session, template.id, for_share=True) is None:
        raise errors.ClusterTemplateNotFound(
            f"ClusterTemplate {template.uuid} was deleted meanwhile: choose another one."
        )
