"""What ``put_archive`` refuses: crafted tars, one per way of escaping the target."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import tracemalloc

import pytest

from berth import errors
from berth.domain.archives import MAX_MEMBERS, check_upload, resolve_inside

LIMIT = 1024 * 1024


def tar(*members: tuple[str, str, str | bytes], compress: bool = False) -> bytes:
    """A tar of (name, kind, payload): kind file/dir/sym/link/chr/blk/fifo."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = payload.encode() if isinstance(payload, str) else payload
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "link": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind == "file":
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode() if kind in ("sym", "link") else ""
                archive.addfile(info)
    raw = buffer.getvalue()
    return gzip.compress(raw) if compress else raw


@pytest.mark.parametrize(
    "members",
    [
        [("a.txt", "file", "hi")],
        [("./dir", "dir", ""), ("./dir/a.txt", "file", "hi")],
        [("lib", "sym", "usr/lib"), ("usr/lib/x.so", "file", "x")],
        [("bin/sh", "sym", "../busybox"), ("busybox", "file", "x")],
        [("a/b", "sym", ".."), ("a/b/c.txt", "file", "inside")],
        [("copy", "link", "a.txt"), ("a.txt", "file", "hi")],
    ],
    ids=["file", "dir", "link-down", "link-up-inside", "link-to-root", "hardlink"],
)
def test_safe_archives_pass(members: list[tuple[str, str, str]]) -> None:
    check_upload(tar(*members), LIMIT)


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([("/etc/passwd", "file", "x")], "absolute path"),
        ([("../escape.txt", "file", "x")], "contains '..'"),
        ([("a/../../escape.txt", "file", "x")], "contains '..'"),
        ([("out", "sym", "/etc")], "symbolic link to '/etc'"),
        ([("out", "sym", "../../etc")], "symbolic link"),
        ([("s", "sym", "."), ("t", "sym", "s/..")], "symbolic link to 's/..'"),
        ([("loop", "sym", "loop")], "symbolic link"),
        ([("h", "link", "/etc/shadow")], "hard link to '/etc/shadow'"),
        ([("h", "link", "../x")], "hard link"),
        ([("dev", "chr", "")], "device node"),
        ([("disk", "blk", "")], "device node"),
        ([("pipe", "fifo", "")], "FIFO"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "dotdot-inner",
        "symlink-absolute",
        "symlink-up",
        "symlink-through-symlink",
        "symlink-loop",
        "hardlink-absolute",
        "hardlink-up",
        "char-device",
        "block-device",
        "fifo",
    ],
)
def test_unsafe_archives_are_refused_with_the_reason(
    members: list[tuple[str, str, str]], says: str
) -> None:
    with pytest.raises(errors.Invalid, match=says.replace("(", r"\(")):
        check_upload(tar(*members), LIMIT)


def test_a_member_written_through_an_escaping_link_is_refused() -> None:
    # a link that escapes is refused on its own; so is writing through it
    with pytest.raises(errors.Invalid):
        check_upload(tar(("d", "sym", "/"), ("d/etc/x", "file", "x")), LIMIT)


def test_size_limits_count_the_upload_and_what_it_extracts_to() -> None:
    with pytest.raises(errors.Invalid, match="limit is 10"):
        check_upload(tar(("a", "file", "x" * 100)), 10)
    bomb = tar(("zeros", "file", b"\0" * (2 * LIMIT)), compress=True)
    assert len(bomb) < LIMIT
    with pytest.raises(errors.Invalid, match="extracts to more than"):
        check_upload(bomb, LIMIT)


def test_compressed_archives_are_read() -> None:
    assert check_upload(tar(("a.txt", "file", "hello"), compress=True), LIMIT) == 5


# Fixed ids and a fixed gzip mtime: pytest-xdist workers must collect the same
# test names, and a gzip header carries the second it was made in.
@pytest.mark.parametrize(
    "data",
    [b"", b"not a tar at all" * 40, gzip.compress(b"junk", mtime=0)],
    ids=["empty", "text", "gzip-of-junk"],
)
def test_garbage_is_not_a_tar(data: bytes) -> None:
    with pytest.raises(errors.Invalid, match="not a readable tar"):
        check_upload(data, LIMIT)


def test_resolve_follows_the_archives_links() -> None:
    links = {"a": "b/c", "b/c/d": "../../x"}
    assert resolve_inside("a/d/y", links) == ["x", "y"]
    assert resolve_inside("a/../..", links) == []  # b/c/../.. is the target itself
    assert resolve_inside("a/../../..", links) is None
    assert resolve_inside("e", {"e": "/abs"}) is None


def _header(name: str, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def xz_pax_bomb(claimed: int) -> bytes:
    """An xz tar whose first member is a valid pax header of ``claimed`` bytes (a long path)
    before an empty file: a few kilobytes that tarfile would read whole into memory."""
    record_head = f"{claimed} path=".encode()
    filler = claimed - len(record_head) - 1
    xz = lzma.LZMACompressor()
    out = [xz.compress(_header("././@PaxHeader", claimed, tarfile.XHDTYPE) + record_head)]
    chunk = b"a" * (1024 * 1024)
    for start in range(0, filler, len(chunk)):
        out.append(xz.compress(chunk[: min(len(chunk), filler - start)]))
    out.append(xz.compress(b"\n" + b"\0" * (-claimed % 512) + _header("x", 0, tarfile.REGTYPE)))
    out.append(xz.compress(b"\0" * 1024) + xz.flush())
    return b"".join(out)


def test_a_huge_metadata_header_is_refused_before_it_is_read() -> None:
    # Before: this 10 KB upload was accepted (it extracts to nothing) after reading a
    # 64 MiB path into memory; with the default limit one request could claim 8 GiB.
    bomb = xz_pax_bomb(64 * 1024 * 1024)
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(errors.Invalid, match="metadata header of 67108864 bytes"):
            check_upload(bomb, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024  # xz's own dictionary is 8 MiB


def test_headers_alone_cannot_decompress_without_end() -> None:
    # Empty files extract to 0 bytes, so the extracted total never stopped this: any
    # number of headers (300,000 = 150 MiB from a 1 MiB upload took 15 s and 260 MiB).
    entry = _header("empty", 0, tarfile.REGTYPE)
    bomb = lzma.compress(entry * 8192)
    with pytest.raises(errors.Invalid, match="decompresses to more than 2097152 bytes"):
        check_upload(bomb, LIMIT)


def test_an_archive_of_too_many_entries_is_refused() -> None:
    entry = _header("empty", 0, tarfile.REGTYPE)
    archive = gzip.compress(entry * (MAX_MEMBERS + 1) + b"\0" * 1024, 1, mtime=0)
    with pytest.raises(errors.Invalid, match=f"more than {MAX_MEMBERS} entries"):
        check_upload(archive, 64 * 1024 * 1024)
    assert check_upload(gzip.compress(entry * 10 + b"\0" * 1024, mtime=0), LIMIT) == 0
