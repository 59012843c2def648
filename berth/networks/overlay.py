"""The overlay network driver: one project network, one L2 segment across hosts (kernel VXLAN).

On every host a Berth network is the same Docker bridge network the bridge
driver makes (``berth-net-<id>`` on a ``brt-`` bridge, guarded and filtered
alike), but with the control plane's subnet, gateway and MTU, and containers
take the addresses the control plane leased them, so addresses are unique
across hosts. One VXLAN device per network (``vxt-<11 hex>``, the network's
VNI, this host's underlay address, UDP 4789) is a port of that bridge.

Forwarding is programmed the way Neutron's l2population and flannel's vxlan
backend do it, from the control plane's membership, never learned: for each
member on another host a forwarding entry (its MAC through the tunnel to that
host) and a permanent neighbour entry (its IP is that MAC), which the device
answers ARP from (``proxy``). There is no flooding entry: broadcasts stay on
the host, so each host's bridge answers as the gateway for its own members.
Entries live in the kernel, so traffic keeps flowing while the agent is down;
``program`` re-reads a device's entries before changing them, so an agent
started afresh converges from whatever it finds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from docker.types import IPAMConfig, IPAMPool

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import NetworkRef, RemoteMember, Segment
from berth.networks.base import NetworkFactory, network_id_of
from berth.networks.bridge import BridgeNetworks
from berth.networks.hostguard import HostPort, allowed_host_ports

__all__ = [
    "VXLAN_PORT",
    "OverlayNetworks",
    "driver",
    "remote_entries",
    "underlay_address",
    "untracked_rules",
    "vxlan_name",
]

log = logging.getLogger(__name__)

VXLAN_PORT = 4789  # IANA's, as Linux, OVS and flannel use it
VXLAN_PREFIX = "vxt-"
OPTION_MTU = "com.docker.network.driver.mtu"

# One forwarding target: (member IPv4, its MAC, its host's underlay address).
Entry = tuple[str, str, str]
_UNTRACKED = "berth-tunnel"


def untracked_rules(owner: str, local_ip: str) -> list[str]:
    """The ``raw`` table's rules (as ``iptables -S`` lists them) that keep this host's own
    tunnel packets, VXLAN's outer UDP to and from ``local_ip``, out of connection tracking.

    Each new inner connection is a new outer UDP flow (the source port is a hash of
    the inner one), so without them every connection's first packets made a
    conntrack entry and walked the ``nat`` table on both hosts: 38 against 29 us per
    TCP connect between containers on two hosts (measured, bench/overlay.py's pair).
    The inner packets are tracked as before (security groups, NAT). Only the host's
    own address is matched: a container's UDP 4789 (a swarm node's VXLAN) stays tracked.
    """
    match = (
        f'-p udp -m udp --dport {VXLAN_PORT} -m comment --comment "{_UNTRACKED} {owner}" '
        "-j CT --notrack"
    )
    return [f"-A PREROUTING -d {local_ip}/32 {match}", f"-A OUTPUT -s {local_ip}/32 {match}"]


def vxlan_name(owner: str, network_id: str) -> str:
    """The VXLAN device of ``network_id`` on ``owner``'s host: ``vxt-`` + 11 hex (15 chars)."""
    digest = hashlib.sha256(f"{owner}\0{network_id}".encode()).hexdigest()
    return f"{VXLAN_PREFIX}{digest[:11]}"


def _alias(owner: str, network_id: str) -> str:
    # The device says whose it is: a restarted agent finds its devices by it.
    return f"berth:{owner}:{network_id}"


def underlay_address(control_url: str | None) -> str:
    """This host's address on the route to the control plane (else on the default route).

    A connected UDP socket only asks the kernel for a route: nothing is sent.
    """
    host, port = "192.0.2.1", VXLAN_PORT  # TEST-NET-1: the default route's source
    if control_url:
        parts = urlsplit(control_url)
        host, port = parts.hostname or host, parts.port or 80
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(host), port))
        return str(probe.getsockname()[0])


def remote_entries(members: Sequence[RemoteMember], local_ip: str) -> frozenset[Entry]:
    """What a network's device should hold: every member not on this host."""
    return frozenset(
        (m.address, m.mac.lower(), m.host_ip) for m in members if m.host_ip != local_ip
    )


def entry_commands(
    device: str,
    wanted: frozenset[Entry],
    fdb: Mapping[str, str],
    neigh: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """The ``bridge -batch`` and ``ip -batch`` lines that turn ``fdb``/``neigh`` into ``wanted``.

    ``fdb`` is ``{mac: remote host}``, ``neigh`` ``{ip: mac}``, as the device has them.
    """
    want_fdb = {mac: host for _, mac, host in wanted}
    want_neigh = {ip: mac for ip, mac, _ in wanted}
    bridge = [
        f"fdb replace {mac} dev {device} dst {host} self permanent"
        for mac, host in sorted(want_fdb.items())
        if fdb.get(mac) != host
    ] + [f"fdb del {mac} dev {device} dst {fdb[mac]} self" for mac in sorted(fdb.keys() - want_fdb)]
    ip = [
        f"neigh replace {addr} lladdr {mac} dev {device} nud permanent"
        for addr, mac in sorted(want_neigh.items())
        if neigh.get(addr) != mac
    ] + [f"neigh del {addr} dev {device}" for addr in sorted(neigh.keys() - want_neigh)]
    return bridge, ip


class OverlayNetworks(BridgeNetworks):
    """NetworkDriver whose project networks span hosts over the kernel's VXLAN.

    ``local_ip``: this host's underlay address, the tunnels' local end (the
    address other hosts were told, ``HostReport.underlay_ip``). One agent per
    network namespace: a VNI and port can be bound once per namespace.
    """

    def __init__(
        self,
        base_url: str = "unix:///var/run/docker.sock",
        *,
        owner: str,
        local_ip: str,
        iptables: str = "iptables",
        host_ports: Sequence[HostPort] = (),
    ) -> None:
        super().__init__(base_url, owner=owner, iptables=iptables, host_ports=host_ports)
        self._local_ip = local_ip
        self._untracked: bool | None = None  # the raw rules, as last written (None: unknown)
        self._devices: dict[str, str] | None = None  # network id -> its VXLAN device
        self._remote: dict[str, frozenset[Entry]] = {}  # as last asked for
        self._programmed: dict[str, frozenset[Entry]] = {}  # as last written
        self._program_lock = asyncio.Lock()

    @property
    def local_ip(self) -> str:
        """The tunnels' local end."""
        return self._local_ip

    # -- the tools

    async def _tool(self, *args: str, stdin: str | None = None) -> str:
        # In a worker thread, like iptables: asyncio's subprocesses fork on the loop.
        done = await asyncio.to_thread(
            subprocess.run,
            list(args),
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise errors.BerthError(
                f"{' '.join(args[:4])} failed: {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    async def _json(self, *args: str) -> list[dict[str, Any]]:
        text = (await self._tool(*args)).strip()
        found: list[dict[str, Any]] = json.loads(text) if text else []
        return found

    # -- the segment on the engine and in the kernel

    @staticmethod
    def _segment(net: NetworkRef) -> Segment:
        if net.segment is None:
            raise errors.BerthError(
                f"network {net.id} has no overlay segment: the control plane must run with "
                "network_driver = overlay too"
            )
        return net.segment

    def _network_params(self, net: NetworkRef) -> dict[str, Any]:
        """The control plane's subnet and gateway, and the MTU that leaves room for VXLAN."""
        seg = self._segment(net)
        return {
            "ipam": IPAMConfig(pool_configs=[IPAMPool(subnet=seg.subnet, gateway=seg.gateway)]),
            "options": {OPTION_MTU: str(seg.mtu)},
        }

    async def _created(self, net: NetworkRef, bridge: str) -> None:
        """Give the network's bridge its VXLAN port (kept if right), then program it."""
        seg = self._segment(net)
        device = vxlan_name(self._owner, net.id)
        # Under the lock: never between a prune's look at the engine and its removals.
        async with self._program_lock:
            found = await self._link(device)
            data = ((found or {}).get("linkinfo") or {}).get("info_data") or {}
            if found is not None and (
                data.get("id") != seg.vni or data.get("local") != self._local_ip
            ):
                log.info("replacing VXLAN device %s (VNI or local address changed)", device)
                await self._tool("ip", "link", "del", device)
                found = None
            if found is None:
                await self._tool(
                    "ip", "link", "add", device, "type", "vxlan", "id", str(seg.vni),
                    "local", self._local_ip, "dstport", str(VXLAN_PORT), "nolearning", "proxy",
                )  # fmt: skip
            await self._tool(
                "ip", "link", "set", device, "alias", _alias(self._owner, net.id),
                "mtu", str(seg.mtu), "master", bridge, "up",
            )  # fmt: skip
            devices = await self._known_devices()
            devices[net.id] = device
            self._programmed.pop(net.id, None)  # a new device holds nothing yet: read it
            if self._untracked is not True:
                await self._untrack(on=True)
            await self._program_one(net.id, device)

    async def _untrack(self, *, on: bool) -> None:
        """Write ``untracked_rules`` (``on``) or remove them. Best effort: without them the
        tunnel works, its connections only start slower, so a failure is logged."""
        want = untracked_rules(self._owner, self._local_ip) if on else []
        try:
            await self._rules.set_untracked(f'"{_UNTRACKED} {self._owner}"', want)
        except errors.BerthError as exc:
            log.warning("the tunnel's packets stay tracked (connections start slower): %s",
                        exc.message)  # fmt: skip
            return
        self._untracked = on

    async def _link(self, device: str) -> dict[str, Any] | None:
        try:
            found = await self._json("ip", "-d", "-j", "link", "show", "dev", device)
        except errors.BerthError as exc:
            if "does not exist" in exc.message:
                return None
            raise
        return found[0] if found else None

    async def _known_devices(self) -> dict[str, str]:
        """This owner's VXLAN devices by network id: listed once, then kept up to date."""
        if self._devices is None:
            prefix = _alias(self._owner, "")
            listing = await self._json("ip", "-j", "link", "show", "type", "vxlan")
            self._devices = {
                str(link["ifalias"])[len(prefix) :]: str(link["ifname"])
                for link in listing
                if str(link.get("ifalias", "")).startswith(prefix)
            }
        return self._devices

    async def _pruned(self, present: set[str]) -> None:
        """A network gone from the engine takes its tunnel endpoint with it.

        ``present`` was listed at the start of the prune: a network made since (a new
        member arriving just as the last one left) is on the engine again and keeps
        its device, so the engine is asked once more, under the lock ``_created`` holds.
        """
        async with self._program_lock:
            devices = await self._known_devices()
            gone = devices.keys() - present
            if gone:
                on_engine = {network_id_of(str(n.get("Name"))) for n in await self._owned()}
                gone = {n for n in gone if n not in on_engine}
            for net_id in sorted(gone):
                device = devices.pop(net_id)
                self._programmed.pop(net_id, None)
                try:
                    await self._tool("ip", "link", "del", device)
                except errors.BerthError as exc:
                    if "does not exist" not in exc.message and "Cannot find" not in exc.message:
                        raise
                log.info("removed VXLAN device %s of network %s", device, net_id)
            if not devices and self._untracked is not False:  # no tunnel left on this host
                await self._untrack(on=False)

    # -- members on other hosts

    async def program(self, remote: Mapping[str, Sequence[RemoteMember]]) -> None:
        """Converge every device present to its network's remote members."""
        async with self._program_lock:
            self._remote = {n: remote_entries(m, self._local_ip) for n, m in remote.items()}
            failure: errors.BerthError | None = None
            for net_id, device in sorted((await self._known_devices()).items()):
                try:
                    await self._program_one(net_id, device)
                except errors.BerthError as exc:  # one network's trouble holds up no other
                    failure = failure or exc
            if failure is not None:
                raise failure

    async def _program_one(self, net_id: str, device: str) -> None:
        wanted = self._remote.get(net_id, frozenset())
        if self._programmed.get(net_id) == wanted:
            return
        fdb = {
            str(e["mac"]).lower(): str(e["dst"])
            for e in await self._json("bridge", "-j", "fdb", "show", "dev", device)
            if e.get("dst") and e.get("mac") != "00:00:00:00:00:00"
        }
        neigh = {
            str(e["dst"]): str(e.get("lladdr", "")).lower()
            for e in await self._json("ip", "-j", "neigh", "show", "dev", device)
            if "PERMANENT" in (e.get("state") or [])
        }
        bridge, ip = entry_commands(device, wanted, fdb, neigh)
        self._programmed.pop(net_id, None)  # re-read after a failure
        if bridge:
            await self._tool("bridge", "-batch", "-", stdin="\n".join(bridge) + "\n")
        if ip:
            await self._tool("ip", "-batch", "-", stdin="\n".join(ip) + "\n")
        self._programmed[net_id] = wanted
        if bridge or ip:
            log.info(
                "network %s: %d members on other hosts (%d entries changed)",
                net_id, len(wanted), len(bridge) + len(ip),
            )  # fmt: skip


def driver(settings: Settings) -> OverlayNetworks:
    """The ``overlay`` entry point: the bridge driver's networks, guard and filtering, made
    one segment across hosts; the tunnels' end is ``overlay_local_ip`` or the address this
    host reaches the control plane from."""
    registries = [*([settings.image_store] if settings.image_store else [])]
    host_ports = allowed_host_ports(
        settings.container_host_ports_allowlist,
        [*registries, *settings.image_registry_allowlist],
    )
    return OverlayNetworks(
        settings.docker_url,
        owner=settings.agent_host,
        local_ip=settings.overlay_local_ip or underlay_address(settings.control_url),
        host_ports=host_ports,
    )


_ENTRY_POINT: NetworkFactory = driver  # so mypy checks the entry point against the Protocol
