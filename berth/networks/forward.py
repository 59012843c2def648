"""Berth's own place in ``FORWARD``: projects kept apart, and the way to the security groups.

One chain, ``BERTH-FORWARD``, holds everything Berth filters in forwarded
traffic, on Docker and Podman hosts alike:

- *project isolation*, Docker's two-stage pattern: one rule per bridge of a
  Berth network, ``-i <bridge> ! -o <bridge> -j BERTH-ISOLATION`` (commented
  ``berth-isolate <owner> <network id>``), and ``BERTH-ISOLATION`` drops what
  leaves for any other Berth bridge (``-o brt-+``). Every owner writes its own
  bridges' rules, so traffic between any two Berth networks on one kernel is
  dropped, whichever agents made them;
- the jumps to the per-container security-group chains (``berth.networks.firewall``).

It is entered from the top of ``DOCKER-USER`` where that chain exists (dockerd
keeps its jump to it ahead of every ACCEPT of its own, across its restarts and
network creations, which Berth could only chase after the fact), and from the
very top of ``FORWARD`` on a Podman host or where no ``DOCKER-USER`` exists:
netavark offers no such hook, and its ``NETAVARK_FORWARD`` accepts everything
from every Podman subnet before ``DOCKER-USER`` is reached. Netavark (and
dockerd) insert their jumps at the top of ``FORWARD``, so on a Podman host the
driver looks at ``FORWARD`` before every write (``iptables -S FORWARD``, ~3 ms)
and moves Berth's entry back first in the same restore when it is not; network
creation and pruning re-check every entry from a full listing. (Moving it
blindly at every write cost 13 ms a write, measured: deleting a rule by its
text makes iptables-nft read the whole table.) A packet may pass ``BERTH-FORWARD`` twice (a Podman
host that also runs dockerd): its rules only drop or return, so twice is once.

Podman's own isolation is not relied on: its Docker-compatible API makes every
network ``isolate=true``, but netavark 1.4 (Debian 12) deletes ``FORWARD``'s jump
to that isolation when the last container of any isolated network goes, and
inserts it again, at the top (above Berth's entry, harmless: it only drops),
with the next one. So Berth's entry counts as first when only such jumps
(``-j NETAVARK_ISOLATION_<n>``, nothing else in the rule) are above it: moving
it back above them would delete a rule at every such start, and a batch that
deletes waits for the kernel's RCU grace periods (8-24 ms on this kernel,
measured: it was most of a Podman container's firewall write).

The two chains are shared by the agents of one kernel and never removed (empty,
they cost one jump); everything in ``BERTH-FORWARD`` is commented with its
owner, so an agent changes only its own rules. Pure: rules and parsing; the
driver (``bridge.py``) runs ``iptables``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from berth.networks.firewall import JUMP_CHAIN
from berth.networks.hostguard import BRIDGE_PREFIX, chain_listing, commented_bridges

__all__ = [
    "DOCKER_USER",
    "FORWARD",
    "FORWARD_CHAIN",
    "ISOLATION_CHAIN",
    "entry_lines",
    "entry_parents",
    "isolated_bridges",
    "isolation_chain_lines",
    "isolation_lines",
]

FORWARD_CHAIN = JUMP_CHAIN
ISOLATION_CHAIN = "BERTH-ISOLATION"
DOCKER_USER = "DOCKER-USER"
FORWARD = "FORWARD"
_ENTRY_SPEC = f'-m comment --comment "berth-forward entry" -j {FORWARD_CHAIN}'
_ISOLATE_WORD = "berth-isolate"
_ISOLATION_RULES = [f"-A {ISOLATION_CHAIN} -o {BRIDGE_PREFIX}+ -j DROP"]
# netavark's isolation stages only jump to the next stage or drop: a bare jump into them
# may stay above Berth's entry (see the module's docstring).
_DROPS_ONLY = re.compile(r"-A \S+ -j NETAVARK_ISOLATION_[0-9]+")


def _chains(listing: str) -> set[str]:
    return {line.split()[1] for line in listing.splitlines() if line.startswith("-N ")}


def entry_parents(listing: str, *, podman: bool) -> list[str]:
    """The chains that jump to ``BERTH-FORWARD``: ``DOCKER-USER`` where it exists, and
    ``FORWARD`` itself on a Podman host or where there is no ``DOCKER-USER``."""
    docker_user = DOCKER_USER in _chains(listing)
    return [*([FORWARD] if podman or not docker_user else []), *([DOCKER_USER] * docker_user)]


def entry_lines(parents: list[str], listing: str) -> list[str]:
    """``iptables-restore --noflush`` lines that make the jump to ``BERTH-FORWARD`` the first
    rule of each of ``parents`` (netavark's drop-only isolation jumps aside), once, given
    ``listing`` (an ``iptables -S``, of the parents at least): nothing for a parent
    already right, each stray copy deleted."""
    lines = []
    for parent in parents:
        want = f"-A {parent} {_ENTRY_SPEC}"
        rules = chain_listing(parent, listing)
        above = next((i for i, rule in enumerate(rules) if not _DROPS_ONLY.fullmatch(rule)), 0)
        if rules[above : above + 1] == [want] and rules.count(want) == 1:
            continue
        lines += [f"-D {parent} {_ENTRY_SPEC}"] * rules.count(want)
        lines.append(f"-I {parent} 1 {_ENTRY_SPEC}")
    return lines


def isolation_chain_lines(listing: str) -> list[str]:
    """Lines that (re)fill ``BERTH-ISOLATION`` when it is missing or not as written here.

    Its content is the same for every owner, so whoever writes it writes the same."""
    if chain_listing(ISOLATION_CHAIN, listing) == _ISOLATION_RULES:
        return []
    return [f":{ISOLATION_CHAIN} - [0:0]", *_ISOLATION_RULES]


def _isolation_rule(owner: str, network_id: str, bridge: str) -> str:
    comment = f"{_ISOLATE_WORD} {owner} {network_id}"
    return (
        f'{FORWARD_CHAIN} -i {bridge} ! -o {bridge} -m comment --comment "{comment}" '
        f"-j {ISOLATION_CHAIN}"
    )


def isolated_bridges(owner: str, listing: str) -> dict[str, str]:
    """This owner's isolation rules in an ``iptables -S`` listing: ``{bridge: network id}``."""
    return commented_bridges(FORWARD_CHAIN, _ISOLATE_WORD, owner, listing)


def isolation_lines(
    owner: str, bridges: Mapping[str, str], present: Mapping[str, str]
) -> list[str]:
    """Lines that make the owner's isolation rules exactly ``bridges`` (``{bridge: network
    id}``), given those ``present`` (as ``isolated_bridges`` found them)."""
    lines = [
        f"-D {_isolation_rule(owner, net, b)}"
        for b, net in sorted(present.items())
        if bridges.get(b) != net
    ]
    lines += [
        f"-A {_isolation_rule(owner, net, b)}"
        for b, net in sorted(bridges.items())
        if present.get(b) != net
    ]
    return lines
