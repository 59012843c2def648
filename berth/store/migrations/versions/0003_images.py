"""images and registries: the image API, the image store's catalogue, private registries

Revision ID: 0003_images
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0003_images"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("repo", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("image_id", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("container_uuid", sa.String(length=36), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("uuid", name=op.f("uq_images_uuid")),
    )
    op.create_index("ix_images_project", "images", ["project_id"])
    op.create_index("ix_images_repo_tag", "images", ["repo", "tag"])
    op.create_table(
        "registries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("uuid", name=op.f("uq_registries_uuid")),
    )
    op.create_index("ix_registries_project_name", "registries", ["project_id", "name"])


def downgrade() -> None:
    op.drop_index("ix_registries_project_name", table_name="registries")
    op.drop_table("registries")
    op.drop_index("ix_images_repo_tag", table_name="images")
    op.drop_index("ix_images_project", table_name="images")
    op.drop_table("images")
