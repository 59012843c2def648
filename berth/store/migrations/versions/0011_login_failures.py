"""login_failures: the login throttle's counts, shared by every API process

Failed passwords per user and per client address, and the addresses a user
logged in from lately, so N API processes over one database hold an attacker
to the same number of guesses as one (they were kept in each process before).

Revision ID: 0011_login_failures
Revises: 0010_grant_unique
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_login_failures"
down_revision: str | None = "0010_grant_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False),
    )
    op.create_index("ix_login_failures_last", "login_failures", ["last"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_last", "login_failures")
    op.drop_table("login_failures")
