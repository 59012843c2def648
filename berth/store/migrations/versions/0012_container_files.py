"""container_files: the content of files injected through Zun's mounts of type bind

Revision ID: 0012_container_files
Revises: 0010_grant_unique
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0012_container_files"
down_revision: str | None = "0010_grant_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "container_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("container_uuid", sa.String(length=36), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_container_files")),
    )
    with op.batch_alter_table("container_files", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_container_files_container_uuid"), ["container_uuid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("container_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_container_files_container_uuid"))
    op.drop_table("container_files")
