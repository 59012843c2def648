"""One owner's rules in the host's filter table, written with ``iptables-restore --noflush``.

The bridge driver's iptables half: the security-group chains and their jumps
(``berth.networks.firewall``), project isolation and Berth's entry at the top of
``FORWARD`` (``berth.networks.forward``), and the host guard in ``INPUT``
(``berth.networks.hostguard``). Those modules are pure; this one runs the
binaries, in a worker thread (forking the agent takes milliseconds, and
asyncio's subprocess support forks on the event loop), and caches what it wrote
so a container's start costs one ``iptables-restore`` and no listing.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

from berth import errors
from berth.networks.base import FirewallSpec
from berth.networks.firewall import JUMP_CHAIN, chain_name, chain_rules, jump_comment
from berth.networks.forward import (
    DOCKER_USER,
    FORWARD,
    FORWARD_CHAIN,
    entry_lines,
    entry_parents,
    isolated_bridges,
    isolation_chain_lines,
    isolation_lines,
)
from berth.networks.hostguard import (
    HostPort,
    chain_listing,
    guard_chain,
    guard_lines,
    guard_rules,
    guarded_bridges,
)

__all__ = ["HostRules"]

log = logging.getLogger(__name__)


class HostRules:
    """``owner``'s chains, jumps and guard on this kernel.

    ``podman``: whether the engine is Podman (asked once, when first needed), which
    decides where Berth's chain is entered from (``berth.networks.forward``).
    """

    def __init__(
        self,
        *,
        owner: str,
        iptables: str,
        host_ports: Sequence[HostPort],
        podman: Callable[[], Awaitable[bool]],
    ) -> None:
        self._owner = owner
        self._binary = iptables
        self._host_ports = tuple(sorted(set(host_ports)))
        self._podman = podman
        # IPv6 too: a container with NET_ADMIN (a cluster node) can turn IPv6 back on
        # in its namespace and reach the host's [::] listeners by the bridge's fe80:: address.
        ip6 = iptables.replace("iptables", "ip6tables")
        self._families = [(iptables, False)] + ([(ip6, True)] if shutil.which(ip6) else [])
        self._guarded: dict[str, str] | None = None  # bridge -> network id, as last written
        self._jump_cache: dict[str, dict[str, str]] | None = None
        self._parents: list[str] | None = None  # the chains entering BERTH-FORWARD

    async def _iptables(
        self, *args: str, stdin: str | None = None, check: bool = True, binary: str = ""
    ) -> str:
        binary = (binary or self._binary) + ("-restore" if stdin is not None else "")
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

    async def _restore(self, lines: list[str], binary: str = "") -> None:
        body = "\n".join(["*filter", *lines, "COMMIT"]) + "\n"
        try:
            await self._iptables("--noflush", stdin=body, binary=binary)
        except errors.BerthError:
            # Start again from what the kernel really has.
            self._jump_cache, self._parents = None, None
            raise

    # -- Berth's chain in FORWARD

    async def _forward(self, listing: str) -> list[str]:
        """Make sure ``BERTH-FORWARD`` exists (from ``listing``); the restore lines that put
        its entries first and fill ``BERTH-ISOLATION``."""
        if f"-N {FORWARD_CHAIN}" not in listing.splitlines():
            # Not declared in a restore: that would empty another owner's rules in it.
            await self._iptables("-N", FORWARD_CHAIN, check=False)
        self._parents = entry_parents(listing, podman=await self._podman())
        return isolation_chain_lines(listing) + entry_lines(self._parents, listing)

    # -- security groups: a chain per container, jumped to from BERTH-FORWARD

    def _jump(self, uuid: str, address: str) -> str:
        comment = jump_comment(self._owner, uuid)
        return f'{JUMP_CHAIN} -d {address} -m comment --comment "{comment}" -j {chain_name(uuid)}'

    def _jumps(self, listing: str) -> dict[str, dict[str, str]]:
        """This owner's jumps by container: ``{uuid: {address: rule text without the -A}}``;
        those an older Berth wrote in ``DOCKER-USER`` too (they are moved when rewritten)."""
        found: dict[str, dict[str, str]] = {}
        for line in listing.splitlines():
            words = shlex.split(line)
            if words[:2] not in (["-A", JUMP_CHAIN], ["-A", DOCKER_USER]):
                continue
            if "--comment" not in words or "-d" not in words:
                continue
            comment = words[words.index("--comment") + 1].split()
            if len(comment) != 3 or comment[0] != "berth" or comment[1] != self._owner:
                continue
            address = words[words.index("-d") + 1]
            text = self._jump(comment[2], address).replace(JUMP_CHAIN, words[1], 1)
            found.setdefault(comment[2], {})[address] = text
        return found

    async def _present(self) -> tuple[dict[str, dict[str, str]], list[str]]:
        """This owner's jumps (``{uuid: {address: rule}}``) and the lines that keep Berth's
        entries first.

        Listed from the kernel once, then kept up to date by what is written here:
        every ``iptables`` run costs a fork of the agent. Later writes look at ``FORWARD``
        alone, and only where Berth enters it (Podman: netavark may have put a jump
        above; on Docker, dockerd keeps ``DOCKER-USER`` first). A write that fails drops
        the copy, so the next one starts from what the kernel really has.
        """
        if self._jump_cache is None or self._parents is None:
            listing = await self._iptables("-S")
            entries = await self._forward(listing)
            self._jump_cache = self._jumps(listing)
            return self._jump_cache, entries
        if FORWARD not in self._parents:
            return self._jump_cache, []
        return self._jump_cache, entry_lines([FORWARD], await self._iptables("-S", FORWARD))

    async def write_firewalls(self, changes: Mapping[str, FirewallSpec | None]) -> None:
        """Replace or remove the chains and jumps of ``changes``: one ``iptables-restore`` run,
        Berth's entry put back first in the same step when it is not."""
        if not changes:
            return
        present, lines = await self._present()
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
            wanted = {a: self._jump(uuid, a) for a in {_host(a) for a in addresses}}
            lines += [_quote(args) for args in chain_rules(chain, rules)]
            lines += [f"-D {text}" for addr, text in have.items() if wanted.get(addr) != text]
            lines += [
                f"-I {text}" for addr, text in sorted(wanted.items()) if have.get(addr) != text
            ]
            jumps[uuid] = wanted
        await self._restore(lines)
        if self._jump_cache is not None:
            for uuid, written in jumps.items():
                if written is None:
                    self._jump_cache.pop(uuid, None)
                else:
                    self._jump_cache[uuid] = written

    async def firewalled(self) -> set[str]:
        """The uuids of the containers this owner filters."""
        return {u for u, jumps in (await self._present())[0].items() if jumps}

    # -- the raw table: rules of this owner's that skip connection tracking

    async def set_untracked(self, label: str, rules: list[str]) -> None:
        """Make the ``raw`` table's rules whose comment is ``label`` exactly ``rules`` (as
        ``iptables -S`` lists them): one listing, and one restore only when they differ."""
        listing = await self._iptables("-t", "raw", "-S")
        mine = [r for r in listing.splitlines() if r.startswith("-A ") and label in r]
        if mine != rules:
            body = ["*raw", *(f"-D {r[3:]}" for r in mine), *rules, "COMMIT", ""]
            await self._iptables("--noflush", stdin="\n".join(body))

    # -- bridges: the host guard (INPUT) and isolation (BERTH-FORWARD), written together

    async def guard(self, add: dict[str, str]) -> None:
        """Guard and isolate the bridges of ``add`` (``{bridge: network id}``) besides those
        already; the entries are re-checked whenever something is written."""
        if self._guarded is not None and all(self._guarded.get(b) == n for b, n in add.items()):
            return
        await self.sync_bridges(add, keep=True)

    async def sync_bridges(self, bridges: dict[str, str], *, keep: bool = False) -> None:
        """Make the guard and the isolation exactly ``bridges`` (with ``keep``: those and the
        ones the kernel has), as the kernel has it now: a flushed ``INPUT`` or ``FORWARD``,
        a tampered chain, a changed allowlist or an entry no longer first is repaired, rules
        of networks removed behind the driver's back go."""
        listings = {
            binary: await self._iptables("-S", binary=binary) for binary, _ in self._families
        }
        if keep:
            bridges = {**guarded_bridges(self._owner, listings[self._binary]), **bridges}
        self._guarded = None  # re-read after a failure
        for binary, ipv6 in self._families:
            lines = self._guard_changes(bridges, listings[binary], ipv6=ipv6)
            if not ipv6:
                lines += await self._isolation_changes(bridges, listings[binary])
            if not lines:
                continue
            try:
                await self._restore(lines, binary=binary)
            except errors.BerthError as exc:
                if not ipv6:
                    raise errors.BerthError(
                        f"cannot guard the host from containers: {exc.message}"
                    ) from exc
                log.warning("the IPv6 host guard is not written: %s", exc.message)
        self._guarded = dict(bridges)

    def _guard_changes(self, bridges: dict[str, str], listing: str, *, ipv6: bool) -> list[str]:
        present = guarded_bridges(self._owner, listing)
        chain = guard_chain(self._owner)
        wanted = guard_rules(chain, self._host_ports, ipv6=ipv6) if bridges else []
        if present == bridges and chain_listing(chain, listing) == wanted:
            return []
        return guard_lines(self._owner, bridges, present, self._host_ports, ipv6=ipv6)

    async def _isolation_changes(self, bridges: dict[str, str], listing: str) -> list[str]:
        changes = isolation_lines(self._owner, bridges, isolated_bridges(self._owner, listing))
        if not bridges and not changes:
            return []
        return [*await self._forward(listing), *changes]


def _host(address: str) -> str:
    return address if "/" in address else f"{address}/32"


def _quote(args: list[str]) -> str:
    return " ".join(f'"{a}"' if " " in a else a for a in args)
