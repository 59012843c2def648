"""Files injected into containers (Zun's ``mounts`` of ``type=bind``): kept, described, handed out.

At create, each bind mount's base64 ``source`` is checked and decoded
(``berth.domain.injected_files``) and its bytes stored in ``container_files``;
the container's ``mounts`` keep only ``{"type": "file", "destination", "size"}``.
The desired state tells the agent which files to write; the agent fetches
their content (``for_agent``) only when it creates the runtime container, so
the long poll never carries it. The rows go when the container row goes.
"""

from __future__ import annotations

import base64
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import InjectedFile
from berth.domain.injected_files import check_destination, decode_content
from berth.services.env import Env
from berth.store import containers as containers_repo
from berth.store import files as repo
from berth.store.db import Session
from berth.store.tables import ContainerRow

__all__ = ["accept", "check_count", "desired_files", "for_agent", "forget"]


def check_count(env: Env, count: int) -> None:
    """Refuse (400) more injected files than ``inject_max_files`` in one container."""
    limit = env.settings.inject_max_files
    if count > limit:
        raise errors.Invalid(
            f"A container may inject at most {limit} files (inject_max_files); {count} were "
            "given. Put the rest in a volume or copy them with 'openstack appcontainer cp'."
        )


def accept(env: Env, session: Session, owner: str, dest: str, source: str | None) -> dict[str, Any]:
    """Check and keep the file for ``owner`` at ``dest``; the mount entry the row stores."""
    check_destination(dest)
    data = decode_content(source or "", dest, env.settings.inject_file_max_bytes)
    repo.add(session, owner, dest, data)
    return {"type": "file", "destination": dest, "size": len(data)}


def desired_files(row: ContainerRow) -> list[InjectedFile]:
    """The files the agent writes into ``row``'s container (without their content)."""
    return [
        InjectedFile(m["destination"], int(m.get("size") or 0))
        for m in row.mounts or []
        if m.get("type") == "file"
    ]


async def for_agent(env: Env, ctx: RequestContext, hostname: str, uuid: str) -> list[InjectedFile]:
    """The content of container ``uuid``'s files, for the agent of its host (``hostname``)."""
    env.enforce(ctx, "berth:internal")
    async with env.db.read() as session:
        host = await containers_repo.host_of(session, uuid)
        if host is None or host != hostname:
            # Another host's container is none of this agent's business.
            raise errors.ContainerNotFound(f"Container {uuid} could not be found on {hostname}.")
        rows = await repo.of_container(session, uuid)
        return [
            InjectedFile(r.destination, len(r.content), base64.b64encode(r.content).decode())
            for r in rows
        ]


async def forget(session: Session, uuid: str) -> None:
    """Drop the files of the deleted container ``uuid``."""
    await repo.forget(session, uuid)
