"""Zun's file injection (a ``mounts`` entry of ``type=bind``): what is accepted (pure).

Upstream (``zun/api/controllers/v1/containers.py`` ``_build_requested_volumes``)
takes a bind mount's ``source`` as the file's content, base64-encoded by the
client (python-zunclient reads the local file named in ``--mount
type=bind,source=<file>`` and encodes it), never as a host path; the compute
host decodes it (``zun/common/utils.py`` ``decode_file_data``) and bind-mounts
the file at ``destination``. Berth keeps the decoded content and writes it into
the container before it starts. The destination is a file path in the
container: absolute, normalised, not ``/`` and not in the kernel's own file
systems, where a write means something else than a file.
"""

from __future__ import annotations

import base64
import binascii
import io
import posixpath
import re
import tarfile

from berth import errors

__all__ = ["MAX_PATH", "check_destination", "decode_content", "in_kernel_fs", "tar_files"]

MAX_PATH = 4096  # PATH_MAX on Linux
_KERNEL_ROOTS = ("/proc", "/sys", "/dev")
_SPACE = re.compile(r"\s+")


def in_kernel_fs(path: str) -> bool:
    """Whether the absolute ``path`` lies in /proc, /sys or /dev (however many slashes lead)."""
    clean = posixpath.normpath("/" + path.lstrip("/"))
    return any(clean == root or clean.startswith(root + "/") for root in _KERNEL_ROOTS)


def check_destination(dest: str) -> str:
    """``dest`` when it is a safe file path in a container; errors.Invalid saying why not."""
    problem = None
    if "\x00" in dest:
        problem = "it contains a NUL character"
    elif len(dest) > MAX_PATH:
        problem = f"it is longer than {MAX_PATH} characters"
    elif not dest.startswith("/"):
        problem = "it must be an absolute path"
    elif ".." in dest.split("/"):
        problem = "'..' is not allowed"
    elif posixpath.normpath(dest) != dest or dest.startswith("//"):
        problem = f"write it normalised, as {posixpath.normpath(dest)!r}"
    elif dest == "/":
        problem = "'/' is a directory; name the file to write"
    elif in_kernel_fs(dest):
        problem = "files under /proc, /sys and /dev cannot be injected"
    if problem is not None:
        raise errors.Invalid(f"Invalid file injection destination {dest!r}: {problem}.")
    return dest


def decode_content(source: str, dest: str, limit: int) -> bytes:
    """The file bytes encoded in ``source`` (base64; whitespace ignored), at most ``limit``.

    errors.Invalid when ``source`` is not base64 or decodes to more than
    ``limit`` bytes (checked before decoding, so a huge string costs nothing).
    """
    text = _SPACE.sub("", source)
    if len(text) > 4 * ((limit + 2) // 3):
        raise errors.Invalid(_too_big(dest, limit))
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise errors.Invalid(
            f"Invalid Base 64 file data for the mount at {dest}: send the file's content "
            "base64-encoded (openstack appcontainer run --mount type=bind,source=<local file>,"
            "destination=<path> does it)."
        ) from None
    if len(data) > limit:
        raise errors.Invalid(_too_big(dest, limit))
    return data


def _too_big(dest: str, limit: int) -> str:
    return (
        f"The file injected at {dest} is larger than {limit} bytes "
        "(inject_file_max_bytes); copy big files with 'openstack appcontainer cp' instead."
    )


def tar_files(files: list[tuple[str, bytes]], mtime: float) -> bytes:
    """A tar that puts each ``(destination, content)`` at its path when extracted at ``/``.

    Regular files of mode 0644 owned by root, as Zun's host file is; missing
    parent directories are made by the extraction (no directory entries, so an
    existing directory keeps its own mode and owner).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dest, content in files:
            info = tarfile.TarInfo(check_destination(dest).lstrip("/"))
            info.size, info.mode, info.mtime = len(content), 0o644, mtime
            info.uid = info.gid = 0
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()
