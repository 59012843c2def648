"""The host guard: containers on Berth networks do not reach the host's own services.

Traffic from a container to an address of the host itself (the bridge's
gateway, the host's other addresses) goes through the host's ``INPUT`` chain,
which the per-container chains in ``BERTH-FORWARD`` never see. Each owner (agent)
keeps one chain, ``BRT-HOST-<16 hex of the owner>``, and one jump to it at the
top of ``INPUT`` per bridge of its own networks (``-i <bridge>``, commented
``berth-guard <owner> <network id>``). The chain lets replies to the host's own
connections and the operator's allowed ports return to ``INPUT`` and rejects
the rest (TCP reset, ICMP port unreachable: a client fails at once instead of
hanging until its timeout; the gateway's existence is no secret to a container).

Everything is written per owner and per bridge, so agents sharing one kernel
never touch each other's rules, and each owner's networks are guarded by that
owner's allowlist only. This module is pure: names, rules, parsing; the driver
(``bridge.py``) runs ``iptables-restore``.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BRIDGE_PREFIX",
    "GUARD_CHAIN_PREFIX",
    "HostPort",
    "allowed_host_ports",
    "bridge_name",
    "chain_listing",
    "commented_bridges",
    "guard_chain",
    "guard_comment",
    "guard_lines",
    "guard_rules",
    "guarded_bridges",
    "parse_host_port",
    "registry_port",
]

BRIDGE_PREFIX = "brt-"
GUARD_CHAIN_PREFIX = "BRT-HOST-"
INPUT = "INPUT"
_GUARD_WORD = "berth-guard"


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    """A port on the host that containers may reach (``protocol`` is tcp or udp)."""

    port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def parse_host_port(text: str | int) -> HostPort:
    """``5000``, ``"5000"``, ``"53/udp"`` → a HostPort; anything else raises ValueError."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(?:/\s*(tcp|udp)\s*)?", str(text), re.IGNORECASE)
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise ValueError(f"{text!r} is not a host port: give <1-65535>[/tcp|/udp], e.g. 5000/tcp")
    return HostPort(int(match.group(1)), (match.group(2) or "tcp").lower())


def registry_port(address: str) -> HostPort:
    """The TCP port a registry ``host[:port]`` listens on (443, HTTPS, when none is given)."""
    address = address.strip()
    if address.startswith("["):  # [IPv6]:port
        rest = address.partition("]")[2]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        port = address.split(":")[1] if address.count(":") == 1 else ""
    return parse_host_port(port) if port.isdigit() else HostPort(443)


def allowed_host_ports(ports: Sequence[str | int], registries: Sequence[str]) -> list[HostPort]:
    """What containers may reach on the host: ``ports``, and the port of every registry given.

    The registries are the operator's (the image store, ``image_registry_allowlist``):
    cluster nodes pull from them through the host's bridge address. A template's
    ``insecure_registry`` is a tenant's word and opens nothing.
    """
    found = {parse_host_port(p) for p in ports} | {registry_port(r) for r in registries}
    return sorted(found)


def bridge_name(owner: str, network_id: str) -> str:
    """The Linux bridge of ``network_id`` on ``owner``'s engine: ``brt-`` + 11 hex (15 chars).

    Derived from the owner too: engines of several agents on one kernel each make
    their own bridge for the same Berth network, and interface names are per kernel.
    """
    digest = hashlib.sha256(f"{owner}\0{network_id}".encode()).hexdigest()
    return f"{BRIDGE_PREFIX}{digest[:11]}"


def guard_chain(owner: str) -> str:
    """The owner's guard chain in ``INPUT`` (iptables allows 28 characters)."""
    return GUARD_CHAIN_PREFIX + hashlib.sha256(owner.encode()).hexdigest()[:16]


def guard_comment(owner: str, network_id: str) -> str:
    """The comment on a jump: whose it is and for which network, so owners clean only theirs."""
    return f"{_GUARD_WORD} {owner} {network_id}"


def guard_rules(chain: str, allowed: Sequence[HostPort], *, ipv6: bool = False) -> list[str]:
    """The lines that fill ``chain``: replies and allowed ports return, the rest is rejected."""
    lines = [f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    lines += [
        f"-A {chain} -p {p.protocol} -m {p.protocol} --dport {p.port} -j RETURN"
        for p in sorted(set(allowed))
    ]
    unreachable = "icmp6-port-unreachable" if ipv6 else "icmp-port-unreachable"
    lines += [
        f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {chain} -j REJECT --reject-with {unreachable}",
    ]
    return lines


def _jump(owner: str, network_id: str, bridge: str) -> str:
    comment = guard_comment(owner, network_id)
    return f'{INPUT} -i {bridge} -m comment --comment "{comment}" -j {guard_chain(owner)}'


def guarded_bridges(owner: str, listing: str) -> dict[str, str]:
    """This owner's jumps in an ``iptables -S`` listing: ``{bridge: network id}``."""
    return commented_bridges(INPUT, _GUARD_WORD, owner, listing)


def commented_bridges(chain: str, word: str, owner: str, listing: str) -> dict[str, str]:
    """The rules of ``chain`` commented ``<word> <owner> <network id>`` in an ``iptables -S``
    listing, by the bridge they match (``-i``): ``{bridge: network id}``."""
    found = {}
    for line in listing.splitlines():
        if not line.startswith(f"-A {chain} "):
            continue
        words = shlex.split(line)
        if "--comment" not in words or "-i" not in words:
            continue
        comment = words[words.index("--comment") + 1].split()
        if len(comment) == 3 and comment[0] == word and comment[1] == owner:
            found[words[words.index("-i") + 1]] = comment[2]
    return found


def chain_listing(chain: str, listing: str) -> list[str]:
    """The ``-A`` lines of ``chain`` in an ``iptables -S`` listing (as ``guard_rules`` writes)."""
    return [line for line in listing.splitlines() if line.startswith(f"-A {chain} ")]


def guard_lines(
    owner: str,
    bridges: Mapping[str, str],
    present: Mapping[str, str],
    allowed: Sequence[HostPort],
    *,
    ipv6: bool = False,
) -> list[str]:
    """One ``iptables-restore --noflush`` body making the owner's guard exactly ``bridges``.

    ``bridges``: ``{bridge: network id}`` to guard; ``present``: the same, as
    ``guarded_bridges`` found it. The chain is declared (emptied) and refilled in
    the same step as the jumps change, so no jump ever points at a missing or
    half-written chain; with no bridge left, the chain goes too.
    """
    chain = guard_chain(owner)
    lines = [f":{chain} - [0:0]"]
    lines += [
        f"-D {_jump(owner, net, b)}" for b, net in sorted(present.items()) if bridges.get(b) != net
    ]
    if not bridges:
        return [*lines, f"-X {chain}"]
    lines += guard_rules(chain, allowed, ipv6=ipv6)
    # At the top of INPUT: before any ACCEPT of the host's own firewall.
    lines += [
        f"-I {_jump(owner, net, b)}" for b, net in sorted(bridges.items()) if present.get(b) != net
    ]
    return lines
