"""containers.node_profile, clusters.control_ca_*: Docker-in-Docker cluster nodes

Revision ID: 0008_cluster_nodes
Revises: 0005_clusters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_cluster_nodes"
down_revision: str | None = "0005_clusters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_profile", sa.String(length=16), nullable=True))
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("control_ca_cert", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("control_ca_key_sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("control_ca_key_sealed")
        batch_op.drop_column("control_ca_cert")
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_column("node_profile")
