"""cluster_templates, clusters, outbox_cursors: Magnum clusters and the notification relay

Revision ID: 0005_clusters
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0005_clusters"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_templates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_templates")),
        sa.UniqueConstraint("uuid", name=op.f("uq_cluster_templates_uuid")),
    )
    with op.batch_alter_table("cluster_templates", schema=None) as batch_op:
        batch_op.create_index("ix_cluster_templates_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_cluster_templates_name", ["name"], unique=False)
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("cluster_template_id", sa.String(length=36), nullable=False),
        sa.Column("driver", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.String(length=1024), nullable=True),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("ca_cert", sa.Text(), nullable=True),
        sa.Column("ca_key_sealed", sa.Text(), nullable=True),
        sa.Column("lease_until", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deadline", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("uuid", name=op.f("uq_clusters_uuid")),
    )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.create_index("ix_clusters_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_clusters_name", ["name"], unique=False)
        batch_op.create_index("ix_clusters_cluster_template_id", ["cluster_template_id"], unique=False)
        batch_op.create_index("ix_clusters_status", ["status"], unique=False)
    op.create_table(
        "outbox_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_cursors")),
    )


def downgrade() -> None:
    op.drop_table("outbox_cursors")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_index("ix_clusters_status")
        batch_op.drop_index("ix_clusters_cluster_template_id")
        batch_op.drop_index("ix_clusters_name")
        batch_op.drop_index("ix_clusters_project_id")
    op.drop_table("clusters")
    with op.batch_alter_table("cluster_templates", schema=None) as batch_op:
        batch_op.drop_index("ix_cluster_templates_name")
        batch_op.drop_index("ix_cluster_templates_project_id")
    op.drop_table("cluster_templates")
