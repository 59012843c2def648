"""volumes, capsules, containers.capsule_id/container_type: data volumes and capsules (pods)

Revision ID: 0007_volumes
Revises: 0005_clusters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0007_volumes"
down_revision: str | None = "0005_clusters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("owner_uuid", sa.String(length=36), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
        sa.UniqueConstraint("uuid", name=op.f("uq_volumes_uuid")),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index("ix_volumes_project_name", ["project_id", "name"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_owner_uuid"), ["owner_uuid"], unique=False)
    op.create_table(
        "capsules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("restart_policy", sa.JSON(), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("volumes", sa.JSON(), nullable=False),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capsules")),
        sa.UniqueConstraint("uuid", name=op.f("uq_capsules_uuid")),
    )
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.create_index("ix_capsules_project_name", ["project_id", "name"], unique=False)
        batch_op.create_index(batch_op.f("ix_capsules_project_id"), ["project_id"], unique=False)
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capsule_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column(
                "container_type",
                sa.String(length=16),
                nullable=False,
                server_default="container",
            )
        )
        batch_op.create_index(batch_op.f("ix_containers_capsule_id"), ["capsule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_containers_capsule_id"))
        batch_op.drop_column("container_type")
        batch_op.drop_column("capsule_id")
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capsules_project_id"))
        batch_op.drop_index("ix_capsules_project_name")
    op.drop_table("capsules")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_owner_uuid"))
        batch_op.drop_index(batch_op.f("ix_volumes_project_id"))
        batch_op.drop_index("ix_volumes_project_name")
    op.drop_table("volumes")
