"""What an uploaded tar may contain before it is extracted into a container (pure).

``put_archive`` extracts into a target directory. An archive is refused when
it could write outside that directory or create what a user has no business
creating: absolute member names, ``..`` in a name, a symbolic or hard link
that resolves outside the target (following the archive's own links, the way
extraction would), device nodes and FIFOs, or more bytes (compressed or
extracted) than the limit. Each refusal says which member and why.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import zlib

from berth import errors

__all__ = ["check_upload", "resolve_inside"]

_MAX_HOPS = 40  # like the kernel's symlink limit


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
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            # Member by member, so a compressed bomb stops at the limit, not at the end.
            while (member := tar.next()) is not None:
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
