"""The Podman driver's image verbs: ensure/pull (with registry credentials), remove, commit,
and the ``docker save`` archives of Glance images (load, commit locally, save).

A mixin of ``PodmanDriver``: it uses the driver's ``_api`` (libpod calls).
Credentials go to the service per call (``X-Registry-Auth``), never into an
auth file on the host. A short name is pulled from Docker Hub, as Docker does
(Podman itself would refuse to guess a registry); a registry on this host
(``localhost``, ``127.*``) is reached without TLS, as Docker treats it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

from berth import errors
from berth.domain.hostsync import RegistryAuth
from berth.images.refs import split_reference
from berth.runtimes import podmanmap
from berth.runtimes.base import container_name
from berth.runtimes.images import ImageInfo, PullPolicyOps, file_chunks, refused_access

__all__ = ["PodmanImageOps", "auth_header", "insecure_registry"]

_PULL_TIMEOUT = 1800.0  # a big image over a slow link
_CHUNK = 1 << 20


def auth_header(auth: RegistryAuth | None) -> dict[str, str]:
    """``X-Registry-Auth`` for libpod (base64url JSON, as Docker's), or no header."""
    if auth is None:
        return {}
    config = {"username": auth.username, "password": auth.password, "serveraddress": auth.registry}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(config).encode()).decode()}


def insecure_registry(reference: str) -> bool:
    """Whether the reference's registry is on this host (plain HTTP allowed, as with Docker)."""
    first, sep, _ = reference.partition("/")
    host = first.rsplit(":", 1)[0] if sep else ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _stream_error(content: bytes) -> str | None:
    """The first ``error`` of a libpod progress stream (JSON lines), if any."""
    for line in content.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("error"):
            return str(item["error"])
    return None


def _digest(content: bytes) -> str | None:
    for line in content.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            found = item.get("manifestdigest") or item.get("digest")
            if found:
                return str(found)
    return None


class PodmanImageOps(PullPolicyOps):
    """Image operations over the driver's libpod client (see ``berth.runtimes.images``)."""

    _api: Any

    async def remove_image(self, image: str) -> None:
        """Remove the image (its tag); absent is success; used by a container is Conflict."""
        try:
            await self._api.call("DELETE", f"/images/{image}")
        except errors.ContainerNotFound:
            return
        except errors.BerthError as exc:
            if isinstance(exc, errors.InvalidStateException) or "in use" in exc.message:
                raise errors.Conflict(
                    f"image {image} is used by a container on this host: delete the container "
                    f"first ({exc.message})"
                ) from exc
            raise

    async def commit(
        self, uuid: str, reference: str, auth: RegistryAuth | None = None
    ) -> ImageInfo:
        """``podman commit`` (pausing the container meanwhile), then push ``reference``."""
        repository, tag = split_reference(reference)
        await self.commit_local(uuid, reference)
        digest = await self._push(f"{repository}:{tag}", auth)
        info = await self._describe(reference)
        info.digest = digest
        return info

    async def load_archive(self, path: str, reference: str) -> None:
        """``podman load`` the archive at ``path`` (streamed from the file) as ``reference``."""
        repository, tag = split_reference(reference)
        try:
            response = await self._api.call(
                "POST",
                "/images/load",
                content=file_chunks(path),
                headers={"Content-Type": "application/x-tar"},
                timeout=_PULL_TIMEOUT,
            )
            names = response.json().get("Names") or []
        except (errors.BerthError, ValueError, AttributeError) as exc:
            reason = exc.message if isinstance(exc, errors.BerthError) else str(exc)
            raise errors.Invalid(
                f"the Glance image's data is not a loadable docker save archive: {reason}"
            ) from exc
        if not names:
            raise errors.Invalid(
                "the Glance image's data is not a loadable docker save archive: "
                "the archive holds no image"
            )
        await self._api.call(
            "POST", f"/images/{names[0]}/tag", params={"repo": repository, "tag": tag}
        )

    async def commit_local(self, uuid: str, reference: str) -> ImageInfo:
        """``podman commit`` (pausing the container meanwhile) as ``reference``, not pushed."""
        repository, tag = split_reference(reference)
        await self._api.call(
            "POST",
            "/commit",
            params={
                "container": container_name(uuid),
                "repo": repository,
                "tag": tag,
                "pause": "true",
                "format": "docker",
            },
            timeout=_PULL_TIMEOUT,
        )
        return await self._describe(reference)

    async def save_archive(self, reference: str, path: str, limit: int) -> int:
        """``podman save`` (docker-archive) ``reference`` into ``path``, refusing more than
        ``limit`` bytes."""
        size = 0
        request = self._api.client.build_request(
            "GET",
            f"/images/{reference}/get",
            params={"format": "docker-archive"},
            timeout=httpx.Timeout(_PULL_TIMEOUT, connect=10.0),
        )
        try:
            response = await self._api.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._api.unavailable(exc) from exc
        try:
            if response.status_code >= 400:
                raise podmanmap.error_for(response.status_code, await response.aread())
            out = await asyncio.to_thread(open, path, "wb")
            try:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise errors.Invalid(
                            f"image {reference} is larger than {limit} bytes "
                            "(the setting glance_image_max_bytes)"
                        )
                    await asyncio.to_thread(out.write, chunk)
            finally:
                out.close()
        except httpx.HTTPError as exc:
            raise errors.BerthError(f"podman save of {reference} failed: {exc}") from exc
        finally:
            await response.aclose()
        return size

    async def _image_present(self, image: str) -> bool:
        try:
            await self._api.call("GET", f"/images/{image}/exists")
        except errors.ContainerNotFound:
            return False
        return True

    async def _describe(self, image: str) -> ImageInfo:
        data: dict[str, Any] = await self._api.json("GET", f"/images/{image}/json")
        return ImageInfo(image_id=str(data.get("Id", "")), size=int(data.get("Size") or 0))

    async def _pull(self, image: str, auth: RegistryAuth | None) -> None:
        reference = podmanmap.qualified(image)
        params = {"reference": reference, "policy": "always", "quiet": "true"}
        if insecure_registry(reference):
            params["tlsVerify"] = "false"
        try:
            response = await self._api.call(
                "POST",
                "/images/pull",
                params=params,
                headers=auth_header(auth),
                timeout=_PULL_TIMEOUT,
            )
            reason = _stream_error(response.content)
        except errors.BerthError as exc:  # a refusal before the stream began
            reason = exc.message
        except httpx.HTTPError as exc:
            reason = str(exc)
        if reason is None:
            return
        if refused_access(reason):
            hint = (
                "the registry's credentials were refused: fix the registry's username and "
                "password (openstack appcontainer registry update)"
                if auth
                else "the registry wants credentials: create a registry with them "
                "(openstack appcontainer registry create) and name it with --registry"
            )
            raise errors.ImageNotFound(
                f"image {image!r} could not be pulled: {hint} (pull failed: {reason})"
            )
        raise errors.ImageNotFound(
            f"image {image!r} not found: check the name or the registry (pull failed: {reason})"
        )

    async def _push(self, reference: str, auth: RegistryAuth | None) -> str | None:
        params = {"destination": reference, "format": "v2s2"}
        if insecure_registry(reference):
            params["tlsVerify"] = "false"
        try:
            response = await self._api.call(
                "POST",
                f"/images/{reference}/push",
                params=params,
                headers=auth_header(auth),
                timeout=_PULL_TIMEOUT,
            )
        except errors.BerthError as exc:
            raise errors.HostUnavailable(f"pushing {reference} failed: {exc.message}") from exc
        reason = _stream_error(response.content)
        if reason is not None:
            raise errors.HostUnavailable(f"pushing {reference} failed: {reason}")
        return _digest(response.content)

