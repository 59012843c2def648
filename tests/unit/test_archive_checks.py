"""What ``put_archive`` refuses: crafted tars, one per way of escaping the target."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from berth import errors
from berth.domain.archives import check_upload, resolve_inside

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
