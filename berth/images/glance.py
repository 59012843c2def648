"""A small async client of Glance's v2 image API: find, describe, download, create, upload.

Every call names the token it acts with: the caller's (so Glance itself decides
what the caller may see: private, shared, community, public) or Berth's
service user's. Answers are parsed into ``GlanceImage``; Glance's failures
become Berth errors: an image the token cannot see is ``ImageNotFound`` with
Zun's words, Glance unreachable or failing is ``HostUnavailable`` (503). Data
is streamed in chunks, never held whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from berth import errors

__all__ = [
    "DOCKER_FORMAT",
    "GlanceAccess",
    "GlanceClient",
    "GlanceImage",
    "GlanceImageNotFound",
    "GlanceUnavailable",
    "glance_not_found",
    "is_uuid",
]

DOCKER_FORMAT = "docker"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
# Glance's name filter matches whole names; 100 images of one name is already absurd.
_MAX_MATCHES = 100
_CHUNK = 1 << 16


class GlanceImageNotFound(errors.NotFound):
    """A Glance image the caller cannot see (Zun's ``ImageNotFound``, a 404)."""

    code = "image-not-found"


class GlanceUnavailable(errors.HostUnavailable):
    """Glance does not answer, or answers with a server error (503)."""


def glance_not_found(image: str) -> GlanceImageNotFound:
    """Zun's words for an image Glance does not show the caller."""
    return GlanceImageNotFound(f"Image {image} could not be found.")


@dataclass(frozen=True, slots=True)
class GlanceImage:
    """The fields of a Glance image Berth uses; ``properties`` holds the rest (os_distro, ...)."""

    id: str
    name: str
    status: str
    container_format: str | None
    disk_format: str | None
    size: int | None
    checksum: str | None
    owner: str | None
    visibility: str
    tags: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> GlanceImage:
        """From Glance's JSON image."""
        known = {"id", "name", "status", "container_format", "disk_format", "size"}
        known |= {"checksum", "owner", "visibility", "tags"}
        size = body.get("size")
        return cls(
            id=str(body.get("id", "")),
            name=str(body.get("name") or ""),
            status=str(body.get("status", "")),
            container_format=body.get("container_format"),
            disk_format=body.get("disk_format"),
            size=int(size) if isinstance(size, int) else None,
            checksum=body.get("checksum") or body.get("os_hash_value"),
            owner=body.get("owner"),
            visibility=str(body.get("visibility", "")),
            tags=tuple(str(t) for t in body.get("tags") or ()),
            properties={k: v for k, v in body.items() if k not in known},
        )

    @property
    def cache_key(self) -> str:
        """What names this image's data on a host: its checksum (a new upload, a new key)."""
        return (self.checksum or self.id.replace("-", ""))[:64]


def is_uuid(text: str) -> bool:
    """Whether ``text`` has a UUID's shape (Glance image ids do)."""
    return bool(_UUID.match(text))


class GlanceClient:
    """Glance's v2 API at ``url`` (the endpoint, with or without ``/v2``)."""

    def __init__(
        self,
        url: str,
        timeout: float,
        transfer_timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        """``timeout`` bounds each wait on Glance; ``transfer_timeout`` a whole download."""
        self.url = url.rstrip("/").removesuffix("/v2")
        self._transfer_timeout = transfer_timeout
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(timeout), transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def find(
        self,
        token: str,
        ident: str,
        tag: str | None = None,
        container_format: str | None = DOCKER_FORMAT,
    ) -> GlanceImage:
        """The ``docker`` image ``ident`` (a UUID or a name) as ``token``'s owner sees it.

        ``container_format`` None: an image of any format (Magnum's lookup).

        As Zun's glance driver: a UUID is looked up directly; a name must match
        exactly one image (with several, ``tag`` picks by Glance tag; still
        several is a ``Conflict`` asking for the id). Anything the token cannot
        see is ``GlanceImageNotFound``, whoever owns it.
        """
        if is_uuid(ident):
            image = await self.get(token, ident)
            if image is None or container_format not in (None, image.container_format):
                raise glance_not_found(ident)
            return image
        params = {"name": ident, "limit": str(_MAX_MATCHES)}
        if container_format:
            params["container_format"] = container_format
        body = await self._json("GET", "/v2/images", token, params=params)
        found = [GlanceImage.parse(i) for i in body.get("images") or [] if isinstance(i, dict)]
        if tag and len(found) > 1:
            found = [i for i in found if tag in i.tags]
        elif tag and len(found) == 1 and found[0].tags and tag not in found[0].tags:
            found = []
        if not found:
            raise glance_not_found(ident if not tag else f"{ident}:{tag}")
        if len(found) > 1:
            raise errors.Conflict(
                f"Multiple images exist with same name {ident}. Please use the image id instead."
            )
        return found[0]

    async def get(self, token: str, image_id: str) -> GlanceImage | None:
        """The image ``image_id`` if ``token`` may see it, else None."""
        try:
            return GlanceImage.parse(await self._json("GET", f"/v2/images/{image_id}", token))
        except GlanceImageNotFound:
            return None

    async def create(self, token: str, name: str, **fields: Any) -> GlanceImage:
        """A new (queued) image named ``name``, owned by ``token``'s project."""
        body = {"name": name, **fields}
        return GlanceImage.parse(await self._json("POST", "/v2/images", token, json=body))

    async def upload(self, token: str, image_id: str, data: AsyncIterator[bytes]) -> None:
        """Stream ``data`` as the image's data (chunked; Glance checksums it)."""
        headers = {"X-Auth-Token": token, "Content-Type": "application/octet-stream"}
        try:
            r = await self._http.put(f"/v2/images/{image_id}/file", content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise GlanceUnavailable(f"Glance at {self.url} did not answer: {exc}") from exc
        self._check(r, image_id)

    async def delete(self, token: str, image_id: str) -> None:
        """Delete the image; an image already gone is success."""
        try:
            await self._json("DELETE", f"/v2/images/{image_id}", token)
        except GlanceImageNotFound:
            return

    async def download(self, token: str, image_id: str, limit: int) -> AsyncIterator[bytes]:
        """The image's data in chunks; more than ``limit`` bytes is ``Invalid`` mid-stream."""
        headers = {"X-Auth-Token": token}
        try:
            async with self._http.stream(
                "GET", f"/v2/images/{image_id}/file", headers=headers
            ) as r:
                if r.status_code >= 300:
                    await r.aread()
                    self._check(r, image_id)
                seen = 0
                deadline = time.monotonic() + self._transfer_timeout
                async for chunk in r.aiter_bytes(_CHUNK):
                    seen += len(chunk)
                    if seen > limit:
                        raise errors.Invalid(_too_big(image_id, limit))
                    if time.monotonic() > deadline:
                        raise GlanceUnavailable(
                            f"Downloading image {image_id} from Glance took longer than "
                            f"{self._transfer_timeout:g} s (the setting glance_timeout)."
                        )
                    yield chunk
        except httpx.HTTPError as exc:
            raise GlanceUnavailable(f"Glance at {self.url} failed a download: {exc}") from exc

    async def _json(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"X-Auth-Token": token}
        try:
            r = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise GlanceUnavailable(f"Glance at {self.url} did not answer: {exc}") from exc
        self._check(r, path.rsplit("/", 1)[-1])
        if not r.content:
            return {}
        body = r.json()
        return body if isinstance(body, dict) else {}

    def _check(self, r: httpx.Response, what: str) -> None:
        if r.status_code < 300:
            return
        if r.status_code in (403, 404):  # Glance hides others' private images as 404
            raise glance_not_found(what)
        if r.status_code == 401:
            raise errors.Unauthorized(f"Glance refused the token ({r.status_code}).")
        if r.status_code == 413:
            raise errors.Invalid(f"Glance refused the image data as too large: {r.text[:200]}")
        if r.status_code < 500:
            raise errors.Invalid(f"Glance refused the request ({r.status_code}): {r.text[:300]}")
        raise GlanceUnavailable(f"Glance at {self.url} failed ({r.status_code}): {r.text[:300]}")


@dataclass
class GlanceAccess:
    """The cloud's Glance as the control plane uses it: the client and Berth's service token.

    ``service_token`` answers Berth's service user's Keystone token (cached and
    renewed by the Keystone validator); it fetches data only for images a
    caller's own token resolved first.
    """

    client: GlanceClient
    service_token: Callable[[], Awaitable[str]]
    max_bytes: int


def _too_big(image_id: str, limit: int) -> str:
    return (
        f"Image {image_id} is larger than this Berth accepts from Glance "
        f"({limit} bytes, the setting glance_image_max_bytes)."
    )
