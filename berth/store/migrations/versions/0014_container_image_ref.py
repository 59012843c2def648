"""containers.image_ref: the Glance image (id and checksum) a glance-driver container runs

Revision ID: 0014_container_image_ref
Revises: 0013_overlay
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_container_image_ref"
down_revision: str | None = "0013_overlay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_ref", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_column("image_ref")
