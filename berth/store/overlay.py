"""The overlay's address plan in the database: a subnet and VNI per network, leases per address.

Everything is allocated lazily, when a host's desired state first needs it,
and made unique by the database: ``networks.subnet`` and ``networks.vni`` are
unique columns, a lease is unique per (network, address) and per (network,
container). Two control-plane processes allocating at once make one of the
transactions fail with an IntegrityError; the caller retries it, and the
retry sees the winner's rows. A lease follows the container row (a restarted
agent, a rebuild or a host that comes back keep the address) and is freed
once the container row is gone or has left the network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.tables import AddressLeaseRow, ContainerRow, HostRow, NetworkRow, ServiceRow

__all__ = [
    "AllocationRaced",
    "Member",
    "allocate",
    "forget_network",
    "gateway_of",
    "leases_of",
    "members",
    "network_uuids",
    "record_macs",
    "segments",
]


class AllocationRaced(Exception):
    """Another transaction took a subnet, VNI or address this one chose: run it again."""


@dataclass(frozen=True, slots=True)
class Member:
    """A leased address of a live container, where it runs."""

    network_uuid: str
    container_uuid: str
    address: str
    mac: str | None
    host: str
    underlay_ip: str
    security_groups: tuple[str, ...]


def network_uuids(row: ContainerRow) -> list[str]:
    """The networks a container is on (resolved entries of ``nets``), in order."""
    return [
        str(n["network"])
        for n in row.nets or []
        if isinstance(n, dict) and "name" in n and "network" in n
    ]


def gateway_of(subnet: str) -> str:
    """The gateway every host's bridge answers as: the subnet's first address."""
    return str(next(ipaddress.IPv4Network(subnet).hosts()))


async def segments(session: AsyncSession, networks: Iterable[str]) -> dict[str, NetworkRow]:
    """The networks by uuid (whether or not they have a segment yet)."""
    wanted = sorted(set(networks))
    if not wanted:
        return {}
    stmt = select(NetworkRow).where(NetworkRow.uuid.in_(wanted))
    return {row.uuid: row for row in (await session.execute(stmt)).scalars().all()}


async def leases_of(
    session: AsyncSession, networks: Iterable[str]
) -> dict[tuple[str, str], AddressLeaseRow]:
    """The leases of these networks by (network uuid, container uuid)."""
    wanted = sorted(set(networks))
    if not wanted:
        return {}
    stmt = select(AddressLeaseRow).where(AddressLeaseRow.network_uuid.in_(wanted))
    return {
        (row.network_uuid, row.container_uuid): row
        for row in (await session.execute(stmt)).scalars().all()
    }


async def allocate(
    session: AsyncSession,
    wanted: Mapping[str, Sequence[str]],
    *,
    pool: str,
    prefix: int,
) -> bool:
    """Give each network of ``wanted`` (uuid -> its containers) a segment and each container
    a lease on it. Leases of containers that are gone or left the network are freed first.

    True when anything was written. Raises AllocationRaced when a concurrent
    allocation took the same value: retry the transaction (it sees the winner's rows).
    """
    try:
        return await _allocate(session, wanted, pool=pool, prefix=prefix)
    except IntegrityError as exc:
        raise AllocationRaced(str(exc.orig)) from exc


async def _allocate(
    session: AsyncSession,
    wanted: Mapping[str, Sequence[str]],
    *,
    pool: str,
    prefix: int,
) -> bool:
    nets = await segments(session, wanted.keys())
    changed = await _give_segments(session, [nets[n] for n in sorted(nets)], pool, prefix)
    leases = await leases_of(session, nets.keys())
    holders = {c for _, c in leases}
    live: dict[str, set[str]] = {}
    if holders:
        stmt = select(ContainerRow).where(ContainerRow.uuid.in_(sorted(holders)))
        for row in (await session.execute(stmt)).scalars().all():
            live[row.uuid] = set(network_uuids(row))
    for (net_uuid, container), lease in list(leases.items()):
        if net_uuid not in live.get(container, set()):
            await session.delete(lease)
            del leases[(net_uuid, container)]
            changed = True
    if changed:
        await session.flush()
    for net_uuid, containers in sorted(wanted.items()):
        net = nets.get(net_uuid)
        if net is None or net.subnet is None:
            continue
        used = {lease.address for (n, _), lease in leases.items() if n == net_uuid}
        free = _free_addresses(net.subnet, used)
        for container in containers:
            if (net_uuid, container) in leases:
                continue
            address = next(free, None)
            if address is None:
                raise errors.Conflict(f"network {net.name} ({net.subnet}) has no address left")
            lease = AddressLeaseRow(
                network_uuid=net_uuid, address=address, container_uuid=container
            )
            session.add(lease)
            leases[(net_uuid, container)] = lease
            changed = True
    if changed:
        await session.flush()
    return changed


async def _give_segments(
    session: AsyncSession, nets: list[NetworkRow], pool: str, prefix: int
) -> bool:
    missing = [n for n in nets if n.subnet is None or n.vni is None]
    if not missing:
        return False
    taken = (await session.execute(select(NetworkRow.subnet, NetworkRow.vni))).all()
    subnets = {s for s, _ in taken if s}
    vnis = {v for _, v in taken if v}
    candidates = (str(s) for s in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix))
    next_vni = 1
    for net in missing:
        if net.subnet is None:
            net.subnet = next((s for s in candidates if s not in subnets), None)
            if net.subnet is None:
                raise errors.Conflict(f"the overlay pool {pool} has no /{prefix} left")
            subnets.add(net.subnet)
        if net.vni is None:
            while next_vni in vnis:
                next_vni += 1
            net.vni = next_vni
            vnis.add(next_vni)
    return True


def _free_addresses(subnet: str, used: set[str]) -> Iterator[str]:
    gateway = gateway_of(subnet)
    for host in ipaddress.IPv4Network(subnet).hosts():
        address = str(host)
        if address != gateway and address not in used:
            yield address


async def members(
    session: AsyncSession, networks: Iterable[str], *, agent_binary: str
) -> list[Member]:
    """The leased addresses of these networks whose containers are live on a host with a
    tunnel endpoint (registered ``underlay_ip``) and an agent service (a host whose service
    was deleted is out of the overlay), oldest lease first."""
    wanted = sorted(set(networks))
    if not wanted:
        return []
    stmt = (
        select(AddressLeaseRow, ContainerRow, HostRow.underlay_ip)
        .join(ContainerRow, ContainerRow.uuid == AddressLeaseRow.container_uuid)
        .join(HostRow, HostRow.hostname == ContainerRow.host)
        .join(
            ServiceRow,
            (ServiceRow.host == HostRow.hostname) & (ServiceRow.binary == agent_binary),
        )
        .where(
            AddressLeaseRow.network_uuid.in_(wanted),
            HostRow.underlay_ip.is_not(None),
            ContainerRow.desired_state != "deleted",
        )
        .order_by(AddressLeaseRow.id)
    )
    found = []
    for lease, container, underlay_ip in (await session.execute(stmt)).all():
        if lease.network_uuid not in network_uuids(container) or container.host is None:
            continue
        found.append(
            Member(
                network_uuid=lease.network_uuid,
                container_uuid=container.uuid,
                address=lease.address,
                mac=lease.mac,
                host=container.host,
                underlay_ip=str(underlay_ip),
                security_groups=tuple(container.security_groups or ()),
            )
        )
    return found


async def record_macs(session: AsyncSession, container_uuid: str, macs: Mapping[str, str]) -> bool:
    """Store what the host saw each leased address's MAC to be; True when one changed."""
    stmt = select(AddressLeaseRow).where(AddressLeaseRow.container_uuid == container_uuid)
    changed = False
    for lease in (await session.execute(stmt)).scalars().all():
        mac = macs.get(lease.address)
        if mac is not None and lease.mac != mac.lower():
            lease.mac = mac.lower()
            changed = True
    return changed


async def forget_network(session: AsyncSession, network_uuid: str) -> None:
    """A deleted network's leases go with it."""
    await session.execute(
        delete(AddressLeaseRow).where(AddressLeaseRow.network_uuid == network_uuid)
    )
