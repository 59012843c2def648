"""volumes: ``deleting`` while the host removes a volume's data (no container mounts it then)

Revision ID: 0017_volume_deleting
Revises: 0016_tokens_by_user
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_volume_deleting"
down_revision: str | None = "0016_tokens_by_user"
branch_labels: str | Sequence[str] | None = None
# volumes is made on another branch (0005_clusters -> 0007_volumes): it must come first.
depends_on: str | Sequence[str] | None = "0007_volumes"


def upgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleting", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_column("deleting")
