"""Keeps the host's security-group filtering and project networks in line with the desired state.

Level-triggered like the rest of the agent: every time something may have
changed (a pass, a container reported new addresses) it recomputes, for every
running container whose desired state carries ``ingress``, the concrete rules
(remote groups resolved to the addresses of their members on this host) and
rewrites only the chains that differ from what it last wrote. Chains of
containers that stopped or went away are removed, and so are project networks
no container uses any more. Nothing is durable: after a restart every chain is
written once again and leftovers of this owner are swept. With the overlay
driver it also hands the driver each network's members on other hosts, which
it programs into the kernel's forwarding, and admits those members by their
security groups like local ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from berth import errors
from berth.domain.hostsync import DesiredContainer, RemoteMember
from berth.networks.base import FirewallSpec, NetworkDriver
from berth.networks.firewall import resolve_ingress

__all__ = ["ADDRESSED_STATES", "FirewallSync", "ipv4_addresses"]

log = logging.getLogger(__name__)

_RETRY = 5.0  # seconds before a failed sync is tried again
ADDRESSED_STATES = ("running", "paused", "restarting")  # engine states with addresses
# A worker's own chain: tries and first pause (s). Patient: a container whose chain
# cannot be written is stopped (berth.agent.loop), not left running unfiltered.
_SETTLE_TRIES, _SETTLE_PAUSE = 5, 0.1


def ipv4_addresses(addresses: dict[str, Any] | None) -> list[str]:
    """Every IPv4 address in a Zun-shaped ``addresses`` mapping."""
    found = []
    for entries in (addresses or {}).values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("addr") and entry.get("version", 4) == 4:
                found.append(str(entry["addr"]))
    return sorted(set(found))


class FirewallSync:
    """The firewall and network-pruning half of an agent with a network driver."""

    def __init__(
        self,
        networks: NetworkDriver,
        *,
        idle: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``idle``: how long a network no container wants is kept before it is removed.

        Re-creating a bridge costs ~100 ms of the next create in that project,
        and deleting and re-creating a project's only container is common.
        """
        self._networks = networks
        self._idle, self._clock = idle, clock
        self._wanted_at: dict[str, float] = {}  # network id -> when a container last wanted it
        self._pruned_at = float("-inf")
        self._desired: dict[str, DesiredContainer] = {}
        self._ips: dict[str, list[str]] = {}
        self._written: dict[str, FirewallSpec] = {}
        self._swept = False
        self._wake = asyncio.Event()
        # Chain writes one at a time: the background sync's and a worker's ``settle``.
        self._chains = asyncio.Lock()
        # Overlay: each network's members on other hosts, as the control plane last said.
        self._remote: dict[str, list[RemoteMember]] = {}
        # None: not yet handed over (the first sync does, empty or not: a restarted
        # agent's driver clears what is no longer wanted).
        self._programmed: dict[str, list[RemoteMember]] | None = None

    def desired(self, containers: dict[str, DesiredContainer]) -> None:
        """Take the latest desired state and look again."""
        self._desired = containers
        self._wake.set()

    def remote(self, members: dict[str, list[RemoteMember]]) -> None:
        """Take the members on other hosts (overlay): forwarding and remote-group rules."""
        if members != self._remote:
            self._remote = members
            self._wake.set()

    def addresses(self, uuid: str, addresses: dict[str, Any] | None, state: str | None) -> None:
        """Record where ``uuid`` is reachable now (nothing when it does not run).

        ``state``: the engine's (None: absent). Between the restarts of a restart
        policy the engine lists a container ``restarting`` without an address and
        gives it the same one back: its chain stays, or the restarted container
        would run unfiltered until the next pass saw it (up to a reconcile
        interval at every restart).
        """
        ips = ipv4_addresses(addresses) if state in ADDRESSED_STATES else []
        if not ips and state == "restarting":
            return
        if self._ips.get(uuid, []) != ips:
            self._ips[uuid] = ips
            self._wake.set()

    async def settle(self, uuid: str, addresses: dict[str, Any] | None, state: str | None) -> None:
        """Record ``uuid``'s addresses and write its own chain now, if it needs one.

        A worker awaits this between the engine's start and the report that says
        Running, so a container is filtered before anyone is told it runs, instead
        of whenever the background sync comes round (it may be busy pruning, or
        waiting out the retry of a failed pass, for seconds). Only this chain is
        written here; what its address changes for the others (a group gaining a
        member: an admission) follows in the background.
        """
        self.addresses(uuid, addresses, state)
        if self._wanted_one(uuid) is None:
            return  # no chain for it (not filtered, or not running): nothing to wait for
        for attempt in range(_SETTLE_TRIES):
            try:
                # Compared under the lock only: a background pass may be removing this
                # very chain (it saw the container stopped) while ``_written`` still
                # holds it; checked before the lock, a restart on the same address
                # looked written and was reported Running while the pass removed it.
                async with self._chains:
                    want = self._pending(uuid)
                    if want is not None:
                        await self._write({uuid: want})
                return
            except errors.BerthError:
                # iptables-restore on nf_tables fails now and then while another
                # process changes the table: a moment later it passes.
                if attempt == _SETTLE_TRIES - 1:
                    raise
                await asyncio.sleep(_SETTLE_PAUSE * (attempt + 1))

    def _pending(self, uuid: str) -> FirewallSpec | None:
        """``uuid``'s wanted chain when it differs from what was last written."""
        want = self._wanted_one(uuid)
        return want if want is not None and self._written.get(uuid) != want else None

    async def run(self) -> None:
        """Sync whenever woken, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except errors.BerthError as exc:
                log.warning("cannot sync the firewall and networks: %s", exc.message)
                await asyncio.sleep(_RETRY)
                self._wake.set()
            except Exception:
                log.exception("firewall sync failed unexpectedly")
                await asyncio.sleep(_RETRY)
                self._wake.set()

    def wanted(self) -> dict[str, FirewallSpec]:
        """Per filtered container: its addresses and the concrete rules it should have."""
        live = self._live()
        members = self._members(live)
        result = {}
        for uuid, ips in live.items():
            ingress = self._desired[uuid].ingress
            if ingress is not None:
                result[uuid] = (tuple(ips), tuple(resolve_ingress(ingress, members)))
        return result

    def _wanted_one(self, uuid: str) -> FirewallSpec | None:
        """``wanted().get(uuid)``, without resolving every other container's rules."""
        live = self._live()
        desired = self._desired.get(uuid)
        if uuid not in live or desired is None or desired.ingress is None:
            return None
        return (tuple(live[uuid]), tuple(resolve_ingress(desired.ingress, self._members(live))))

    def _live(self) -> dict[str, list[str]]:
        """The addresses of every container that is not being deleted and has one."""
        return {
            uuid: self._ips.get(uuid, [])
            for uuid, d in self._desired.items()
            if d.desired_state != "deleted" and self._ips.get(uuid)
        }

    def _members(self, live: dict[str, list[str]]) -> dict[str, list[str]]:
        """Each security group's member addresses, on this host and (overlay) on others."""
        members: dict[str, list[str]] = {}
        for uuid, ips in live.items():
            for group in self._desired[uuid].security_groups:
                members.setdefault(group, []).extend(ips)
        # A group's members on other hosts are admitted exactly like the local ones.
        for remote in self._remote.values():
            for member in remote:
                for group in member.security_groups:
                    members.setdefault(group, []).append(member.address)
        return {group: sorted(set(ips)) for group, ips in members.items()}

    async def sync(self) -> None:
        """Write what differs, remove what is no longer wanted, prune unused networks.

        The two halves are independent: a host without iptables still prunes.
        """
        failure: errors.BerthError | None = None
        for step in (self._sync_chains, self._program, self._prune):
            try:
                await step()
            except errors.BerthError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _sync_chains(self) -> None:
        async with self._chains:
            await self._sync_chains_locked()

    async def _sync_chains_locked(self) -> None:
        wanted = self.wanted()
        changes: dict[str, FirewallSpec | None] = {}
        if not self._swept:
            changes.update(dict.fromkeys(await self._networks.firewalled() - wanted.keys()))
        for uuid, want in wanted.items():
            if self._written.get(uuid) != want:
                changes[uuid] = want
        changes.update(dict.fromkeys(u for u in self._written if u not in wanted))
        if not changes:
            self._swept = True
            return
        try:
            await self._write(changes)
        except errors.BerthError:
            if len(changes) == 1:
                raise
            # One bad chain must not hold up the others: each on its own, then the first error.
            failure: errors.BerthError | None = None
            for uuid, change in changes.items():
                try:
                    await self._write({uuid: change})
                except errors.BerthError as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure from None
        self._swept = True

    async def _write(self, changes: dict[str, FirewallSpec | None]) -> None:
        await self._networks.write_firewalls(changes)
        for uuid, spec in changes.items():
            if spec is None:
                self._written.pop(uuid, None)
            else:
                self._written[uuid] = spec

    async def _program(self) -> None:
        """Hand the driver the remote members when they changed (it converges the kernel)."""
        if self._programmed == self._remote:
            return
        wanted = self._remote
        await self._networks.program(wanted)
        self._programmed = wanted

    async def _prune(self) -> None:
        now = self._clock()
        wanted = {
            net.id
            for d in self._desired.values()
            if d.desired_state != "deleted"
            for net in d.networks
        }
        for net_id in wanted:
            self._wanted_at[net_id] = now
        # The engine is asked at most every idle/4 (and at once when idle is 0).
        if now - self._pruned_at < self._idle / 4:
            return
        self._pruned_at = now
        keep = wanted | {n for n, at in self._wanted_at.items() if now - at < self._idle}
        for n in set(self._wanted_at) - keep:
            del self._wanted_at[n]
        await self._networks.prune(keep)
