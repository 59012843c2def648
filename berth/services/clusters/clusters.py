"""Clusters (Magnum): create, list, show, patch, resize, delete — policy, tenancy, store.

The API only records intent: a row in ``*_IN_PROGRESS`` plus a notification;
the lifecycle worker (``cluster_lifecycle``) runs the driver and records the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

from berth import errors
from berth.clusters import pki
from berth.clusters.registry import DriverRegistry
from berth.domain import clusters as spec
from berth.domain.cluster_settings import (
    DEFAULT_CREATE_TIMEOUT,
    ClusterSettings,
    TemplateSettings,
)
from berth.domain.context import RequestContext
from berth.domain.jsonpatch import apply_patch
from berth.events.clusters import emit_notification, emit_step
from berth.services.clusters import costs, groups, templates
from berth.services.clusters.nodes import NODEGROUP_LABEL, node_rows
from berth.services.env import Env
from berth.services.images import glance
from berth.services.names import generate_name
from berth.store import cluster_templates as template_repo
from berth.store import clusters as repo
from berth.store import magnum_quotas
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.scope import Scope
from berth.store.tables import ClusterRow, ClusterTemplateRow, NodeGroupRow

__all__ = [
    "create",
    "delete",
    "get",
    "glance_images",
    "list_clusters",
    "record_glance_images",
    "resize",
    "rotate_ca",
    "stats",
    "update",
    "upgrade",
]


def _deadline(minutes: int) -> dt.datetime | None:
    """When an operation must have ended; ``create_timeout`` 0 means no deadline (as Heat)."""
    return utcnow() + dt.timedelta(minutes=minutes) if minutes else None


def _all(env: Env, ctx: RequestContext, rule: str) -> bool:
    return env.allowed(ctx, f"cluster:{rule}_all_projects")


def _scope(env: Env, ctx: RequestContext, rule: str) -> Scope:
    """The caller's project, or every project where ``cluster:<rule>_all_projects`` allows.

    Not ``services.scopes``: Magnum asks for no ``all_projects`` flag, the policy
    alone widens the view (admins see every project's clusters).
    """
    return Scope(ctx.project_id, all_projects=_all(env, ctx, rule))


async def _locked(session: Session, row: ClusterRow, ident: str) -> ClusterRow:
    """``row`` again, locked for this transaction; ClusterNotFound naming ``ident`` if gone."""
    fresh = await repo.lock(session, row.id)
    if fresh is None:
        raise errors.ClusterNotFound(f"Cluster {ident} could not be found.")
    return fresh


async def create(
    env: Env, ctx: RequestContext, drivers: DriverRegistry, body: dict[str, Any], *, zero_ok: bool
) -> ClusterRow:
    """Validate and record a new cluster in CREATE_IN_PROGRESS; the worker builds it."""
    env.enforce(ctx, "cluster:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create clusters.")
    values = spec.coerce_create(body)
    if "cluster_template_id" not in values:
        raise errors.Invalid("Mandatory field missing: cluster_template_id")
    template = await templates.get(env, ctx, values["cluster_template_id"])
    if template.hidden and not ctx.is_admin:
        raise errors.Forbidden("Cluster template is hidden: only admins may use it.")
    ct = templates.settings_of(template)
    driver = drivers.select(
        server_type=ct.server_type, os=ct.cluster_distro, coe=str(ct.coe), name=ct.driver
    )
    name = spec.check_name(values.get("name") or generate_name("cluster"))
    settings = _initial_settings(env, ct, values, name, zero_ok=zero_ok)
    images = await glance_images(env, ctx, ct.image_id)
    if images:
        settings = settings.with_(glance_images=images)
    row = ClusterRow(
        uuid=new_uuid(),
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        name=name,
        cluster_template_id=template.uuid,
        driver=driver.info.name,
        status="CREATE_IN_PROGRESS",
        status_reason="Cluster create requested.",
        attrs=settings.to_json(),
        created_at=utcnow(),
        deadline=_deadline(settings.timeout),
    )
    async with env.db.transaction() as session:
        await templates.in_use_by(session, template)
        limit = await magnum_quotas.hard_limit(session, ctx.project_id, "Cluster")
        if limit is None:
            limit = env.settings.max_clusters_per_project
        if await repo.count_in_project(session, ctx.project_id) >= limit:
            raise errors.OverQuota(
                f"You have reached the maximum clusters per project, {limit}. "
                "You may delete a cluster to make room for a new one."
            )
        new_groups = groups.default_groups(row)
        await costs.charge(env, session, row, new_groups)
        session.add(row)
        await session.flush()  # the groups reference the cluster's uuid
        session.add_all(new_groups)
        emit_step(session, row, row.status_reason or "")
        emit_notification(session, row, row.status, "pending", ctx.user_id)
    return row


async def glance_images(env: Env, ctx: RequestContext, image: str | None) -> dict[str, str]:
    """``{image: <id>:<checksum>}`` when ``image`` names a Glance image for the caller, else {}.

    Resolved at the caller's request, with the caller's token: the worker that
    creates the nodes later (scale-up, replacement) has none and reuses the record.
    """
    ref = await glance.node_image_ref(env, ctx, image) if image else None
    return {str(image): ref} if ref else {}


def record_glance_images(cluster: ClusterRow, images: dict[str, str]) -> None:
    """Add resolved Glance node images to the cluster's settings (locked row)."""
    if images:
        settings = ClusterSettings.from_json(cluster.attrs)
        cluster.attrs = settings.with_(glance_images={**settings.glance_images, **images}).to_json()


# Magnum's ZeroNodeCountNotSupported (create and update below 1.10), with what to do.
_ZERO_NODES = (
    "Resizing a nodegroup to zero is not supported in the provided microversion: use 1.10 or later."
)


def _initial_settings(
    env: Env, ct: TemplateSettings, values: dict[str, Any], name: str, *, zero_ok: bool
) -> ClusterSettings:
    master_count = values.get("master_count", 1)
    node_count = values.get("node_count", 1)
    if master_count < 1 or master_count % 2 == 0:
        raise errors.Invalid(f"master_count must be an odd number >= 1, not {master_count}.")
    if node_count < 0 or (node_count == 0 and not zero_ok):
        raise errors.Invalid(
            _ZERO_NODES if node_count == 0 else f"node_count must be >= 0, not {node_count}."
        )
    create_timeout = values.get("create_timeout", DEFAULT_CREATE_TIMEOUT)
    if create_timeout < 0:
        raise errors.Invalid("create_timeout must be >= 0.")
    labels = dict(values.get("labels") or ct.labels)
    if values.get("merge_labels"):
        labels = {**ct.labels, **(values.get("labels") or {})}
        spec.check_labels_size("labels", labels)
    bounds = [labels.get(k) for k in ("min_node_count", "max_node_count")]
    # (at most 9 digits: int() of a huge digit string is slow, then refuses)
    if any(b is not None and not (str(b).isdigit() and len(str(b)) <= 9) for b in bounds):
        raise errors.Invalid("The labels min_node_count and max_node_count must be integers >= 0.")
    low, high = int(bounds[0] or 0), None if bounds[1] is None else int(bounds[1])
    costs.check_cap(env, name, master_count + node_count)
    costs.check_group_bounds(env, "default-worker", low, high)
    spec.check_node_counts("default-worker", node_count, low, high)
    flavor_id = values.get("flavor_id", ct.flavor_id)
    master_flavor_id = values.get("master_flavor_id", ct.master_flavor_id)
    groups.resolve_flavor(env, flavor_id)
    groups.resolve_flavor(env, master_flavor_id)
    return ClusterSettings().with_(
        keypair=values.get("keypair", ct.keypair_id),
        node_count=node_count,
        master_count=master_count,
        docker_volume_size=values.get("docker_volume_size", ct.docker_volume_size),
        labels=labels,
        master_flavor_id=master_flavor_id,
        flavor_id=flavor_id,
        create_timeout=create_timeout,
        discovery_url=values.get("discovery_url"),
        fixed_network=values.get("fixed_network", ct.fixed_network),
        fixed_subnet=values.get("fixed_subnet", ct.fixed_subnet),
        floating_ip_enabled=values.get("floating_ip_enabled", ct.floating_ip_enabled),
        master_lb_enabled=values.get("master_lb_enabled", ct.master_lb_enabled),
        template_labels=dict(ct.labels),
    )


async def list_clusters(env: Env, ctx: RequestContext, rule: str) -> Sequence[ClusterRow]:
    """The caller's clusters (every project's for admins); ``rule`` is get_all or detail."""
    env.enforce(ctx, f"cluster:{rule}")
    async with env.db.read() as session:
        return await repo.visible(session, _scope(env, ctx, rule))


async def _find(env: Env, ctx: RequestContext, ident: str, rule: str) -> ClusterRow:
    async with env.db.read() as session:
        return await repo.get(session, _scope(env, ctx, rule), ident)


async def get(env: Env, ctx: RequestContext, ident: str) -> ClusterRow:
    """One visible cluster by UUID or name."""
    env.enforce(ctx, "cluster:get")
    return await _find(env, ctx, ident, "get_one")


async def update(
    env: Env, ctx: RequestContext, ident: str, patch: Any, *, zero_ok: bool = True
) -> ClusterRow:
    """Apply a JSON-Patch: node_count starts an update; health fields are just saved.

    ``zero_ok`` False refuses a node_count of 0 (microversions below 1.10).
    """
    row = await _find(env, ctx, ident, "update")
    env.enforce(ctx, "cluster:update", row.project_id)
    async with env.db.read() as session:
        found = await repo.groups_of(session, row.uuid)
    worker = [g for g in found if g.name == "default-worker"]
    settings = ClusterSettings.from_json(row.attrs)
    before = {
        "name": row.name,
        "node_count": worker[0].node_count if worker else settings.stored("node_count"),
        "master_count": settings.stored("master_count"),
        "health_status": settings.stored("health_status"),
        "health_status_reason": settings.stored("health_status_reason") or {},
        "labels": settings.stored("labels") or {},
    }
    after = apply_patch(
        before, patch, dict_fields=("labels", "health_status_reason"),
        read_only=("api_address", "node_addresses", "master_addresses", "stack_id",
                   "cluster_id", "status", "status_reason", "cluster_template_id"),
    )  # fmt: skip
    changed = sorted(k for k in after if after[k] != before[k])
    refused = [k for k in changed if k not in spec.PATCHABLE]
    if refused:
        raise errors.Invalid(f"cannot change cluster property(ies) {', '.join(refused)}.")
    if {"health_status", "health_status_reason"} & set(changed):
        env.enforce(ctx, "cluster:update_health_status", row.project_id)
    node_count = after["node_count"]
    retry = row.status == "UPDATE_FAILED" and any(
        isinstance(op, dict) and op.get("path") == "/node_count" for op in patch
    )
    if "node_count" in changed or retry:  # the same node_count again retries a failed update
        return await resize(env, ctx, row.uuid, node_count, zero_ok=zero_ok)
    return await _save_health(env, row, after)


async def _save_health(env: Env, row: ClusterRow, after: dict[str, Any]) -> ClusterRow:
    async with env.db.transaction() as session:
        fresh = await _locked(session, row, row.uuid)
        fresh.attrs = (
            ClusterSettings.from_json(fresh.attrs)
            .with_(
                health_status=after["health_status"],
                health_status_reason={
                    str(k): str(v) for k, v in after["health_status_reason"].items()
                },
            )
            .to_json()
        )
        fresh.updated_at = utcnow()
    return fresh


async def resize(
    env: Env,
    ctx: RequestContext,
    ident: str,
    node_count: Any,
    *,
    zero_ok: bool,
    nodegroup: Any = None,
    nodes_to_remove: Any = (),
) -> ClusterRow:
    """Set a worker group's size (default-worker unless ``nodegroup``) and start an update.

    The group's min/max bounds apply (Magnum's NGResizeOutBounds); the same count
    again retries a failed update.
    """
    row = await _find(env, ctx, ident, "update")
    env.enforce(ctx, "cluster:resize", row.project_id)
    if isinstance(node_count, bool) or not isinstance(node_count, int):
        raise errors.Invalid(f"Invalid input for field/attribute node_count. Value: {node_count}.")
    if nodegroup is not None and not isinstance(nodegroup, str):
        raise errors.Invalid(f"Invalid input for field/attribute nodegroup. Value: {nodegroup}.")
    if not isinstance(nodes_to_remove, (list, tuple)) or not all(
        isinstance(n, str) for n in nodes_to_remove
    ):
        raise errors.Invalid("Invalid input for field/attribute nodes_to_remove: a list of names.")
    if node_count < 0:
        raise errors.Invalid(f"node_count must be >= 0, not {node_count}.")
    if node_count == 0 and not zero_ok:
        raise errors.Invalid(_ZERO_NODES)
    async with env.db.transaction() as session:
        fresh = await _locked(session, row, ident)
        found = await groups.settle(session, fresh)
        group = groups.find_group(found, fresh, nodegroup or "default-worker", deleting=False)
        if group.role == "master":
            raise errors.Invalid("Resizing a master nodegroup is not supported by this driver.")
        spec.check_resize_bounds(group.name, node_count, group.min_node_count, group.max_node_count)
        removing = await _nodes_to_remove(session, fresh, group.name, nodes_to_remove)
        group.node_count = node_count
        costs.check_cap(env, fresh.name, costs.plan_size(found))
        await costs.charge(env, session, fresh, found)
        group.status, group.updated_at = "UPDATE_IN_PROGRESS", utcnow()
        groups.recount(fresh, found)
        where = "" if group.name == "default-worker" else f" in node group {group.name}"
        groups.begin_update(
            session,
            fresh,
            f"Resize to {node_count} worker node(s){where} requested.",
            ctx.user_id,
            ClusterSettings.from_json(fresh.attrs).timeout,
            {"nodes_to_remove": {"nodegroup": group.name, "nodes": removing}} if removing else None,
        )
    return fresh


async def _nodes_to_remove(
    session: Session, cluster: ClusterRow, group: str, idents: Sequence[str]
) -> list[str]:
    """The node names ``idents`` (names or container UUIDs, as Magnum's "server IDs") stand for.

    Each must be a node of ``cluster`` in node group ``group``: else 400, naming it.
    """
    if not idents:
        return []
    nodes = await node_rows(session, cluster.project_id, cluster.uuid)
    names: list[str] = []
    for ident in idents:
        node = next((r for r in nodes if ident in (r.uuid, r.name)), None)
        if node is None:
            raise errors.Invalid(
                f"Node {ident} is not a node of cluster {cluster.name}: name one of "
                f"{', '.join(r.name for r in nodes) or 'its nodes (it has none)'}."
            )
        in_group = (node.labels or {}).get(NODEGROUP_LABEL)
        if in_group is not None and in_group != group:
            raise errors.Invalid(
                f"Node {ident} is in node group {in_group}, not {group}: resize {in_group} "
                f"to remove it (--nodegroup {in_group})."
            )
        if node.name not in names:
            names.append(node.name)
    return names


async def upgrade(env: Env, ctx: RequestContext, ident: str, body: Any) -> ClusterRow:
    """Move the cluster (or one node group) to another template's node image.

    Without ``nodegroup`` (or with a default group) the cluster's template becomes
    the new one and both default groups follow it; a non-default group can only
    be brought to the cluster's current template (Magnum's rule, 409 otherwise).
    The driver's update then replaces nodes whose image differs, in rolling batches.
    """
    wanted, batch, ng = _upgrade_request(body)
    row = await _find(env, ctx, ident, "upgrade")
    env.enforce(ctx, "cluster:upgrade", row.project_id)
    template = await templates.get(env, ctx, wanted)
    if template.hidden and not ctx.is_admin:
        raise errors.Forbidden("Cluster template is hidden: only admins may use it.")
    new_ct = templates.settings_of(template)
    await _check_same_coe(env, row, new_ct)
    resolved = await glance_images(env, ctx, new_ct.image_id)
    async with env.db.transaction() as session:
        fresh = await _locked(session, row, ident)
        await templates.in_use_by(session, template)
        found = await groups.settle(session, fresh)
        targets = _upgrade_targets(found, fresh, template, ng)
        record_glance_images(fresh, resolved)
        for g in targets:
            g.image_id = None  # follow the cluster's template
            g.status, g.updated_at = "UPDATE_IN_PROGRESS", utcnow()
        groups.begin_update(
            session,
            fresh,
            f"Upgrade of {', '.join(g.name for g in targets)} to cluster template "
            f"{template.name} ({new_ct.image_id}) requested.",
            ctx.user_id,
            ClusterSettings.from_json(fresh.attrs).timeout,
            {
                "upgrade": {
                    "cluster_template_id": template.uuid,
                    "max_batch_size": batch,
                    "nodegroups": [g.name for g in targets],
                }
            },
        )
    return fresh


def _upgrade_request(body: Any) -> tuple[str, int, str | None]:
    """The checked upgrade body: (cluster_template, max_batch_size, nodegroup); 400 otherwise."""
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    unknown = sorted(set(body) - {"cluster_template", "max_batch_size", "nodegroup"})
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument cluster upgrade: {unknown[0]}")
    wanted, batch, ng = (
        body.get("cluster_template"),
        body.get("max_batch_size", 1),
        body.get("nodegroup"),
    )
    if not isinstance(wanted, str) or not wanted:
        raise errors.Invalid("Mandatory field missing: cluster_template")
    if batch is None:
        batch = 1
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise errors.Invalid(f"Invalid input for field/attribute max_batch_size. Value: {batch}.")
    if ng is not None and not isinstance(ng, str):
        raise errors.Invalid(f"Invalid input for field/attribute nodegroup. Value: {ng}.")
    return wanted, batch, ng


async def _check_same_coe(env: Env, row: ClusterRow, new_ct: TemplateSettings) -> None:
    """409 when the new template runs another COE than the cluster's current one (if any)."""
    async with env.db.read() as session:
        current = await template_repo.by_uuid(session, row.cluster_template_id)
    if current is None:
        return
    current_coe = templates.settings_of(current).coe
    if current_coe != new_ct.coe:
        raise errors.Conflict(
            "Cluster Template is not valid for upgrade: the COE must stay "
            f"{current_coe}, not {new_ct.coe}."
        )


def _upgrade_targets(
    found: list[NodeGroupRow], cluster: ClusterRow, template: ClusterTemplateRow, ng: str | None
) -> list[NodeGroupRow]:
    """The groups an upgrade moves; a whole-cluster upgrade also moves the cluster's template.

    A non-default group only follows the cluster's current template (409 otherwise).
    """
    group = groups.find_group(found, cluster, ng, deleting=False) if ng else None
    if group is not None and not group.is_default:
        if template.uuid != cluster.cluster_template_id:
            raise errors.Conflict(
                f"Nodegroup {group.name} can only be upgraded to the cluster's current "
                f"template {cluster.cluster_template_id}: upgrade the cluster first."
            )
        return [group]
    cluster.cluster_template_id = template.uuid
    return [g for g in found if g.is_default]


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Start DELETE_IN_PROGRESS; the row goes when the driver has removed every node."""
    row = await _find(env, ctx, ident, "delete")
    env.enforce(ctx, "cluster:delete", row.project_id)
    async with env.db.transaction() as session:
        fresh = await repo.lock(session, row.id)
        if fresh is None or fresh.status == "DELETE_IN_PROGRESS":
            return
        fresh.status = "DELETE_IN_PROGRESS"
        fresh.status_reason = "Cluster delete requested."
        fresh.updated_at = utcnow()
        fresh.deadline = utcnow() + dt.timedelta(minutes=60)
        fresh.lease_until = None
        emit_step(session, fresh, fresh.status_reason)
        emit_notification(session, fresh, fresh.status, "pending", ctx.user_id)


async def stats(env: Env, ctx: RequestContext, project_id: str | None) -> dict[str, int]:
    """Cluster and node counts (masters included) of one project, or of all for admins."""
    project = project_id or (None if ctx.is_admin else ctx.project_id)
    env.enforce(ctx, "stats:get_all", project)
    async with env.db.read() as session:
        rows = await repo.in_project(session, project)
    counts = [ClusterSettings.from_json(r.attrs) for r in rows]
    nodes = sum((c.node_count or 0) + (c.master_count or 0) for c in counts)
    return {"clusters": len(rows), "nodes": nodes}


async def rotate_ca(env: Env, ctx: RequestContext, ident: str) -> ClusterRow:
    """Replace the cluster CA and start an update that re-issues the nodes' certificates."""
    row = await _find(env, ctx, ident, "update")
    env.enforce(ctx, "certificate:rotate_ca", row.project_id)
    async with env.db.read() as session:
        template = await template_repo.by_uuid(session, row.cluster_template_id)
    if template is not None and templates.settings_of(template).tls_disabled:
        raise errors.Invalid(
            f"Rotating the CA of cluster {row.uuid} is not supported: TLS is disabled."
        )
    ca = await asyncio.to_thread(pki.new_ca, row.name)  # key generation: off the event loop
    async with env.db.transaction() as session:
        fresh = await _locked(session, row, ident)
        if not fresh.status.endswith("_COMPLETE"):
            raise errors.Invalid(
                f"Rotating the CA of cluster {fresh.uuid} is not allowed in status {fresh.status}."
            )
        await groups.settle(session, fresh)
        fresh.ca_cert, fresh.ca_key_sealed = ca.cert_pem, env.secrets.seal(ca.key_pem)
        fresh.status = "UPDATE_IN_PROGRESS"
        fresh.status_reason = "CA rotation requested: nodes get certificates from the new CA."
        fresh.updated_at = utcnow()
        fresh.deadline = _deadline(ClusterSettings.from_json(fresh.attrs).timeout)
        fresh.lease_until = None
        emit_step(session, fresh, fresh.status_reason)
        emit_notification(session, fresh, fresh.status, "pending", ctx.user_id)
    return fresh
