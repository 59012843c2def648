"""stream_tokens: single-use keys of interactive exec/attach websocket sessions

Revision ID: 0003_streams
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0003_streams"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("container_uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("exec_id", sa.String(length=80), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", berth.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_stream_tokens_digest")),
    )
    with op.batch_alter_table("stream_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_stream_tokens_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stream_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_stream_tokens_expires_at")
    op.drop_table("stream_tokens")
