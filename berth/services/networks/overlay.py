"""The control plane's half of overlay networks: segments, leases, and who is where.

With ``network_driver = overlay`` every project network is one segment across
hosts. When a host's desired state is built, every network of its containers
gets a subnet and VNI and every container an address on it (``berth.store.overlay``:
allocated in the database, unique under concurrency, kept while the container
row lives). The desired state then carries, per network, the leased address and
segment in each ``NetworkRef`` and the members on other hosts; an agent turns
those into its engine's network and its kernel's forwarding entries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from berth.domain.hostsync import (
    DesiredContainer,
    Observation,
    RemoteMember,
    Segment,
    docker_mac,
)
from berth.services.env import Env
from berth.services.hosts.cache import AGENT_BINARY
from berth.store import overlay as overlay_repo
from berth.store.db import Session
from berth.store.tables import ContainerRow

__all__ = [
    "OverlayPlan",
    "enabled",
    "networks_of",
    "observed",
    "placed",
    "plan_for",
    "touch_members",
]

log = logging.getLogger(__name__)

_RETRIES = 5  # concurrent allocations: each retry sees the winner's rows


@dataclass(slots=True)
class OverlayPlan:
    """What a host's desired state needs from the address plan."""

    addresses: dict[tuple[str, str], str] = field(default_factory=dict)  # (container, net)
    segments: dict[str, Segment] = field(default_factory=dict)  # network uuid -> segment
    remote: dict[str, list[RemoteMember]] = field(default_factory=dict)


def enabled(env: Env) -> bool:
    return env.settings.network_driver == "overlay"


def _joins(row: ContainerRow) -> bool:
    # A capsule member shares its sandbox's namespace: the sandbox holds the address.
    member = row.capsule_id is not None and row.container_type != "sandbox"
    return row.desired_state != "deleted" and not member


async def plan_for(env: Env, hostname: str, rows: Sequence[ContainerRow]) -> OverlayPlan:
    """Allocate what ``rows`` (the containers of ``hostname``) lack, then describe it."""
    wanted: dict[str, list[str]] = {}
    for row in rows:
        if _joins(row):
            for net_uuid in overlay_repo.network_uuids(row):
                wanted.setdefault(net_uuid, []).append(row.uuid)
    if not wanted:
        return OverlayPlan()
    if await _missing(env, wanted):
        await _allocate(env, wanted)
        await touch_members(env, wanted.keys(), but=hostname)
    async with env.db.read() as session:
        nets = await overlay_repo.segments(session, wanted.keys())
        leases = await overlay_repo.leases_of(session, wanted.keys())
        members = await overlay_repo.members(session, wanted.keys(), agent_binary=AGENT_BINARY)
    plan = OverlayPlan()
    for net_uuid, net in nets.items():
        if net.subnet is not None and net.vni is not None:
            plan.segments[net_uuid] = Segment(
                net.subnet, overlay_repo.gateway_of(net.subnet), net.vni, env.settings.overlay_mtu
            )
    for (net_uuid, container), lease in leases.items():
        plan.addresses[(container, net_uuid)] = lease.address
    for m in members:
        if m.host != hostname:
            plan.remote.setdefault(m.network_uuid, []).append(
                RemoteMember(
                    m.address,
                    m.mac or docker_mac(m.address),
                    m.underlay_ip,
                    list(m.security_groups),
                )
            )
    return plan


def placed(desired: DesiredContainer, plan: OverlayPlan) -> DesiredContainer:
    """``desired`` with each network's leased address and segment filled in."""
    for ref in desired.networks:
        ref.address = plan.addresses.get((desired.uuid, ref.id))
        ref.segment = plan.segments.get(ref.id)
    return desired


async def _missing(env: Env, wanted: dict[str, list[str]]) -> bool:
    async with env.db.read() as session:
        nets = await overlay_repo.segments(session, wanted.keys())
        leases = await overlay_repo.leases_of(session, wanted.keys())
    if any(n.subnet is None or n.vni is None for n in nets.values()):
        return True
    return any((net, c) not in leases for net, cs in wanted.items() if net in nets for c in cs)


async def _allocate(env: Env, wanted: dict[str, list[str]]) -> None:
    s = env.settings
    for attempt in range(_RETRIES):
        try:
            async with env.db.transaction() as session:
                await overlay_repo.allocate(
                    session, wanted, pool=s.overlay_pool, prefix=s.overlay_prefix
                )
            return
        except overlay_repo.AllocationRaced:
            if attempt == _RETRIES - 1:
                raise
            log.info("overlay allocation raced another; trying again")


async def touch_members(env: Env, networks: Iterable[str], *, but: str = "") -> None:
    """Wake the agents of every host with a member on ``networks``: their remote set changed."""
    nets = sorted(set(networks))
    if not nets:
        return
    async with env.db.read() as session:
        found = await overlay_repo.members(session, nets, agent_binary=AGENT_BINARY)
    for host in sorted({m.host for m in found} - {but}):
        await env.notifier.touch(host)


def networks_of(row: ContainerRow) -> list[str]:
    """The networks a container is on."""
    return overlay_repo.network_uuids(row)


async def observed(session: Session, row: ContainerRow, obs: Observation) -> bool:
    """Note the MACs an agent saw; True when other hosts must hear of ``row`` again
    (a MAC changed, or the container is gone: its entries must go)."""
    changed = bool(obs.macs) and await overlay_repo.record_macs(session, row.uuid, obs.macs or {})
    return changed or obs.removed
