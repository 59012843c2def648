"""What an uploaded tar may contain before it is extracted into a container (pure).

``put_archive`` extracts into a target directory. An archive is refused when
it could write outside that directory or create what a user has no business
creating: absolute member names, ``..`` in a name, a symbolic or hard link
that resolves outside the target (following the archive's own links, the way
extraction would), device nodes and FIFOs, or more bytes (compressed or
extracted) than the limit. Each refusal says which member and why.

Reading an archive is bounded too, before anything else: a compressed upload is
decompressed through a counter that stops at twice the limit (a few kilobytes
of xz can expand to gigabytes), a tar may hold at most ``MAX_MEMBERS`` entries,
and a metadata header (pax, GNU long name) may say at most ``MAX_HEADER_BYTES``:
Python's tarfile reads such a header whole into memory before it returns the
member, so a 40 KB upload whose pax header claimed 256 MiB took 1 GiB.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from typing import BinaryIO

from berth import errors

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_MEMBERS",
    "STAT_HEADER",
    "TAR",
    "BoundedTarInfo",
    "check_upload",
    "resolve_inside",
]

# A copy out of a container between agent and control plane: the tar itself, its
# stat (the engine's, JSON in ASCII) in a header (berth.agent.archives).
TAR = "application/x-tar"
STAT_HEADER = "X-Berth-Stat"

_MAX_HOPS = 40  # like the kernel's symlink limit
# A pax or GNU long-name header holds a path and a few attributes: PATH_MAX is 4096.
MAX_HEADER_BYTES = 1024 * 1024
# Entries of one tar: a directory tree of 100,000 files is a big copy already, and
# each entry is an object in memory while the archive is checked.
MAX_MEMBERS = 100_000
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, b"L", b"K")


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses a metadata header larger than MAX_HEADER_BYTES before reading it.

    Hand it to ``tarfile.open(tarinfo=...)``: tarfile would read the whole header
    into memory, whatever size its block claims.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _META_TYPES and self.size > MAX_HEADER_BYTES:
            raise errors.Invalid(
                f"The archive has a metadata header of {self.size} bytes; "
                f"at most {MAX_HEADER_BYTES} are read."
            )
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member


class _Capped(io.RawIOBase):
    """A readable stream of ``raw`` that refuses (errors.Invalid) to go past ``cap`` bytes."""

    def __init__(self, raw: io.BufferedIOBase, cap: int) -> None:
        super().__init__()
        self._raw, self._cap, self._seen = raw, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._raw.read(min(len(buffer), self._cap + 1 - self._seen))
        self._seen += len(chunk)
        if self._seen > self._cap:
            raise errors.Invalid(f"The archive decompresses to more than {self._cap} bytes.")
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _decompressed(data: bytes) -> io.BufferedIOBase:
    """``data`` as a readable stream, decompressed when it is gzip, bzip2 or xz."""
    raw = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    if data[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw


def resolve_inside(path: str, links: dict[str, str]) -> list[str] | None:
    """``path`` (relative to the target) resolved through ``links``; None if it escapes.

    ``links`` maps a member name to its symlink target. Components not in it
    are taken as plain directories. An absolute target, climbing above the
    target directory or a link loop all count as escaping.
    """
    resolved: list[str] = []
    pending = path.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is None:
            continue
        hops += 1
        if hops > _MAX_HOPS or target.startswith("/"):
            return None
        resolved.pop()
        pending = target.split("/") + pending
    return resolved


def _name(member: tarfile.TarInfo) -> str:
    return member.name.removeprefix("./").rstrip("/")


def _check_member(member: tarfile.TarInfo, links: dict[str, str]) -> None:
    name = member.name
    if name.startswith("/"):
        raise errors.Invalid(f"Archive member {name!r} has an absolute path; use relative names.")
    if ".." in name.split("/"):
        raise errors.Invalid(f"Archive member {name!r} contains '..'; it could escape the target.")
    if member.ischr() or member.isblk():
        raise errors.Invalid(f"Archive member {name!r} is a device node; devices are refused.")
    if member.isfifo():
        raise errors.Invalid(f"Archive member {name!r} is a FIFO; special files are refused.")
    if member.issym():
        parent = _name(member).rpartition("/")[0]
        if member.linkname.startswith("/") or (
            resolve_inside(f"{parent}/{member.linkname}", links) is None
        ):
            raise errors.Invalid(
                f"Archive member {name!r} is a symbolic link to {member.linkname!r}, "
                "outside the target directory."
            )
    if member.islnk() and (
        member.linkname.startswith("/") or resolve_inside(member.linkname, links) is None
    ):
        raise errors.Invalid(
            f"Archive member {name!r} is a hard link to {member.linkname!r}, "
            "outside the target directory."
        )
    # The last component is created, not followed: resolve the directory it goes in.
    if resolve_inside(_name(member).rpartition("/")[0], links) is None:
        raise errors.Invalid(
            f"Archive member {name!r} would be written through a link outside the target."
        )


def check_upload(data: bytes, limit: int) -> int:
    """Refuse (errors.Invalid) a tar unsafe to extract; return its extracted size in bytes.

    ``data`` may be compressed (gzip, bzip2, xz), as the engine accepts; both
    ``data`` and the extracted total must stay within ``limit`` bytes.
    """
    if len(data) > limit:
        raise errors.Invalid(
            f"The archive is {len(data)} bytes; the limit is {limit} (archive_max_bytes)."
        )
    members: list[tarfile.TarInfo] = []
    total = 0
    # The tar stream itself may exceed what it extracts to (a header per member and
    # padding), but not by more than the limit again.
    stream: BinaryIO = io.BufferedReader(_Capped(_decompressed(data), 2 * limit))
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
            # Member by member, so a compressed bomb stops at the limit, not at the end.
            while (member := tar.next()) is not None:
                if len(members) >= MAX_MEMBERS:
                    raise errors.Invalid(f"The archive holds more than {MAX_MEMBERS} entries.")
                members.append(member)
                total += max(0, member.size) if member.isfile() else 0
                if total > limit:
                    raise errors.Invalid(
                        f"The archive extracts to more than {limit} bytes (archive_max_bytes)."
                    )
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise errors.Invalid(f"The data is not a readable tar archive: {exc}.") from None
    links = {_name(m): m.linkname for m in members if m.issym()}
    for member in members:
        _check_member(member, links)
    return total
