"""Refuse tenants' registry addresses that point inside the platform.

The rules are ``berth.domain.addresses``; this module gathers what they need:
the API host's interface addresses, the agents' host addresses the control
plane knows (``agent_url``), and a DNS name's addresses (resolved off the
event loop with a short timeout; a name that does not resolve is not refused
here, the pull fails on its own). Admins are not restricted; the operator's
``image_registry_allowlist`` and the image store's own address always pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from pathlib import Path

from berth import errors
from berth.domain.addresses import (
    IPAddress,
    allowed,
    internal_reason,
    ip_literal,
    is_local_name,
    split_host_port,
)
from berth.domain.context import RequestContext
from berth.images.refs import registry_of, split_reference
from berth.services.env import Env
from berth.store import hosts as hosts_repo

__all__ = ["check_image", "check_registry", "internal_address"]

_RESOLVE_SECONDS = 2.0


def _local_addresses() -> set[IPAddress]:
    """This machine's interface addresses (Linux ``/proc``), plus what its hostname resolves to."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        # "|-- a.b.c.d" followed by "/32 host LOCAL" is an address of an interface.
        for above, line in itertools.pairwise(lines):
            if line.strip() == "/32 host LOCAL" and "|--" in above:
                ip = ip_literal(above.split("|--", 1)[1].strip())
                if ip is not None:
                    found.add(ip)
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            ip = ip_literal(":".join(raw[i : i + 4] for i in range(0, 32, 4)))
            if ip is not None:
                found.add(ip)
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM):
            ip = ip_literal(str(info[4][0]))
            if ip is not None:
                found.add(ip)
    return found


async def _own_addresses(env: Env) -> set[IPAddress]:
    # File reads and a resolver call: off the event loop.
    own = await asyncio.to_thread(_local_addresses)
    async with env.db.read() as session:
        urls = await hosts_repo.agent_urls(session)
    for url in urls:
        if url:
            ip = ip_literal(split_host_port(url)[0])
            if ip is not None:
                own.add(ip)
    return own


async def _resolve(host: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), _RESOLVE_SECONDS
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    ips = (ip_literal(str(info[4][0])) for info in infos)
    return [ip for ip in ips if ip is not None]


async def internal_address(env: Env, address: str) -> str | None:
    """Why ``host[:port]`` is internal to the platform, or None (allowlisted ones are not)."""
    s = env.settings
    if allowed(address, [*s.image_registry_allowlist, *([s.image_store] if s.image_store else [])]):
        return None
    host, _ = split_host_port(address)
    if is_local_name(host):
        return "a name of this machine"
    literal = ip_literal(host)
    addresses = [literal] if literal is not None else await _resolve(host)
    if not addresses:
        return None
    own = await _own_addresses(env)
    for ip in addresses:
        reason = internal_reason(ip, own)
        if reason is not None:
            return reason if literal is not None else f"{reason} ({ip})"
    return None


def _advice(address: str) -> str:
    return (
        "Berth does not pull from loopback, link-local or its own hosts' addresses for "
        "projects. Use a registry at an address outside the platform, or ask an operator "
        f"to add {address} to image_registry_allowlist."
    )


async def check_image(env: Env, ctx: RequestContext, image: str) -> None:
    """Raise Invalid when a non-admin's ``image`` names a registry inside the platform."""
    if ctx.is_admin:
        return
    address = registry_of(split_reference(image)[0])
    if address is None:
        return
    reason = await internal_address(env, address)
    if reason is not None:
        raise errors.Invalid(
            f"Image {image} names the registry {address}, {reason}. {_advice(address)}"
        )


async def check_registry(env: Env, ctx: RequestContext, domain: str) -> None:
    """Raise Invalid when a non-admin's registry ``domain`` is inside the platform."""
    if ctx.is_admin:
        return
    reason = await internal_address(env, domain)
    if reason is not None:
        raise errors.Invalid(
            f"Invalid input for field 'domain': {domain} is {reason}. {_advice(domain)}"
        )
