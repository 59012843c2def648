"""Is a registry address internal to the platform? Pure rules, no I/O.

A tenant names registries (an image reference's first part, a registry's
domain) that an engine or agent then contacts on the tenant's behalf, and the
outcome comes back in ``status_reason``. Without a rule that makes the engine
a port scanner of the machines it runs on. Refused: loopback, link-local
(169.254/16 with the cloud metadata address, fe80::/10), unspecified, and the
platform hosts' own addresses, written any way a resolver would read them
(``2130706433``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``). DNS names
are resolved elsewhere (``berth.services.images.address_check``); their addresses
come back here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

__all__ = [
    "IPAddress",
    "allowed",
    "internal_reason",
    "ip_literal",
    "is_local_name",
    "split_host_port",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_host_port(address: str) -> tuple[str, int | None]:
    """(host, port) of ``host[:port]``, ``[v6][:port]`` or a bare IPv6 address; lower-cased.

    A scheme and a path (``https://reg.example:5000/v2``) are dropped. A port
    that is not a number stays part of the host (it then matches nothing).
    """
    text = address.strip().lower()
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    text = text.split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if text.count(":") == 1:
        host, port = text.split(":")
        if port.isdigit():
            return host, int(port)
    return text, None


def _inet_aton_part(part: str) -> int | None:
    """One dotted part the way inet_aton reads it: decimal, 0x hex or 0 octal."""
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as libc's inet_aton reads it: 1 to 4 parts, the last filling the rest."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or any(not p for p in parts):
        return None
    values = [_inet_aton_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    numbers = [v for v in values if v is not None]
    *head, last = numbers
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for v in head:
        value = value * 256 + v
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` denotes without DNS (IPv6 zones dropped, IPv4-mapped unwrapped)."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        ip: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        legacy = _legacy_ipv4(host)
        if legacy is None:
            return None
        ip = legacy
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_local_name(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or under ``.localhost`` (always this machine, RFC 6761)."""
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def internal_reason(ip: IPAddress, own: Collection[IPAddress]) -> str | None:
    """Why ``ip`` is internal ("a loopback address", ...), or None when it is not."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip in own:
        return "an address of a Berth host"
    return None


def allowed(address: str, allowlist: Iterable[str]) -> bool:
    """Whether ``address`` (``host[:port]``) is on the operator's allowlist.

    An entry with a port allows that port only; one without allows every port.
    """
    host, port = split_host_port(address)
    for entry in allowlist:
        ehost, eport = split_host_port(entry)
        if ehost == host and eport in (None, port):
            return True
    return False
