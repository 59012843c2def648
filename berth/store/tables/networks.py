"""Project networks and security groups (the resources behind ``berth.networks``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["AddressLeaseRow", "NetworkRow", "SecurityGroupRow"]


class NetworkRow(Base):
    """A project network: one isolated bridge per host that runs one of its containers.

    Every project has one ``is_default`` network, named ``default``, created
    with its first container.
    """

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_networks_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    # The overlay's address plan (network_driver = overlay), set when first needed:
    # the network's subnet, the same on every host, and its VXLAN network identifier.
    subnet: Mapped[str | None] = mapped_column(String(43), unique=True, default=None)
    vni: Mapped[int | None] = mapped_column(unique=True, default=None)


class AddressLeaseRow(Base):
    """A container's address on an overlay network: unique per network, kept while it lives.

    The unique constraints make two concurrent allocations of one address (or
    two addresses for one container) fail in the database, not on the wire.
    ``mac`` is what the container's host reported (None until then).
    """

    __tablename__ = "address_leases"
    __table_args__ = (
        UniqueConstraint("network_uuid", "address", name="uq_address_leases_address"),
        UniqueConstraint("network_uuid", "container_uuid", name="uq_address_leases_container"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network_uuid: Mapped[str] = mapped_column(String(36))
    address: Mapped[str] = mapped_column(String(45))
    container_uuid: Mapped[str] = mapped_column(String(36), index=True)
    mac: Mapped[str | None] = mapped_column(String(17), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SecurityGroupRow(Base):
    """A project's security group: ingress rules, each a dict with its own ``id``.

    Rule keys: ``id``, ``protocol`` (tcp/udp/icmp or None: any), ``port_range_min``,
    ``port_range_max``, ``remote_ip_prefix`` (a CIDR) or ``remote_group_id``.
    """

    __tablename__ = "security_groups"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_security_groups_project_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    is_default: Mapped[bool] = mapped_column(default=False)
    # Set for the group Berth manages for one container's exposed ports.
    container_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    rules: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
