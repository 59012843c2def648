"""Node groups (Magnum 1.9+): list, show, create, patch, delete — policy, tenancy, store.

A group is reached through its cluster, so another project sees none (404 for
the cluster). Creating or deleting a group moves the cluster to
UPDATE_IN_PROGRESS; the worker's update converges the nodes to the groups.
"""

from __future__ import annotations

from typing import Any

from berth import errors
from berth.domain import clusters as spec
from berth.domain.cluster_settings import ClusterSettings, NodeGroupSettings
from berth.domain.context import RequestContext
from berth.domain.jsonpatch import apply_patch
from berth.services.clusters import clusters, costs, groups
from berth.services.clusters import templates as cluster_templates
from berth.services.env import Env
from berth.store import cluster_templates as template_repo
from berth.store import clusters as repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.tables import ClusterRow, NodeGroupRow

__all__ = ["ClusterGroups", "create", "delete", "get", "list_groups", "update"]


class ClusterGroups:
    """A cluster, its live groups and its template's image: what the views need."""

    def __init__(self, cluster: ClusterRow, rows: list[NodeGroupRow], image: str) -> None:
        self.cluster, self.rows, self.image = cluster, rows, image


async def _template_image(env: Env, cluster: ClusterRow) -> str:
    async with env.db.read() as session:
        template = await template_repo.by_uuid(session, cluster.cluster_template_id)
    return str(cluster_templates.settings_of(template).image_id) if template else ""


async def _load(env: Env, ctx: RequestContext, ident: str, rule: str) -> ClusterGroups:
    cluster = await clusters.get(env, ctx, ident)
    env.enforce(ctx, f"nodegroup:{rule}", cluster.project_id)
    async with env.db.read() as session:
        rows = await repo.groups_of(session, cluster.uuid)
    return ClusterGroups(cluster, groups.live(rows, cluster), await _template_image(env, cluster))


async def list_groups(env: Env, ctx: RequestContext, ident: str) -> ClusterGroups:
    """The live groups of a visible cluster."""
    return await _load(env, ctx, ident, "get_all")


async def get(env: Env, ctx: RequestContext, ident: str, ng: str) -> ClusterGroups:
    """One group (UUID, name or id) of a visible cluster, as ``rows[0]``."""
    found = await _load(env, ctx, ident, "get")
    found.rows = [groups.find_group(found.rows, found.cluster, ng)]
    return found


async def create(env: Env, ctx: RequestContext, ident: str, body: Any) -> ClusterGroups:
    """Add a worker group and start the cluster update that creates its nodes."""
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    values = spec.coerce_nodegroup(body)
    cluster = await clusters.get(env, ctx, ident)
    env.enforce(ctx, "nodegroup:create", cluster.project_id)
    settings = ClusterSettings.from_json(cluster.attrs)
    if not settings.api_address:
        raise errors.Conflict(
            f"The API address of cluster {cluster.name} is not available yet: wait until it "
            "is created."
        )
    name = values["name"]
    node_count = values.get("node_count", 1)
    low, high = values.get("min_node_count", 0), values.get("max_node_count")
    costs.check_group_bounds(env, name, low, high)
    spec.check_node_counts(name, node_count, low, high)
    role = values.get("role", "worker")
    if role == "master":
        raise errors.Invalid("Creating master nodegroups is currently not supported.")
    flavor_id = values.get("flavor_id", settings.flavor_id)
    groups.resolve_flavor(env, flavor_id)
    cluster_labels = dict(settings.labels)
    labels = values.get("labels")
    if labels is None:
        labels = cluster_labels
    elif values.get("merge_labels"):
        labels = {**cluster_labels, **labels}
        spec.check_labels_size("labels", labels)
    image = values.get("image_id") or await _template_image(env, cluster)
    resolved = await clusters.glance_images(env, ctx, values.get("image_id"))
    async with env.db.transaction() as session:
        fresh = await repo.lock(session, cluster.id)
        if fresh is None:
            raise errors.ClusterNotFound(f"Cluster {ident} could not be found.")
        clusters.record_glance_images(fresh, resolved)
        found = await groups.settle(session, fresh)
        if any(g.name == name for g in found):
            raise errors.Conflict(
                f"A node group with name {name} already exists in the cluster {fresh.name}."
            )
        if len(found) >= env.settings.max_nodegroups_per_cluster:  # 0-node groups cost nothing
            raise errors.OverQuota(
                f"Cluster {fresh.name} has {len(found)} node groups, the most one may "
                "(max_nodegroups_per_cluster): delete one it no longer needs and try again."
            )
        row = NodeGroupRow(
            uuid=new_uuid(),
            cluster_uuid=fresh.uuid,
            project_id=fresh.project_id,
            name=name,
            role=role,
            is_default=False,
            node_count=node_count,
            min_node_count=low,
            max_node_count=high,
            flavor_id=flavor_id,
            image_id=image,
            docker_volume_size=values.get(
                "docker_volume_size", ClusterSettings.from_json(fresh.attrs).docker_volume_size
            ),
            labels=labels,
            attrs=NodeGroupSettings()
            .with_(
                merge_labels=bool(values.get("merge_labels", False)),
                node_labels=values.get("node_labels") or {},
                node_taints=values.get("node_taints") or [],
            )
            .to_json(),
            status="CREATE_IN_PROGRESS",
            created_at=utcnow(),
        )
        costs.check_cap(env, fresh.name, costs.plan_size([*found, row]))
        await costs.charge(env, session, fresh, [*found, row])
        session.add(row)
        found.append(row)
        groups.recount(fresh, found)
        groups.begin_update(
            session,
            fresh,
            f"Node group {name} ({node_count} node(s)) create requested.",
            ctx.user_id,
            ClusterSettings.from_json(fresh.attrs).timeout,
        )
    return ClusterGroups(fresh, [row], image)


def _patch_taints(ops: list[Any], current: list[dict[str, str]]) -> list[dict[str, str]]:
    out = current
    for op in ops:
        kind = op.get("op")
        if kind == "remove":
            out = []
        elif kind in ("add", "replace") and "value" in op:
            out = spec.coerce_taints(op["value"])
        else:
            raise errors.Invalid(f"Invalid patch operation: {op!r}.")
    return out


async def update(env: Env, ctx: RequestContext, ident: str, ng: str, patch: Any) -> ClusterGroups:
    """Apply a JSON-Patch: only min/max_node_count, node_labels and node_taints may change."""
    found = await get(env, ctx, ident, ng)
    cluster, group = found.cluster, found.rows[0]
    env.enforce(ctx, "nodegroup:update", cluster.project_id)
    if not isinstance(patch, list) or not patch:
        raise errors.Invalid("The patch must be a non-empty JSON array of operations.")
    after, taints = _patched(group, patch)
    node_labels = {str(k): str(v) for k, v in after["node_labels"].items()}
    costs.check_group_bounds(env, group.name, after["min_node_count"], after["max_node_count"])
    spec.check_node_counts(
        group.name, group.node_count, after["min_node_count"], after["max_node_count"]
    )
    async with env.db.transaction() as session:
        # The cluster first, then the group: the order every cluster change locks in.
        owner = await repo.lock(session, cluster.id)
        fresh = await repo.group_for_update(session, group.id)
        if fresh is None:
            raise errors.NodeGroupNotFound(f"Nodegroup {ng} could not be found.")
        stored = NodeGroupSettings.from_json(fresh.attrs)
        relabel = node_labels != dict(stored.node_labels)
        fresh.min_node_count = after["min_node_count"]
        fresh.max_node_count = after["max_node_count"]
        fresh.attrs = stored.with_(node_labels=node_labels, node_taints=taints).to_json()
        fresh.updated_at = utcnow()
        # New node labels reach the nodes through a cluster update: started here
        # when the cluster is idle, else the next update applies them.
        if relabel and owner is not None and owner.status in groups.SETTLED:
            await _relabel(env, ctx, session, owner, fresh)
            found.cluster = owner
    found.rows = [fresh]
    return found


def _patched(group: NodeGroupRow, patch: list[Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The group's patchable attributes after ``patch``, and its node taints after it.

    Taints are a list Magnum patches whole (JSON-Patch paths cannot reach into
    it), so their operations are applied apart from the others.
    """
    taint_ops = [
        op for op in patch if isinstance(op, dict) and str(op.get("path", "")) == "/node_taints"
    ]
    rest = [op for op in patch if op not in taint_ops]
    group_settings = NodeGroupSettings.from_json(group.attrs)
    taints = _patch_taints(taint_ops, list(group_settings.node_taints))
    before: dict[str, Any] = {
        "name": group.name,
        "node_count": group.node_count,
        "min_node_count": group.min_node_count,
        "max_node_count": group.max_node_count,
        "node_labels": dict(group_settings.node_labels),
        "flavor_id": group.flavor_id,
        "image_id": group.image_id,
        "labels": dict(group.labels or {}),
        "role": group.role,
        "status": group.status,
    }
    after = dict(before)
    if rest:
        after = apply_patch(
            before,
            rest,
            dict_fields=("node_labels", "labels"),
            read_only=sorted(set(before) - spec.NODEGROUP_PATCHABLE),
        )
    for key in ("min_node_count", "max_node_count"):
        after[key] = _node_count_bound(key, after[key])
    return after, taints


def _node_count_bound(key: str, value: Any) -> int | None:
    """A patched min/max_node_count as an int (a removed minimum is 0); 400 when not >= 0."""
    if key == "min_node_count" and value is None:
        value = 0
    bound: int | None = value
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        try:
            bound = int(str(value))
        except ValueError:
            raise errors.Invalid(
                f"Invalid input for field/attribute {key}. Value: {value}."
            ) from None
    if bound is not None and bound < 0:
        raise errors.Invalid(f"Invalid input for field/attribute {key}. Value: {value}.")
    return bound


async def _relabel(
    env: Env, ctx: RequestContext, session: Session, owner: ClusterRow, group: NodeGroupRow
) -> None:
    """Start the cluster update that brings the group's new node labels to its nodes."""
    # The update also creates the nodes a failed one left missing: they cost.
    await costs.charge(env, session, owner, await groups.settle(session, owner))
    group.status = "UPDATE_IN_PROGRESS"
    groups.begin_update(
        session,
        owner,
        f"Node labels of node group {group.name} changed.",
        ctx.user_id,
        ClusterSettings.from_json(owner.attrs).timeout,
    )


async def delete(env: Env, ctx: RequestContext, ident: str, ng: str) -> None:
    """Start removing a non-default group: the cluster update deletes its nodes."""
    found = await get(env, ctx, ident, ng)
    cluster, group = found.cluster, found.rows[0]
    env.enforce(ctx, "nodegroup:delete", cluster.project_id)
    if group.is_default:
        raise errors.Invalid("Deleting a default nodegroup is not supported.")
    async with env.db.transaction() as session:
        fresh = await repo.lock(session, cluster.id)
        if fresh is None:
            raise errors.ClusterNotFound(f"Cluster {ident} could not be found.")
        rows = await groups.settle(session, fresh)
        target = groups.find_group(rows, fresh, group.uuid)
        target.status, target.updated_at = "DELETE_IN_PROGRESS", utcnow()
        groups.recount(fresh, rows)
        groups.begin_update(
            session,
            fresh,
            f"Node group {target.name} delete requested.",
            ctx.user_id,
            ClusterSettings.from_json(fresh.attrs).timeout,
        )
