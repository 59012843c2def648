"""tokens: an index of a user's tokens by issue time (the bound on live tokens per user)

Revision ID: 0016_tokens_by_user
Revises: 0015_desired_feed
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_tokens_by_user"
down_revision: str | None = "0015_desired_feed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tokens_user_issued", "tokens", ["user_id", "issued_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tokens_user_issued", table_name="tokens")
