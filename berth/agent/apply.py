"""Run a plan against a runtime driver and say what came of it.

``apply_plan`` never raises for a failed step: it stops at the first failure,
turns it into the Observation's ``error`` (text that tells the user what to
do), re-inspects, and returns what is there now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from berth import errors
from berth.agent.diff import (
    Acknowledge,
    Action,
    Connect,
    Create,
    Disconnect,
    EnsureImage,
    Kill,
    Pause,
    Remove,
    Restart,
    Start,
    Stop,
    Unpause,
    Update,
)
from berth.agent.glance_images import GlanceSource, ensure_glance_image
from berth.agent.injection import FileSource, fetch_files, write_files
from berth.domain.hostsync import DesiredContainer, Observation
from berth.networks.base import NetworkDriver, network_id_of
from berth.runtimes.base import RuntimeContainer, RuntimeDriver, effective_pull_policy
from berth.volumes.base import VolumeDriver

__all__ = ["apply_plan", "describe_failure", "drop_owned_volumes", "observe", "zun_addresses"]

log = logging.getLogger(__name__)

_VERBS: dict[type, str] = {
    EnsureImage: "prepare the image for",
    Create: "create",
    Start: "start",
    Stop: "stop",
    Pause: "pause",
    Unpause: "unpause",
    Kill: "kill",
    Restart: "reboot",
    Update: "update",
    Remove: "delete",
    Acknowledge: "acknowledge an operation on",
    Connect: "attach a network to",
    Disconnect: "detach a network from",
}


async def apply_plan(
    runtime: RuntimeDriver,
    uuid: str,
    actions: list[Action],
    desired: DesiredContainer | None,
    *,
    done_ops: Iterable[str] = (),
    files: FileSource | None = None,
    glance: GlanceSource | None = None,
) -> Observation:
    """Run ``actions`` in order for ``uuid`` and return the observation that follows.

    ``done_ops`` are ops completed earlier, still to be reported; the ops this
    plan completes are added. ``files`` fetches the content of the injected
    files a Create writes; ``glance`` the data of a Glance image the host lacks.
    """
    done = list(done_ops)
    error: str | None = None
    updated = False
    deferred: EnsureImage | None = None
    for i, action in enumerate(actions):
        if isinstance(action, EnsureImage) and _can_defer(action, actions[i + 1 : i + 2]):
            # ifnotpresent right before a create: create first and pull only if the
            # engine says the image is missing (saves an image inspect per create).
            deferred = action
            continue
        running = action
        try:
            try:
                await _run(runtime, uuid, action, desired, files, glance)
            except errors.ImageNotFound:
                if deferred is None or not isinstance(action, Create):
                    raise
                running = deferred
                await _run(runtime, uuid, deferred, desired, files, glance)
                running = action
                await _run(runtime, uuid, action, desired, files, glance)
        except Exception as exc:
            error = describe_failure(running, exc)
            if not isinstance(exc, errors.BerthError):
                log.exception("%s of container %s failed unexpectedly", running, uuid)
            break
        if isinstance(action, Kill | Restart | Acknowledge):
            done.append(action.op_id)
        updated = updated or isinstance(action, Update)
    try:
        container = await runtime.inspect(uuid)
    except errors.BerthError as exc:
        return Observation(uuid, "absent", 0, error=error or f"cannot inspect: {exc.message}")
    spec_version = desired.spec_version if (updated and desired) else None
    return observe(uuid, desired, container, error=error, done_ops=done, spec_version=spec_version)


def _can_defer(action: EnsureImage, following: list[Action]) -> bool:
    return (
        effective_pull_policy(action.pull_policy) == "ifnotpresent"
        and len(following) == 1
        and isinstance(following[0], Create)
    )


def observe(
    uuid: str,
    desired: DesiredContainer | None,
    container: RuntimeContainer | None,
    *,
    error: str | None = None,
    done_ops: Iterable[str] = (),
    spec_version: int | None = None,
) -> Observation:
    """The Observation reporting ``container`` (None: absent) for ``desired``.

    Its ``spec_version`` is the newest the container reflects: the label
    written at create, or what the control plane already recorded as applied.
    """
    if spec_version is None:
        spec_version = desired.applied_spec_version if desired else 0
        if container is not None:
            spec_version = max(spec_version, container.spec_version)
    removed = container is None and desired is not None and desired.desired_state == "deleted"
    if container is None:
        return Observation(
            uuid, "absent", spec_version, error=error, done_ops=list(done_ops), removed=removed
        )
    return Observation(
        uuid=uuid,
        state=container.state,
        spec_version=spec_version,
        runtime_id=container.runtime_id,
        status_detail=container.status_detail,
        error=error,
        exit_code=container.exit_code,
        started_at=container.started_at,
        addresses=_addresses(desired, container),
        done_ops=list(done_ops),
        published=dict(container.published) or None,
        macs=dict(container.macs) or None,
    )


def _addresses(
    desired: DesiredContainer | None, container: RuntimeContainer
) -> dict[str, Any] | None:
    # None means "nothing to report" (the last addresses stay); a container that
    # left its last network reports none at all, so its old address goes away.
    found = zun_addresses(container.addresses)
    if not found and desired is not None and desired.no_network:
        return {}
    return found or None


def zun_addresses(addresses: dict[str, Any]) -> dict[str, Any]:
    """Addresses keyed by Berth network id (engine names otherwise), in Zun's entry shape."""
    result: dict[str, Any] = {}
    for name, entries in addresses.items():
        result[network_id_of(name) or name] = [
            {"port": None, "subnet_id": None, "preserve_on_delete": False, **entry}
            for entry in entries
        ]
    return result


def describe_failure(action: Action, exc: BaseException) -> str:
    """A status_reason a user can act on, for ``action`` failing with ``exc``."""
    message = exc.message if isinstance(exc, errors.BerthError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, errors.ImageNotFound):
        return message  # drivers word it for the user: which image, what to check
    if isinstance(exc, errors.HostUnavailable):
        return f"cannot reach the container engine on this host: {message}"
    verb = _VERBS.get(type(action), "change")
    return f"could not {verb} the container: {message}"


async def drop_owned_volumes(runtime: RuntimeDriver, uuid: str) -> None:
    """Remove the data volumes that belong to the deleted container (``--mount size=N``)."""
    volumes: VolumeDriver | None = getattr(runtime, "volumes", None)
    if volumes is not None:
        await volumes.remove_owned_by(uuid)


def _network_driver(runtime: RuntimeDriver) -> NetworkDriver:
    networks: NetworkDriver | None = getattr(runtime, "networks", None)
    if networks is None:
        raise errors.Invalid("this host has no network driver")
    return networks


async def _run(
    runtime: RuntimeDriver,
    uuid: str,
    action: Action,
    desired: DesiredContainer | None,
    files: FileSource | None = None,
    glance: GlanceSource | None = None,
) -> None:
    match action:
        case EnsureImage() if desired is not None and desired.from_glance:
            await ensure_glance_image(runtime, desired, glance)
        case EnsureImage(image=image, pull_policy=policy):
            # The registry credentials came with the desired state, for this pull only.
            auth = desired.registry_auth if desired is not None else None
            await runtime.ensure_image(image, policy, auth)
        case Create(spec=spec):
            # Fetched first: a control plane that cannot answer leaves nothing behind.
            content = await fetch_files(spec, files)
            await runtime.create(spec)
            await write_files(runtime, uuid, content)
        case Start():
            await runtime.start(uuid)
        case Stop(timeout=timeout):
            await runtime.stop(uuid, timeout)
        case Pause():
            await runtime.pause(uuid)
        case Unpause():
            await runtime.unpause(uuid)
        case Kill(signal=signal):
            await runtime.kill(uuid, signal)
        case Restart(timeout=timeout):
            await runtime.restart(uuid, timeout)
        case Update(cpu=cpu, memory=memory):
            await runtime.update(uuid, cpu, memory)
        case Remove(force=force):
            await runtime.remove(uuid, force)
            if desired is None or desired.desired_state == "deleted":
                await drop_owned_volumes(runtime, uuid)  # not on a rebuild: data stays
        case Connect(net=net):
            await _network_driver(runtime).connect(uuid, net)
        case Disconnect(network_id=network_id):
            await _network_driver(runtime).disconnect(uuid, network_id)
        case Acknowledge():
            pass
