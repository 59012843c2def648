"""Security groups as iptables rules: pure translations, no I/O.

A filtered container has a chain of its own, ``BRT-<24 hex of its uuid>``,
reached from Berth's ``BERTH-FORWARD`` chain (``berth.networks.forward``: the
first thing forwarded traffic meets, on Docker and Podman hosts alike) by one
jump per address of the container (``-d <ip>/32``). The chain lets replies and
the allowed traffic return to the engine's own rules and drops everything else. Forwarded traffic
only: packets between containers (the bridges call iptables) and traffic to
published ports from other machines pass it; the host itself is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from berth.domain.hostsync import IngressRule
from berth.networks.base import FirewallRule

__all__ = ["JUMP_CHAIN", "chain_name", "chain_rules", "jump_comment", "resolve_ingress"]

JUMP_CHAIN = "BERTH-FORWARD"


def chain_name(uuid: str) -> str:
    """The container's own chain (iptables allows 28 characters)."""
    return "BRT-" + uuid.replace("-", "")[:24]


def jump_comment(owner: str, uuid: str) -> str:
    """The comment on a jump rule: whose it is, so an agent cleans up only its own."""
    return f"berth {owner} {uuid}"


def resolve_ingress(
    ingress: Sequence[IngressRule], members: Mapping[str, Sequence[str]]
) -> list[FirewallRule]:
    """Concrete rules: a remote group becomes the addresses of its ``members`` on this host.

    A remote group without members here allows nothing (the rule is dropped).
    """
    rules: list[FirewallRule] = []
    for rule in ingress:
        sources: tuple[str, ...] | None
        if rule.remote_group is not None:
            sources = tuple(sorted({f"{ip}/32" for ip in members.get(rule.remote_group, ())}))
            if not sources:
                continue
        elif rule.remote_cidr and rule.remote_cidr not in ("0.0.0.0/0", "::/0"):
            sources = (rule.remote_cidr,)
        else:
            sources = None
        protocol = rule.protocol.lower() if rule.protocol else None
        ported = protocol in ("tcp", "udp")
        concrete = FirewallRule(
            protocol,
            rule.port_min if ported else None,
            (rule.port_max or rule.port_min) if ported else None,
            sources,
        )
        if concrete not in rules:
            rules.append(concrete)
    return rules


def chain_rules(chain: str, rules: Sequence[FirewallRule]) -> list[list[str]]:
    """The iptables arguments that fill ``chain``: replies, the allowed traffic, then DROP."""
    lines = [["-A", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]]
    for rule in rules:
        match: list[str] = []
        if rule.protocol:
            match += ["-p", rule.protocol]
        if rule.port_min is not None:
            high = rule.port_max if rule.port_max is not None else rule.port_min
            ports = str(rule.port_min) if high == rule.port_min else f"{rule.port_min}:{high}"
            match += ["--dport", ports]
        for source in rule.sources if rule.sources is not None else (None,):
            lines.append(["-A", chain, *match, *(["-s", source] if source else []), "-j", "RETURN"])
    lines.append(["-A", chain, "-j", "DROP"])
    return lines
