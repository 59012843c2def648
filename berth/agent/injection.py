"""Write a container's injected files (Zun's ``mounts`` of ``type=bind``) before it starts.

The desired state names the files; their content comes from the control plane
(``ControlPlane.files``) only when the runtime container is created: the first
create, a rebuild, an auto-heal recreate. They go in through the runtime's
``put_archive`` (one tar extracted at ``/``) on the created, not yet started
container, so they are there when its command runs.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable

from berth import errors
from berth.domain.hostsync import DesiredContainer, InjectedFile
from berth.domain.injected_files import tar_files
from berth.runtimes.base import RuntimeDriver

__all__ = ["FileSource", "fetch_files", "write_files"]

# The control plane's files of a container: ``ControlPlane.files`` bound to this host.
FileSource = Callable[[str], Awaitable[list[InjectedFile]]]


async def fetch_files(spec: DesiredContainer, source: FileSource | None) -> list[InjectedFile]:
    """The content of ``spec``'s injected files (none to write: no call at all)."""
    if not spec.files:
        return []
    if source is None:
        raise errors.Invalid("this agent cannot fetch injected files from the control plane")
    found = await source(spec.uuid)
    missing = {f.destination for f in spec.files} - {f.destination for f in found if f.data}
    if missing:
        raise errors.Invalid(
            "the control plane sent no content for the injected file(s) "
            + ", ".join(sorted(missing))
        )
    return found


async def write_files(runtime: RuntimeDriver, uuid: str, files: list[InjectedFile]) -> None:
    """Write ``files`` into the created container ``uuid``; on failure remove it and raise.

    Removing it means the next attempt creates it again and writes again,
    instead of starting a container without its files.
    """
    if not files:
        return
    try:
        contents = [(f.destination, base64.b64decode(f.data or "", validate=True)) for f in files]
        await runtime.put_archive(uuid, "/", tar_files(contents, time.time()))
    except (errors.BerthError, binascii.Error, ValueError) as exc:
        await runtime.remove(uuid, True)
        message = exc.message if isinstance(exc, errors.BerthError) else str(exc)
        raise errors.Invalid(f"cannot write the injected files: {message}") from exc
