"""The built-in network driver: Docker bridge networks and iptables, on one host.

Each Berth network is a Docker bridge network ``berth-net-<id>`` (labelled with
its project and this agent's owner), created when the first container needs
it and pruned once none uses it. Docker already isolates bridge networks from
one another, so containers of different networks (and so of different
projects) cannot reach each other; on a Podman service (the same driver over
its Docker-compatible API) a network is created with ``isolate=true`` for the
same effect, as netavark isolates only the networks that ask for it. Security
groups are enforced per container by the chains of ``berth.networks.firewall``,
written with ``iptables-restore --noflush`` so a chain is replaced in one atomic
step. The host's own services are kept out of reach by
``berth.networks.hostguard``: every bridge of this owner (named
``brt-<11 hex>``) is guarded in ``INPUT`` before a container can join it, and
the guard is re-checked whenever unused networks are pruned.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import NetworkRef, RemoteMember
from berth.networks.base import FirewallSpec, NetworkFactory, network_id_of, network_name
from berth.networks.firewall import JUMP_CHAIN, chain_name, chain_rules, jump_comment
from berth.networks.hostguard import (
    HostPort,
    allowed_host_ports,
    bridge_name,
    chain_listing,
    guard_chain,
    guard_lines,
    guard_rules,
    guarded_bridges,
)

__all__ = ["BridgeNetworks", "driver"]

log = logging.getLogger(__name__)
T = TypeVar("T")

LABEL_NETWORK = "berth.network"
LABEL_PROJECT = "berth.project"
LABEL_OWNER = "berth.owner"
OPTION_BRIDGE = "com.docker.network.bridge.name"
OPTION_ISOLATE = "isolate"  # Podman (netavark): drop traffic to the other isolated networks


class BridgeNetworks:
    """NetworkDriver over a Docker engine's bridge driver and the host's iptables.

    ``owner`` (the agent's host name) labels the networks created and the jump
    rules written, so agents sharing one engine or kernel never remove each
    other's. ``host_ports``: the ports on the host itself that containers may
    still reach (everything else on the host's addresses is rejected).
    """

    def __init__(
        self,
        base_url: str = "unix:///var/run/docker.sock",
        *,
        owner: str,
        iptables: str = "iptables",
        host_ports: Sequence[HostPort] = (),
    ) -> None:
        self._base_url = base_url
        self._owner = owner
        self._binary = iptables
        self._host_ports = tuple(sorted(set(host_ports)))
        # IPv6 too: a container with NET_ADMIN (a cluster node) can turn IPv6 back on
        # in its namespace and reach the host's [::] listeners by the bridge's fe80:: address.
        ip6 = iptables.replace("iptables", "ip6tables")
        self._families = [(iptables, False)] + ([(ip6, True)] if shutil.which(ip6) else [])
        self._guarded: dict[str, str] | None = None  # bridge -> network id, as last written
        self._api: Any = None
        self._lock = threading.Lock()
        self._create_lock = asyncio.Lock()
        # Networks this driver saw or made: ensure() asks the engine only for
        # others (one engine call less per create). A network removed behind
        # its back makes the container create fail; forget() then re-checks.
        self._known: set[str] = set()
        self._jump_cache: dict[str, dict[str, str]] | None = None
        self._isolation: dict[str, str] | None = None  # the engine's options, asked once

    # -- the engine

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = docker.APIClient(base_url=self._base_url, version="auto")
            return self._api

    async def _run(self, call: Callable[[Any], T]) -> T:
        try:
            return await asyncio.to_thread(lambda: call(self._client()))
        except docker.errors.APIError as exc:
            raise errors.BerthError(f"docker engine error: {exc.explanation or exc}") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.HostUnavailable(
                f"the docker engine at {self._base_url} does not answer: {exc}"
            ) from exc

    async def close(self) -> None:
        """Release the engine connection."""
        if self._api is not None:
            self._api.close()

    async def _find(self, name: str) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = await self._run(lambda api: api.networks(names=[name]))
        return next((n for n in found if n.get("Name") == name), None)

    async def ensure(self, net: NetworkRef) -> None:
        """Create ``berth-net-<id>`` unless it exists (one creation at a time per agent)."""
        name = network_name(net.id)
        if name in self._known:
            return
        async with self._create_lock:
            found = await self._find(name)
            if found is not None:
                if (found.get("Labels") or {}).get(LABEL_OWNER) == self._owner:
                    await self._guard({_bridge_of(found): net.id})
                    await self._created(net, _bridge_of(found))
                self._known.add(name)
                return
            labels = {
                LABEL_NETWORK: net.id,
                LABEL_PROJECT: net.project_id,
                LABEL_OWNER: self._owner,
            }
            # Guarded before it exists: no container is ever on it unguarded.
            bridge = bridge_name(self._owner, net.id)
            await self._guard({bridge: net.id})
            extra = self._network_params(net)
            isolation = await self._isolation_options()
            options = {OPTION_BRIDGE: bridge, **isolation, **extra.pop("options", {})}
            try:
                await self._run(
                    lambda api: api.create_network(
                        name,
                        driver="bridge",
                        labels=labels,
                        options=options,
                        check_duplicate=True,
                        **extra,
                    )
                )
            except errors.BerthError:
                if await self._find(name) is None:  # not a concurrent create by another agent
                    raise
            await self._created(net, bridge)
            self._known.add(name)
            log.info("created network %s for project %s", name, net.project_id)

    async def _isolation_options(self) -> dict[str, str]:
        """The options that keep a new network apart from the others on this engine:
        none on Docker (its bridges are isolated), ``isolate=true`` on Podman."""
        if self._isolation is None:
            version: dict[str, Any] = await self._run(lambda api: api.version())
            names = [str(c.get("Name", "")) for c in version.get("Components") or []]
            podman = any(name.startswith("Podman") for name in names)
            self._isolation = {OPTION_ISOLATE: "true"} if podman else {}
        return self._isolation

    def _network_params(self, net: NetworkRef) -> dict[str, Any]:
        """Extra ``create_network`` arguments (``options`` merged): none, the engine's IPAM."""
        return {}

    async def _created(self, net: NetworkRef, bridge: str) -> None:
        """``net`` exists on the engine as ``bridge`` (made now or found): nothing more here."""

    async def program(self, remote: Mapping[str, Sequence[RemoteMember]]) -> None:
        """Members on other hosts: a per-host bridge does not reach them (nothing to do)."""

    def forget(self, network_id: str) -> None:
        """Ask the engine again next time: ``network_id`` may be gone."""
        self._known.discard(network_name(network_id))

    async def connect(self, uuid: str, net: NetworkRef) -> None:
        """Attach ``berth-<uuid>`` to the network; already attached is success."""
        await self.ensure(net)
        name = network_name(net.id)
        # An address leased by the control plane (overlay) is taken, not picked by the engine.
        fixed = {"ipv4_address": net.address} if net.address else {}
        try:
            await self._run(
                lambda api: api.connect_container_to_network(f"berth-{uuid}", name, **fixed)
            )
        except errors.BerthError as exc:
            if "already exists" in exc.message:
                return
            if "private (none) mode" not in exc.message:
                raise
            # Created with no network (all were detached): leave "none" to join one.
            await self._run(
                lambda api: api.disconnect_container_from_network(f"berth-{uuid}", "none")
            )
            await self._run(
                lambda api: api.connect_container_to_network(f"berth-{uuid}", name, **fixed)
            )

    async def disconnect(self, uuid: str, network_id: str) -> None:
        """Detach ``berth-<uuid>`` from the network; not attached (or gone) is success."""
        name = network_name(network_id)
        try:
            await self._run(
                lambda api: api.disconnect_container_from_network(f"berth-{uuid}", name)
            )
        except errors.BerthError as exc:
            if "not connected" not in exc.message and "not found" not in exc.message.lower():
                raise

    async def prune(self, keep: set[str]) -> list[str]:
        """Remove this owner's unused networks that are not in ``keep``."""
        mine = await self._owned()
        removed = []
        bridges: dict[str, str] = {}
        for entry in mine:
            net_id = network_id_of(str(entry.get("Name")))
            if net_id is None:
                continue
            bridges[_bridge_of(entry)] = net_id
            if net_id in keep:
                continue
            try:
                if not await self._remove_if_unused(str(entry["Id"])):
                    continue
            except errors.BerthError as exc:
                log.debug("network %s not pruned: %s", entry.get("Name"), exc.message)
                continue
            removed.append(net_id)
            del bridges[_bridge_of(entry)]
            log.info("removed unused network %s", entry.get("Name"))
        await self._sync_guard(bridges)
        await self._pruned(set(bridges.values()))
        return removed

    async def _pruned(self, present: set[str]) -> None:
        """After a prune: ``present`` are the ids of this owner's networks left on the engine."""

    async def _owned(self) -> list[dict[str, Any]]:
        """This owner's networks on the engine, as it lists them."""
        found: list[dict[str, Any]] = await self._run(
            lambda api: api.networks(filters={"label": [f"{LABEL_OWNER}={self._owner}"]})
        )
        return found

    async def _remove_if_unused(self, ident: str) -> bool:
        detail: dict[str, Any] = await self._run(lambda api: api.inspect_network(ident))
        if detail.get("Containers"):
            return False
        self._known.discard(str(detail.get("Name")))
        await self._run(lambda api: api.remove_network(ident))
        return True

    # -- iptables

    async def _iptables(
        self, *args: str, stdin: str | None = None, check: bool = True, binary: str = ""
    ) -> str:
        binary = (binary or self._binary) + ("-restore" if stdin is not None else "")
        # In a worker thread: forking the agent takes milliseconds, and asyncio's
        # subprocess support forks on the event loop, in the middle of creates.
        done = await asyncio.to_thread(
            subprocess.run,
            [binary, "-w", *args],
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise errors.BerthError(
                f"{binary} {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    async def _jumps(self) -> list[tuple[str, str, str]]:
        """This owner's jump rules as (uuid, address, rule text without the -A)."""
        try:
            listing = await self._iptables("-S", JUMP_CHAIN)
        except errors.BerthError as exc:
            raise errors.BerthError(
                f"cannot filter traffic: the {JUMP_CHAIN} chain is missing (the Docker engine "
                f"must manage iptables): {exc.message}"
            ) from exc
        jumps = []
        for line in listing.splitlines():
            words = shlex.split(line)
            if "--comment" not in words or "-d" not in words:
                continue
            comment = words[words.index("--comment") + 1].split()
            if len(comment) != 3 or comment[0] != "berth" or comment[1] != self._owner:
                continue
            address = words[words.index("-d") + 1]
            jumps.append((comment[2], address, self._jump(comment[2], address)))
        return jumps

    def _jump(self, uuid: str, address: str) -> str:
        if "/" not in address:
            address = f"{address}/32"
        comment = jump_comment(self._owner, uuid)
        return f'{JUMP_CHAIN} -d {address} -m comment --comment "{comment}" -j {chain_name(uuid)}'

    async def _present(self) -> dict[str, dict[str, str]]:
        """This owner's jumps by container: ``{uuid: {address: rule}}``.

        Listed from the kernel once, then kept up to date by what this driver
        writes: every ``iptables`` run costs a fork of the agent (several ms on
        its event loop). A write that fails drops the copy, so the next one
        starts from what the kernel really has.
        """
        if self._jump_cache is None:
            cache: dict[str, dict[str, str]] = {}
            for uuid, address, text in await self._jumps():
                cache.setdefault(uuid, {})[address] = text
            self._jump_cache = cache
        return self._jump_cache

    async def _restore(self, lines: list[str]) -> None:
        try:
            await self._iptables("--noflush", stdin="\n".join(["*filter", *lines, "COMMIT"]) + "\n")
        except errors.BerthError:
            self._jump_cache = None
            raise

    async def write_firewalls(self, changes: Mapping[str, FirewallSpec | None]) -> None:
        """Replace or remove the chains and jumps of ``changes``: one ``iptables-restore`` run.

        One run for every container that changed since the last sync (each run
        forks the agent and has the kernel swap the whole filter table; 20
        containers started together used to cost 20 of them). The chains are
        replaced and the jumps changed in one atomic step.
        """
        if not changes:
            return
        present = await self._present()
        lines: list[str] = []
        jumps: dict[str, dict[str, str] | None] = {}
        for uuid, spec in changes.items():
            chain = chain_name(uuid)
            have = present.get(uuid, {})
            # Declaring a chain creates it when missing and empties it otherwise.
            lines.append(f":{chain} - [0:0]")
            if spec is None:
                lines += [f"-D {text}" for text in have.values()]
                lines.append(f"-X {chain}")
                jumps[uuid] = None
                continue
            addresses, rules = spec
            wanted = {f"{a}/32" if "/" not in a else a for a in addresses}
            lines += [_quote(args) for args in chain_rules(chain, rules)]
            lines += [f"-D {text}" for addr, text in have.items() if addr not in wanted]
            lines += [f"-I {self._jump(uuid, addr)}" for addr in sorted(wanted - have.keys())]
            jumps[uuid] = {addr: self._jump(uuid, addr) for addr in wanted}
        await self._restore(lines)
        if self._jump_cache is not None:
            for uuid, written in jumps.items():
                if written is None:
                    self._jump_cache.pop(uuid, None)
                else:
                    self._jump_cache[uuid] = written

    # -- the host guard (berth.networks.hostguard)

    async def _guard(self, add: dict[str, str]) -> None:
        """Guard the bridges of ``add`` (``{bridge: network id}``) besides those already."""
        if self._guarded is None:
            self._guarded = guarded_bridges(self._owner, await self._iptables("-S", "INPUT"))
        if all(self._guarded.get(b) == n for b, n in add.items()):
            return
        present = {binary: self._guarded for binary, _ in self._families}
        await self._write_guard({**self._guarded, **add}, present)

    async def _sync_guard(self, bridges: dict[str, str]) -> None:
        """Make the guard exactly ``bridges`` (this owner's networks on the engine), as the
        kernel has it now: a flushed ``INPUT``, a tampered chain or a changed allowlist is
        repaired, jumps of networks removed behind the driver's back go."""
        present: dict[str, dict[str, str]] = {}
        chain, stale = guard_chain(self._owner), False
        for binary, ipv6 in self._families:
            listing = await self._iptables("-S", binary=binary)
            present[binary] = guarded_bridges(self._owner, listing)
            rules = chain_listing(chain, listing)
            wanted = guard_rules(chain, self._host_ports, ipv6=ipv6) if bridges else []
            stale = stale or present[binary] != bridges or rules != wanted
        if stale:
            await self._write_guard(bridges, present)
        else:
            self._guarded = dict(bridges)

    async def _write_guard(
        self, bridges: dict[str, str], present: Mapping[str, Mapping[str, str]]
    ) -> None:
        self._guarded = None  # re-read after a failure
        for binary, ipv6 in self._families:
            lines = guard_lines(
                self._owner, bridges, present.get(binary, {}), self._host_ports, ipv6=ipv6
            )
            body = "\n".join(["*filter", *lines, "COMMIT"]) + "\n"
            try:
                await self._iptables("--noflush", stdin=body, binary=binary)
            except errors.BerthError as exc:
                if not ipv6:
                    raise errors.BerthError(
                        f"cannot guard the host from containers: {exc.message}"
                    ) from exc
                log.warning("the IPv6 host guard is not written: %s", exc.message)
        self._guarded = dict(bridges)

    async def firewalled(self) -> set[str]:
        """The uuids of the containers this owner filters."""
        return {u for u, jumps in (await self._present()).items() if jumps}


def _bridge_of(network: Mapping[str, Any]) -> str:
    """The Linux bridge of a network listing: named by Berth, else Docker's ``br-<12 of id>``."""
    named = (network.get("Options") or {}).get(OPTION_BRIDGE)
    return str(named) if named else f"br-{str(network.get('Id'))[:12]}"


def _quote(args: list[str]) -> str:
    return " ".join(f'"{a}"' if " " in a else a for a in args)


def driver(settings: Settings) -> BridgeNetworks:
    """The ``bridge`` entry point: bridge networks on the engine at ``docker_url``, keeping
    containers off the host's own services except the ports the operator allows (and the
    registries they pull from)."""
    registries = [*([settings.image_store] if settings.image_store else [])]
    host_ports = allowed_host_ports(
        settings.container_host_ports_allowlist,
        [*registries, *settings.image_registry_allowlist],
    )
    return BridgeNetworks(settings.docker_url, owner=settings.agent_host, host_ports=host_ports)


_ENTRY_POINT: NetworkFactory = driver  # so mypy checks the entry point against the Protocol
