"""Push the images of a ``docker save`` tarball into a registry, without an engine.

A ``docker save`` archive lists its images in ``manifest.json``: a config
file and the layer tars of each. Pushing one means: gzip each layer
(deterministically, so a layer already stored is recognised), upload the
blobs, then the image config, then a schema 2 manifest that names them.

The archive comes from a tenant, so reading it is bounded: a plain tar only
(``docker save`` writes one; a compressed one could expand without end), at
most ``MAX_MEMBERS`` entries, metadata headers and the JSON files it names of
bounded size, read in a thread.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from berth import errors
from berth.domain.archives import MAX_MEMBERS, BoundedTarInfo
from berth.images.registry import MANIFEST_V2, RegistryClient

__all__ = ["PushedImage", "SavedImage", "push_saved", "read_saved"]

_CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
_LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# manifest.json and an image config: a few kilobytes each in practice.
MAX_JSON_BYTES = 16 * 1024 * 1024
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd"}


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image of the archive: its tags (maybe none), its config and layer members."""

    repo_tags: tuple[str, ...]
    config: str
    layers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PushedImage:
    """What the registry now holds: the manifest digest and the image's compressed size."""

    digest: str
    size: int


def read_saved(archive: Path) -> list[SavedImage]:
    """The images listed in the archive's ``manifest.json`` (Invalid when it is not one)."""
    try:
        with _open(archive) as tar:
            members = _index(tar)
            if "manifest.json" not in members:
                raise KeyError("manifest.json")
            entries = json.loads(_read(tar, members, "manifest.json"))
    # RecursionError: json.loads of a manifest nested ~1,000 deep (a 500 before).
    except (tarfile.TarError, KeyError, ValueError, OSError, RecursionError) as exc:
        raise errors.Invalid(
            f"not a 'docker save' archive ({exc.__class__.__name__}: {exc}): create one with "
            "'docker save -o image.tar NAME:TAG'"
        ) from exc
    if not isinstance(entries, list) or not entries:
        raise errors.Invalid("the archive's manifest.json lists no image")
    if not all(isinstance(e, dict) and isinstance(e.get("Config"), str) for e in entries):
        raise errors.Invalid("the archive's manifest.json lists an image without its Config")
    return [
        SavedImage(
            repo_tags=tuple(e.get("RepoTags") or ()),
            config=str(e["Config"]),
            layers=tuple(str(layer) for layer in e.get("Layers") or ()),
        )
        for e in entries
    ]


async def push_saved(
    client: RegistryClient, archive: Path, image: SavedImage, repo: str, tag: str
) -> PushedImage:
    """Push ``image`` from ``archive`` as ``repo:tag``; layers already there are not re-sent."""
    with tempfile.TemporaryDirectory(prefix="berth-push-") as tmp:
        config, layers = await asyncio.to_thread(_prepare, archive, image, Path(tmp))
        for digest, _size, path in layers:
            await client.upload_blob(repo, digest, path)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        await client.upload_bytes(repo, config_digest, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": _CONFIG_TYPE, "size": len(config), "digest": config_digest},
            "layers": [
                {"mediaType": _LAYER_TYPE, "size": size, "digest": digest}
                for digest, size, _ in layers
            ],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        digest = await client.put_manifest(repo, tag, body)
        total = len(config) + sum(size for _, size, _ in layers)
        return PushedImage(digest or "sha256:" + hashlib.sha256(body).hexdigest(), total)


def _prepare(
    archive: Path, image: SavedImage, workdir: Path
) -> tuple[bytes, list[tuple[str, int, Path]]]:
    """The config bytes, and each layer gzipped into ``workdir`` with its digest and size."""
    layers: list[tuple[str, int, Path]] = []
    with _open(archive) as tar:
        members = _index(tar)
        config = _read(tar, members, image.config)
        for index, name in enumerate(image.layers):
            source = tar.extractfile(members[name]) if name in members else None
            if source is None:
                raise errors.Invalid(f"the archive lacks the layer {name}")
            target = workdir / f"layer-{index}.tar.gz"
            digest = hashlib.sha256()
            with target.open("wb") as raw:
                writer = _HashingWriter(raw, digest)
                # mtime=0: the same layer always compresses to the same blob.
                with gzip.GzipFile(fileobj=writer, mode="wb", mtime=0, compresslevel=6) as gz:
                    shutil.copyfileobj(source, gz, 1024 * 1024)
            layers.append(("sha256:" + digest.hexdigest(), target.stat().st_size, target))
    return config, layers


def _open(archive: Path) -> tarfile.TarFile:
    """The archive as a plain tar whose metadata headers are bounded (Invalid if compressed)."""
    with archive.open("rb") as raw:
        head = raw.read(6)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise errors.Invalid(
                f"the archive is {kind}-compressed: upload the plain tar that "
                "'docker save -o image.tar NAME:TAG' writes"
            )
    return tarfile.open(archive, mode="r:", tarinfo=BoundedTarInfo)


def _index(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The archive's members by name, at most MAX_MEMBERS of them (Invalid beyond)."""
    members: dict[str, tarfile.TarInfo] = {}
    while (member := tar.next()) is not None:
        if len(members) >= MAX_MEMBERS:
            raise errors.Invalid(f"the archive holds more than {MAX_MEMBERS} entries")
        members[member.name] = member
    return members


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    """The content of the JSON file ``name`` (Invalid if missing or over MAX_JSON_BYTES)."""
    member = members.get(name)
    source = tar.extractfile(member) if member is not None else None
    if member is None or source is None:
        raise errors.Invalid(f"the archive lacks {name}")
    if member.size > MAX_JSON_BYTES:
        raise errors.Invalid(f"{name} in the archive is over {MAX_JSON_BYTES} bytes")
    return source.read()


class _HashingWriter:
    """A binary file wrapper that hashes what is written through it."""

    def __init__(self, raw: object, digest: hashlib._Hash) -> None:
        self._raw = raw
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        written: int = self._raw.write(data)  # type: ignore[attr-defined]
        return written

    def flush(self) -> None:
        self._raw.flush()  # type: ignore[attr-defined]
