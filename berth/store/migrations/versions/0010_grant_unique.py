"""role_assignments: one grant per (user, project, role) and per (user, domain, role)

The table's unique constraint includes the nullable project_id and domain_id,
and NULLs never collide, so two API processes granting the same role at the
same moment could both insert. Duplicates are dropped (the oldest stays) and
two partial unique indexes make the database refuse the second insert.

Revision ID: 0010_grant_unique
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_grant_unique"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM role_assignments WHERE id NOT IN ("
        " SELECT min(id) FROM role_assignments"
        " GROUP BY user_id, role_id, coalesce(project_id, ''), coalesce(domain_id, ''))"
    )
    project = sa.text("project_id IS NOT NULL")
    domain = sa.text("domain_id IS NOT NULL")
    op.create_index(
        "uq_grant_project",
        "role_assignments",
        ["user_id", "project_id", "role_id"],
        unique=True,
        sqlite_where=project,
        postgresql_where=project,
    )
    op.create_index(
        "uq_grant_domain",
        "role_assignments",
        ["user_id", "domain_id", "role_id"],
        unique=True,
        sqlite_where=domain,
        postgresql_where=domain,
    )


def downgrade() -> None:
    op.drop_index("uq_grant_domain", "role_assignments")
    op.drop_index("uq_grant_project", "role_assignments")
