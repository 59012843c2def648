"""Glance images on this host: fetched through the control plane, checked, ``docker load``-ed.

A Glance image's local name is ``berth-glance/<image id>:<checksum>`` (the
control plane names it so in the desired state): present means loaded before
from data with that checksum, so nothing is downloaded again. Absent, its data
(a ``docker save`` tar) comes from the control plane, which streams it from
Glance with its own token: this host never holds a Glance credential. The data
goes to a temporary file (bounded by the control plane's
``glance_image_max_bytes``), its MD5 is checked against Glance's checksum, and
only then does the engine load it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable

from berth import errors
from berth.domain.hostsync import DesiredContainer
from berth.images.glance import GlanceClient
from berth.images.refs import split_reference
from berth.runtimes.base import RuntimeDriver
from berth.runtimes.images import ArchiveLoader, ImageInfo, file_chunks

__all__ = ["GlanceSink", "GlanceSource", "commit_to_glance", "ensure_glance_image", "glance_sink"]

log = logging.getLogger(__name__)

# container uuid -> the data of its Glance image, in chunks
GlanceSource = Callable[[str], AsyncIterator[bytes]]
# a commit's archive (chunks) -> uploaded into its Glance image
GlanceSink = Callable[[AsyncIterator[bytes]], Awaitable[None]]


async def ensure_glance_image(
    runtime: RuntimeDriver, desired: DesiredContainer, source: GlanceSource | None
) -> None:
    """Make ``desired.image`` (a Glance image's local name) present on this host."""
    try:
        await runtime.ensure_image(desired.image, "never")
        return  # loaded before: the checksum in its name says it is the same data
    except errors.ImageNotFound:
        pass
    if source is None or not isinstance(runtime, ArchiveLoader):
        raise errors.Invalid("this host's runtime cannot load Glance images")
    checksum = split_reference(desired.image)[1]
    fd, path = tempfile.mkstemp(prefix="berth-glance-", suffix=".tar")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in source(desired.uuid):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if len(checksum) == 32 and digest.hexdigest() != checksum:
            raise errors.Invalid(
                f"the Glance image's data ({size} bytes) does not match its checksum "
                f"{checksum}: the download was cut short or the data changed"
            )
        log.info("loading Glance image %s (%d bytes) for %s", desired.image, size, desired.uuid)
        await runtime.load_archive(path, desired.image)
    finally:
        os.unlink(path)


def glance_sink(client: GlanceClient, token: str, image_id: str) -> GlanceSink:
    """Upload into Glance image ``image_id`` with ``token``."""

    async def upload(chunks: AsyncIterator[bytes]) -> None:
        await client.upload(token, image_id, chunks)

    return upload


async def commit_to_glance(
    runtime: RuntimeDriver, uuid: str, reference: str, limit: int, sink: GlanceSink
) -> ImageInfo:
    """Commit container ``uuid`` as ``reference`` here and upload its docker save to ``sink``."""
    if not isinstance(runtime, ArchiveLoader):
        raise errors.Invalid("this host's runtime cannot save images for Glance")
    info = await runtime.commit_local(uuid, reference)
    fd, path = tempfile.mkstemp(prefix="berth-commit-", suffix=".tar")
    os.close(fd)
    try:
        info.size = await runtime.save_archive(reference, path, limit)
        await sink(file_chunks(path))
    finally:
        os.unlink(path)
    return info

