"""Image references, the secret box, the image store's files and docker-save archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
import tracemalloc
from pathlib import Path

import bcrypt
import pytest

from berth import errors
from berth.config import Settings
from berth.images import dockersave
from berth.images.refs import (
    is_loopback,
    registry_of,
    split_reference,
    valid_repository,
    with_registry,
)
from berth.images.store_setup import prepare_store
from berth.services.secrets import key_path, open_box


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", ("busybox", "latest")),
        ("busybox:1.36", ("busybox", "1.36")),
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000/a/b", "latest")),
        ("127.0.0.1:5000/a/b:v2", ("127.0.0.1:5000/a/b", "v2")),
        ("a/b@sha256:abc", ("a/b", "sha256:abc")),
        ("reg:5000/team/app", ("reg:5000/team/app", "latest")),
        ("reg:5000/app:2", ("reg:5000/app", "2")),
        # An empty tag is latest, as the engine's pull reads it (it trims a trailing ":")
        # and docker-py's pull too; ``docker run busybox:`` refuses it client-side.
        ("busybox:", ("busybox", "latest")),
        ("127.0.0.1:5000/a/b:", ("127.0.0.1:5000/a/b", "latest")),
    ],
)
def test_split_reference(image: str, expected: tuple[str, str]) -> None:
    assert split_reference(image) == expected


def test_registries_and_names() -> None:
    assert registry_of("quay.io/team/app") == "quay.io"
    assert registry_of("localhost/app") == "localhost"
    assert registry_of("127.0.0.1:5000/app") == "127.0.0.1:5000"
    assert registry_of("team/app") is None and registry_of("busybox") is None
    assert with_registry("team/app:1", "https://r.example.com/") == "r.example.com/team/app:1"
    assert with_registry("r.example.com/team/app", "r.example.com") == "r.example.com/team/app"
    assert valid_repository("team/app-1.x") and not valid_repository("Team/App")
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost")
    assert not is_loopback("registry.example.com:5000")


def test_secret_box_key_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    secret = "correct-horse-battery-staple"  # long: a random ciphertext never contains it
    sealed = open_box(settings).seal(secret)
    assert secret not in sealed and "correct-horse" not in sealed
    assert stat.S_IMODE(key_path(settings).stat().st_mode) == 0o600
    assert open_box(settings).open(sealed) == secret  # same key file, same key
    other = Settings(data_dir=tmp_path / "other")
    with pytest.raises(errors.BerthError, match="secret_key_file"):
        open_box(other).open(sealed)


def test_store_files_are_private_and_reused(tmp_path: Path) -> None:
    first = prepare_store(tmp_path / "store", 5999)
    again = prepare_store(tmp_path / "store", 5999)
    assert first.password == again.password and first.address == "127.0.0.1:5999"
    user, hashed = (tmp_path / "store" / "htpasswd").read_text().strip().split(":", 1)
    assert user == "berth" and bcrypt.checkpw(first.password.encode(), hashed.encode())
    for name in ("password", "htpasswd", "config.yml"):
        assert stat.S_IMODE((tmp_path / "store" / name).stat().st_mode) == 0o600
    assert "delete: {enabled: true}" in first.config.read_text()


def _archive(path: Path, tags: list[str] | None) -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        data = b"hello"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": ["l/layer.tar"]}])
    with tarfile.open(path, "w") as t:
        for name, blob in (
            ("manifest.json", manifest.encode()),
            ("c.json", config),
            ("l/layer.tar", layer.getvalue()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return layer.getvalue()


def test_saved_archive_is_read_and_layers_compress_deterministically(tmp_path: Path) -> None:
    raw = _archive(tmp_path / "a.tar", ["app:1"])
    [image] = dockersave.read_saved(tmp_path / "a.tar")
    assert image.repo_tags == ("app:1",) and image.layers == ("l/layer.tar",)
    _config, layers = dockersave._prepare(tmp_path / "a.tar", image, tmp_path)
    digest, size, blob = layers[0]
    (tmp_path / "again").mkdir()
    again = dockersave._prepare(tmp_path / "a.tar", image, tmp_path / "again")[1][0][0]
    assert digest == again == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert gzip.decompress(blob.read_bytes()) == raw and size == blob.stat().st_size
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(errors.Invalid, match="docker save"):
        dockersave.read_saved(tmp_path / "junk.tar")


def _tar_of(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as t:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))


def test_a_saved_archive_is_read_within_bounds(tmp_path: Path) -> None:
    raw = tmp_path / "a.tar"
    _archive(raw, ["app:1"])
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(raw.read_bytes(), mtime=0))
    with pytest.raises(errors.Invalid, match="gzip-compressed: upload the plain tar"):
        dockersave.read_saved(tmp_path / "a.tar.gz")
    # Entries that are not images were a 500 (AttributeError, KeyError).
    for manifest in (b"[1]", b'[{"Layers": []}]'):
        _tar_of(tmp_path / "odd.tar", [("manifest.json", manifest)])
        with pytest.raises(errors.Invalid, match="without its Config"):
            dockersave.read_saved(tmp_path / "odd.tar")
    # JSON nested past the parser's recursion limit was a RecursionError (a 500).
    _tar_of(tmp_path / "deep.tar", [("manifest.json", b"[" * 100_000)])
    with pytest.raises(errors.Invalid, match="not a 'docker save' archive"):
        dockersave.read_saved(tmp_path / "deep.tar")
    # A pax header claiming 64 MiB (sparse on disk) is refused before tarfile reads it whole.
    claimed = 64 * 1024 * 1024
    info = tarfile.TarInfo("././@PaxHeader")
    info.size, info.type = claimed, tarfile.XHDTYPE
    with (tmp_path / "pax.tar").open("wb") as out:
        out.write(info.tobuf(format=tarfile.USTAR_FORMAT) + f"{claimed} path=".encode())
        out.seek(512 + claimed - 1)
        out.write(b"\n" + b"\0" * 2048)
    tracemalloc.start()
    try:
        with pytest.raises(errors.Invalid, match="metadata header of 67108864 bytes"):
            dockersave.read_saved(tmp_path / "pax.tar")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
