"""overlay networks: a subnet and VNI per network, address leases, hosts' underlay address

Revision ID: 0013_overlay
Revises: 0012_container_files
Depends on: 0006_networks (the networks table)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import berth.store.base

revision: str = "0013_overlay"
down_revision: str | None = "0012_container_files"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0006_networks"


def upgrade() -> None:
    op.create_table(
        "address_leases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("network_uuid", sa.String(length=36), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("container_uuid", sa.String(length=36), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("created_at", berth.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_leases")),
        sa.UniqueConstraint("network_uuid", "address", name="uq_address_leases_address"),
        sa.UniqueConstraint("network_uuid", "container_uuid", name="uq_address_leases_container"),
    )
    with op.batch_alter_table("address_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_address_leases_container_uuid"), ["container_uuid"], unique=False
        )
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subnet", sa.String(length=43), nullable=True))
        batch_op.add_column(sa.Column("vni", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_networks_subnet"), ["subnet"])
        batch_op.create_unique_constraint(batch_op.f("uq_networks_vni"), ["vni"])
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("underlay_ip", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("underlay_ip")
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_networks_vni"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_networks_subnet"), type_="unique")
        batch_op.drop_column("vni")
        batch_op.drop_column("subnet")
    with op.batch_alter_table("address_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_address_leases_container_uuid"))
    op.drop_table("address_leases")
