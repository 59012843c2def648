"""nodegroups, cluster_quotas, cluster_conductors: Magnum node groups, quotas and mservices

``nodegroups.cluster_uuid`` has no foreign key: SQLite batch migrations rebuild
``clusters`` and would cascade; a cluster row deleted through the ORM deletes its
groups (an event in ``berth/store/tables/nodegroups.py``).

Every existing cluster gets its ``default-master`` and ``default-worker`` groups,
derived from its counts and flavors, with the UUIDs the read-only API showed
before (uuid5 of the cluster UUID and the group name).

Revision ID: 0009_nodegroups
Revises: 0005_clusters
"""

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0009_nodegroups"
down_revision: str | None = "0005_clusters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    nodegroups = op.create_table(
        "nodegroups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("cluster_uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("min_node_count", sa.Integer(), nullable=False),
        sa.Column("max_node_count", sa.Integer(), nullable=True),
        sa.Column("flavor_id", sa.String(length=255), nullable=True),
        sa.Column("image_id", sa.String(length=255), nullable=True),
        sa.Column("docker_volume_size", sa.Integer(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.String(length=1024), nullable=True),
        sa.Column("version", sa.String(length=255), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodegroups")),
        sa.UniqueConstraint("cluster_uuid", "name", name=op.f("uq_nodegroups_cluster_uuid")),
        sa.UniqueConstraint("uuid", name=op.f("uq_nodegroups_uuid")),
    )
    with op.batch_alter_table("nodegroups", schema=None) as batch_op:
        batch_op.create_index("ix_nodegroups_cluster_uuid", ["cluster_uuid"], unique=False)
        batch_op.create_index("ix_nodegroups_project_id", ["project_id"], unique=False)
    op.create_table(
        "cluster_quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_quotas")),
        sa.UniqueConstraint("project_id", "resource", name=op.f("uq_cluster_quotas_project_id")),
    )
    op.create_table(
        "cluster_conductors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("binary", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("forced_down", sa.Boolean(), nullable=False),
        sa.Column("last_seen_up", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_conductors")),
        sa.UniqueConstraint("host", "binary", name=op.f("uq_cluster_conductors_host")),
    )
    _backfill(nodegroups)


def _backfill(nodegroups: sa.Table) -> None:
    """The two default groups of every cluster that exists already."""
    clusters = sa.table(
        "clusters",
        sa.column("uuid", sa.String),
        sa.column("project_id", sa.String),
        sa.column("status", sa.String),
        sa.column("attrs", sa.JSON),
        sa.column("created_at", berth.store.base.UtcDateTime(timezone=True)),
    )
    conn = op.get_bind()
    rows = []
    now = dt.datetime.now(dt.UTC)
    for c in conn.execute(sa.select(clusters)).mappings():
        attrs = c["attrs"] or {}
        for name, role, count_key, flavor_key in (
            ("default-master", "master", "master_count", "master_flavor_id"),
            ("default-worker", "worker", "node_count", "flavor_id"),
        ):
            count, flavor = attrs.get(count_key, 1), attrs.get(flavor_key)
            rows.append(
                {
                    "uuid": str(uuid.uuid5(uuid.UUID(c["uuid"]), name)),
                    "cluster_uuid": c["uuid"],
                    "project_id": c["project_id"],
                    "name": name,
                    "role": role,
                    "is_default": True,
                    "node_count": int(count or 0),
                    "min_node_count": 1 if role == "master" else 0,
                    "max_node_count": None,
                    "flavor_id": flavor,
                    "image_id": None,  # None: the cluster template's image
                    "docker_volume_size": attrs.get("docker_volume_size"),
                    "labels": dict(attrs.get("labels") or {}),
                    "attrs": {},
                    "status": c["status"],
                    "status_reason": None,
                    "version": None,
                    "created_at": c["created_at"] or now,
                    "updated_at": None,
                }
            )
    if rows:
        op.bulk_insert(nodegroups, rows)


def downgrade() -> None:
    op.drop_table("cluster_conductors")
    op.drop_table("cluster_quotas")
    with op.batch_alter_table("nodegroups", schema=None) as batch_op:
        batch_op.drop_index("ix_nodegroups_project_id")
        batch_op.drop_index("ix_nodegroups_cluster_uuid")
    op.drop_table("nodegroups")
