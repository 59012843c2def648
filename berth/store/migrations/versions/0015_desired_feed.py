"""incremental desired state: a revision and epoch per host, and the change feed

Revision ID: 0015_desired_feed
Revises: 0014_container_image_ref
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0015_desired_feed"
down_revision: str | None = "0014_container_image_ref"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("desired_revision", sa.Integer(), nullable=False, server_default="0")
        )
        # Hosts registered before: one fresh epoch (their agents read everything once).
        batch_op.add_column(
            sa.Column(
                "desired_epoch",
                sa.String(length=32),
                nullable=False,
                server_default=secrets.token_hex(8),
            )
        )
    op.create_table(
        "desired_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desired_changes")),
    )
    op.create_index(
        "ix_desired_changes_host_revision", "desired_changes", ["host", "revision"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_desired_changes_host_revision", table_name="desired_changes")
    op.drop_table("desired_changes")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("desired_epoch")
        batch_op.drop_column("desired_revision")
